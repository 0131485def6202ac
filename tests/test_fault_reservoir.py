"""Faults inside a stream: channel ids out of range are dropped and counted, nothing else changes."""

from __future__ import annotations

import dataclasses

import numpy as np

from streamlsm.events import DVS_DTYPE
from streamlsm.testing.procs import packets_from_samples, random_samples


def _with_bad_events(pkt, rng):
    ev = pkt.events
    if not len(ev):
        return pkt, 0
    n = int(rng.integers(1, 4))
    bad = np.zeros(n, ev.dtype)
    bad["t"] = rng.integers(pkt.t_start, pkt.t_end, n)
    bad["x"] = rng.choice([-1, 34, 500, 32767, -32768], n)
    bad["y"] = rng.choice([0, -5, 34, 1000], n)
    bad["p"] = rng.choice([0, 1, 2, -1], n)
    both = np.concatenate([ev, bad])
    both = both[np.argsort(both["t"], kind="stable")]
    return dataclasses.replace(pkt, events=both), n


def test_out_of_range_channels_are_dropped_counted_and_change_nothing():
    from streamlsm.reservoir import Reservoir, preset

    cfg = preset("nmnist")
    rng = np.random.default_rng(3)
    clean = packets_from_samples(random_samples(3, DVS_DTYPE, 100_000, events=400, seed=5), "cam", 10_000, duration_us=100_000)
    other = packets_from_samples(random_samples(3, DVS_DTYPE, 100_000, events=400, seed=6), "other", 10_000, duration_us=100_000)
    dirty, n_bad = [], 0
    for pkt in clean:
        p, n = _with_bad_events(pkt, rng)
        dirty.append(p)
        n_bad += n
    ref = Reservoir(cfg)
    want = {(f.stream_id, f.sample_id): f.counts for f in ref.feed(clean) + ref.feed(other)}
    res = Reservoir(cfg)
    got = {}
    for a, b in zip(dirty, other, strict=True):  # interleaved with a clean stream
        for f in res.feed([a, b]):
            got[(f.stream_id, f.sample_id)] = f.counts
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # (the preset's mapping also drops events outside its crop: the same in both runs)
    assert res.stats("cam")["dropped"] - ref.stats("cam")["dropped"] == n_bad > 0
    assert res.stats("other")["dropped"] == ref.stats("other")["dropped"]
