"""clock.pace on virtual time: absolute schedule, speed scaling, lateness stats, max speed."""

from __future__ import annotations

import asyncio

import pytest

from streamlsm.errors import ConfigError
from streamlsm.stream.pacing import LoopClock, PaceStats, VirtualClock, pace


async def collect(gen):
    return [x async for x in gen]


def run(coro):
    return asyncio.run(coro)


def test_pace_sleeps_to_the_absolute_schedule():
    clock = VirtualClock(start=100.0)
    items = [(0, "a"), (1000, "b"), (1000, "c"), (2500, "d")]
    stats = PaceStats()
    got = run(collect(pace(items, 1, clock, stats=stats)))
    assert got == ["a", "b", "c", "d"]
    assert clock.sleeps == pytest.approx([100.001, 100.0025])
    assert stats.count == 4 and stats.max_s == 0


def test_speed_scales_the_schedule():
    clock = VirtualClock()
    run(collect(pace([(0, 1), (4000, 2), (8000, 3)], 4.0, clock)))
    assert clock.sleeps == pytest.approx([0.001, 0.002])
    clock = VirtualClock()
    run(collect(pace([(1000, 1), (2000, 2)], 0.5, clock)))
    assert clock.sleeps == pytest.approx([0.002, 0.004])


def test_late_consumer_does_not_shift_later_items():
    clock = VirtualClock()
    stats = PaceStats()

    async def consume():
        out = []
        async for item in pace([(0, 0), (1000, 1), (2000, 2), (10_000, 3)], 1, clock, stats=stats):
            out.append((item, clock.now()))
            if item == 0:
                clock.advance(0.0035)  # slow work: items 1 and 2 are now overdue
        return out

    out = run(consume())
    assert [i for i, _ in out] == [0, 1, 2, 3]
    assert out[1][1] == pytest.approx(0.0035) and out[2][1] == pytest.approx(0.0035)
    assert out[3][1] == pytest.approx(0.010)  # back on schedule
    s = stats.summary()
    assert s["count"] == 4 and s["max_ms"] == pytest.approx(2.5)


def test_explicit_start_and_async_input():
    clock = VirtualClock(start=5.0)

    async def source():
        for k in range(3):
            yield k * 1000, k

    got = run(collect(pace(source(), 1, clock, start=10.0)))
    assert got == [0, 1, 2] and clock.sleeps == pytest.approx([10.0, 10.001, 10.002])


def test_max_speed_never_sleeps():
    clock = VirtualClock()
    got = run(collect(pace(((k * 10**6, k) for k in range(500)), "max", clock)))
    assert got == list(range(500)) and clock.sleeps == [] and clock.now() == 0


def test_bad_speed_and_clock_options():
    for speed in (0, -1, "fast", True, float("inf")):
        with pytest.raises(ConfigError):
            run(collect(pace([(0, 1)], speed, VirtualClock())))
    with pytest.raises(ConfigError):
        LoopClock(spin_s=-1)
    with pytest.raises(ConfigError):
        VirtualClock().advance(-1)
    with pytest.raises(ConfigError) as err:
        run(collect(pace([(0, 1)], "max", yield_every=0)))
    assert err.value.key == "yield_every"


def test_loop_clock_never_releases_early():
    stats = PaceStats()

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.005
        times = [t - t0 async for t in _stamp(pace([(k * 2000, None) for k in range(10)], 1,
                                                   stats=stats, start=t0), loop)]
        return times

    times = run(main())
    for k, t in enumerate(times):
        assert t >= k * 0.002 - 1e-9  # no upper bound: CI machines are busy
    assert stats.count == 10 and min(stats.samples) >= 0


async def _stamp(gen, loop):
    async for _ in gen:
        yield loop.time()


def test_pace_stats_summary_empty_and_cap():
    s = PaceStats(max_samples=3)
    assert s.summary() == {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    for v in (0.001, 0.002, 0.003, 0.010):
        s.record(v)
    assert s.count == 4 and len(s.samples) == 3 and s.max_s == 0.010
    assert s.percentile_ms(50) == pytest.approx(2.0)
