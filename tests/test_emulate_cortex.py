"""Intracortical handwriting emulator: directional tuning, rates, drift, determinism, binning."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.emulate.cortex import Array, CortexConfig, bin_counts, pen_velocity
from streamlsm.emulate.glyphs import LETTERS
from streamlsm.events import SPIKES_DTYPE

pytest.importorskip("matplotlib")


def test_unit_fires_most_for_its_preferred_direction():
    arr = Array(CortexConfig(n_units=8), seed=3)
    arr.speed_gain[:] = 0.0
    arr.onset[:] = 0.0
    rng = np.random.default_rng(0)
    n_steps, lag = 2000, CortexConfig().lag_us // 1000
    counts = np.zeros((8, 8))
    angles = np.arange(8) * np.pi / 4
    for k, ang in enumerate(angles):
        # a straight stroke at constant velocity in direction ang (y down -> minus sine)
        vel = np.zeros((n_steps, 2))
        vel[500:1500] = 4.0 / 1000 * np.array([np.cos(ang), -np.sin(ang)])
        arr_rates = arr.baseline[None, :] + (vel / (4.0 / 1000)) @ np.stack(
            [arr.gain * np.cos(arr.preferred), -arr.gain * np.sin(arr.preferred)])
        from streamlsm.emulate.cortex import _poisson

        for _ in range(20):
            ev = _poisson(np.clip(arr_rates, 0, 200), 1000, rng)
            counts[k] += np.bincount(ev["x"][(ev["t"] > 500_000 + lag) & (ev["t"] < 1_500_000)],
                                     minlength=8)
    best = angles[counts.argmax(axis=0)]
    err = np.angle(np.exp(1j * (best - arr.preferred)))
    assert np.all(np.abs(err) <= np.pi / 4 + 1e-9)


def test_trial_spikes_rates_and_modulation():
    arr = Array(seed=0)
    rng = np.random.default_rng(1)
    ev = [arr.trial(c, rng) for c in "abcz"]
    for e in ev:
        assert e.dtype == SPIKES_DTYPE
        assert np.all(np.diff(e["t"]) >= 0) and e["t"].max() < 2_000_000
        assert e["x"].max() < 192
        rate = len(e) / 2.0 / 192
        assert 3 < rate < 40  # Hz per unit, in the range of threshold crossings
    # writing modulates the population: the rate profiles of two letters differ
    ca, cz = (bin_counts(e, 192, 2_000_000, 100_000).astype(float) for e in (ev[0], ev[3]))
    assert np.abs(ca - cz).sum() > 0.2 * ca.sum()


def test_velocity_and_drift():
    vel = pen_velocity("l", 100, 10, 50)
    assert vel.shape == (100, 2) and not vel[:10].any() and not vel[61:].any()
    arr = Array(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        arr.advance(rng)
    assert 0.05 < np.std(arr.drift) < 0.6


def test_determinism_and_letters():
    def run():
        arr = Array(seed=5)
        rng = np.random.default_rng(9)
        return b"".join(arr.trial(c, rng).tobytes() for c in LETTERS[:5])

    assert run() == run()


def test_bin_counts_sum_and_shape():
    ev = np.zeros(5, dtype=SPIKES_DTYPE)
    ev["t"] = [0, 9_999, 10_000, 25_000, 1_999_999]
    ev["x"] = [0, 0, 1, 2, 3]
    c = bin_counts(ev, 4, 2_000_000)
    assert c.shape == (200, 4) and c.sum() == 5
    assert c[0, 0] == 2 and c[1, 1] == 1 and c[2, 2] == 1 and c[199, 3] == 1
