"""RRAM device model: conductance histogram vs priors, signed weights, faults, drift, grid, export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamlsm.errors import ConfigError
from streamlsm.reservoir import DeviceConfig, Reservoir, preset
from streamlsm.reservoir.device import (
    conductances,
    export_npz,
    grid_step,
    make_weights,
    nominal_sigma,
    signed_conductance,
)

RRAM = DeviceConfig(mode="rram", breakdown=0.3)


def test_conductance_histogram_matches_priors():
    g = conductances((400, 400), RRAM, np.random.default_rng(0))
    on = g > 5.0
    assert abs(on.mean() - 0.3) < 0.01
    assert abs(g[on].mean() - 14.25) < 0.05 and abs(g[on].std() - 2.46) < 0.05
    assert abs(g[~on].mean() - 0.1) < 0.005
    hist, edges = np.histogram(g[on], bins=40, range=(4, 25))
    centres = (edges[:-1] + edges[1:]) / 2
    pdf = np.exp(-0.5 * ((centres - 14.25) / 2.46) ** 2) / (2.46 * np.sqrt(2 * np.pi))
    expected = pdf * on.sum() * (edges[1] - edges[0])
    assert np.abs(hist - expected).max() < 0.05 * expected.max() + 60


@pytest.mark.parametrize("signed", ["differential", "reference"])
def test_signed_conductance_is_zero_mean_with_nominal_sigma(signed):
    dev = dataclasses.replace(RRAM, signed=signed, breakdown=0.5)
    g = signed_conductance(300, 300, dev, np.random.default_rng(1))
    assert abs(g.mean()) < 0.05 * nominal_sigma(dev)
    assert abs(g.std() / nominal_sigma(dev) - 1) < 0.02
    assert 6.0 < nominal_sigma(dataclasses.replace(dev, signed="reference")) < 8.0  # ~6.6 uS prior


def test_weights_on_grid_seeded_and_scaled():
    w_in, w_rec = make_weights(256, 200, 0.35, 0.2, DeviceConfig(), seed=5)
    assert w_in.dtype == np.float32 and w_in.shape == (256, 200) and w_rec.shape == (200, 200)
    step = grid_step(float(max(np.abs(w_in).max(), np.abs(w_rec).max())))
    assert np.all(np.mod(w_in / step, 1) == 0) and np.all(np.mod(w_rec / step, 1) == 0)
    assert abs(w_in.std() - 0.35) < 0.01 and abs(w_rec.std() - 0.2) < 0.01
    again = make_weights(256, 200, 0.35, 0.2, DeviceConfig(), seed=5)
    np.testing.assert_array_equal(again[0], w_in)
    other = make_weights(256, 200, 0.35, 0.2, DeviceConfig(), seed=6)
    assert not np.array_equal(other[0], w_in)
    fixed = make_weights(8, 4, 1.0, 1.0, DeviceConfig(grid_bits=12), seed=0)[0]
    assert np.all(np.mod(fixed * 4096, 1) == 0)


def test_sparsity_faults_and_drift():
    dense = make_weights(64, 100, 1.0, 1.0, dataclasses.replace(RRAM, breakdown=0.05), seed=0)[0]
    # differential pairs of mostly pristine cells: most weights sit near zero
    assert np.mean(np.abs(dense) < 0.1) > 0.8
    g = conductances((200, 200), dataclasses.replace(RRAM, stuck_off=0.1, stuck_on=0.2), np.random.default_rng(0))
    assert abs(np.mean(g == RRAM.g_off_us) - 0.1) < 0.01
    assert abs(np.mean(g == RRAM.g_on_us) - 0.2) < 0.01
    g0 = conductances((100, 100), RRAM, np.random.default_rng(3))
    g1 = conductances((100, 100), dataclasses.replace(RRAM, drift_nu=0.05, drift_time_s=1000.0),
                      np.random.default_rng(3))
    np.testing.assert_allclose(g1, g0 * 1000.0 ** -0.05, rtol=1e-9)
    d = conductances((200, 200), dataclasses.replace(RRAM, d2d=0.1), np.random.default_rng(3))
    assert d.std() > g0.std() * 0.99
    # multiplicative log-normal d2d of unit mean: on-cell mean kept, spread from the moments
    on = d > 5.0
    assert abs(d[on].mean() - RRAM.g_on_us) < 0.1
    d2d_sd = np.sqrt((RRAM.g_on_us ** 2 + RRAM.g_on_std_us ** 2) * np.exp(0.1 ** 2) - RRAM.g_on_us ** 2)
    assert abs(d[on].std() - d2d_sd) < 0.06 and d[on].std() > RRAM.g_on_std_us + 0.25


def test_two_blocks_share_one_crossbar():
    dev_a = DeviceConfig(mode="rram", crossbar_rows=456 + 264, row_offset=0)
    dev_b = dataclasses.replace(dev_a, row_offset=456)
    wa_in, wa_rec = make_weights(256, 200, 1.0, 1.0, dev_a, seed=9)
    wb_in, wb_rec = make_weights(64, 200, 1.0, 1.0, dev_b, seed=9)
    assert wa_in.shape == (256, 200) and wb_in.shape == (64, 200)
    assert not np.array_equal(wa_in[:64], wb_in)
    # block b is rows 456.. of the one crossbar sampled from the seed (to within the weight grid)
    g = signed_conductance(456 + 264, 200, dev_b, np.random.default_rng(9)) / nominal_sigma(dev_b)
    half = grid_step(float(np.abs(g[456:]).max())) / 2
    assert np.abs(wb_in - g[456:520]).max() <= half and np.abs(wb_rec - g[520:]).max() <= half
    assert np.abs(wa_in - g[:256]).max() <= grid_step(float(np.abs(g[:456]).max())) / 2
    with pytest.raises(ConfigError):
        make_weights(64, 200, 1.0, 1.0, dataclasses.replace(dev_a, row_offset=600), seed=9)


def test_rram_reservoir_runs_and_export(tmp_path):
    cfg = preset("nmnist", n_neurons=32, device=RRAM)
    res = Reservoir(cfg)
    assert res.w_in.shape == (256, 32)
    path = export_npz(tmp_path / "xbar.npz", RRAM, 456, 201, seed=1, eta=0.05)
    with np.load(path, allow_pickle=False) as z:
        assert z["conductance_us"].shape == (456, 201)
        assert z["hist_counts"].sum() == 456 * 201
        assert abs(float(z["read_rel_std"]) - 0.05) < 0.005
        assert str(z["mode"]) == "rram"


def test_device_validation():
    with pytest.raises(ConfigError):
        DeviceConfig(breakdown=1.5).validate()
    with pytest.raises(ConfigError):
        DeviceConfig(stuck_off=0.7, stuck_on=0.7).validate()


def test_programming_voltage_sets_breakdown_fraction():
    from streamlsm.reservoir.device import breakdown_fraction

    dev = DeviceConfig(mode="rram", program_v=3.2)
    assert abs(breakdown_fraction(dev) - (1 - np.exp(-1))) < 1e-12
    low, high = (breakdown_fraction(dataclasses.replace(dev, program_v=v)) for v in (2.5, 3.6))
    assert low < 0.2 < 0.8 < high
    g = conductances((300, 300), dataclasses.replace(dev, program_v=2.9), np.random.default_rng(0))
    assert abs((g > 5).mean() - breakdown_fraction(dataclasses.replace(dev, program_v=2.9))) < 0.01
    assert breakdown_fraction(DeviceConfig(breakdown=0.3)) == 0.3


def test_plot_export(tmp_path):
    pytest.importorskip("matplotlib")
    from streamlsm.reservoir.device import plot_npz

    path = export_npz(tmp_path / "x.npz", RRAM, 64, 33, seed=2, eta=0.02)
    png = plot_npz(path, tmp_path / "x.png")
    assert png.stat().st_size > 1000
