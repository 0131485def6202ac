"""The edge daemon: sources -> bounded queue -> pipeline in a worker thread -> label PUB + sinks, control REP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterable, Sequence
from typing import Any

import zmq
import zmq.asyncio
from aiostream import stream

from ..errors import CheckpointError, ConfigError, StreamLSMError
from ..events import EventPacket
from ..loop import ProcessLoop
from ..model.bundle import Bundle
from ..model.prototypes import PrototypeMatcher
from ..net import wire
from ..net.security import ServerSecurity
from ..net.transport import Receiver, Sender
from ..pipeline import Pipeline
from .buffer import PacketBuffer
from .config import (
    DaemonConfig,
)
from .control import Control
from .served import ServedModel
from .sinks import make_sinks

__all__ = ["Daemon", "give_back_freed_memory"]

log = logging.getLogger("streamlsm.daemon")


async def _batches(receiver: Receiver):
    while True:
        yield await receiver.recv_batch()


async def _singles(source: AsyncIterable):
    async for msg in source:
        yield [msg]


class Daemon:
    """One daemon: ``await daemon.run()`` until ``request_stop()`` (or every source ended).

    Composed of a ``ServedModel`` (bundle, prototypes, pipeline, processing loop), a ``Control``
    (the ``streamlsm ctl`` commands), a fair bounded ``PacketBuffer`` and its sockets and sinks.
    """

    def __init__(self, config: DaemonConfig, *, sources: Sequence[AsyncIterable[EventPacket]] = (),
                 sinks: Sequence[Any] | None = None, bundle: Bundle | None = None,
                 reservoir_factory=None, stop_at_eof: bool | None = None) -> None:
        self.config = config
        self.extra_sources = list(sources)
        self.stop_at_eof = (not config.inputs) if stop_at_eof is None else stop_at_eof
        self.served = ServedModel(config.model, config.pipeline, config.limits, bundle=bundle,
                                  reservoir_factory=reservoir_factory)
        # the sinks last: a bad bundle or checkpoint must not leave files, sockets or a metrics server open
        self.sinks = list(sinks) if sinks is not None else make_sinks(config.outputs.sinks)
        self.counters = {"received": 0, "dropped": 0, "labels": 0, "label_drops": 0, "batches": 0,
                         "control": 0, "control_errors": 0, "sink_errors": 0, "checkpoint_errors": 0}
        self.last_sink_error: str | None = None
        self._sinks_failed: set[int] = set()
        self.label_endpoint = config.outputs.labels
        self.control_endpoint = config.control.endpoint
        self.input_endpoints: list[str] = []
        self._receivers: list[Receiver] = []
        self.ready = asyncio.Event()      # set once serving (never when start-up fails: see started())
        self._settled = asyncio.Event()   # serving, or start-up failed
        self._failure: BaseException | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()       # around every pipeline call and every change of the model
        self.control = Control(self.served, config.control, self._lock, self.status, self.counters)
        lim = config.limits
        self._inline_max = {"inline": 1 << 62, "thread": -1}.get(lim.compute, lim.inline_max)
        self._inline_s = float("inf") if lim.compute == "inline" else lim.inline_ms / 1e3  # auto: this quick
        self._last_call_s = 0.0
        self._queue = PacketBuffer(config.limits.queue, config.limits.overflow,
                                   int(config.limits.queue_mb * (1 << 20)))
        self._t0 = time.monotonic()
        self._cpu0 = time.process_time()

    # what it serves (read-only views; changes go through self.served / self.control)
    @property
    def bundle(self) -> Bundle:
        return self.served.bundle

    @property
    def matcher(self) -> PrototypeMatcher:
        return self.served.matcher

    @property
    def pipeline(self) -> Pipeline:
        return self.served.pipeline

    @property
    def loop(self) -> ProcessLoop:
        return self.served.loop

    @property
    def orphans_removed(self) -> int:
        return self.served.orphans_removed

    async def handle(self, req: dict) -> dict:
        """Run one control request (as the control socket would)."""
        return await self.control.handle(req)

    # ------------------------------------------------------------ life cycle
    def request_stop(self) -> None:
        """Stop reading input; queued packets are still processed, then the daemon exits."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until stopped; raises what stopped it (a start-up error: an endpoint in use...)."""
        try:
            await self._run()
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._settled.set()

    async def started(self) -> None:
        """Wait until the daemon serves (``ready``); raises the start-up error if it never will."""
        await self._settled.wait()
        if not self.ready.is_set():
            raise self._failure if self._failure is not None else StreamLSMError("the daemon stopped before serving")

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
            try:
                await self._serve(ctl)
            except BaseExceptionGroup as group:  # one task's error, as itself (not wrapped in a group)
                raise group.exceptions[0] from None
            finally:
                self._checkpoint_quietly()

    async def _serve(self, ctl) -> None:
        """The tasks of a serving daemon, in one TaskGroup: the worker (queue -> processing loop ->
        labels), the observer (status to sinks, periodic checkpoints), the control server and the
        source (sockets -> queue). Stop order: the source first, then the worker drains the queue
        (no good packet already queued is lost), then the helpers. A source that fails is drained
        the same way, then its error is raised; a worker error ends the daemon at once."""
        async with asyncio.TaskGroup() as tg:
            worker = tg.create_task(self._worker(), name="worker")
            helpers = [tg.create_task(self._observer(), name="observer")]
            if ctl is not None:
                helpers.append(tg.create_task(self.control.serve(ctl), name="control"))
            if self.config.limits.warm_up:  # compile the kernels before the first packet, not on it
                await asyncio.to_thread(self.pipeline.warm_up)
            source = tg.create_task(self._source_until_stop(), name="source")
            self.ready.set()
            self._settled.set()
            log.info("serving: inputs %s; labels on %s; control on %s", ", ".join(self.input_endpoints) or "none",
                     self.label_endpoint, self.control_endpoint or "off")
            await asyncio.wait({source, worker}, return_when=asyncio.FIRST_COMPLETED)
            failed = source.result() if source.done() else None
            source.cancel()
            self._queue.close()  # drain: the worker finishes what is queued
            await worker
            for t in helpers:
                t.cancel()
        if failed is not None:
            raise failed

    def _close_sinks(self) -> None:
        for s in self.sinks:
            with contextlib.suppress(Exception):
                s.close()

    async def _source_until_stop(self) -> BaseException | None:
        """Read until stopped (or every source ended, with stop_at_eof); a source's error is
        returned, not raised, so that the queue is drained before it ends the daemon."""
        reader = asyncio.ensure_future(self._source())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            stop.cancel()
            await asyncio.gather(reader, stop, return_exceptions=True)
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            return reader.exception()
        return None

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
            t0 = time.perf_counter()
            if len(items) <= self._inline_max and self._last_call_s < self._inline_s:
                labels = self.loop.run(items)  # small and quick: the thread hand-off would cost more
            else:
                labels = await asyncio.to_thread(self.loop.run, items)
            self._last_call_s = time.perf_counter() - t0
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
            log.warning("sink failed (counted in sink_errors, labelling goes on): %s", self.last_sink_error)

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
            if self.served.unsaved and time.monotonic() - last_save >= 10.0:
                async with self._lock:
                    self._checkpoint_quietly()
                last_save = time.monotonic()

    def _checkpoint_quietly(self) -> None:
        """The periodic checkpoint: a failure (disk full) is counted, printed and retried later; it
        must not end the observer task (sinks' status, later checkpoints) for the daemon's life."""
        try:
            self.served.checkpoint(force=False)
        except (CheckpointError, OSError) as exc:
            self.counters["checkpoint_errors"] += 1
            log.warning("checkpoint failed (counted in checkpoint_errors, retried): %s: %s",
                        type(exc).__name__, exc)

    # ------------------------------------------------------------ status and control
    def status(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        ps = self.pipeline.stats.as_dict()
        stream_s = ps["stream_us"] / 1e6
        recv = {"wire_errors": sum(r.stats["wire_errors"] for r in self._receivers)}
        return {"ok": True, "uptime_s": wall, "queue_depth": len(self._queue),
                "queue_limit": self.config.limits.queue, "overflow": self.config.limits.overflow,
                **self.counters, **recv, "checkpoints": self.served.checkpoints,
                "reloads": self.served.reloads, "pipeline": ps, "busy_s": self.loop.stats.busy_s,
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
