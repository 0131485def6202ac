"""Intracortical handwriting emulator: 192 motor-cortex units cosine-tuned to pen velocity.

Like Willett et al. 2021 (two Utah arrays, threshold crossings while a person imagines writing a
letter): a letter's pen path (``glyphs.letter_trajectory``) is written in about a second with a
per-trial speed and smooth time warp; each unit's rate is ``baseline + gain * speed * cos(angle -
preferred) + speed_gain * speed`` (rectified), led by the movement by ``lag_us``, plus a transient
at movement onset common to all letters. Baselines drift slowly across trials (a random walk).
Spikes are drawn from the inhomogeneous Poisson process by thinning; output (t us, unit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..events import SPIKES_DTYPE
from .glyphs import letter_trajectory

__all__ = ["CortexConfig", "Array", "pen_velocity", "bin_counts"]


@dataclass(frozen=True)
class CortexConfig:
    """Array, tuning and trial parameters (rates in Hz, times in microseconds)."""

    n_units: int = 192
    trial_us: int = 2_000_000
    write_us: int = 1_000_000  # mean duration of writing one letter
    onset_us: int = 500_000  # mean movement onset after the trial start (go cue)
    onset_jitter_us: int = 80_000
    speed_sigma: float = 0.15  # log-normal per-trial duration scale
    warp_sigma: float = 0.08  # strength of the smooth nonlinear time warp
    baseline_hz: float = 8.0  # median baseline rate (log-normal across units)
    baseline_sigma: float = 0.7
    gain_hz: float = 18.0  # median directional modulation at typical speed
    gain_sigma: float = 0.6
    speed_gain_hz: float = 4.0  # non-directional speed modulation (median)
    onset_hz: float = 6.0  # condition-independent transient at movement onset (median)
    lag_us: int = 120_000  # neural activity leads the pen
    drift_sigma: float = 0.04  # per-trial log change of each baseline (random walk)
    max_rate_hz: float = 200.0
    refractory_us: int = 1000  # a unit's crossings closer than this are merged into one
    dt_us: int = 1000  # resolution of the rate function

    def validate(self) -> None:
        if self.n_units < 1:
            raise ConfigError("n_units", "must be >= 1")
        if self.write_us + self.onset_us >= self.trial_us:
            raise ConfigError("write_us", "onset_us + write_us must be shorter than trial_us")


def pen_velocity(char: str, n_steps: int, start: int, length: int, warp: np.ndarray | None = None
                 ) -> np.ndarray:
    """(n_steps, 2) pen velocity (letter heights per step) writing ``char`` in steps start..start+length.

    ``warp`` (optional, monotone from 0 to 1 over ``length`` steps) maps time to path progress.
    """
    path = letter_trajectory(char)
    u = np.linspace(0.0, 1.0, length) if warp is None else warp
    s = np.linspace(0.0, 1.0, len(path))
    pos = np.stack([np.interp(u, s, path[:, 0]), np.interp(u, s, path[:, 1])], axis=1)
    vel = np.zeros((n_steps, 2))
    stop = min(n_steps, start + length)
    vel[start + 1:stop] = np.diff(pos, axis=0)[: stop - start - 1]
    return vel


class Array:
    """A recording array: units with fixed tuning, baselines that drift from trial to trial."""

    def __init__(self, cfg: CortexConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg = cfg or CortexConfig()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0E7]))
        n = cfg.n_units
        self.preferred = rng.uniform(0, 2 * np.pi, n)
        self.baseline = cfg.baseline_hz * np.exp(rng.normal(0, cfg.baseline_sigma, n))
        self.gain = cfg.gain_hz * np.exp(rng.normal(0, cfg.gain_sigma, n))
        self.speed_gain = cfg.speed_gain_hz * np.exp(rng.normal(0, 0.5, n)) * rng.choice([-0.5, 1], n)
        self.onset = cfg.onset_hz * np.exp(rng.normal(0, 0.5, n))
        self.drift = np.zeros(n)  # log multiplier of the baselines, updated by ``advance``

    def advance(self, rng: np.random.Generator) -> None:
        """One trial later: every baseline takes a small log-normal random-walk step."""
        self.drift = 0.98 * self.drift + rng.normal(0, self.cfg.drift_sigma, self.cfg.n_units)

    def rates(self, char: str, rng: np.random.Generator) -> np.ndarray:
        """(T, n_units) firing rates (Hz) of one trial writing ``char``, T = trial_us / dt_us."""
        cfg = self.cfg
        n_steps = cfg.trial_us // cfg.dt_us
        length = int(cfg.write_us * np.exp(rng.normal(0, cfg.speed_sigma)) // cfg.dt_us)
        onset = int((cfg.onset_us + rng.normal(0, cfg.onset_jitter_us)) // cfg.dt_us)
        onset = int(np.clip(onset, 1, max(1, n_steps - length - 1)))
        length = min(length, n_steps - onset)
        knots = np.concatenate([[0.0], rng.normal(0, cfg.warp_sigma, 3), [0.0]])
        u = np.linspace(0, 1, length)
        warp = np.clip(u + np.interp(u, np.linspace(0, 1, 5), knots) * np.sin(np.pi * u), 0, 1)
        warp = np.maximum.accumulate(warp)
        vel = pen_velocity(char, n_steps, onset, length, warp)
        typical = 1.0 / length * 4.0  # about four letter heights of path per letter
        vel = vel / typical
        lag = cfg.lag_us // cfg.dt_us
        vel = np.concatenate([vel[lag:], np.zeros((lag, 2))])  # rates lead the pen
        speed = np.hypot(vel[:, 0], vel[:, 1])
        t = np.arange(n_steps)
        bump = np.exp(-0.5 * ((t - (onset - lag)) / (80_000 / cfg.dt_us)) ** 2)
        # sum of outer products (no BLAS call: tiny matmuls thrash threads on a busy machine)
        f32 = np.float32
        rate = np.broadcast_to((self.baseline * np.exp(self.drift)).astype(f32), (n_steps, self.cfg.n_units)).copy()
        for series, w in ((vel[:, 0], self.gain * np.cos(self.preferred)),
                          (vel[:, 1], -self.gain * np.sin(self.preferred)),  # image y points down
                          (speed, self.speed_gain), (bump, self.onset)):
            rate += series.astype(f32)[:, None] * w.astype(f32)[None, :]
        return np.clip(rate, 0.0, cfg.max_rate_hz, out=rate)

    def trial(self, char: str, rng: np.random.Generator) -> np.ndarray:
        """SPIKES_DTYPE spikes (t us from the trial start, x = unit) of one trial, time-sorted."""
        cfg = self.cfg
        rate = self.rates(char, rng)
        return _poisson(rate, cfg.dt_us, rng, cfg.refractory_us)


def _poisson(rate: np.ndarray, dt_us: int, rng: np.random.Generator, refractory_us: int = 0
             ) -> np.ndarray:
    """Inhomogeneous Poisson spikes by thinning a homogeneous process at each unit's peak rate."""
    n_steps, n_units = rate.shape
    dur_s = n_steps * dt_us * 1e-6
    peak = rate.max(axis=0)
    cnt = rng.poisson(peak * dur_s)
    unit = np.repeat(np.arange(n_units), cnt)
    t = rng.uniform(0, n_steps * dt_us, len(unit))
    step = np.minimum((t // dt_us).astype(np.int64), n_steps - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = rng.uniform(0, 1, len(unit)) * peak[unit] < rate[step, unit]
    ti, ui = np.floor(t[keep]).astype(np.int64), unit[keep]
    if refractory_us > 0 and len(ti) > 1:  # candidates are grouped by unit: sort times per unit
        order = np.argsort(ui * (1 << 40) + ti)  # by unit, then time (one int64 key)
        ti, ui = ti[order], ui[order]
        ok = np.ones(len(ti), dtype=bool)
        ok[1:] = (ui[1:] != ui[:-1]) | (np.diff(ti) >= refractory_us)
        ti, ui = ti[ok], ui[ok]
    order = np.argsort(ti * (1 << 16) + ui)  # by time, then unit
    ev = np.empty(len(ti), dtype=SPIKES_DTYPE)
    ev["t"], ev["x"] = ti[order], ui[order]
    return ev


def bin_counts(spikes: np.ndarray, n_units: int, duration_us: int, bin_us: int = 10_000
               ) -> np.ndarray:
    """(ceil(duration/bin), n_units) uint16 spike counts per bin (the 10 ms export)."""
    n_bins = -(-int(duration_us) // int(bin_us))
    b = np.clip(spikes["t"] // bin_us, 0, n_bins - 1)
    flat = np.bincount(b * n_units + spikes["x"].astype(np.int64), minlength=n_bins * n_units)
    return flat.reshape(n_bins, n_units).astype(np.uint16)
