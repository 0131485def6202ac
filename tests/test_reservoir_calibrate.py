"""Calibration helper: bisection on the weight scale reaches the target firing rate; rate coding."""

from __future__ import annotations

import numpy as np

from streamlsm.events import SPIKES_DTYPE
from streamlsm.reservoir import ReservoirConfig
from streamlsm.reservoir.calibrate import calibrate, firing_rate, rate_code


def poisson_trials(rng, n, units, rate_hz, dur_us):
    out = []
    for _ in range(n):
        k = rng.poisson(rate_hz * units * dur_us * 1e-6)
        ev = np.zeros(k, SPIKES_DTYPE)
        ev["t"] = np.sort(rng.integers(0, dur_us, k))
        ev["x"] = rng.integers(0, units, k)
        out.append(ev)
    return out


def test_calibrate_reaches_target_rate():
    cfg = ReservoirConfig(modality="neural", layout="spikes", n_inputs=32, n_neurons=64, decay=0.9,
                          threshold=1.0, bin_us=5000, weight_scale=1.0, rec_scale=0.5, sensor=(32, 1),
                          crop=(0, 0, 0, 0))
    samples = poisson_trials(np.random.default_rng(0), 8, 32, 40.0, 300_000)
    out, rep = calibrate(cfg, samples, [300_000] * 8, target=0.05)
    assert abs(rep["rate"] - 0.05) < 0.01
    # stopped by the tolerance (rel_tol 5%), not by max_iter, at the scale it returns (4 digits)
    assert rep["iterations"] < 30 and abs(rep["trace"][-1][1] - 0.05) <= 0.05 * 0.05
    assert abs(rep["rate"] - 0.05) <= 0.05 * 0.05 * 1.5
    assert abs(out.rec_scale / out.weight_scale - 0.5) < 0.01
    assert abs(firing_rate(out, samples, [300_000] * 8)["rate"] - rep["rate"]) < 1e-12


def test_rate_code():
    img = np.zeros((28, 28))
    img[10:14, 10:14] = 1.0
    ev = rate_code(img, steps=50, step_us=1000, spikes_per_pixel=20, seed=1)
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() < 50_000
    assert set(zip(ev["x"].tolist(), ev["y"].tolist(), strict=True)) <= {(x, y) for x in range(10, 14) for y in range(10, 14)}
    assert abs(len(ev) / 16 - 20) < 3
