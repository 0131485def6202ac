"""Pacing against an absolute schedule (real or virtual time): how replay and the demo release packets when due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from aiostream import stream, streamcontext

from ..errors import ConfigError

__all__ = ["Clock", "LoopClock", "VirtualClock", "PaceStats", "pace"]


class Clock(Protocol):
    """A monotonic time source in seconds that can sleep until an absolute time."""

    def now(self) -> float: ...
    async def sleep_until(self, t: float) -> None: ...


class LoopClock:
    """The running event loop's clock (``loop.time()``).

    ``asyncio.sleep`` wakes up to a millisecond late (the selector rounds its timeout up to whole
    ms), so the clock sleeps until ``spin_s`` before the deadline and then yields to the loop
    (``sleep(0)``) until it is reached: a little CPU for sub-millisecond pacing. ``spin_s=0``
    never spins.
    """

    def __init__(self, spin_s: float = 0.0005) -> None:
        if not 0 <= spin_s <= 0.1:
            raise ConfigError("spin_s", f"must lie in [0, 0.1] s, got {spin_s!r}")
        self.spin_s = spin_s

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, t: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = t - loop.time()
            if remaining <= 0:
                return
            if remaining > self.spin_s:
                await asyncio.sleep(remaining - self.spin_s)
            else:
                await asyncio.sleep(0)


class VirtualClock:
    """Virtual time for tests: sleeping jumps the clock forward at once (and yields to the loop).

    ``advance(dt)`` moves time on by hand (e.g. to model a slow consumer). Meant for one pacer at a
    time: two pacers sharing it see each other's jumps as lateness.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)
        self.sleeps: list[float] = []  # the deadlines slept to, in order

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ConfigError("dt", f"time cannot go backwards (dt={dt})")
        self.t += dt

    async def sleep_until(self, t: float) -> None:
        if t > self.t:
            self.sleeps.append(t)
            self.t = t
        await asyncio.sleep(0)


@dataclass
class PaceStats:
    """Lateness (actual minus scheduled release, seconds) of paced items; keeps the first max_samples."""

    max_samples: int = 1_000_000
    count: int = 0
    max_s: float = 0.0
    total_s: float = 0.0
    samples: list[float] = field(default_factory=list)

    def record(self, lateness_s: float) -> None:
        self.count += 1
        self.total_s += lateness_s
        if lateness_s > self.max_s:
            self.max_s = lateness_s
        if len(self.samples) < self.max_samples:
            self.samples.append(lateness_s)

    def percentile_ms(self, q: float) -> float:
        if not self.samples:
            return 0.0
        return float(np.percentile(np.asarray(self.samples), q)) * 1e3

    def summary(self) -> dict[str, float | int]:
        """count, p50_ms, p99_ms, max_ms, mean_ms."""
        return {
            "count": self.count,
            "p50_ms": self.percentile_ms(50),
            "p99_ms": self.percentile_ms(99),
            "max_ms": self.max_s * 1e3,
            "mean_ms": (self.total_s / self.count * 1e3) if self.count else 0.0,
        }


async def pace(items: Iterable[tuple[int, Any]] | AsyncIterable[tuple[int, Any]],
               speed: float | str, clock: Clock | None = None, *,
               stats: PaceStats | None = None, start: float | None = None,
               yield_every: int = 64) -> AsyncIterator[Any]:
    """Yield each item of (due_us, item) pairs when it is due, on an absolute schedule.

    The schedule starts at ``start`` (default: the clock's now when the first pair arrives); the
    pair is released at ``start + due_us / speed`` microseconds, so a late item never shifts later
    ones (a slow consumer is followed by a catch-up burst). ``speed`` "max" never sleeps (it only
    yields to the loop every ``yield_every`` items). Lateness goes into ``stats``.
    """
    if type(yield_every) is not int or yield_every < 1:
        raise ConfigError("yield_every", f"must be an integer >= 1, got {yield_every!r}")
    if speed == "max":
        i = 0
        if isinstance(items, AsyncIterable):
            async for _due, item in items:
                yield item
                i += 1
                if i % yield_every == 0:
                    await asyncio.sleep(0)
        else:  # the common case, without a second generator layer per item
            for _due, item in items:
                yield item
                i += 1
                if i % yield_every == 0:
                    await asyncio.sleep(0)
        return
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < float("inf"):
        raise ConfigError("speed", f"must be a positive number or 'max', got {speed!r}")
    clock = clock if clock is not None else LoopClock()
    scale = 1e-6 / float(speed)
    t0 = start
    async with streamcontext(stream.iterate(items)) as source:  # sync or async input; closed on exit
        async for due_us, item in source:
            if t0 is None:
                t0 = clock.now()
            target = t0 + due_us * scale
            await clock.sleep_until(target)
            if stats is not None:
                stats.record(clock.now() - target)
            yield item
