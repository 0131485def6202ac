"""Calibration: set the weight scales of a reservoir for a target firing rate on a few real samples."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from ..errors import ReservoirError
from ..events import DVS_DTYPE
from .config import ReservoirConfig
from .reservoir import Reservoir

__all__ = ["firing_rate", "calibrate", "rate_code"]


def firing_rate(cfg: ReservoirConfig, samples: Sequence[np.ndarray],
                durations_us: Sequence[int] | None = None) -> dict[str, float]:
    """Mean spikes per neuron per bin over the samples, and the fraction of silent neurons."""
    res = Reservoir(dataclasses.replace(cfg, feature_windows=1))
    feats = res.encode(samples, durations_us)
    if durations_us is None:
        durations_us = [int(s["t"][-1]) + 1 if len(s) else 0 for s in samples]
    bins = np.maximum(1, -(-np.asarray(durations_us, np.int64) // cfg.bin_us))
    rate = feats.sum(1) / (cfg.n_neurons * bins)
    return {"rate": float(rate.mean()), "silent": float((feats.sum(0) == 0).mean()),
            "never_silent": float((feats > 0).mean())}


def calibrate(cfg: ReservoirConfig, samples: Sequence[np.ndarray],
              durations_us: Sequence[int] | None = None, target: float = 0.06,
              rel_tol: float = 0.05, max_iter: int = 30) -> tuple[ReservoirConfig, dict]:
    """Scale weight_scale and rec_scale together (their ratio kept) until the mean firing rate is
    ``target`` spikes/neuron/bin (within rel_tol), by bisection on log(scale). Returns the new
    config and a report (scales, rate, silent fraction, iterations)."""
    if not samples:
        raise ReservoirError("calibrate needs at least one sample")
    if not 0 < target < 1:
        raise ReservoirError(f"target rate must be in (0, 1), got {target}")

    def at(m: float) -> dict:
        c = dataclasses.replace(cfg, weight_scale=cfg.weight_scale * m, rec_scale=cfg.rec_scale * m)
        return firing_rate(c, samples, durations_us) | {"m": m}

    lo, hi = None, None
    m = 1.0
    trace = []
    for _ in range(max_iter):
        r = at(m)
        trace.append((m, r["rate"]))
        if abs(r["rate"] - target) <= rel_tol * target:
            break
        if r["rate"] < target:
            lo = m
        else:
            hi = m
        if lo is None:
            m = hi / 4
        elif hi is None:
            m = lo * 4
        else:
            m = math.sqrt(lo * hi)
    ws = float(f"{cfg.weight_scale * m:.4g}")
    rs = float(f"{cfg.rec_scale * m:.4g}")
    out = dataclasses.replace(cfg, weight_scale=ws, rec_scale=rs)
    final = firing_rate(out, samples, durations_us)
    return out, {"weight_scale": ws, "rec_scale": rs, "target": target, **final,
                 "iterations": len(trace), "trace": trace}


def rate_code(image: np.ndarray, steps: int = 50, step_us: int = 1000, spikes_per_pixel: float = 20.0,
              seed: int = 0) -> np.ndarray:
    """Bernoulli rate code of a grey image (values 0..1) as DVS events (p=1): a pixel of value g
    fires with probability g * spikes_per_pixel / steps in each of ``steps`` steps of step_us."""
    img = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    h, w = img.shape
    rng = np.random.default_rng(seed)
    prob = np.clip(img * spikes_per_pixel / steps, 0.0, 1.0)
    fire = rng.random((steps, h, w)) < prob[None]
    k, y, x = np.nonzero(fire)
    ev = np.zeros(len(k), DVS_DTYPE)
    ev["t"] = k.astype(np.int64) * step_us
    ev["x"], ev["y"], ev["p"] = x, y, 1
    return ev
