"""The gateway: ZeroMQ ingress (the project's wire format) -> shard actors on Ray -> one label PUB.

It holds no reservoir state. Each packet's header is checked (``wire.peek``, the daemon's limits;
the shard decodes the events) and routed by its stream id: a stream belongs to one shard for a
whole sample; at each ``sample_begin`` it goes to the live shard that rendezvous hashing names (over
the live shards, so a stream moves only between samples, and only when its earlier packets have been
answered). Packets wait per shard and leave as one Ray
call every ``batch_ms`` (or ``max_batch`` packets), at most ``max_inflight`` calls per shard, so
Ray's per-call cost is paid once per batch. Labels come back as wire frames; the gateway numbers
them per stream (``seq``, a lost sample leaves a gap) and publishes them on one PUB endpoint.

Failover: Ray owns membership, placement, failure detection and restarts (shards are created with
``max_restarts=-1``). A call that fails with an actor error (process killed, node lost), or that
runs past ``call_deadline_s`` (the shard is killed with ``ray.kill(no_restart=False)`` so Ray
restarts it), makes the shard not live until it answers a probe; the samples whose packets were in
its failed calls or waiting for it, and the samples it held open, are counted lost per stream
(``lost_samples``, ``lost_by_stream``); those streams skip to their next ``sample_begin``, which
goes to a live shard. A shard that Ray restarted between two calls is noticed by its incarnation
(new in each process): the samples it held are counted the same way.

Every table is bounded (streams: ``max_streams``, least recently seen idle stream evicted, else
refused and counted; packets waiting per shard: ``max_pending``, then the input blocks or drops by
``limits.overflow``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from ..config import to_dict
from ..daemon.config import DaemonConfig
from ..daemon.sinks import make_sinks
from ..errors import ConfigError, ControlError, WireError
from ..events import EventPacket
from ..model.bundle import Bundle
from ..net import wire
from ..net.security import ServerSecurity, load_signing_key
from .model import bundle_files, check_cluster_config, config_to_plain
from .registry import CLUSTER_COMMANDS, Registry
from .shard import Shard

__all__ = ["ClusterConfig", "Gateway", "rendezvous"]

log = logging.getLogger("streamlsm.cluster")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How the gateway runs its shards (the daemon config file says everything else)."""

    shards: int = 2               # shard actors; 0 = one per `shard_cpus` of the cluster's CPUs (grows with nodes)
    shard_cpus: float = 1.0       # CPUs Ray reserves for each shard
    batch_ms: float = 5.0         # packets of a shard leave together at least this often
    max_batch: int = 512          # ... or as soon as this many wait
    max_inflight: int = 2         # calls per shard not yet answered
    call_deadline_s: float = 10.0  # a call not answered by then: the shard is stuck, killed, restarted
    suspect_ms: float = 250.0     # a call not answered by then: new samples go to other shards meanwhile
    max_pending: int = 20_000     # packets waiting per shard
    max_streams: int = 100_000    # streams the gateway routes (an idle one is evicted for a new one)
    stream_idle_s: float = 30.0
    probe_every_s: float = 0.05   # a shard that failed is probed after this, then at doubling intervals (<= 2 s)
    rescale_every_s: float = 2.0  # shards = 0: how often the cluster's CPUs are read
    registry: str = ""            # a name: the registry actor every gateway started with it shares
    #                               (the first creates it and owns it); "": one of its own
    version_every_s: float = 0.5  # a shared registry: how often its prototype version is read

    def validate(self) -> None:
        if self.shards < 0:
            raise ConfigError("shards", f"must be >= 0 (0 = one per shard_cpus of the cluster), got {self.shards}")
        if not 0 < self.shard_cpus <= 1024:
            raise ConfigError("shard_cpus", f"must lie in (0, 1024], got {self.shard_cpus}")
        if not 0 < self.batch_ms <= 1000:
            raise ConfigError("batch_ms", f"must lie in (0, 1000] ms, got {self.batch_ms}")
        for key in ("max_batch", "max_inflight", "max_pending", "max_streams"):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be >= 1, got {getattr(self, key)}")
        if not 0 < self.suspect_ms <= 1000 * self.call_deadline_s:
            raise ConfigError("suspect_ms", f"must lie in (0, call_deadline_s], got {self.suspect_ms}")
        if not 0 < self.call_deadline_s <= 3600:
            raise ConfigError("call_deadline_s", f"must lie in (0, 3600] s, got {self.call_deadline_s}")


