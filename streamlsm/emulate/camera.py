"""Event camera (DVS/ATIS) emulator: log-intensity pixels with ON/OFF contrast thresholds.

Each pixel keeps the log intensity at its last event; when the present log intensity differs from
it by a multiple of the pixel's threshold (per-pixel mismatch around ``threshold``), it emits that
many ON (brighter, p=1) or OFF (p=0) events, their times interpolated linearly inside the time step
and spaced by at least the refractory period. Timestamp jitter and uniform background-activity
noise events are added. ``record`` moves static images along N-MNIST's three ~100 ms saccades
(a triangle of a few pixels) in front of a 34x34 sensor, vectorised over a batch of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..events import DVS_DTYPE

__all__ = ["CameraConfig", "dvs_from_frames", "saccade_path", "record"]


@dataclass(frozen=True)
class CameraConfig:
    """Sensor and motion parameters (times in microseconds, thresholds in log-intensity units)."""

    width: int = 34
    height: int = 34
    threshold: float = 0.29
    threshold_sigma: float = 0.035
    refractory_us: int = 300
    jitter_us: float = 60.0
    noise_hz: float = 0.35  # background activity, events per pixel per second
    noise_on_fraction: float = 0.95  # ATIS background events are mostly ON (as in N-MNIST)
    black_level: float = 0.06  # display black relative to white (keeps log finite)
    blur_px: float = 0.5  # optics
    saccade_us: int = 100_000
    amplitude_px: float = 3.0
    tremor_px: float = 0.04
    step_us: int = 4000

    def validate(self) -> None:
        for key in ("threshold", "step_us", "saccade_us", "width", "height"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be > 0, got {getattr(self, key)!r}")
        if not 0 < self.black_level < 1:
            raise ConfigError("black_level", "must lie in (0, 1)")


class _Pixels:
    """State of B sensors of H x W pixels: reference levels, thresholds, last event times."""

    def __init__(self, log0: np.ndarray, thr_on: np.ndarray, thr_off: np.ndarray, t0: float,
                 refractory_us: float) -> None:
        self.ref = log0.copy()
        self.prev = log0.copy()
        self.t_prev = float(t0)
        self.thr_on, self.thr_off = thr_on, thr_off
        self.last = np.full(log0.shape, -np.inf)
        self.refr = float(refractory_us)

    def step(self, log_now: np.ndarray, t_now: float) -> tuple[np.ndarray, ...]:
        """Advance to ``t_now``; returns flat pixel indices, times (float us) and polarities."""
        d = log_now - self.ref
        n_on = np.floor(np.maximum(d, 0) / self.thr_on).astype(np.int64)
        n_off = np.floor(np.maximum(-d, 0) / self.thr_off).astype(np.int64)
        dt = t_now - self.t_prev
        n_max = max(1, int(dt // self.refr)) if self.refr > 0 else 1 << 20
        out = []
        for n, thr, sign, pol in ((n_on, self.thr_on, 1.0, 1), (n_off, self.thr_off, -1.0, 0)):
            flat = n.ravel()
            idx = np.flatnonzero(flat)
            if not len(idx):
                continue
            cnt = np.minimum(flat[idx], n_max)
            rep = np.repeat(idx, cnt)
            j = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
            th = thr.ravel()[rep]
            lo, hi = self.prev.ravel()[rep], log_now.ravel()[rep]
            level = self.ref.ravel()[rep] + sign * j * th
            span = hi - lo
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(span != 0, (level - lo) / span, 1.0)
            t = self.t_prev + dt * np.clip(frac, 0.0, 1.0)
            t = np.maximum(t, self.last.ravel()[rep] + j * self.refr)
            out.append((rep, t, np.full(len(rep), pol, dtype=np.int8)))
            capped = flat[idx] > n_max
            ref = self.ref.ravel()
            ref[idx] += sign * cnt * thr.ravel()[idx]
            ref[idx[capped]] = log_now.ravel()[idx[capped]]  # reset to the present level
            last = self.last.ravel()
            last[idx] = t[np.cumsum(cnt) - 1]
        self.prev = log_now.copy()
        self.t_prev = float(t_now)
        if not out:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int8)
        return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))


def _thresholds(rng: np.random.Generator, cfg: CameraConfig, shape) -> tuple[np.ndarray, np.ndarray]:
    lo = 0.3 * cfg.threshold
    on = np.maximum(rng.normal(cfg.threshold, cfg.threshold_sigma, shape), lo)
    off = np.maximum(rng.normal(cfg.threshold, cfg.threshold_sigma, shape), lo)
    return on, off


def _finish(rng: np.random.Generator, cfg: CameraConfig, flat: np.ndarray, t: np.ndarray,
            p: np.ndarray, duration_us: float) -> np.ndarray:
    """Add jitter and background noise, sort by time and pack DVS_DTYPE events."""
    n_pix = cfg.width * cfg.height
    n_noise = rng.poisson(cfg.noise_hz * n_pix * duration_us * 1e-6)
    t = t + rng.normal(0.0, cfg.jitter_us, len(t)) if cfg.jitter_us > 0 else t
    flat = np.concatenate([flat, rng.integers(0, n_pix, n_noise)])
    t = np.concatenate([t, rng.uniform(0, duration_us, n_noise)])
    p = np.concatenate([p, (rng.random(n_noise) < cfg.noise_on_fraction).astype(np.int8)])
    ti = np.clip(np.rint(t), 0, max(0, int(duration_us) - 1)).astype(np.int64)
    order = np.lexsort((flat, ti))
    ev = np.empty(len(ti), dtype=DVS_DTYPE)
    ev["t"] = ti[order]
    ev["x"] = flat[order] % cfg.width
    ev["y"] = flat[order] // cfg.width
    ev["p"] = p[order]
    return ev


def dvs_from_frames(frames: np.ndarray, times_us: np.ndarray, cfg: CameraConfig | None = None,
                    rng: np.random.Generator | None = None, *, noise: bool = True) -> np.ndarray:
    """Events a sensor would emit watching ``frames`` (T, H, W) of linear intensity in [0, 1].

    ``times_us`` (T,) increasing frame times; the first frame sets the reference levels. Without
    ``noise`` neither jitter nor background events are added (pure contrast events).
    """
    cfg = cfg or CameraConfig(height=frames.shape[1], width=frames.shape[2])
    rng = rng if rng is not None else np.random.default_rng(0)
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[1:] != (cfg.height, cfg.width):
        raise ConfigError("frames", f"must be (T, {cfg.height}, {cfg.width}), got {frames.shape}")
    bl = cfg.black_level
    logf = np.log(np.clip(frames, 0, None) * (1 - bl) + bl)
    on, off = _thresholds(rng, cfg, frames.shape[1:])
    pix = _Pixels(logf[0], on, off, float(times_us[0]), cfg.refractory_us)
    parts = [pix.step(logf[k], float(times_us[k])) for k in range(1, len(frames))]
    flat = np.concatenate([q[0] for q in parts]) if parts else np.empty(0, np.int64)
    t = np.concatenate([q[1] for q in parts]) if parts else np.empty(0)
    p = np.concatenate([q[2] for q in parts]) if parts else np.empty(0, np.int8)
    if not noise:
        cfg = CameraConfig(**{**cfg.__dict__, "noise_hz": 0.0, "jitter_us": 0.0})
    return _finish(rng, cfg, flat, t, p, float(times_us[-1]) + 1)


def saccade_path(rng: np.random.Generator, cfg: CameraConfig, times_us: np.ndarray
                 ) -> tuple[np.ndarray, float]:
    """((T, 2) image displacement (dx, dy) in pixels at ``times_us``, end of the last saccade us):
    three minimum-jerk saccades.

    The corners of the triangle, the saccade durations and a slow tremor vary per sample.
    """
    a = cfg.amplitude_px * rng.uniform(0.85, 1.15)
    corners = np.array([[0.0, 0.0], [a / 2, a], [a, 0.0], [0.0, 0.0]])
    corners[1:3] += rng.normal(0, 0.15, (2, 2))
    durs = cfg.saccade_us * rng.uniform(0.97, 1.09, 3)
    edges = np.concatenate([[0.0], np.cumsum(durs)])
    k = np.clip(np.searchsorted(edges, times_us, side="right") - 1, 0, 2)
    tau = np.clip((times_us - edges[k]) / durs[k], 0.0, 1.0)
    s = tau ** 3 * (10 - 15 * tau + 6 * tau ** 2)  # minimum jerk
    pos = corners[k] + s[:, None] * (corners[k + 1] - corners[k])
    if cfg.tremor_px > 0:
        walk = np.cumsum(rng.normal(0, 1, (len(times_us), 2)), axis=0)
        walk = ndimage.gaussian_filter1d(walk, 5, axis=0)
        pos += cfg.tremor_px * (walk - walk.mean(0))
    return pos, float(edges[-1])


def record(images: np.ndarray, rngs: list[np.random.Generator],
           cfg: CameraConfig | None = None) -> list[np.ndarray]:
    """Events of each image (B, h, w) in [0, 1] seen by a saccading sensor; one array per image.

    Sample b draws everything (thresholds, path, jitter, noise) from ``rngs[b]``, so its events do
    not depend on the batch it is simulated in.
    """
    cfg = cfg or CameraConfig()
    images = np.asarray(images, dtype=np.float64)
    bsz, h, w = images.shape
    H, W = cfg.height, cfg.width
    pad = 6 + int(np.ceil(cfg.amplitude_px * 1.5))
    canvas = np.zeros((bsz, h + 2 * pad + 2, w + 2 * pad + 2))
    canvas[:, pad:pad + h, pad:pad + w] = images
    if cfg.blur_px > 0:
        canvas = ndimage.gaussian_filter(canvas, (0, cfg.blur_px, cfg.blur_px))
    span = 3 * cfg.saccade_us * 1.09
    times = np.arange(0.0, span + cfg.step_us, cfg.step_us)
    moves = [saccade_path(r, cfg, times) for r in rngs]
    paths = np.stack([m[0] for m in moves])  # (B, T, 2)
    ends = [m[1] for m in moves]  # each recording stops when its last saccade ends
    # base offset so the displaced image stays centred on the sensor
    base = np.array([(W - w) / 2, (H - h) / 2]) - cfg.amplitude_px / 2
    thr = [_thresholds(r, cfg, (H, W)) for r in rngs]
    on, off = np.stack([q[0] for q in thr]), np.stack([q[1] for q in thr])
    bl = cfg.black_level
    rows_base, cols_base = np.arange(H + 1)[None, :], np.arange(W + 1)[None, :]
    cols_all = np.arange(canvas.shape[2])[None, None, :]
    bidx = np.arange(bsz)[:, None, None]
    canvas = canvas.astype(np.float32)

    def frame(k: int) -> np.ndarray:
        q = pad - (base[None, :] + paths[:, k])  # (B, 2) canvas coordinate of sensor pixel 0
        q = np.clip(q, 0, canvas.shape[1] - max(H, W) - 2)
        i0 = np.floor(q).astype(np.int64)
        f = (q - i0).astype(np.float32)
        rows = canvas[bidx, (rows_base + i0[:, 1:2])[:, :, None], cols_all]  # (B, H+1, Wc)
        fy = f[:, 1][:, None, None]
        rows = rows[:, :-1] + fy * (rows[:, 1:] - rows[:, :-1])
        cols = np.take_along_axis(rows, (cols_base + i0[:, 0:1])[:, None, :], axis=2)
        fx = f[:, 0][:, None, None]
        img = cols[:, :, :-1] + fx * (cols[:, :, 1:] - cols[:, :, :-1])
        return np.log(img * (1 - bl) + bl)

    pix = _Pixels(frame(0), on, off, times[0], cfg.refractory_us)
    parts = [pix.step(frame(k), times[k]) for k in range(1, len(times))]
    flat = np.concatenate([q[0] for q in parts])
    t = np.concatenate([q[1] for q in parts])
    p = np.concatenate([q[2] for q in parts])
    sample = flat // (H * W)
    order = np.argsort(sample, kind="stable")
    bounds = np.searchsorted(sample[order], np.arange(bsz + 1))
    out = []
    for b in range(bsz):
        sel = order[bounds[b]:bounds[b + 1]]
        sel = sel[t[sel] < ends[b]]  # tremor after the last saccade is not recorded
        out.append(_finish(rngs[b], cfg, flat[sel] % (H * W), t[sel], p[sel], ends[b]))
    return out
