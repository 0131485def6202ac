"""The processing loop every server runs: batches of (packet, received_ns) -> Pipeline -> stamped labels.

The edge daemon (one asyncio process) and each scale-out shard (a Ray actor) both run their input
through one ``ProcessLoop``: the batch is cut into calls of at most ``max_call_us`` of stream time
(so that one batch of long packets never holds the pipeline for long), each call runs the pipeline,
and every label leaves stamped with ``published_ns``. It is synchronous: who owns the loop decides
where it runs (a worker thread, an actor's method) and where the labels go (a PUB socket, sinks,
a gateway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .events import EventPacket, LabelEvent

__all__ = ["ProcessLoop", "LoopStats", "split_by_span"]

Item = tuple[EventPacket, int]  # a packet and when it was received (time.time_ns)


@dataclass(slots=True)
class LoopStats:
    """What the loop did: calls, packets in, labels out, and the wall time spent inside the pipeline."""

    calls: int = 0
    packets: int = 0
    labels: int = 0
    busy_s: float = 0.0   # wall seconds inside the pipeline

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}


def split_by_span(items: Sequence[Item], limit_us: int) -> list[list[Item]]:
    """``items`` in order, cut into runs whose declared spans (t_end - t_start) add up to at most
    ``limit_us`` each (a single longer packet is a run of its own)."""
    parts: list[list[Item]] = []
    part: list[Item] = []
    span = 0
    for item in items:
        d = max(0, item[0].t_end - item[0].t_start)
        if part and span + d > limit_us:
            parts.append(part)
            part, span = [], 0
        part.append(item)
        span += d
    if part:
        parts.append(part)
    return parts


class ProcessLoop:
    """``loop(items) -> labels``: run (packet, received_ns) items through ``pipeline`` in calls of
    at most ``max_call_us`` of stream time; labels carry ``published_ns`` from ``clock_ns``."""

    def __init__(self, pipeline, max_call_us: int = 60_000_000,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.pipeline = pipeline
        self.max_call_us = max_call_us
        self.stats = LoopStats()
        self._clock_ns = clock_ns

    def split(self, items: Sequence[Item]) -> list[list[Item]]:
        """The calls ``__call__`` makes (an owner that must release a lock between them uses this
        and ``run``)."""
        return split_by_span(items, self.max_call_us)

    def run(self, part: Sequence[Item]) -> list[LabelEvent]:
        """One pipeline call over ``part`` (no splitting); labels stamped ``published_ns``."""
        t0 = time.perf_counter()
        labels = self.pipeline([p for p, _ in part], [r for _, r in part])
        st = self.stats
        st.busy_s += time.perf_counter() - t0
        st.calls += 1
        st.packets += len(part)
        st.labels += len(labels)
        now = self._clock_ns()
        for lab in labels:
            lab.published_ns = now
        return labels

    def __call__(self, items: Sequence[Item]) -> list[LabelEvent]:
        out: list[LabelEvent] = []
        for part in self.split(items):
            out += self.run(part)
        return out
