"""Arrays with tonic's field names (x, y, t, p; any widths and order) are converted by name at the
reservoir, wire and pipeline entry points; streamlsm datasets are indexable and take a transform."""

from __future__ import annotations

import numpy as np
import pytest
from streamlsm_sources.spike_table import SpikeTableDataset

from streamlsm.errors import ReservoirError, WireError
from streamlsm.events import COCHLEA_DTYPE, DVS_DTYPE, SPIKES_DTYPE, EventPacket, as_layout
from streamlsm.net.wire import decode, encode
from streamlsm.reservoir import Reservoir, preset

# tonic.io.events_struct: x, y int16, t int64, p bool (field order differs from ours)
TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])


def _ours(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, DVS_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 50_000, n))
    ev["x"] = rng.integers(0, 34, n)
    ev["y"] = rng.integers(0, 34, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def _as(ev: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.zeros(len(ev), dtype)
    for f in dtype.names:
        if f in ev.dtype.names:
            out[f] = ev[f]
    return out


def test_as_layout_converts_by_name_any_widths_and_order():
    ev = _ours()
    for dt in (TONIC_DTYPE,
               np.dtype([("p", "<i4"), ("t", "<u8"), ("y", "<u2"), ("x", "<f4"), ("extra", "<f8")]),
               np.dtype([("t", "<f8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")])):
        got = as_layout(_as(ev, dt))
        assert got.dtype == DVS_DTYPE and all(np.array_equal(got[f], ev[f]) for f in "txyp")
    assert as_layout(ev) is ev  # already a layout: no copy
    cochlea = np.zeros(3, [("t", "<u4"), ("x", "<u1"), ("p", "?")])
    assert as_layout(cochlea).dtype == COCHLEA_DTYPE
    assert as_layout(np.zeros(3, [("x", "<u4"), ("t", "<i4")])).dtype == SPIKES_DTYPE
    ft = np.zeros(2, [("t", "<f8"), ("x", "<i2")])
    ft["t"] = [1.4, 2.6]  # float microseconds round to whole ones
    assert as_layout(ft)["t"].tolist() == [1, 3]


def test_as_layout_errors_name_the_field():
    with pytest.raises(WireError, match="missing \\['y'\\]"):
        as_layout(np.zeros(2, [("t", "<i8"), ("x", "<i2"), ("p", "i1")]), "dvs")
    big = np.zeros(2, [("t", "<i8"), ("x", "<i4")])
    big["x"] = [1, 40_000]
    with pytest.raises(WireError, match="'x'.*40000 do not fit"):
        as_layout(big)
    nan = np.zeros(2, [("t", "<f8"), ("x", "<i2")])
    nan["t"][1] = np.nan
    with pytest.raises(WireError, match="'t'.*NaN"):
        as_layout(nan)
    with pytest.raises(WireError, match="no streamlsm layout"):
        as_layout(np.zeros(2, [("a", "<i8")]))
    with pytest.raises(WireError, match="structured array"):
        as_layout(np.zeros(2))


def test_wire_encodes_a_tonic_array_as_the_named_layout():
    ev = _ours()
    pkt = EventPacket("cam", 0, 0, 50_000, _as(ev, TONIC_DTYPE), modality="vision")
    out = decode(encode(pkt))
    assert out.layout == "dvs" and out.events.dtype == DVS_DTYPE
    assert all(np.array_equal(out.events[f], ev[f]) for f in "txyp")


def test_reservoir_takes_tonic_arrays_and_gives_the_same_features():
    cfg = preset("nmnist", n_neurons=64, seed=3)
    a, b = Reservoir(cfg), Reservoir(cfg)
    ev = _ours(500)
    f_ours = a.feed(EventPacket("s", 0, 0, 50_000, ev, sample_begin=True, sample_end=True))
    f_tonic = b.feed(EventPacket("s", 0, 0, 50_000, _as(ev, TONIC_DTYPE), sample_begin=True,
                                 sample_end=True))
    assert len(f_ours) == len(f_tonic) == 1
    assert np.array_equal(f_ours[0].counts, f_tonic[0].counts) and f_ours[0].counts.sum() > 0
    enc = a.encode([_as(ev, TONIC_DTYPE)], [50_000])
    assert np.array_equal(enc, a.encode([ev], [50_000]))
    with pytest.raises(ReservoirError, match="do not fit layout 'dvs'"):
        a.feed(EventPacket("s", 0, 0, 10, np.zeros(1, [("t", "<i8"), ("x", "<i2")]), sample_begin=True))


def test_datasets_are_indexable_and_take_a_transform(tmp_path):
    from test_readers_neural import _table  # a small spike table written by that test module

    path = _table(tmp_path, "table.npz")
    plain = SpikeTableDataset(path)
    n = len(plain)
    assert n >= 2
    ev0, lab0 = plain[0]
    assert lab0 == plain.label(0) and np.array_equal(ev0, plain.events(0))
    assert np.array_equal(plain[-1][0], plain.events(n - 1))
    with pytest.raises(IndexError, match="out of range"):
        plain[n]
    with pytest.raises(TypeError):
        plain["0"]

    def drop_unit_1(events):  # a tonic-style transform returning another dtype
        keep = events[events["x"] != 1]
        return _as(keep, np.dtype([("x", "<i8"), ("t", "<f8")]))

    ds = SpikeTableDataset(path, transform=drop_unit_1)
    got, lab = ds[0]
    assert got.dtype.names == ("x", "t") and lab == lab0  # ds[i]: what the transform gives
    ev = ds.events(1)  # events(i): back in the dataset's layout, what replay streams
    ev1 = plain.events(1)
    assert ev.dtype == SPIKES_DTYPE and np.array_equal(ev["t"], ev1["t"][ev1["x"] != 1])
    assert 0 < len(ev) < len(ev1)
    frames = SpikeTableDataset(path, transform=lambda e: np.zeros((2, 3)))[0][0]
    assert frames.shape == (2, 3)


def test_pipeline_labels_tonic_packets_as_it_labels_its_own():
    from dataclasses import replace

    from streamlsm.config import to_dict
    from streamlsm.model.prototypes import PrototypeMatcher
    from streamlsm.pipeline import Pipeline
    from streamlsm.testing import make_bundle, packets_from_samples, random_samples

    cfg = preset("nmnist", n_neurons=64, crop=(0, 0, 34, 34))
    bundle = make_bundle(Reservoir(cfg).n_features, 8, reservoirs={"vision": to_dict(cfg)})
    matcher = PrototypeMatcher(8)
    rng = np.random.default_rng(0)
    for lab in ("a", "b", "c"):
        matcher.add(lab, rng.normal(size=8))
    samples = random_samples(4, DVS_DTYPE, duration_us=20_000, seed=5)
    ours = packets_from_samples(samples, "cam")
    theirs = [replace(p, events=_as(p.events, TONIC_DTYPE)) for p in ours]
    a, b = Pipeline(bundle, matcher), Pipeline(bundle, matcher)
    la, lb = a(ours), b(theirs)
    assert len(la) == 4 and [x.label for x in la] == [x.label for x in lb]
    assert [x.score for x in la] == [x.score for x in lb]
    assert b.stats.rejected_packets == 0
    bad = [replace(p, stream_id="liar", events=np.zeros(1, [("t", "<i8"), ("x", "<i2")]))
           for p in ours[:2]]
    assert b(bad) == [] and b.stats.rejected_packets == 2
