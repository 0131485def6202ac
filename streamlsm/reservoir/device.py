"""Resistive-memory (RRAM) crossbar model: conductances after stochastic breakdown -> signed weights.

Pure numpy with an explicit ``np.random.Generator`` (seeded from the config). Priors (PAPER.md):
broken-down cells ~ Normal(14.25, 2.46) uS, pristine cells ~0.1 uS; the fraction of broken-down
cells (``breakdown``, the sparsity; or ``program_v`` through Weibull breakdown statistics) decides
the weight density.
Signed weights come from differential pairs (G+ - G-) or a reference column holding a mid-level
conductance (the 201st column of a 456x201 crossbar). Options: device-to-device variation
(log-normal, multiplicative), stuck-at-off/on faults, power-law conductance drift (the reference
column drifts too; t0 = 1 s after programming), an "ideal"
Gaussian mode equal to the paper's software model, one crossbar shared by two modality blocks
(``crossbar_rows`` / ``row_offset``). Weights are normalised by the nominal signed-conductance
standard deviation (so ``weight_scale`` means the same in every mode) and rounded to a grid of
2^-k (an ADC's levels) so that current sums are exact in any order. Read noise (eta, fresh at every
read) is applied by the kernel, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError

__all__ = ["DeviceConfig", "breakdown_fraction", "conductances", "signed_conductance", "nominal_sigma", "make_weights",
           "grid_step", "export_npz", "plot_npz", "read_noise_stats"]


@dataclass(frozen=True)
class DeviceConfig:
    """RRAM crossbar parameters (conductances in microsiemens)."""

    mode: Literal["ideal", "rram"] = "ideal"
    breakdown: float = 0.5
    program_v: float = 0.0  # > 0: breakdown fraction from the programming voltage (Weibull)
    weibull_v63: float = 3.2  # voltage at which 63% of the cells break down
    weibull_beta: float = 8.0  # Weibull slope of the breakdown statistics
    g_on_us: float = 14.25
    g_on_std_us: float = 2.46
    g_off_us: float = 0.1
    g_off_std_us: float = 0.02
    signed: Literal["differential", "reference"] = "differential"
    d2d: float = 0.0
    stuck_off: float = 0.0
    stuck_on: float = 0.0
    drift_nu: float = 0.0
    drift_nu_std: float = 0.0
    drift_time_s: float = 0.0
    grid_bits: int = 0
    crossbar_rows: int = 0
    row_offset: int = 0

    def validate(self) -> None:
        for name in ("breakdown", "stuck_off", "stuck_on"):
            val = getattr(self, name)
            if not 0.0 <= val <= 1.0:
                raise ConfigError(name, f"must be in [0, 1], got {val}")
        if self.stuck_off + self.stuck_on > 1.0:
            raise ConfigError("stuck_on", "stuck_off + stuck_on must be <= 1")
        for name in ("g_on_us", "g_on_std_us", "g_off_us", "g_off_std_us", "d2d", "drift_nu_std",
                     "drift_time_s"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.grid_bits <= 24:
            raise ConfigError("grid_bits", f"must be in 0..24 (0 = automatic), got {self.grid_bits}")
        if self.program_v < 0 or self.weibull_v63 <= 0 or self.weibull_beta <= 0:
            raise ConfigError("program_v", "program_v must be >= 0, weibull_v63 and weibull_beta > 0")
        if self.crossbar_rows < 0 or self.row_offset < 0:
            raise ConfigError("crossbar_rows", "crossbar_rows and row_offset must be >= 0")


def breakdown_fraction(dev: DeviceConfig) -> float:
    """Fraction of broken-down cells: ``breakdown``, or from the programming voltage by Weibull
    breakdown statistics F(V) = 1 - exp(-(V / V63)^beta) when ``program_v`` > 0."""
    if dev.program_v > 0:
        return 1.0 - math.exp(-((dev.program_v / dev.weibull_v63) ** dev.weibull_beta))
    return dev.breakdown


def conductances(shape: tuple[int, int], dev: DeviceConfig, rng: np.random.Generator) -> np.ndarray:
    """Conductances (uS) of a crossbar after breakdown, faults, variation and drift."""
    broken = rng.random(shape) < breakdown_fraction(dev)
    g = np.where(broken, rng.normal(dev.g_on_us, dev.g_on_std_us, shape),
                 rng.normal(dev.g_off_us, dev.g_off_std_us, shape))
    if dev.d2d > 0:
        g = g * rng.lognormal(-0.5 * dev.d2d ** 2, dev.d2d, shape)
    if dev.stuck_off > 0 or dev.stuck_on > 0:
        u = rng.random(shape)
        g = np.where(u < dev.stuck_off, dev.g_off_us, g)
        g = np.where((u >= dev.stuck_off) & (u < dev.stuck_off + dev.stuck_on), dev.g_on_us, g)
    if dev.drift_nu > 0 or dev.drift_nu_std > 0:
        g = g * _drift_factor(shape, dev, rng)
    return np.clip(g, 0.0, None)


def _drift_factor(shape: tuple[int, int], dev: DeviceConfig, rng: np.random.Generator) -> np.ndarray:
    """(t / t0)^-nu with t0 = 1 s, nu ~ Normal(drift_nu, drift_nu_std) >= 0 per cell. The exponents are
    drawn whenever drift is configured, whatever ``drift_time_s`` is, so that one chip (one seed) read
    at two times differs only by the drift (a readout trained at t0 = 1 s can be scored at t)."""
    nu = np.clip(rng.normal(dev.drift_nu, dev.drift_nu_std, shape), 0.0, None)
    return max(dev.drift_time_s, 1.0) ** (-nu)


def _cell_moments(dev: DeviceConfig) -> tuple[float, float]:
    f = breakdown_fraction(dev)
    mean = f * dev.g_on_us + (1 - f) * dev.g_off_us
    second = f * (dev.g_on_us ** 2 + dev.g_on_std_us ** 2) + (1 - f) * (dev.g_off_us ** 2 + dev.g_off_std_us ** 2)
    return mean, max(second - mean ** 2, 0.0)


def nominal_sigma(dev: DeviceConfig) -> float:
    """Standard deviation (uS) of the signed conductance of the nominal device (no faults)."""
    if dev.mode == "ideal":
        return 1.0
    _, var = _cell_moments(dev)
    return math.sqrt(2 * var) if dev.signed == "differential" else math.sqrt(var)


def signed_conductance(rows: int, cols: int, dev: DeviceConfig, rng: np.random.Generator) -> np.ndarray:
    """Signed conductances (uS; unit normals in "ideal" mode) of a rows x cols weight block."""
    if dev.mode == "ideal":
        return rng.standard_normal((rows, cols))
    if dev.signed == "differential":
        return conductances((rows, cols), dev, rng) - conductances((rows, cols), dev, rng)
    g = conductances((rows, cols), dev, rng)
    mean, _ = _cell_moments(dev)
    # reference column: one mid-level cell per row (programmed to the mean, with d2d variation)
    ref = np.full((rows, 1), mean)
    if dev.d2d > 0:
        ref = ref * rng.lognormal(-0.5 * dev.d2d ** 2, dev.d2d, (rows, 1))
    if dev.drift_nu > 0 or dev.drift_nu_std > 0:  # the reference cells drift by the same law
        ref = ref * _drift_factor((rows, 1), dev, rng)
    return g - ref


def grid_step(max_abs: float, grid_bits: int = 0) -> float:
    """The weight grid 2^-k: fixed k, or automatic (the largest weight spans ~2^16 levels)."""
    if grid_bits:
        return 2.0 ** -grid_bits
    if max_abs <= 0:
        return 2.0 ** -12
    return 2.0 ** (math.ceil(math.log2(max_abs)) - 16)


def make_weights(n_inputs: int, n_neurons: int, weight_scale: float, rec_scale: float,
                 dev: DeviceConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(W_in (n_inputs, N), W_rec (N, N)) float32 on a 2^-k grid, from one seed.

    Rows are the crossbar's input rows then its recurrent rows; with ``crossbar_rows`` > 0 the whole
    crossbar is sampled and this block's rows taken from ``row_offset`` (two modalities, one chip).
    """
    rows = n_inputs + n_neurons
    total = dev.crossbar_rows or rows
    if dev.row_offset + rows > total:
        raise ConfigError("device.crossbar_rows", f"{total} rows cannot hold rows {dev.row_offset}..{dev.row_offset + rows}")
    rng = np.random.default_rng(seed)
    g = signed_conductance(total, n_neurons, dev, rng)[dev.row_offset:dev.row_offset + rows]
    g = g / nominal_sigma(dev)
    w_in = g[:n_inputs] * weight_scale
    w_rec = g[n_inputs:] * rec_scale
    step = grid_step(max(float(np.abs(w_in).max(initial=0)), float(np.abs(w_rec).max(initial=0))),
                     dev.grid_bits)
    w_in = (np.round(w_in / step) * step).astype(np.float32)
    w_rec = (np.round(w_rec / step) * step).astype(np.float32)
    return np.ascontiguousarray(w_in), np.ascontiguousarray(w_rec)


