"""THE segmenter: samples and sliding windows, tuple slots, one noise-key rule; chunked equals whole."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamlsm.events import DVS_DTYPE, EventPacket
from streamlsm.reservoir import Reservoir, preset
from streamlsm.stream.segment import Cursor, Segmenter, noise_key, window_key


def _dvs(rng, n, duration):
    ev = np.zeros(n, DVS_DTYPE)
    ev["t"] = np.sort(rng.integers(0, duration, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    return ev


def _windows(seg, ev, cuts):
    """Feed ``ev`` cut at ``cuts`` through the segmenter into one reservoir; features in order."""
    cur, out = Cursor(), []
    res = Reservoir(dataclasses.replace(preset("nmnist"), n_neurons=40, bin_us=2_000, read_noise=0.05,
                                        crop=(0, 0, 34, 34)))
    for j in range(len(cuts) - 1):
        a, b = int(cuts[j]), int(cuts[j + 1])
        pieces = seg.cut(cur, EventPacket("w", j, a, b, ev[(ev["t"] >= a) & (ev["t"] < b)], "vision", -1, "x"))
        out += res.feed([c.packet for c in pieces], slots=[c.slot for c in pieces], keys=[c.key for c in pieces])
    return out, res, cur


def test_sliding_windows_any_chunking_gives_the_same_windows_equal_to_offline_encode():
    rng = np.random.default_rng(4)
    ev = _dvs(rng, 6000, 300_000)
    ev["t"] += 5_000
    seg = Segmenter("window", 60_000, 20_000)
    runs = []
    for _ in range(3):
        cuts = np.unique(np.r_[5_000, np.sort(rng.integers(5_000, 305_000, 30)), 305_000])
        got, res, cur = _windows(seg, ev, cuts)
        runs.append(got)
        assert res.streams == ["w"] and len(res._slots) <= seg.slots == 3  # tuple slots, ceil(60/20)
        assert cur.open == {13, 14}  # [265, 325) and [285, 345) ms are still open at 305 ms
    # windows k = 0.. with [5000 + 20000 k, +60000) inside [5000, 305000): k = 0..12
    assert [f.sample_id for f in runs[0]] == list(range(13))
    for got in runs[1:]:
        np.testing.assert_array_equal(np.stack([f.counts for f in got]), np.stack([f.counts for f in runs[0]]))
    f3 = runs[0][3]
    assert (f3.t_start, f3.t_end, f3.stream_id) == (65_000, 125_000, "w")  # stream time, the real id
    # the same windows offline: slices rebased to the window start, noise keys from the one rule
    slices = []
    for k in range(13):
        part = ev[(ev["t"] >= 5_000 + 20_000 * k) & (ev["t"] < 65_000 + 20_000 * k)].copy()
        part["t"] -= 5_000 + 20_000 * k
        slices.append(part)
    cfg = dataclasses.replace(preset("nmnist"), n_neurons=40, bin_us=2_000, read_noise=0.05, crop=(0, 0, 34, 34))
    enc = Reservoir(cfg).encode(slices, [60_000] * 13, sample_ids=[noise_key("window", "w", k) for k in range(13)])
    np.testing.assert_array_equal(enc, np.stack([f.counts for f in runs[0]]))
    # another key would draw other noise: the rule is what makes streamed equal offline
    other = Reservoir(cfg).encode(slices, [60_000] * 13, sample_ids=list(range(13)))
    assert not np.array_equal(other, enc)


def test_sample_mode_gates_and_counts_and_uses_one_slot():
    seg = Segmenter("sample")
    cur = Cursor()
    ev = np.zeros(0, DVS_DTYPE)
    mid = EventPacket("s", 0, 0, 10, ev, sample_id=7)  # joined mid-sample: skipped
    assert seg.cut(cur, mid) == [] and seg.stats.skipped_packets == 1
    first = EventPacket("s", 1, 10, 20, ev, sample_id=8, sample_begin=True)
    (piece,) = seg.cut(cur, first)
    assert piece.slot == ("s", 0) and piece.key == 8 == noise_key("sample", "s", 8) and cur.in_sample
    again = EventPacket("s", 2, 20, 30, ev, sample_id=9, sample_begin=True, sample_end=True)
    assert len(seg.cut(cur, again)) == 1 and seg.stats.incomplete_samples == 1 and not cur.in_sample
    seg.cut(cur, EventPacket("s", 3, 30, 40, ev, sample_id=10, sample_begin=True))
    seg.restart(cur)  # a gap: the sample in flight is incomplete
    assert seg.stats.incomplete_samples == 2 and not cur.in_sample


def test_window_restart_counts_open_windows_and_starts_a_new_origin():
    seg = Segmenter("window", 40_000, 20_000)
    cur = Cursor()
    ev = np.zeros(0, DVS_DTYPE)
    pieces = seg.cut(cur, EventPacket("s", 0, 1_000, 31_000, ev))
    assert [(c.packet.sample_id, c.slot, c.packet.sample_begin, c.packet.sample_end) for c in pieces] == \
        [(0, ("s", 0), True, False), (1, ("s", 1), True, False)]
    assert [c.key for c in pieces] == [window_key("s", 0), window_key("s", 1)] and cur.open == {0, 1}
    seg.restart(cur)
    assert seg.stats.incomplete_samples == 2 and cur.origin is None
    (p0,) = seg.cut(cur, EventPacket("s", 5, 500_000, 510_000, ev))
    assert (p0.packet.t_start, p0.packet.sample_id) == (500_000, 0)  # window 0 again, at the new origin


def test_segmenter_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="sample' or 'window"):
        Segmenter("slices")


def test_a_bundle_recording_the_old_sample_mode_keys_still_loads_and_window_mode_is_refused():
    from streamlsm.config import to_dict
    from streamlsm.errors import ModelError
    from streamlsm.reservoir import ReservoirConfig
    from streamlsm.testing import make_bundle

    old = to_dict(preset("nmnist")) | {"segment": "sample", "window_us": 0, "hop_us": 0}
    bundle = make_bundle(reservoirs={"vision": old})
    assert bundle.reservoir_config("vision", ReservoirConfig) == preset("nmnist")
    bundle = make_bundle(reservoirs={"vision": old | {"segment": "window", "window_us": 50_000}})
    with pytest.raises(ModelError, match=r"window mode is set in \[pipeline\]"):
        bundle.reservoir_config("vision", ReservoirConfig)