def rendezvous(stream_id: str, names: list[str]) -> str | None:
    """The name with the highest hash of (stream, name): adding or removing one of n names moves
    about 1/n of the streams, only to or from it (highest random weight hashing)."""
    best, best_score = None, b""
    for name in names:
        score = hashlib.blake2b(f"{stream_id}\x00{name}".encode(), digest_size=8).digest()
        if best is None or score > best_score:
            best, best_score = name, score
    return best


@dataclass(slots=True)
class _Slot:
    index: int
    name: str
    actor: Any
    live: bool = False
    retiring: bool = False
    incarnation: str = ""
    node: str = ""
    pid: int = 0
    pending: list = field(default_factory=list)  # (sid, n, begin, frames, received_ns)
    inflight: int = 0
    failures: int = 0
    restarts: int = 0
    down_since: float | None = None
    failed_at: float | None = None   # time.monotonic() of the last failure seen
    suspect: bool = False            # a call is late: it gets no new samples until it answers
    calls: dict = field(default_factory=dict)  # call id -> time.monotonic() it was made
    last_failover_s: float | None = None
    stats: dict = field(default_factory=dict)


@dataclass(slots=True)
class _Stream:
    owner: int = -1          # slot index holding its current sample
    in_sample: bool = False
    n: int = 0               # the gateway's count of its samples (key of the current one)
    begin_call: int = 1 << 62  # id of the call that carried the current sample's begin
    skip: bool = False       # lost: its packets are dropped until the next sample_begin
    unanswered: int = 0      # calls holding its packets, not answered yet
    next_seq: int = 0
    lost: int = 0
    seen: float = 0.0