def read_noise_stats(weights: np.ndarray, eta: float, reads: int, rng: np.random.Generator) -> dict:
    """Monte-Carlo of the per-read definition w_read = w (1 + eta N(0,1)) on a sample of cells."""
    w = weights.ravel()
    idx = rng.choice(w.size, size=min(w.size, 256), replace=False)
    cells = w[idx].astype(np.float64)
    reads_ = cells[None, :] * (1 + eta * rng.standard_normal((reads, cells.size)))
    nz = cells != 0
    rel = (reads_[:, nz] - cells[nz]) / cells[nz]
    return {"eta": eta, "reads": reads, "rel_mean": float(rel.mean()) if rel.size else 0.0,
            "rel_std": float(rel.std()) if rel.size else 0.0}


def export_npz(path: str | Path, dev: DeviceConfig, rows: int, cols: int, seed: int,
               eta: float = 0.0, bins: int = 100) -> Path:
    """Save a crossbar's conductance map, its histogram and read-noise statistics (npz, no pickle)."""
    rng = np.random.default_rng(seed)
    if dev.mode == "ideal":
        g = signed_conductance(rows, cols, dev, rng)
    else:
        g = conductances((rows, cols), dev, rng)
    hist, edges = np.histogram(g, bins=bins)
    stats = read_noise_stats(g, eta, 1000, rng) if eta > 0 else {"rel_mean": 0.0, "rel_std": 0.0}
    p = Path(path)
    np.savez(p, conductance_us=g.astype(np.float32), hist_counts=hist, hist_edges=edges,
             mode=np.array(dev.mode), breakdown=breakdown_fraction(dev), eta=eta,
             read_rel_mean=stats["rel_mean"], read_rel_std=stats["rel_std"],
             g_mean=float(g.mean()), g_std=float(g.std()))
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def plot_npz(npz_path: str | Path, png_path: str | Path) -> Path:
    """Plot an ``export_npz`` file (conductance map and histogram) to a PNG (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(npz_path, allow_pickle=False) as z:
        g, counts, edges = z["conductance_us"], z["hist_counts"], z["hist_edges"]
        title = f"{z['mode']} crossbar, breakdown {float(z['breakdown']):.2f}, eta {float(z['eta']):.3f}"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    im = ax1.imshow(g, aspect="auto", cmap="viridis")
    ax1.set_xlabel("column")
    ax1.set_ylabel("row")
    fig.colorbar(im, ax=ax1, label="conductance (uS)")
    ax2.stairs(counts, edges)
    ax2.set_xlabel("conductance (uS)")
    ax2.set_ylabel("cells")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(png_path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
