"""The cluster router: packets in (PULL) -> the worker owning each stream (ROUTER); labels out (XSUB->XPUB).

Workers connect a DEALER (packets in, heartbeats out) and a label publisher; the router binds every
socket, so only the router needs CURVE keys to listen beyond loopback. A stream is placed by the hash
ring and changes worker only at a sample boundary (its reservoir state stays on one worker). A worker
whose heartbeats stop (or whose connection drops) leaves the ring: its streams resume on another
worker at their next sample boundary, and the samples it held are counted lost, per stream.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import zmq

from .. import wire
from ..errors import ConfigError, WireError
from ..events import LabelEvent
from ..security import (
    check_bind,
    is_local_endpoint,
    load_keys,
    secure_server,
    start_authenticator,
)
from .ring import HashRing

__all__ = ["RouterConfig", "Router", "HELLO", "HEARTBEAT", "LEAVE", "BYE"]

HELLO, HEARTBEAT, LEAVE, BYE = b"hello", b"hb", b"leave", b"bye"


def _drain(recv, handle, most: int = 1000) -> None:
    """``handle(recv(zmq.NOBLOCK))`` for each waiting message, at most ``most``, until zmq.Again."""
    for _ in range(most):
        try:
            msg = recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        handle(msg)


def _events_header(frames: list) -> tuple[str, int, bool, bool]:
    """(stream, sample, begin, end) of an event packet by ``wire.peek``; WireError for anything else.

    The worker still decodes the whole message (its event times too), counting what it rejects
    (``rejected`` in its heartbeat).
    """
    head = wire.peek(frames)
    if head.kind != "events":
        raise WireError("kind", "the router takes event packets only")
    return head.stream_id, head.sample_id, head.begin, head.end


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Endpoints the router binds, heartbeat timing, and the CURVE key directory (beyond loopback)."""

    input: str = "tcp://127.0.0.1:5555"       # PULL: sources push event packets here
    workers: str = "tcp://127.0.0.1:5570"     # ROUTER: workers connect a DEALER
    labels_in: str = "tcp://127.0.0.1:5571"   # XSUB: workers connect their label publisher
    labels: str = "tcp://127.0.0.1:5601"      # XPUB: the one endpoint subscribers connect to
    heartbeat_s: float = 0.2
    timeout_s: float = 1.0
    vnodes: int = 64
    hwm: int = 1000
    keys_dir: str | None = None
    pending_expiry_s: float = 60.0
    max_streams: int = 100_000                # streams the router remembers (least recent evicted)

    def validate(self) -> None:
        if not 0 < self.heartbeat_s < self.timeout_s:
            raise ConfigError("timeout_s", f"must exceed heartbeat_s > 0 ({self.heartbeat_s}), got {self.timeout_s}")
        if self.hwm < 1:
            raise ConfigError("hwm", f"must be >= 1, got {self.hwm}")
        if self.max_streams < 1:
            raise ConfigError("max_streams", f"must be >= 1, got {self.max_streams}")


@dataclass(slots=True)
class _Worker:
    ident: bytes
    name: str
    last_seen: float
    leaving: bool = False
    info: dict = field(default_factory=dict)


@dataclass(slots=True)
class _Stream:
    owner: str | None = None
    in_sample: bool = False
    skipping: bool = False       # after its worker died mid-sample: wait for the next sample start
    seen_begin: bool = False
    sample_id: int = -1
    failed_at: float | None = None