class Gateway:
    """``await gateway.run()`` until ``request_stop()``; Ray must be initialised (``ray.init``)."""

    def __init__(self, config: DaemonConfig, cluster: ClusterConfig | None = None, *,
                 shard_class: type = Shard) -> None:
        import ray

        self.ray = ray
        check_cluster_config(config)
        self.config = config
        self.cluster = cluster or ClusterConfig()
        self.cluster.validate()
        key = load_signing_key(config.model.signing_key) if config.model.signing_key else None
        self.bundle_hash = Bundle.load(config.model.bundle, key).hash  # the signature is checked here
        self._files = ray.put(bundle_files(config.model.bundle))
        self._plain = config_to_plain(config)
        ctx = ray.get_runtime_context()
        self.namespace = ctx.namespace
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        own = hashlib.blake2b(str(time.time_ns()).encode(), digest_size=4).hexdigest()
        self.registry_name = self.cluster.registry or f"streamlsm-registry-{own}"
        here = NodeAffinitySchedulingStrategy(ctx.get_node_id(), soft=False)  # its paths are ours
        self.registry = ray.remote(Registry).options(
            name=self.registry_name, max_restarts=-1, num_cpus=0, scheduling_strategy=here,
            max_concurrency=4, get_if_exists=bool(self.cluster.registry),
        ).remote(self._plain, self._files, self.bundle_hash)
        reg = ray.get(self.registry.status.remote())
        if reg["bundle_hash"] != self.bundle_hash or reg["prototypes"] != str(config.model.prototypes):
            raise ConfigError("cluster.registry", f"the registry {self.registry_name!r} serves bundle "
                              f"{reg['bundle_hash'][:19]} and prototypes {reg['prototypes']!r}, this gateway "
                              f"{self.bundle_hash[:19]} and {str(config.model.prototypes)!r}: use the same "
                              "config, or another registry name")
        self.prototype_version = reg["prototype_version"]
        self._shard_remote = ray.remote(shard_class)
        self.limits = wire.WireLimits(max_events=config.limits.max_events)
        self.slots: list[_Slot] = []
        self._names = 0
        self.streams: OrderedDict[str, _Stream] = OrderedDict()
        self._lost_keys: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._live: list[str] = []
        self._live_any: list[str] = []
        self._by_name: dict[str, _Slot] = {}
        self._calls = 0
        self.counters = {"received": 0, "wire_errors": 0, "dropped": 0, "skipped_packets": 0,
                         "refused_streams": 0, "evicted_streams": 0, "calls": 0, "call_failures": 0,
                         "deadline_kills": 0, "restarts_seen": 0, "lost_samples": 0, "labels": 0,
                         "label_drops": 0, "control": 0, "control_errors": 0, "scaled": 0, "suspected": 0,
                         "sink_errors": 0}
        self.sinks: list = []
        self.last_sink_error: str | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._space = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.label_endpoint = config.outputs.labels
        self.control_endpoint = config.control.endpoint
        self.input_endpoints: list[str] = []
        self._t0 = time.monotonic()
        self._cpu0 = time.process_time()

    # ------------------------------------------------------------ shards
    def _spawn(self) -> _Slot:
        name = f"shard-{self._names}"
        self._names += 1
        actor = self._shard_remote.options(
            max_restarts=-1, max_task_retries=0, num_cpus=self.cluster.shard_cpus,
        ).remote(self._plain, self._files, self.bundle_hash, self.registry_name, self.namespace)
        slot = _Slot(len(self.slots), name, actor)
        self.slots.append(slot)
        self._by_name[name] = slot
        return slot

    async def scale(self, n: int, timeout: float = 300.0) -> None:
        """Run ``n`` shards: new ones are placed by Ray (a node that joined gets them where it has
        free CPUs); surplus ones stop getting samples and go once they hold none."""
        active = [s for s in self.slots if not s.retiring]
        new = [self._spawn() for _ in range(max(0, n - len(active)))]
        for s in active[n:] if n < len(active) else []:
            s.retiring = True
        self.counters["scaled"] += 1
        self._relive()
        if new:
            await asyncio.gather(*(self._probe(s, timeout) for s in new))

    async def _probe(self, slot: _Slot, timeout: float | None = None) -> None:
        """Wait until ``slot`` answers a ping; then it is live (after a failure: restarted)."""
        t0 = time.monotonic()
        wait = self.cluster.probe_every_s
        while True:
            try:
                info = await asyncio.wait_for(asyncio.wrap_future(slot.actor.ping.remote().future()), 5.0)
                break
            except (TimeoutError, self.ray.exceptions.RayError):
                if timeout is not None and time.monotonic() - t0 > timeout:
                    raise
                if slot.retiring:
                    return
                await asyncio.sleep(wait)
                wait = min(2 * wait, 2.0)  # a shard Ray cannot place yet is asked less and less often
        slot.incarnation, slot.node, slot.pid = info["incarnation"], info["node"], info["pid"]
        if slot.down_since is not None:
            slot.last_failover_s = time.monotonic() - slot.down_since
            slot.down_since = None
            slot.restarts += 1
        slot.live = True
        self._relive()

    def _relive(self) -> None:
        up = [s for s in self.slots if s.live and not s.retiring]
        self._live_any = [s.name for s in up]
        self._live = [s.name for s in up if not s.suspect]  # where new samples go (else any live one)

    def _watch(self, now: float) -> None:
        """Mark shards whose oldest call is older than ``suspect_ms`` (and clear the mark)."""
        limit = self.cluster.suspect_ms / 1000
        changed = False
        for s in self.slots:
            late = bool(s.calls) and now - min(s.calls.values()) > limit
            if late != s.suspect:
                s.suspect, changed = late, True
                self.counters["suspected"] += late
        if changed:
            self._relive()

    def _spawn_task(self, coro) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ losses
    def _lose(self, sid: str, n: int) -> None:
        key = (sid, n)
        if key in self._lost_keys:
            return
        self._lost_keys[key] = None
        if len(self._lost_keys) > 4 * self.cluster.max_streams:
            self._lost_keys.popitem(last=False)
        self.counters["lost_samples"] += 1
        st = self.streams.get(sid)
        if st is not None:
            st.lost += 1
            st.next_seq += 1  # the subscriber sees the gap
            if st.n == n:
                st.skip, st.in_sample = True, False

    def _failed(self, slot: _Slot, keys: dict) -> None:
        """``slot`` failed with the call of ``keys``: everything it held or was to get is lost."""
        if slot.live:
            log.warning("shard %s failed (its process or node died, or it missed its deadline): its samples in "
                        "flight are lost and counted; its streams move at their next sample", slot.name)
            slot.live = False
            slot.failures += 1
            slot.down_since = slot.failed_at = time.monotonic()
            self._relive()
            self._spawn_task(self._probe(slot))
        for sid, n in keys:
            self._lose(sid, n)
        for sid, n, _b, _f, _r in slot.pending:
            self._lose(sid, n)
        slot.pending = []
        self._space.set()
        for sid, st in self.streams.items():
            if st.owner == slot.index:
                if st.in_sample:
                    self._lose(sid, st.n)
                st.owner = -1

    def _restarted(self, slot: _Slot, call_id: int, keys: dict) -> None:
        """The shard answered from a new process: the samples it had begun before are lost."""
        log.info("shard %s answers from a new process (Ray restarted it)", slot.name)
        self.counters["restarts_seen"] += 1
        for (sid, n), began_here in keys.items():
            if not began_here:
                self._lose(sid, n)
        for sid, st in self.streams.items():
            if st.owner == slot.index and st.in_sample and st.begin_call < call_id:
                self._lose(sid, st.n)

    # ------------------------------------------------------------ routing
    def _stream(self, sid: str, now: float) -> _Stream | None:
        st = self.streams.get(sid)
        if st is not None:
            self.streams.move_to_end(sid)
            st.seen = now
            return st
        while len(self.streams) >= self.cluster.max_streams:
            old_id, old = next(iter(self.streams.items()))
            if old.in_sample or old.unanswered or now - old.seen < self.cluster.stream_idle_s:
                self.counters["refused_streams"] += 1
                return None
            del self.streams[old_id]
            self.counters["evicted_streams"] += 1
        st = self.streams[sid] = _Stream(seen=now)
        return st

    def route(self, pkt: wire.Header | EventPacket, frames: list, recv_ns: int, now: float) -> _Slot | None:
        """The shard this packet goes to (None: dropped and counted); updates the stream's state.
        ``pkt`` is the packet's ``wire.peek`` header (or the packet itself)."""
        sid = pkt.stream_id
        begin, end = (pkt.begin, pkt.end) if type(pkt) is wire.Header else (pkt.sample_begin, pkt.sample_end)
        st = self._stream(sid, now)
        if st is None:
            return None
        if begin:
            st.n += 1
            st.skip = False
            st.begin_call = 1 << 62
            owner = self.slots[st.owner] if 0 <= st.owner < len(self.slots) else None
            if owner is not None and owner.live and st.unanswered and not owner.retiring and not owner.suspect:
                slot = owner  # earlier packets not answered yet: move only once they are
            else:
                name = rendezvous(sid, self._live or self._live_any)
                if name is None:
                    st.in_sample = not end
                    self._lose(sid, st.n)  # no live shard at all
                    return None
                slot = self._by_name[name]
            st.owner = slot.index
            st.in_sample = not end
        else:
            if st.skip or not st.in_sample or st.owner < 0 or not self.slots[st.owner].live:
                self.counters["skipped_packets"] += 1
                return None
            slot = self.slots[st.owner]
            if end:
                st.in_sample = False
        slot.pending.append((sid, st.n, begin, frames, recv_ns))
        return slot

    # ------------------------------------------------------------ calls
    def _flush(self, slot: _Slot) -> None:
        if not slot.live or not slot.pending or slot.inflight >= self.cluster.max_inflight:
            return
        batch, slot.pending = slot.pending[:self.cluster.max_batch], slot.pending[self.cluster.max_batch:]
        self._space.set()
        self._calls += 1
        call_id = self._calls
        frames: list = []
        recvs: list = []
        keys: dict = {}
        for sid, n, begin, f, r in batch:
            frames += f
            recvs.append(r)
            key = (sid, n)
            if key not in keys:
                keys[key] = bool(begin)
                st = self.streams.get(sid)
                if st is not None:
                    st.unanswered += 1
                    if begin and st.n == n:
                        st.begin_call = call_id
        slot.inflight += 1
        slot.calls[call_id] = time.monotonic()
        self.counters["calls"] += 1
        ref = slot.actor.process.remote(frames, recvs, self.prototype_version)
        self._spawn_task(self._await_call(slot, call_id, ref, keys))

    async def _await_call(self, slot: _Slot, call_id: int, ref, keys: dict) -> None:
        ray = self.ray
        try:
            try:
                labels, stats = await asyncio.wait_for(asyncio.wrap_future(ref.future()),
                                                       self.cluster.call_deadline_s)
            except TimeoutError:
                self.counters["call_failures"] += 1
                if slot.live:  # once per incarnation (the calls queued behind it time out too)
                    self.counters["deadline_kills"] += 1
                    with contextlib.suppress(Exception):
                        ray.kill(slot.actor, no_restart=False)  # stuck: Ray restarts it
                self._failed(slot, keys)
                return
            except ray.exceptions.RayError:
                self.counters["call_failures"] += 1
                self._failed(slot, keys)
                return
            if stats.get("incarnation") != slot.incarnation:
                self._restarted(slot, call_id, keys)
                slot.incarnation = stats.get("incarnation", "")
            slot.stats = stats
            await self._publish(labels)
        finally:
            slot.inflight -= 1
            slot.calls.pop(call_id, None)
            if slot.suspect:
                self._watch(time.monotonic())
            for sid, _n in keys:
                st = self.streams.get(sid)
                if st is not None and st.unanswered:
                    st.unanswered -= 1
            self._flush(slot)

    async def _publish(self, flat: list) -> None:
        pub = self._pub
        for i in range(0, len(flat), 2):
            try:
                lab = wire.decode([flat[i], flat[i + 1], b""], self.limits)
            except WireError:
                self.counters["wire_errors"] += 1
                continue
            st = self.streams.get(lab.stream_id)
            if st is not None:
                lab.seq, st.next_seq = st.next_seq, st.next_seq + 1
            try:
                pub.send_multipart(wire.encode_label(lab), zmq.NOBLOCK)
                self.counters["labels"] += 1
            except zmq.Again:
                self.counters["label_drops"] += 1
            for sink in self.sinks:
                try:
                    sink.write(lab)
                except Exception as exc:  # noqa: BLE001 - one broken sink must not stop labelling
                    self.counters["sink_errors"] += 1
                    self.last_sink_error = f"{type(sink).__name__}: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------ life cycle
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.ready.set()

    async def _run(self) -> None:
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            sec = ServerSecurity(cfg.security)
            binds = [("outputs.labels", cfg.outputs.labels), ("control.endpoint", cfg.control.endpoint)]
            binds += [(f"inputs[{k}].endpoint", i.endpoint) for k, i in enumerate(cfg.inputs) if i.bind]
            for key, ep in binds:
                if ep:
                    sec.check(ep, key)
            ctx = zmq.asyncio.Context.instance()
            sec.start(ctx, [ep for _k, ep in binds if ep])
            stack.callback(sec.close)
            pub = ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.LINGER, cfg.outputs.linger_ms)
            pub.setsockopt(zmq.SNDHWM, cfg.outputs.hwm)
            stack.callback(pub.close)
            self._bind(pub, cfg.outputs.labels, sec, "outputs.labels")
            self.label_endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
            self._pub = zmq.Socket.shadow(pub.underlying)
            self.sinks = make_sinks(cfg.outputs.sinks)  # as the daemon's: jsonl, console, prometheus...
            for sink in self.sinks:
                stack.callback(sink.close)
            inputs = []
            biggest = cfg.limits.max_events * 16 + 1024  # the widest event layout is 16 bytes
            for k, i in enumerate(cfg.inputs):
                sock = ctx.socket(zmq.PULL if i.kind == "pull" else zmq.SUB)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RCVHWM, i.hwm)
                sock.setsockopt(zmq.MAXMSGSIZE, max(biggest, self.limits.max_header_bytes + 1024))
                if i.kind == "sub":
                    for t in i.topics:
                        sock.setsockopt(zmq.SUBSCRIBE, t.encode("ascii"))
                stack.callback(sock.close, 0)
                if i.bind:
                    self._bind(sock, i.endpoint, sec, f"inputs[{k}].endpoint")
                else:
                    sock.connect(i.endpoint)
                inputs.append(sock)
            self.input_endpoints = [s.getsockopt_string(zmq.LAST_ENDPOINT) or i.endpoint
                                    for s, i in zip(inputs, cfg.inputs, strict=True)]
            ctl = None
            if cfg.control.endpoint:
                ctl = ctx.socket(zmq.REP)
                ctl.setsockopt(zmq.LINGER, 0)
                ctl.setsockopt(zmq.MAXMSGSIZE, wire.DEFAULT_LIMITS.max_control_bytes + 1024)
                stack.callback(ctl.close, 0)
                self._bind(ctl, cfg.control.endpoint, sec, "control.endpoint")
                self.control_endpoint = ctl.getsockopt_string(zmq.LAST_ENDPOINT)
            n = self.cluster.shards or self._cpu_shards()
            await self.scale(n)
            helpers = [asyncio.create_task(self._flusher()), asyncio.create_task(self._observer())]
            helpers += [asyncio.create_task(self._ingress(s)) for s in inputs]
            if ctl is not None:
                helpers.append(asyncio.create_task(self._control(ctl)))
            if self.cluster.shards == 0:
                helpers.append(asyncio.create_task(self._autoscale()))
            if self.cluster.registry:
                helpers.append(asyncio.create_task(self._versions()))
            self.ready.set()
            try:
                await self._stop.wait()
            finally:
                for t in helpers:
                    t.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                await self._drain(self.cluster.call_deadline_s + 1)
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _bind(self, sock, endpoint: str, sec: ServerSecurity, key: str) -> None:
        if (curve := sec.setup(endpoint)) is not None:
            curve(sock)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError(key, f"cannot bind {endpoint!r}: {exc}") from None

    async def _drain(self, timeout: float) -> None:
        """Send what waits and wait for the calls in flight (at most ``timeout`` s)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for s in self.slots:
                self._flush(s)
            if not any(s.inflight or (s.pending and s.live) for s in self.slots):
                return
            await asyncio.sleep(0.005)

    async def _flusher(self) -> None:
        every = self.cluster.batch_ms / 1000
        while True:
            await asyncio.sleep(every)
            for s in self.slots:
                self._flush(s)
            self._watch(time.monotonic())
            self._reap()

    async def _observer(self) -> None:
        """Sinks that observe (the Prometheus sink) get the gateway's status, as the daemon's do."""
        observers = [s for s in self.sinks if callable(getattr(s, "observe", None))]
        if not observers:
            return
        while True:
            await asyncio.sleep(self.config.limits.stats_every_s)
            st = self.status()
            for sink in observers:
                try:
                    sink.observe(st)
                except Exception as exc:  # noqa: BLE001 - the observer loop must go on
                    self.counters["sink_errors"] += 1
                    self.last_sink_error = f"{type(sink).__name__}: {type(exc).__name__}: {exc}"

    def _reap(self) -> None:
        for s in [s for s in self.slots if s.retiring and s.live and not s.inflight and not s.pending]:
            if not any(st.owner == s.index and (st.in_sample or st.unanswered) for st in self.streams.values()):
                s.live = False
                with contextlib.suppress(Exception):
                    self.ray.kill(s.actor, no_restart=True)

    async def _ingress(self, sock) -> None:
        sync = zmq.Socket.shadow(sock.underlying)
        recv = sync.recv
        nb = int(zmq.NOBLOCK)  # a plain int: zmq's flag enum costs a conversion per call

        def take() -> list:
            """The parts of one queued message as bytes (zmq.Again if none); parts beyond 8 of a
            malformed message are read and dropped (decode refuses the message)."""
            f = recv(nb, copy=False)
            parts = [f.bytes]
            while f.more:
                f = recv(nb, copy=False)
                if len(parts) < 8:
                    parts.append(f.bytes)
            return parts
        block = self.config.limits.overflow == "block"
        most = self.cluster.max_pending
        while True:
            msgs = [await sock.recv_multipart()]
            for _ in range(255):
                try:
                    msgs.append(take())
                except zmq.Again:
                    break
            recv_ns, now = time.time_ns(), time.monotonic()
            for frames in msgs:
                try:  # the header, checked as decode checks it; the shard decodes the events
                    pkt = wire.peek(frames, self.limits)
                except WireError:
                    self.counters["wire_errors"] += 1
                    continue
                if pkt.kind != "events":
                    self.counters["wire_errors"] += 1
                    continue
                self.counters["received"] += 1
                slot = self.route(pkt, frames, recv_ns, now)
                if slot is None:
                    continue
                if len(slot.pending) >= self.cluster.max_batch:
                    self._flush(slot)
                if len(slot.pending) > most:
                    if block:
                        while len(slot.pending) > most and slot.live:
                            self._space.clear()
                            await self._space.wait()
                    else:
                        sid, n, _b, _f, _r = slot.pending.pop(0)
                        self.counters["dropped"] += 1
                        self._lose(sid, n)

    async def _versions(self) -> None:
        """A shared registry changes under other gateways' `ctl register` too: follow its version
        (each batch carries it, and a shard whose version differs takes the new prototypes)."""
        while True:
            await asyncio.sleep(self.cluster.version_every_s)
            with contextlib.suppress(self.ray.exceptions.RayError):
                self.prototype_version = await asyncio.wrap_future(self.registry.version.remote().future())

    async def _autoscale(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.rescale_every_s)
            want = self._cpu_shards()
            if want > len([s for s in self.slots if not s.retiring]):
                await self.scale(want)

    def _cpu_shards(self) -> int:
        cpus = float(self.ray.cluster_resources().get("CPU", 1))
        return max(1, int(cpus // self.cluster.shard_cpus))

    # ------------------------------------------------------------ status and control
    def status(self) -> dict[str, Any]:
        shards = [{"name": s.name, "live": s.live, "retiring": s.retiring, "node": s.node, "pid": s.pid,
                   "incarnation": s.incarnation, "pending": len(s.pending), "inflight": s.inflight,
                   "failures": s.failures, "restarts": s.restarts, "last_failover_s": s.last_failover_s,
                   "counters": s.stats} for s in self.slots]
        lost = {sid: st.lost for sid, st in self.streams.items() if st.lost}
        shown = dict(sorted(lost.items(), key=lambda kv: -kv[1])[:1000])
        return {"ok": True, "uptime_s": time.monotonic() - self._t0, **self.counters,
                "streams": len(self.streams), "lost_by_stream": shown,
                "lost_streams": len(lost), "shards": shards,
                "live_shards": len(self._live_any), "last_sink_error": self.last_sink_error,
                "prototype_version": self.prototype_version,
                "bundle_hash": self.bundle_hash, "cpu_s": time.process_time() - self._cpu0,
                "labels_endpoint": self.label_endpoint, "control_endpoint": self.control_endpoint,
                "input_endpoints": self.input_endpoints}

    async def control(self, raw: bytes) -> bytes:
        """One control request (msgpack bytes) -> reply bytes: status here; register, remove and
        snapshot by the registry (then every shard takes the new prototypes with its next batch)."""
        self.counters["control"] += 1
        try:
            req = wire.unpack_control(raw)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ControlError("a control request is a map with a 'cmd' string")
            cmd = req["cmd"]
            if cmd == "status":
                reply = self.status()
                reply["registry"] = await asyncio.wrap_future(self.registry.status.remote().future())
                reply["classes"] = reply["registry"]["classes"]
                return wire.pack_control(to_dict(reply))
            if cmd not in CLUSTER_COMMANDS:
                raise ControlError(f"unknown command {cmd!r} in a cluster; known: status, "
                                   f"{', '.join(CLUSTER_COMMANDS)} (reload: restart `streamlsm cluster serve`)")
            out = await asyncio.wrap_future(self.registry.control.remote(raw).future())
            self.prototype_version = await asyncio.wrap_future(self.registry.version.remote().future())
            return out
        except Exception as exc:  # noqa: BLE001 - a bad request must never kill the control loop
            self.counters["control_errors"] += 1
            return wire.pack_control({"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    async def _control(self, sock) -> None:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) != 1:
                self.counters["control_errors"] += 1
                await sock.send(wire.pack_control({"ok": False, "error": "a control request is one part"}))
                continue
            await sock.send(await self.control(frames[0]))
