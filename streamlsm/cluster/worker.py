"""A cluster worker: DEALER to the router (packets in, heartbeats out) -> Pipeline -> labels to the proxy.

Two threads: the I/O thread owns the DEALER (reads packets into a bounded queue, sends heartbeats
every ``heartbeat_s`` even while the pipeline is busy); the compute thread owns the label publisher
and runs the pipeline. A full queue stops the reads, so back-pressure reaches the router (block mode:
nothing is dropped). ``stop()`` asks to leave: the router moves the streams at their next sample
boundary and answers BYE; the worker then drains its queue and exits.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

import zmq

from ..errors import TransportError, WireError
from ..events import EventPacket
from ..net import wire
from ..net.security import load_keys, secure_client
from .router import BYE, HEARTBEAT, HELLO, LEAVE

__all__ = ["WorkerConfig", "Worker", "default_name", "load_pipeline"]


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Where the router is, this worker's name, queue size and heartbeat timing, CURVE keys."""

    router: str = "tcp://127.0.0.1:5570"
    labels_in: str = "tcp://127.0.0.1:5571"
    name: str = ""
    queue: int = 256
    batch: int = 64
    heartbeat_s: float = 0.2
    hwm: int = 1000
    leave_timeout_s: float = 10.0
    keys_dir: str | None = None     # holds this worker's pair and the router's public key
    key_name: str = "client"


class Worker:
    """``Worker(config, pipeline).run()`` until ``stop()``; ``counters`` says what it did."""

    def __init__(self, config: WorkerConfig, pipeline, context: zmq.Context | None = None) -> None:
        self.config = config
        self.name = config.name or default_name()
        self.pipeline = pipeline
        self.ctx = context or zmq.Context.instance()
        self.counters: Counter = Counter()
        self.rejected: Counter = Counter()
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.busy_s = 0.0   # wall seconds inside the pipeline
        self.cpu_s = 0.0    # CPU seconds of the compute thread
        self._killed = False

    def stop(self) -> None:
        """Ask to leave the cluster (graceful: the router moves the streams first)."""
        self._stop.set()

    def kill(self) -> None:
        """Stop at once without leaving or draining, as if the process had died (for fault tests)."""
        self._killed = True
        self._stop.set()

    def _secure(self, s: zmq.Socket) -> None:
        if self.config.keys_dir:
            mine = load_keys(self.config.keys_dir, self.config.key_name)
            server = load_keys(self.config.keys_dir, "server")
            secure_client(s, mine, server.public)

    # ------------------------------------------------------------ compute thread
    def _compute(self) -> None:
        pub = self.ctx.socket(zmq.XPUB)  # an XPUB: it sees the proxy's subscription arrive
        pub.linger, pub.sndhwm = 2000, self.config.hwm
        try:
            warm_up = getattr(self.pipeline, "warm_up", None)
            if callable(warm_up):  # compile the kernels before joining, not on the first sample
                warm_up()
            self._secure(pub)
            pub.connect(self.config.labels_in)
            if not pub.poll(30_000):
                raise TransportError(f"no subscription from the label proxy {self.config.labels_in}")
            pub.recv()
            self._ready.set()
            while True:
                items = [self._queue.get()]
                while len(items) < self.config.batch:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                end = items[-1] is None
                items = [it for it in items if it is not None]
                if items:
                    t0, c0 = time.perf_counter(), time.thread_time()
                    labels = self.pipeline([p for p, _r in items], [r for _p, r in items])
                    for lab in labels:
                        lab.published_ns = time.time_ns()
                        pub.send_multipart(wire.encode(lab))
                    self.busy_s += time.perf_counter() - t0
                    self.cpu_s += time.thread_time() - c0
                    self.counters["packets"] += len(items)
                    self.counters["labels"] += len(labels)
                if end:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self._error = exc
            self._ready.set()
        finally:
            pub.close()
            self._done.set()

    # ------------------------------------------------------------ I/O thread
    def _heartbeat(self, dealer: zmq.Socket, kind: bytes) -> None:
        info = {"queue": self._queue.qsize(), "packets": self.counters["packets"],
                "labels": self.counters["labels"], "busy_s": round(self.busy_s, 3), "cpu_s": round(self.cpu_s, 3),
                "rejected": sum(self.rejected.values())}
        dealer.send_multipart([kind, wire.pack_control(info)])

    def run(self) -> dict:
        """Join, work until stopped (or BYE), drain; returns the counters."""
        cfg = self.config
        compute = threading.Thread(target=self._compute, name=f"worker-{self.name}", daemon=True)
        compute.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.identity = self.name.encode("ascii", "replace")
        dealer.linger, dealer.rcvhwm, dealer.sndhwm = 0, cfg.hwm, cfg.hwm
        self._secure(dealer)
        dealer.connect(cfg.router)
        self._heartbeat(dealer, HELLO)
        next_hb = time.monotonic() + cfg.heartbeat_s
        leave_sent = None
        try:
            while not self._done.is_set() and not self._killed:
                now = time.monotonic()
                if self._stop.is_set() and leave_sent is None:
                    self._heartbeat(dealer, LEAVE)
                    leave_sent = now
                if leave_sent is not None and now - leave_sent > cfg.leave_timeout_s:
                    break
                if now >= next_hb:
                    self._heartbeat(dealer, HEARTBEAT)
                    next_hb = now + cfg.heartbeat_s
                if self._queue.full():
                    time.sleep(0.001)  # back-pressure: leave the packets in the socket
                    continue
                if not dealer.poll(max(1, int((next_hb - now) * 1000))):
                    continue
                frames = dealer.recv_multipart()
                if frames[0] == BYE:
                    break
                try:
                    pkt = wire.decode(frames)
                except WireError as exc:
                    self.rejected[exc.field] += 1
                    continue
                if isinstance(pkt, EventPacket):
                    self._queue.put((pkt, time.time_ns()))
        finally:
            dealer.close(0)
            if self._killed:  # drop the queue: what it held dies with the worker
                try:
                    while True:
                        self._queue.get_nowait()
                except queue.Empty:
                    pass
            while not self._done.is_set():  # the end marker (unless the compute thread died)
                try:
                    self._queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            compute.join()
        if self._error is not None:
            raise self._error
        return dict(self.counters)


def load_pipeline(bundle_dir, prototypes, pipeline_config=None):
    """A Pipeline from a bundle directory and a prototype checkpoint (as the daemon loads them)."""
    from ..model.bundle import Bundle
    from ..model.prototypes import PrototypeMatcher
    from ..pipeline import Pipeline

    return Pipeline(Bundle.load(bundle_dir), PrototypeMatcher.load(prototypes), pipeline_config)
