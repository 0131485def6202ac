"""Read noise: counter-based normals and the per-neuron draw vs the per-read definition."""

from __future__ import annotations

import dataclasses

import numpy as np

from streamlsm.events import SPIKES_DTYPE, EventPacket
from streamlsm.reservoir import Reservoir, ReservoirConfig
from streamlsm.reservoir import kernel as k
from streamlsm.reservoir.reservoir import normal_table


def test_counter_based_normals_statistics_and_keys():
    tab = normal_table()
    n = 4000
    out = np.zeros(n, np.float32)
    draws = []
    for b in range(50):
        k.normals(np.uint64(1), np.uint64(7), b, n, tab, out)
        draws.append(out.copy())
    z = np.concatenate(draws).astype(np.float64)
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1.0) < 0.01
    assert abs(np.mean(z ** 4) - 3.0) < 0.1  # Gaussian kurtosis
    assert abs(np.mean(np.abs(z) > 2) - 0.0455) < 0.004
    # same key -> same numbers; other bin, key or seed -> uncorrelated numbers
    again = np.zeros(n, np.float32)
    k.normals(np.uint64(1), np.uint64(7), 3, n, tab, again)
    np.testing.assert_array_equal(again, draws[3])
    for seed, key, b in [(1, 7, 4), (1, 8, 3), (2, 7, 3)]:
        other = np.zeros(n, np.float32)
        k.normals(np.uint64(seed), np.uint64(key), b, n, tab, other)
        assert abs(np.corrcoef(other, draws[3])[0, 1]) < 0.05
    assert abs(np.corrcoef(draws[3][:-1], draws[3][1:])[0, 1]) < 0.05


def test_noise_matches_per_read_definition():
    """decay 0, no spikes: after one bin v = sum_c x_c w_c + noise. The kernel draws one normal per
    neuron with variance eta^2 sum_c x_c^2 w_c^2; the definition reads every cell with a fresh
    w (1 + eta N(0, 1)). Both must have the same mean and spread (here per neuron, many samples)."""
    eta = 0.05
    n_in, N = 3, 64
    rng = np.random.default_rng(0)
    step = 2.0 ** -12
    w_in = (np.round(rng.normal(0, 1, (n_in, N)) / step) * step).astype(np.float32)
    w_rec = np.zeros((N, N), np.float32)
    cfg = ReservoirConfig(modality="neural", layout="spikes", n_inputs=n_in, n_neurons=N, decay=0.0,
                          threshold=1e6, bin_us=100, read_noise=eta, sensor=(n_in, 1), crop=(0, 0, 0, 0))
    res = Reservoir(cfg, weights=(w_in, w_rec))
    ev = np.zeros(4, SPIKES_DTYPE)
    ev["t"] = [0, 10, 20, 30]
    ev["x"] = [0, 2, 2, 2]  # x = [1, 0, 3]
    x = np.array([1.0, 0.0, 3.0])
    reps = 3000
    vs = np.zeros((reps, N))
    for r in range(reps):
        res.feed(EventPacket("n", r, 0, 100, ev, sample_id=r, sample_begin=True))
        vs[r] = res.membrane("n")
    mean = x @ w_in.astype(np.float64)
    sd = eta * np.sqrt((x ** 2) @ (w_in.astype(np.float64) ** 2))
    # per-read Monte Carlo of the definition
    reads = (x[None, :, None] * w_in[None] * (1 + eta * rng.standard_normal((reps, n_in, N)))).sum(1)
    for sample, label in [(vs, "kernel"), (reads, "per-read")]:
        zs = (sample - mean) / sd
        assert abs(zs.mean()) < 0.06, label
        assert abs(zs.std() - 1.0) < 0.04, label
    np.testing.assert_allclose(vs.std(0), reads.std(0), rtol=0.12)
    # noise off -> exactly the mean
    res0 = Reservoir(dataclasses.replace(cfg, read_noise=0.0), weights=(w_in, w_rec))
    res0.feed(EventPacket("n", 0, 0, 100, ev, sample_id=0, sample_begin=True))
    np.testing.assert_array_equal(res0.membrane("n"), mean.astype(np.float32))
