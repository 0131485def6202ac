"""Slow, obvious numpy reference of the reservoir equations (dense per-bin loop), for tests and benches."""

from __future__ import annotations

import numpy as np

from .mapping import InputMap

__all__ = ["input_frames", "reference_run"]


def input_frames(events: np.ndarray, duration_us: int, imap: InputMap, bin_us: int,
                 clip: float = np.inf) -> np.ndarray:
    """Dense input (T, n_inputs) float32: mapped events counted per bin, clipped per bin."""
    T = max(0, -(-int(duration_us) // bin_us))
    frames = np.zeros((T, imap.n_inputs), np.float32)
    if len(events) == 0 or T == 0:
        return frames
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64) if "y" in events.dtype.names else np.zeros(len(events), np.int64)
    p = events["p"].astype(np.int64) if "p" in events.dtype.names else np.zeros(len(events), np.int64)
    t = events["t"].astype(np.int64)
    ok = (x >= 0) & (x < imap.xm) & (y >= 0) & (y < imap.ym) & (p >= 0) & (p < imap.pm)
    ok &= (t >= 0) & (t < duration_us)
    ch = np.full(len(events), -1, np.int64)
    ch[ok] = imap.lut[((y * imap.xm + x) * imap.pm + p)[ok]]
    keep = ch >= 0
    np.add.at(frames, (t[keep] // bin_us, ch[keep]), 1.0)
    return np.minimum(frames, np.float32(clip)) if np.isfinite(clip) else frames


def reference_run(frames: np.ndarray, w_in: np.ndarray, w_rec: np.ndarray, decay: float,
                  threshold: float, feature_windows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Run the PAPER.md equations bin by bin in float32 (input current summed first, then added to
    the leaked membrane); returns (features (K * N,) float32, spikes (T, N) bool)."""
    T = frames.shape[0]
    N = w_rec.shape[0]
    decay = np.float32(decay)
    thr = np.float32(threshold)
    v = np.zeros(N, np.float32)
    s = np.zeros(N, bool)
    spikes = np.zeros((T, N), bool)
    for b in range(T):
        current = frames[b] @ w_in + s.astype(np.float32) @ w_rec
        v = np.where(s, np.float32(0), decay * v).astype(np.float32) + current
        s = v > thr
        spikes[b] = s
    K = feature_windows
    feats = np.zeros((K, N), np.float32)
    for b in range(T):
        feats[(b * K) // T] += spikes[b]
    return feats.ravel(), spikes
