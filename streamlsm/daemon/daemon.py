"""The edge daemon: sources -> bounded queue -> pipeline in a worker thread -> label PUB + sinks, control REP."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from aiostream import stream

from ..errors import CheckpointError, ConfigError, ModelError
from ..events import EventPacket
from ..loop import ProcessLoop
from ..model.bundle import Bundle
from ..model.calibration import bundle_calibration
from ..model.prototypes import PrototypeMatcher
from ..net import wire
from ..net.security import ServerSecurity, load_signing_key
from ..net.transport import Receiver, Sender
from ..pipeline import Pipeline
from .buffer import PacketBuffer
from .config import (
    DaemonConfig,
)
from .control import ControlCommands, sweep_checkpoint_orphans, vet_bundle
from .sinks import make_sinks

__all__ = ["Daemon", "give_back_freed_memory"]


async def _batches(receiver: Receiver):
    while True:
        yield await receiver.recv_batch()


async def _singles(source: AsyncIterable):
    async for msg in source:
        yield [msg]


class Daemon(ControlCommands):
    """One daemon: ``await daemon.run()`` until ``request_stop()`` (or every source ended)."""

    def __init__(self, config: DaemonConfig, *, sources: Sequence[AsyncIterable[EventPacket]] = (),
                 sinks: Sequence[Any] | None = None, bundle: Bundle | None = None,
                 reservoir_factory=None, stop_at_eof: bool | None = None) -> None:
        self.config = config
        self.extra_sources = list(sources)
        self.stop_at_eof = (not config.inputs) if stop_at_eof is None else stop_at_eof
        self._signing_key = load_signing_key(config.model.signing_key) if config.model.signing_key else None
        self.bundle = bundle if bundle is not None else Bundle.load(config.model.bundle, self._signing_key)
        self.matcher = self._restore_matcher()
        lim = config.limits
        vet_bundle(self.bundle, self.matcher.dim, lim.max_neurons, lim.model_mb)
        self._factory = reservoir_factory
        self.pipeline = Pipeline(self.bundle, self.matcher, config.pipeline, reservoir_factory)
        self.loop = ProcessLoop(self.pipeline, config.limits.max_call_us)
        # the sinks last: a bad bundle or checkpoint must not leave files, sockets or a metrics server open
        self.sinks = list(sinks) if sinks is not None else make_sinks(config.outputs.sinks)
        self.counters = {"received": 0, "dropped": 0, "labels": 0, "label_drops": 0, "batches": 0,
                         "control": 0, "control_errors": 0, "checkpoints": 0, "reloads": 0,
                         "sink_errors": 0, "checkpoint_errors": 0}
        self.last_sink_error: str | None = None
        self._sinks_failed: set[int] = set()
        self.label_endpoint = config.outputs.labels
        self.control_endpoint = config.control.endpoint
        self.input_endpoints: list[str] = []
        self._receivers: list[Receiver] = []
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._inline = config.limits.compute == "inline"
        self._queue = PacketBuffer(config.limits.queue, config.limits.overflow,
                                   int(config.limits.queue_mb * (1 << 20)))
        self._saved_version = self.matcher.version
        self._t0 = time.monotonic()
        self._cpu0 = time.process_time()

    def _restore_matcher(self) -> PrototypeMatcher:
        m, path = self.config.model, Path(self.config.model.prototypes)
        self.orphans_removed = sweep_checkpoint_orphans(path)
        if path.is_file():
            matcher = PrototypeMatcher.load(path)
        else:
            dims = sorted({h.out_features for h in self.bundle.heads.values() if h.normalise})
            if not dims:
                raise ModelError("the bundle has no projection head to match prototypes against")
            matcher = PrototypeMatcher(dims[0], m.threshold, m.update, m.ema)
        matcher.calibrate(bundle_calibration(self.bundle), self.bundle.seen_classes, m.error_target)
        return matcher

    # ------------------------------------------------------------ life cycle
    def request_stop(self) -> None:
        """Stop reading input; queued packets are still processed, then the daemon exits."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until stopped. ``ready`` is set once serving, and also when start-up fails (a port
        in use...), so that nobody waits for ever: the error is this coroutine's."""
        try:
            await self._run()
        finally:
            self.ready.set()

    async def _run(self) -> None:
        lim = self.config.limits
        limits = wire.WireLimits(max_events=lim.max_events)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self._close_sinks)  # also when start-up fails (bind rule, endpoint in use)
            if lim.gil_switch_ms > 0:  # the loop thread gets the GIL back from the worker sooner
                stack.callback(sys.setswitchinterval, sys.getswitchinterval())
                sys.setswitchinterval(lim.gil_switch_ms / 1000)
            # the bind rule: beyond loopback/ipc/inproc only with CURVE keys (security.keys_dir)
            sec = ServerSecurity(self.config.security)
            binds = [("outputs.labels", self.config.outputs.labels),
                     ("control.endpoint", self.config.control.endpoint)]
            binds += [(f"inputs[{k}].endpoint", i.endpoint) for k, i in enumerate(self.config.inputs) if i.bind]
            for key, ep in binds:
                if ep:
                    sec.check(ep, key)
            sec.start(zmq.asyncio.Context.instance(), [ep for _k, ep in binds if ep])
            stack.callback(sec.close)
            # labels: a subscriber that stops reading loses labels at its own high-water mark
            # (ZeroMQ drops per peer); it never costs the other subscribers theirs (no XPUB_NODROP).
            # On a clean stop the last labels still queued get outputs.linger_ms to leave (with linger 0
            # a daemon stopping at EOF dropped the last few labels of a healthy subscriber).
            pub = await stack.enter_async_context(Sender(self.config.outputs.labels, "pub", bind=True,
                                                         hwm=self.config.outputs.hwm, stamp=False,
                                                         nodrop=False, linger_ms=self.config.outputs.linger_ms,
                                                         setup=sec.setup(self.config.outputs.labels)))
            self.label_endpoint, self._pub = pub.endpoint, pub
            self._receivers = [await stack.enter_async_context(
                Receiver(i.endpoint, i.kind, bind=i.bind, hwm=i.hwm, limits=limits,
                         topics=tuple(i.topics) if i.kind == "sub" else (b"",),
                         setup=sec.setup(i.endpoint) if i.bind else None))
                for i in self.config.inputs]
            self.input_endpoints = [r.endpoint for r in self._receivers]
            ctl = None
            if self.config.control.endpoint:
                ctl = zmq.asyncio.Context.instance().socket(zmq.REP)
                ctl.setsockopt(zmq.LINGER, 0)
                # a bigger request disconnects its peer before it is in memory
                ctl.setsockopt(zmq.MAXMSGSIZE, wire.DEFAULT_LIMITS.max_control_bytes + 1024)
                stack.callback(ctl.close, 0)
                if (curve := sec.setup(self.config.control.endpoint)) is not None:
                    curve(ctl)  # remote control clients need an authorised CURVE key
                try:
                    ctl.bind(self.config.control.endpoint)
                except zmq.ZMQError as exc:
                    raise ConfigError("control.endpoint", f"cannot bind: {exc}") from None
                self.control_endpoint = ctl.getsockopt_string(zmq.LAST_ENDPOINT)
            worker = asyncio.create_task(self._worker())
            helpers = [asyncio.create_task(self._observer())]
            if ctl is not None:
                helpers.append(asyncio.create_task(self._control(ctl)))
            if lim.warm_up:  # compile the kernels before the first packet, not on it
                await asyncio.to_thread(self.pipeline.warm_up)
            source = asyncio.create_task(self._source())
            stopper = asyncio.create_task(self._stop.wait())
            self.ready.set()
            try:
                await asyncio.wait({source, stopper, worker}, return_when=asyncio.FIRST_COMPLETED)
                if worker.done():
                    worker.result()  # a pipeline error ends the daemon loudly
                failed = source.exception() if source.done() and not source.cancelled() else None
                source.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await source
                self._queue.close()  # drain: the worker finishes what is queued
                await worker
                if failed is not None:
                    raise failed
            finally:
                for t in (*helpers, source, stopper, worker):
                    t.cancel()
                await asyncio.gather(*helpers, source, stopper, worker, return_exceptions=True)
                self._checkpoint(force=False)

    def _close_sinks(self) -> None:
        for s in self.sinks:
            with contextlib.suppress(Exception):
                s.close()

    async def _source(self) -> None:
        iters = [*(_batches(r) for r in self._receivers), *(_singles(s) for s in self.extra_sources)]
        if not iters:
            await self._stop.wait()
            return
        buf, counters = self._queue, self.counters
        # several sources are merged with aiostream; a single one is read directly (no task per batch)
        merged = stream.merge(*iters).stream() if len(iters) > 1 else contextlib.aclosing(iters[0])
        async with merged as batches:
            async for batch in batches:  # a socket's waiting messages arrive as one batch
                pkts = [m for m in batch if isinstance(m, EventPacket)]
                counters["received"] += len(pkts)
                await buf.put(pkts, time.time_ns())
                counters["dropped"] = buf.dropped
        if not self.stop_at_eof:
            await self._stop.wait()

    async def _worker(self) -> None:
        batch, wait = self.config.limits.batch, self.config.limits.coalesce_us / 1e6
        while True:
            items = await self._queue.take(batch)
            if not items:
                return
            if wait and len(items) < batch and not self._queue.closed:
                await asyncio.sleep(wait)
                if len(self._queue):
                    items += await self._queue.take(batch - len(items))
            for part in self.loop.split(items):  # the lock is free between calls (control, stop)
                await self._process(part)

    async def _process(self, items: list) -> None:
        async with self._lock:
            if self._inline:
                labels = self.loop.run(items)
            else:
                labels = await asyncio.to_thread(self.loop.run, items)
        self.counters["batches"] += 1
        for lab in labels:
            if await self._pub.send(lab):
                self.counters["labels"] += 1
            else:
                self.counters["label_drops"] += 1
            for s in self.sinks:
                try:
                    s.write(lab)
                except Exception as exc:  # noqa: BLE001 - one broken sink (disk full...) must not stop labelling
                    self._sink_failed(s, exc)

    def _sink_failed(self, sink: Any, exc: Exception) -> None:
        """Count a sink's failure; the first one of each sink is also printed (stderr)."""
        self.counters["sink_errors"] += 1
        self.last_sink_error = f"{type(sink).__name__}: {type(exc).__name__}: {exc}"
        if id(sink) not in self._sinks_failed:
            self._sinks_failed.add(id(sink))
            print(f"streamlsm: sink failed (counted in sink_errors, labelling goes on): "
                  f"{self.last_sink_error}", file=sys.stderr, flush=True)

    async def _observer(self) -> None:
        every = self.config.limits.stats_every_s
        observers = [s for s in self.sinks if callable(getattr(s, "observe", None))]
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(every)
            if observers:
                st = self.status()
                for s in observers:
                    try:
                        s.observe(st)
                    except Exception as exc:  # noqa: BLE001 - the observer loop must go on
                        self._sink_failed(s, exc)
            # online prototype updates (model.update) are checkpointed at most every 10 s
            if self.matcher.version != self._saved_version and time.monotonic() - last_save >= 10.0:
                async with self._lock:
                    self._checkpoint_quietly()
                last_save = time.monotonic()

    def _checkpoint_quietly(self) -> None:
        """The periodic checkpoint: a failure (disk full) is counted, printed and retried later; it
        must not end the observer task (sinks' status, later checkpoints) for the daemon's life."""
        try:
            self._checkpoint(force=False)
        except (CheckpointError, OSError) as exc:
            self.counters["checkpoint_errors"] += 1
            print(f"streamlsm: checkpoint failed (counted in checkpoint_errors, retried): "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------ status and control
    def status(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        ps = self.pipeline.stats.as_dict()
        stream_s = ps["stream_us"] / 1e6
        recv = {"wire_errors": sum(r.stats["wire_errors"] for r in self._receivers)}
        return {"ok": True, "uptime_s": wall, "queue_depth": len(self._queue),
                "queue_limit": self.config.limits.queue, "overflow": self.config.limits.overflow,
                **self.counters, **recv, "pipeline": ps, "busy_s": self.loop.stats.busy_s,
                "cpu_s": time.process_time() - self._cpu0,
                "real_time_factor": self.loop.stats.busy_s / stream_s if stream_s else 0.0,
                "streams": len(self.pipeline.streams), "classes": self.matcher.labels,
                "prototype_version": self.matcher.version, "bundle_hash": self.bundle.hash,
                "labels_endpoint": self.label_endpoint, "control_endpoint": self.control_endpoint,
                "last_sink_error": self.last_sink_error}


def give_back_freed_memory() -> bool:
    """glibc only (else False, nothing changed): blocks of 256 KiB and more (ZeroMQ frames of a
    flood of big messages, numpy arrays) always come from mmap and go back to the OS when freed,
    and the heap is trimmed above 4 MiB free. By default glibc raises its mmap threshold after
    such frees, so a burst of big input stayed in the daemon's RSS for good (issue 11, item 4)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 256 * 1024)) and bool(mallopt(m_trim_threshold, 4 << 20))
