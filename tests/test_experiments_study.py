"""Reservoir-vs-input and device studies: ridge LOO, nested selection, membrane sampling, firing statistics,
breakdown from the paper's sigma, drift of one chip, the cochlea recordings key."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from streamlsm.events import DVS_DTYPE
from streamlsm.experiments.features import (
    Samples,
    encode_cached,
    leaky_trace,
    membrane_samples,
    spike_stats,
    window_ends,
)
from streamlsm.experiments.selection import (
    gram,
    loo_accuracy,
    one_hot,
    ridge_scores,
    select_and_score,
    standardised_gram,
)
from streamlsm.reservoir import DeviceConfig, Reservoir, preset
from streamlsm.reservoir.device import nominal_sigma, signed_conductance
from streamlsm.reservoir.reference import input_frames, reference_run


def _toy(n_per=6, seed=0, classes=("0", "1", "2"), dur=300_000):
    rng = np.random.default_rng(seed)
    ev, durs, lab = [], [], []
    for ci, c in enumerate(classes):
        for _ in range(n_per):
            k = int(rng.integers(200, 400))
            e = np.zeros(k, DVS_DTYPE)
            e["t"] = np.sort(rng.integers(0, dur, k))
            e["x"] = 9 + 5 * ci + rng.integers(0, 5, k)
            e["y"] = 9 + rng.integers(0, 16, k)
            e["p"] = rng.integers(0, 2, k)
            ev.append(e)
            durs.append(dur - int(rng.integers(0, 40_000)))  # unequal bin counts per sample
            lab.append(c)
    return Samples(ev, np.asarray(durs), np.asarray(lab), name="toy")


def _brute_ridge_predict(x_tr, y_tr, x_te, n_classes, lam_rel):
    """Ridge with intercept by the primal normal equations (the obvious reference)."""
    m = x_tr.mean(0)
    xc = x_tr - m
    yt = one_hot(y_tr, n_classes)
    ybar = yt.mean(0)
    scale = (xc * xc).sum() / len(x_tr)
    w = np.linalg.solve(xc.T @ xc + lam_rel * scale * np.eye(x_tr.shape[1]), xc.T @ (yt - ybar))
    return (x_te - m) @ w + ybar


def test_ridge_and_exact_loo_match_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = rng.integers(0, 3, 40)
    x[:, 0] += y  # informative
    g = gram(x)
    tr, te = np.arange(30), np.arange(30, 40)
    for lam in (0.01, 1.0):
        # (the Gram is a float32 product: agreement to ~1e-4 of outputs of order 1)
        np.testing.assert_allclose(ridge_scores(g, y, tr, te, 3, lam), _brute_ridge_predict(x[tr], y[tr], x[te], 3, lam),
                                   rtol=0, atol=2e-4)
    # leave-one-out by refitting without each row, with the penalty scale of the full training part
    for lam in (0.1, 3.0):
        xc = x[tr] - x[tr].mean(0)
        scale_full = (xc * xc).sum() / len(tr)
        hits = 0
        for i in tr:
            keep = tr[tr != i]
            xk = x[keep]
            mk = xk.mean(0)
            yt = one_hot(y[keep], 3)
            w = np.linalg.solve((xk - mk).T @ (xk - mk) + lam * scale_full * np.eye(6), (xk - mk).T @ (yt - yt.mean(0)))
            hits += int(np.argmax((x[i] - mk) @ w + yt.mean(0)) == y[i])
        assert loo_accuracy(g, y, tr, 3, (lam,))[0] == pytest.approx(hits / len(tr))


def test_nested_selection_picks_the_informative_set_and_never_looks_at_the_test_rows():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 30)
    good = rng.normal(size=(90, 4)) + 4.0 * one_hot(y, 3) @ rng.normal(size=(3, 4))
    noise = rng.normal(size=(90, 40))
    tr, te = np.arange(0, 90, 2), np.arange(1, 90, 2)
    out = select_and_score(iter([("noise", noise), ("good", good)]), y, [(tr, te)], 3)
    assert out[0]["chosen"] == "good" and out[0]["accuracy"] > 0.9
    assert out[0]["candidates"]["noise"]["accuracy"] < 0.6
    # the choice and its score do not change when the test rows' labels change
    y2 = y.copy()
    y2[te] = (y2[te] + 1) % 3
    again = select_and_score(iter([("noise", noise), ("good", good)]), y2, [(tr, te)], 3)
    assert again[0]["chosen"] == "good" and again[0]["lam"] == out[0]["lam"]
    assert again[0]["accuracy"] < 0.1


def test_standardisation_uses_the_training_rows_only():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    tr = np.arange(10)
    g = standardised_gram(x, tr)
    x2 = x.copy()
    x2[10:] *= 100.0  # test rows scaled: their own rows change, the training block does not
    g2 = standardised_gram(x2, tr)
    np.testing.assert_allclose(g[:10, :10], g2[:10, :10], rtol=1e-5)
    z = (x[:10] - x[:10].mean(0)) / x[:10].std(0)
    np.testing.assert_allclose(g[:10, :10], z @ z.T, rtol=1e-4, atol=1e-4)


def test_window_ends_are_the_feature_windows_of_the_reservoir():
    s = _toy(n_per=2)
    cfg = preset("nmnist", polarity="both", feature_windows=5)
    res = Reservoir(cfg)
    feats = res.encode(s.events, s.durations)
    nb = -(-s.durations // cfg.bin_us)
    ends = window_ends(nb, 5)
    for i in range(len(s)):
        frames = input_frames(s.events[i], int(s.durations[i]), res.map, cfg.bin_us, cfg.clip)
        _, spikes = reference_run(frames, res.w_in, res.w_rec, cfg.decay, cfg.threshold)
        starts = np.r_[0, ends[i, :-1]]
        want = np.concatenate([spikes[a:b].sum(0) for a, b in zip(starts, ends[i], strict=True)])
        np.testing.assert_array_equal(feats[i], want)


def test_membrane_samples_follow_the_equations_at_the_window_ends():
    s = _toy(n_per=2)
    cfg = preset("nmnist", polarity="both")
    res = Reservoir(cfg)
    m = membrane_samples(cfg, s, 4).reshape(len(s), 4, cfg.n_neurons)
    nb = -(-s.durations // cfg.bin_us)
    ends = window_ends(nb, 4)
    for i in range(len(s)):
        frames = input_frames(s.events[i], int(s.durations[i]), res.map, cfg.bin_us, cfg.clip)
        _, spikes = reference_run(frames, res.w_in, res.w_rec, cfg.decay, cfg.threshold)
        v = np.zeros(cfg.n_neurons, np.float64)
        sp = np.zeros(cfg.n_neurons, bool)
        trace = []
        for t in range(len(frames)):
            v = cfg.decay * v * (~sp) + frames[t] @ res.w_in.astype(np.float64) + sp @ res.w_rec.astype(np.float64)
            sp = spikes[t]
            trace.append(v.copy())
        want = np.stack([trace[e - 1] for e in ends[i]])
        np.testing.assert_allclose(m[i], want, rtol=1e-4, atol=1e-4)
    assert np.abs(m).max() > 0.5


def test_membrane_samples_with_read_noise_use_the_encode_noise():
    s = _toy(n_per=2)
    cfg = preset("nmnist", polarity="both", read_noise=0.2)
    m1 = membrane_samples(cfg, s, 1)
    # the same run through Reservoir.feed whole, sample id as noise key
    res = Reservoir(cfg)
    from streamlsm.events import EventPacket

    for i, ev in enumerate(s.events):
        end = int(-(-s.durations[i] // cfg.bin_us) * cfg.bin_us)
        inside = ev[ev["t"] < s.durations[i]]  # events after the duration are outside the sample
        res.feed(EventPacket(f"x{i}", 0, 0, end, inside, sample_id=i, sample_begin=True))
        np.testing.assert_array_equal(m1[i], res.membrane(f"x{i}"))
    assert not np.array_equal(m1, membrane_samples(dataclasses.replace(cfg, read_noise=0.0), s, 1))


def test_leaky_trace_and_spike_stats_by_hand():
    b = np.zeros((2, 4, 1), np.float32)
    b[0, :, 0] = [1, 0, 2, 0]
    b[1, :2, 0] = [3, 1]
    tr = leaky_trace(b, np.array([4, 2]), 0.5, 2)
    np.testing.assert_allclose(tr[0], [0.5, 1.125])  # u = 1, 0.5, 2.25, 1.125; spans end at bins 2 and 4
    np.testing.assert_allclose(tr[1], [3.0, 2.5])
    cfg = preset("nmnist", n_neurons=2, bin_us=1000)
    counts = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], np.float32)  # 2 windows x 2 neurons
    st = spike_stats(counts, cfg, np.array([2000, 4000]))
    assert st["rate"] == pytest.approx((2 / (2 * 2) + 0) / 2)
    assert st["silent"] == 0.5 and st["silent_in_sample"] == 0.75


def test_breakdown_from_the_paper_sigma():
    from streamlsm.experiments.device import PAPER_SIGMA_US, breakdown_for_sigma, nominal

    for signed in ("reference", "differential"):
        f = breakdown_for_sigma(PAPER_SIGMA_US, signed)
        assert nominal_sigma(DeviceConfig(mode="rram", signed=signed, breakdown=f)) == pytest.approx(6.6, rel=1e-9)
        assert nominal(signed).breakdown == pytest.approx(f, abs=1e-4)
    assert breakdown_for_sigma(6.6, "reference") == pytest.approx(0.2965, abs=1e-4)
    assert breakdown_for_sigma(6.6, "differential") == pytest.approx(0.1194, abs=1e-4)


@pytest.mark.parametrize("signed", ["reference", "differential"])
def test_one_chip_read_later_differs_only_by_drift(signed):
    dev = DeviceConfig(mode="rram", signed=signed, breakdown=0.3, drift_nu=0.05, d2d=0.1, drift_time_s=1.0)
    g0 = signed_conductance(50, 20, dev, np.random.default_rng(4))
    g1 = signed_conductance(50, 20, dataclasses.replace(dev, drift_time_s=1e6), np.random.default_rng(4))
    np.testing.assert_allclose(g1, g0 * 1e6 ** -0.05, rtol=1e-9, atol=1e-12)  # reference cells drift too
    spread = dataclasses.replace(dev, drift_nu_std=0.02)
    a = signed_conductance(50, 20, spread, np.random.default_rng(4))
    b = signed_conductance(50, 20, dataclasses.replace(spread, drift_time_s=1e6), np.random.default_rng(4))
    assert not np.allclose(b, a * 1e6 ** -0.05) and np.abs(b).mean() < np.abs(a).mean()


def test_device_sweep_point_and_crossing(tmp_path):
    from streamlsm.experiments.device import _crossing, _score

    s = _toy(n_per=8)
    # the toy samples are sparse: a larger weight scale makes the reservoir fire on them
    cfg = preset("nmnist", polarity="0", feature_windows=5, weight_scale=1.5, rec_scale=0.3)
    r = _score(s, cfg, 0, 2, tmp_path)
    assert r["accuracy"] > 0.9 and 0.0 < r["rate"] < 1.0
    x0 = encode_cached(cfg, s, tmp_path)
    assert r == _score(s, cfg, 0, 2, tmp_path) and x0.shape == (len(s), 1000)
    # trained on one chip, scored on the same features: the same as without a training config
    assert _score(s, cfg, 0, 2, tmp_path, train_cfg=cfg)["accuracy"] == r["accuracy"]
    sweep = {"arrangements": {"a": [{"x": 0.0, "accuracy": {"mean": 0.9}}, {"x": 0.2, "accuracy": {"mean": 0.9}},
                                    {"x": 0.4, "accuracy": {"mean": 0.7}}]}}
    assert _crossing(sweep, "a", 0.8) == pytest.approx(0.3)
    assert _crossing(sweep, "a", 0.5) is None


def test_recordings_key_follows_the_recordings(tmp_path):
    from streamlsm.cli._experiment_data import recordings_key

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d, payload in ((a, b"one"), (b, b"two")):
        (d / "0_x_0.wav").write_bytes(payload)
        (d / "1_x_0.wav").write_bytes(b"same")
    assert recordings_key(a) != recordings_key(b)  # as many recordings, other content
    (b / "0_x_0.wav").write_bytes(b"one")
    os.utime(b / "0_x_0.wav", (1, 1))
    assert recordings_key(a) == recordings_key(b)  # same recordings, whatever their times
    (b / "2_x_0.wav").write_bytes(b"more")
    assert recordings_key(a) != recordings_key(b)