class Router:
    """``Router(config).run(stop)`` until ``stop()`` is true; ``status()`` is a plain dict of counters."""

    def __init__(self, config: RouterConfig | None = None, context: zmq.Context | None = None) -> None:
        self.config = config = config or RouterConfig()
        config.validate()
        self.keys = load_keys(config.keys_dir) if config.keys_dir else None
        for key in ("input", "workers", "labels_in", "labels"):
            check_bind(getattr(config, key), self.keys, key=f"router.{key}")
        self.ctx = context or zmq.Context.instance()
        self.ring = HashRing(vnodes=config.vnodes)
        self.workers: dict[str, _Worker] = {}
        self.streams: OrderedDict[str, _Stream] = OrderedDict()  # least recently routed first
        self.pending: dict[tuple[str, int], tuple[str, float]] = {}
        self.counters: Counter = Counter()
        self.rejected: Counter = Counter()
        self.lost_by_stream: Counter = Counter()
        self.failover_ms: list[float] = []
        self.events: list[dict] = []
        self.endpoints: dict[str, str] = {}
        self._auth = None
        self._gone: set[str] = set()
        self._lost: dict[tuple[str, int], None] = {}
        self._open()

    # ------------------------------------------------------------ sockets
    def _socket(self, kind: int, key: str) -> zmq.Socket:
        """A bound socket; CURVE server on any endpoint beyond loopback/ipc/inproc."""
        s = self.ctx.socket(kind)
        s.linger = 0
        s.sndhwm = s.rcvhwm = self.config.hwm
        if kind == zmq.ROUTER:
            s.router_mandatory = 1  # a vanished worker raises EHOSTUNREACH: failover starts at once
        if self.keys is not None and not is_local_endpoint(getattr(self.config, key)):
            secure_server(s, self.keys)
        try:
            s.bind(getattr(self.config, key))
        except zmq.ZMQError as exc:
            s.close(0)
            raise ConfigError(f"router.{key}", f"cannot bind {getattr(self.config, key)!r}: {exc}") from None
        self.endpoints[key] = s.getsockopt_string(zmq.LAST_ENDPOINT)
        return s

    def _open(self) -> None:
        if self.keys is not None:
            self._auth = start_authenticator(self.ctx, f"{self.config.keys_dir}/authorized", asyncio=False)
        opened = []  # a failed bind must not leave the earlier sockets bound or the authenticator running
        try:
            self.inp = self._socket(zmq.PULL, "input")
            opened.append(self.inp)
            self.router = self._socket(zmq.ROUTER, "workers")
            opened.append(self.router)
            self.xsub = self._socket(zmq.XSUB, "labels_in")
            opened.append(self.xsub)
            self.xsub.send(b"\x01")  # the router sees every label (for its accounting)
            self.xpub = self._socket(zmq.XPUB, "labels")
        except BaseException:
            for s in opened:
                s.close(0)
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            raise
        self._ctl_poller = zmq.Poller()
        for s in (self.router, self.xsub, self.xpub):
            self._ctl_poller.register(s, zmq.POLLIN)

    def close(self) -> None:
        for s in (self.inp, self.router, self.xsub, self.xpub):
            s.close(0)
        if self._auth is not None:
            self._auth.stop()

    # ------------------------------------------------------------ the loop
    def run(self, stop=lambda: False, max_batch: int = 256) -> None:
        poller_all, poller_ctl = zmq.Poller(), self._ctl_poller
        for s in (self.router, self.xsub, self.xpub, self.inp):
            poller_all.register(s, zmq.POLLIN)
        tick = self.config.heartbeat_s / 2
        while not stop():
            poller = poller_all if len(self.ring) else poller_ctl  # no worker: leave input queued
            ready = dict(poller.poll(tick * 1000))
            self._service(ready)
            if ready.get(self.inp):
                _drain(self.inp.recv_multipart, self._route, max_batch)
            self._check_workers()

    def _service(self, ready: dict) -> None:
        """Heartbeats and labels (everything but the input), without waiting."""
        if ready.get(self.router):
            _drain(self.router.recv_multipart, self._worker_message)
        if ready.get(self.xsub):
            _drain(self.xsub.recv_multipart, self._label)
        if ready.get(self.xpub):  # subscriptions of subscribers: the XSUB already takes everything
            _drain(self.xpub.recv, lambda _msg: None)

    # ------------------------------------------------------------ workers
    def _worker_message(self, frames: list) -> None:
        if len(frames) < 2:
            self.rejected["worker.frames"] += 1
            return
        ident, kind = frames[0], frames[1]
        try:
            info = wire.unpack_control(frames[2]) if len(frames) > 2 else {}
        except WireError:
            info = {}
        name = ident.decode("ascii", "replace")
        now = time.monotonic()
        w = self.workers.get(name)
        if kind == HEARTBEAT and w is None and name in self._gone:
            return  # a last heartbeat of a worker that has left
        if kind in (HELLO, HEARTBEAT):
            self._gone.discard(name)
            if w is None:
                w = self.workers[name] = _Worker(ident, name, now)
                self._event("join", name)
            if not w.leaving:
                self.ring.add(name)
            w.last_seen = now
            w.info = info if isinstance(info, dict) else {}
        elif kind == LEAVE and w is not None:
            w.leaving, w.last_seen = True, now
            self.ring.remove(name)
            self._event("leave", name)
        else:
            self.rejected["worker.kind"] += 1

    def _check_workers(self) -> None:
        now = time.monotonic()
        for name, w in list(self.workers.items()):
            if now - w.last_seen > self.config.timeout_s:
                self._dead(name, "heartbeat timeout")
            elif w.leaving and not any(s.owner == name and s.in_sample for s in self.streams.values()):
                self._send(w.ident, [BYE])
                self.workers.pop(name, None)
                self._gone.add(name)
                self._event("left", name)
        if self.pending and self.counters["checks"] % 50 == 0:
            old = [k for k, (_o, t) in self.pending.items() if now - t > self.config.pending_expiry_s]
            for k in old:
                del self.pending[k]
            self.counters["unlabelled_samples"] += len(old)
        self.counters["checks"] += 1

    def _dead(self, name: str, why: str) -> None:
        if self.workers.pop(name, None) is None:
            return
        self.ring.remove(name)
        now = time.monotonic()
        lost = Counter(sid for (sid, _s), (owner, _t) in self.pending.items() if owner == name)
        for k, (owner, _t) in self.pending.items():
            if owner == name:
                self._lost[k] = None
        self.pending = {k: v for k, v in self.pending.items() if v[0] != name}
        for sid, st in self.streams.items():
            if st.owner != name:
                continue
            if st.in_sample:
                lost[sid] += 1
                self._lost[(sid, st.sample_id)] = None
                st.skipping, st.in_sample = True, False
            st.owner, st.failed_at = None, now
        self.lost_by_stream.update(lost)
        while len(self._lost) > 100_000:
            del self._lost[next(iter(self._lost))]
        self.counters["lost_samples"] += sum(lost.values())
        self.counters["worker_deaths"] += 1
        self._event("dead", name, why=why, lost_samples=sum(lost.values()), streams=len(lost))

    def _event(self, what: str, name: str, **extra: Any) -> None:
        self.events.append({"event": what, "worker": name, "t": time.monotonic(), **extra})
        del self.events[:-1000]

    def _send(self, ident: bytes, frames: list) -> bool:
        """Send to one worker; in block mode wait (serving heartbeats/labels) while its queue is full."""
        while True:
            try:
                self.router.send_multipart([ident, *frames], zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                self.counters["send_waits"] += 1
                name = ident.decode("ascii", "replace")
                self._service(dict(self._ctl_poller.poll(1)))
                self._check_workers()
                if name not in self.workers:
                    return False
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    self._dead(ident.decode("ascii", "replace"), "connection lost")
                    return False
                raise

    # ------------------------------------------------------------ packets and labels
    def _route(self, frames: list) -> None:
        try:  # the header alone, checked as wire.decode checks it: routing needs no payload
            stream_id, sample_id, begin, end = _events_header(frames)
        except WireError as exc:
            self.rejected[exc.field.split("[")[0]] += 1
            self.counters["rejected"] += 1
            return
        self.counters["packets_in"] += 1
        st = self.streams.get(stream_id)
        if st is None:
            st = self.streams[stream_id] = _Stream()
            self._bound_tables()
        else:
            self.streams.move_to_end(stream_id)
        if begin:
            if st.in_sample and st.owner is not None:
                self.counters["unfinished_samples"] += 1
            st.owner, st.skipping, st.in_sample = self.ring.lookup(stream_id), False, True
            st.seen_begin, st.sample_id = True, sample_id
        elif st.skipping:
            self.counters["skipped_packets"] += 1
            return
        elif st.owner is None or st.owner not in self.workers:
            st.owner = self.ring.lookup(stream_id)
        w = self.workers.get(st.owner) if st.owner else None
        if w is None:
            self.counters["unroutable_packets"] += 1
            return
        if not self._send(w.ident, frames):
            self.counters["lost_packets"] += 1
            return
        self.counters["packets_out"] += 1
        if end:
            st.in_sample = False
            self.pending[(stream_id, sample_id)] = (w.name, time.monotonic())

    def _bound_tables(self) -> None:
        """Evict the least recently routed streams beyond max_streams (counted), and pending
        samples beyond it: a flood of ids must not grow the router without bound."""
        limit = self.config.max_streams
        while len(self.streams) > limit:
            sid, st = self.streams.popitem(last=False)
            self.counters["evicted_streams"] += 1
            if st.in_sample:
                self.counters["evicted_in_sample"] += 1
            self.lost_by_stream.pop(sid, None)
        while len(self.pending) > limit:
            del self.pending[next(iter(self.pending))]
            self.counters["unlabelled_samples"] += 1

    def _label(self, frames: list) -> None:
        try:
            self.xpub.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.counters["label_drops"] += 1
        try:
            lab = wire.decode(frames)
        except WireError as exc:
            self.rejected["label." + exc.field] += 1
            return
        if not isinstance(lab, LabelEvent):
            return
        self.counters["labels"] += 1
        key = (lab.stream_id, lab.sample_id)
        self.pending.pop(key, None)
        if key in self._lost:  # published just before its worker died: not lost after all
            del self._lost[key]
            self.lost_by_stream[lab.stream_id] -= 1
            self.counters["lost_samples"] -= 1
            self.counters["late_labels"] += 1
        st = self.streams.get(lab.stream_id)
        if st is not None and st.failed_at is not None:
            self.failover_ms.append((time.monotonic() - st.failed_at) * 1000)
            del self.failover_ms[:-1000]  # the latest only: a long-running router with churn must not grow
            st.failed_at = None

    def status(self) -> dict[str, Any]:
        by_worker = Counter(s.owner for s in self.streams.values() if s.owner)
        return {
            "workers": {n: {"streams": by_worker.get(n, 0), "leaving": w.leaving, **w.info}
                        for n, w in sorted(self.workers.items())},
            "streams": len(self.streams), "pending_samples": len(self.pending),
            "counters": dict(self.counters), "rejected": dict(self.rejected),
            "lost_by_stream": {k: v for k, v in self.lost_by_stream.items() if v},
            "failover_ms": list(self.failover_ms), "events": list(self.events[-50:]),
            "owners": {sid: s.owner for sid, s in self.streams.items()} if len(self.streams) <= 4096 else {},
            "endpoints": dict(self.endpoints),
        }
