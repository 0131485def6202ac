"""Input maps per modality: crop, pooling, polarity, cochlea ears/polarity, neural units; real data."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.errors import ConfigError
from streamlsm.events import COCHLEA_DTYPE, SPIKES_DTYPE
from streamlsm.reservoir import Reservoir, preset
from streamlsm.reservoir.mapping import build_map


def channel(imap, x, y=0, p=0):
    if not (0 <= x < imap.xm and 0 <= y < imap.ym and 0 <= p < imap.pm):
        return -1
    return int(imap.lut[(y * imap.xm + x) * imap.pm + p])


def test_nmnist_centre_crop_polarity_zero():
    m = build_map("dvs", sensor=(34, 34), crop=(9, 9, 16, 16), polarity="0")
    assert m.n_inputs == 256
    assert channel(m, 9, 9, 0) == 0 and channel(m, 24, 9, 0) == 15 and channel(m, 9, 10, 0) == 16
    assert channel(m, 24, 24, 0) == 255
    assert channel(m, 8, 9, 0) == -1 and channel(m, 25, 24, 0) == -1 and channel(m, 9, 9, 1) == -1
    assert sorted(m.lut[m.lut >= 0].tolist()) == list(range(256))


def test_full_sensor_pooled_both_polarities():
    m = build_map("dvs", sensor=(34, 34), crop=(0, 0, 0, 0), pool=2, polarity="both")
    assert m.n_inputs == 17 * 17 * 2
    assert channel(m, 0, 0, 0) == channel(m, 1, 1, 0) == 0
    assert channel(m, 2, 0, 0) == 1 and channel(m, 0, 2, 0) == 17
    assert channel(m, 0, 0, 1) == 289
    merged = build_map("dvs", sensor=(34, 34), crop=(0, 0, 0, 0), polarity="merge")
    assert merged.n_inputs == 34 * 34 and channel(merged, 5, 7, 0) == channel(merged, 5, 7, 1)


def test_cochlea_fold_and_split():
    fold = build_map("cochlea", sensor=(64, 1), stereo="fold", polarity="merge")
    assert fold.n_inputs == 64
    assert channel(fold, 3, 0, 0) == channel(fold, 3, 0, 1) == channel(fold, 67, 0, 1) == 3
    split = build_map("cochlea", sensor=(64, 1), stereo="split", polarity="both")
    assert split.n_inputs == 256
    assert {channel(split, 3, 0, 0), channel(split, 67, 0, 0), channel(split, 3, 0, 1),
            channel(split, 67, 0, 1)} == {3, 67, 131, 195}
    assert channel(fold, 128, 0, 0) == -1


def test_neural_units_with_offset():
    m = build_map("spikes", sensor=(10, 1), n_inputs=10, unit_offset=1)
    assert m.n_inputs == 10 and channel(m, 0) == -1 and channel(m, 1) == 0 and channel(m, 10) == 9
    assert channel(m, 11) == -1


def test_bad_mapping_options():
    with pytest.raises(ConfigError):
        build_map("dvs", sensor=(34, 34), crop=(30, 30, 16, 16))
    with pytest.raises(ConfigError):
        build_map("dvs", sensor=(34, 34), crop=(0, 0, 0, 0), polarity="x")
    with pytest.raises(ConfigError):
        build_map("nope", sensor=(1, 1))


def test_cochlea_and_neural_events_through_reservoir():
    res = Reservoir(preset("cochlea", n_neurons=16))
    ev = np.zeros(3, COCHLEA_DTYPE)
    ev["t"], ev["x"], ev["p"] = [0, 10, 20], [1, 200, 65], [1, 0, 0]
    res.encode([ev])
    assert res.last_encode_stats == {"events": 3, "dropped": 1, "late": 0}
    nres = Reservoir(preset("neural", n_neurons=16))
    sp = np.zeros(2, SPIKES_DTYPE)
    sp["t"], sp["x"] = [0, 5], [191, 192]
    nres.encode([sp])
    assert nres.last_encode_stats["dropped"] == 1


def test_real_cochlea_and_neural_rates(real_data):
    """The calibrated presets fire at a useful rate on the real recordings they were calibrated on."""
    from streamlsm_sources.neural import AuditoryCortexDataset

    ds = AuditoryCortexDataset(real_data / "neural" / "auditory_cortex", role="train", session="D_A_I")
    idx = list(range(0, len(ds), max(1, len(ds) // 12)))[:12]
    cfg = preset("neural", n_neurons=512)
    res = Reservoir(cfg)
    feats = res.encode([ds.events(i) for i in idx], [ds.duration_us(i) for i in idx])
    rate = feats.sum() / (len(idx) * cfg.n_neurons * (500_000 // cfg.bin_us))
    assert 0.005 < rate < 0.5
    raw = np.fromfile(real_data / "ntidigits" / "NTIDIGITS_1.bs1", np.uint8).reshape(-1, 5).astype(np.int64)
    ev = np.zeros(len(raw), COCHLEA_DTYPE)
    ev["x"], ev["p"] = (raw[:, 0] << 8) | raw[:, 1], raw[:, 2] >> 7
    ev["t"] = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    ev = ev[np.argsort(ev["t"], kind="stable")]
    cfg = preset("ntidigits")
    f = Reservoir(cfg).encode([ev])[0]
    bins = -(-(int(ev["t"][-1]) + 1) // cfg.bin_us)
    assert 0.02 < f.sum() / (cfg.n_neurons * bins) < 0.15
