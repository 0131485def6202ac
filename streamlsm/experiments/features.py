"""Samples of a dataset, reservoir features cached by a hash of data + reservoir config, input binning."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import default_cache_dir, to_dict
from ..errors import DataError
from ..events import EventPacket
from ..reservoir import Reservoir, ReservoirConfig

__all__ = ["Samples", "features_key", "encode_cached", "binned_input", "window_pool", "CACHE_VERSION",
           "window_ends", "membrane_samples", "membrane_cached", "spike_stats", "leaky_trace"]

CACHE_VERSION = 1  # bump when the reservoir's numerics change in a way its config does not show


@dataclass
class Samples:
    """Event arrays of one dataset held in memory, with labels, durations and optional groups (speakers)."""

    events: list[np.ndarray]
    durations: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None = None
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.durations = np.asarray(self.durations, dtype=np.int64)
        self.labels = np.asarray([str(v) for v in self.labels])
        if self.groups is not None:
            self.groups = np.asarray([str(g) for g in self.groups])
        n = len(self.events)
        if len(self.durations) != n or len(self.labels) != n or (self.groups is not None and len(self.groups) != n):
            raise DataError(self.name or "samples", "events, durations, labels and groups differ in length")
        self._fp: str | None = None

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def from_dataset(cls, ds, indices: Sequence[int] | None = None, groups=None, name: str | None = None) -> Samples:
        """Read a plugins.Dataset (events(i), label(i), duration_us(i)); ``groups`` a callable i -> group."""
        idx = range(len(ds)) if indices is None else indices
        ev, dur, lab, grp = [], [], [], []
        for i in idx:
            ev.append(ds.events(i))
            dur.append(ds.duration_us(i))
            lab.append(ds.label(i))
            if groups is not None:
                grp.append(groups(i))
        return cls(ev, np.asarray(dur), np.asarray(lab), np.asarray(grp) if groups is not None else None,
                   name=name or getattr(ds, "name", ""))

    def subset(self, idx: Sequence[int]) -> Samples:
        idx = np.asarray(idx, dtype=np.int64)
        return Samples([self.events[i] for i in idx], self.durations[idx], self.labels[idx],
                       None if self.groups is None else self.groups[idx], self.name, dict(self.meta))

    def fingerprint(self) -> str:
        """sha256 over every event array (dtype, bytes), the durations and the labels."""
        if self._fp is None:
            h = hashlib.sha256()
            for ev in self.events:
                a = np.ascontiguousarray(ev)
                h.update(f"{a.dtype.descr}|{len(a)}|".encode())
                h.update(a.tobytes())
            h.update(self.durations.tobytes())
            h.update("\x00".join(self.labels.tolist()).encode())
            self._fp = h.hexdigest()
        return self._fp


def features_key(samples: Samples, config: ReservoirConfig) -> str:
    """Cache key: data fingerprint + the full reservoir config (seed and device included) + version."""
    body = json.dumps({"data": samples.fingerprint(), "config": to_dict(config), "v": CACHE_VERSION},
                      sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def encode_cached(config: ReservoirConfig, samples: Samples, cache_dir: str | Path | None = None,
                  use_cache: bool = True) -> np.ndarray:
    """(n, F) float32 features of ``samples`` through ``Reservoir(config).encode`` (parallel kernel),
    read from / written to ``cache_dir/features/<key>.npy`` (default: the streamlsm cache dir)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "features" / f"{features_key(samples, config)}.npy"
    if use_cache and path.is_file():
        try:
            x = np.load(path, allow_pickle=False)
            if x.shape[0] == len(samples) and x.dtype == np.float32:
                return x
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    x = Reservoir(config).encode(samples.events, samples.durations)
    if use_cache:
        _save_atomic(path, x)
    return x


def _save_atomic(path: Path, x: np.ndarray) -> None:
    """Write ``x`` as .npy through a temporary file and a rename (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, x)
    os.replace(tmp, path)


def binned_input(config: ReservoirConfig, samples: Samples, n_bins: int | None = None) -> np.ndarray:
    """(n, T, C) float32 input counts per bin of ``config.bin_us`` and channel of the reservoir's input
    mapping (what the reservoir sees), T = ``n_bins`` (default: the longest sample's bins)."""
    imap = Reservoir(config).map
    bu = config.bin_us
    if n_bins is None:
        n_bins = int(max(1, (samples.durations.max() + bu - 1) // bu)) if len(samples) else 1
    out = np.zeros((len(samples), n_bins, imap.n_inputs), np.float32)
    for i, ev in enumerate(samples.events):
        names = ev.dtype.names
        x = ev["x"].astype(np.int64)
        y = ev["y"].astype(np.int64) if "y" in names else np.zeros(len(ev), np.int64)
        p = ev["p"].astype(np.int64) if "p" in names else np.zeros(len(ev), np.int64)
        ok = (x >= 0) & (x < imap.xm) & (y >= 0) & (y < imap.ym) & (p >= 0) & (p < imap.pm)
        ch = np.full(len(ev), -1, np.int64)
        ch[ok] = imap.lut[((y * imap.xm + x) * imap.pm + p)[ok]]
        b = ev["t"].astype(np.int64) // bu
        keep = (ch >= 0) & (b >= 0) & (b < n_bins)
        np.add.at(out[i], (b[keep], ch[keep]), 1.0)
    return out


def window_pool(binned: np.ndarray, windows: int) -> np.ndarray:
    """(n, T, C) -> (n, windows * C): counts summed over ``windows`` equal spans of the bins."""
    n, t, c = binned.shape
    edges = np.linspace(0, t, windows + 1).round().astype(int)
    return np.concatenate([binned[:, a:b].sum(1) for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1)


def window_ends(n_bins: np.ndarray, points: int) -> np.ndarray:
    """(n, points) bin index at which each of ``points`` equal spans of a sample's bins ends: the
    spans of ``Reservoir`` features with ``feature_windows=points`` (span w holds bins b with
    b * points // n_bins == w, so it ends at ceil((w + 1) n_bins / points))."""
    nb = np.maximum(1, np.asarray(n_bins, np.int64))[:, None]
    w = np.arange(1, points + 1, dtype=np.int64)[None, :]
    return -(-(w * nb) // points)


def membrane_samples(config: ReservoirConfig, samples: Samples, points: int) -> np.ndarray:
    """(n, points * N) float32 membrane potentials at the end of ``points`` equal spans of each
    sample's bins (the spans of ``feature_windows=points``), through ``Reservoir.feed`` with the
    sample index as noise key: the very run ``encode`` makes (same weights, same read noise)."""
    if points < 1:
        raise DataError("points", f"must be >= 1, got {points}")
    cfg = replace(config, feature_windows=1)
    n, N, bu = len(samples), cfg.n_neurons, cfg.bin_us
    res = Reservoir(cfg, capacity=max(1, n))
    ends = window_ends(-(-samples.durations // bu), points) * bu
    out = np.zeros((n, points, N), np.float32)
    start = np.zeros(n, np.int64)
    ids = [f"m{i}" for i in range(n)]
    for w in range(points):
        packets = []
        for i, ev in enumerate(samples.events):
            # events at or after the sample's duration are outside it (encode counts them late)
            a, b = np.searchsorted(ev["t"], (min(start[i], samples.durations[i]), min(ends[i, w], samples.durations[i])))
            packets.append(EventPacket(ids[i], w, int(start[i]), int(ends[i, w]), ev[a:b], cfg.modality,
                                       sample_id=i, sample_begin=w == 0))
        res.feed(packets)
        for i in range(n):
            out[i, w] = res.membrane(ids[i])
        start = ends[:, w].copy()
    return out.reshape(n, points * N)


def membrane_cached(config: ReservoirConfig, samples: Samples, points: int,
                    cache_dir: str | Path | None = None) -> np.ndarray:
    """``membrane_samples`` read from / written to the feature cache (key: data + config + points)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "features" / f"{features_key(samples, config)}-membrane{points}.npy"
    if path.is_file():
        try:
            x = np.load(path, allow_pickle=False)
            if x.shape == (len(samples), points * config.n_neurons) and x.dtype == np.float32:
                return x
        except (OSError, ValueError):
            pass
    x = membrane_samples(config, samples, points)
    _save_atomic(path, x)
    return x


def spike_stats(counts: np.ndarray, config: ReservoirConfig, durations: np.ndarray) -> dict[str, float]:
    """Firing statistics of reservoir count features (n, K * N): ``rate`` spikes per neuron per bin
    (mean over samples), ``silent`` the fraction of neurons that never fire on any sample,
    ``silent_in_sample`` the mean fraction of neurons silent within one sample."""
    n, N = counts.shape[0], config.n_neurons
    per_neuron = counts.reshape(n, -1, N).sum(1)
    bins = np.maximum(1, -(-np.asarray(durations, np.int64) // config.bin_us))
    return {"rate": float(np.mean(per_neuron.sum(1) / (N * bins))),
            "silent": float(np.mean(per_neuron.sum(0) == 0)),
            "silent_in_sample": float(np.mean(per_neuron == 0))}


def leaky_trace(binned: np.ndarray, n_bins: np.ndarray, decay: float, points: int) -> np.ndarray:
    """Input-only analogue of sampled membranes: the input counts (n, T, C) low-pass filtered with the
    neuron's leak (u[t] = decay u[t-1] + x[t], no recurrence, no threshold), sampled at the ends of
    ``points`` equal spans of each sample's bins; (n, points * C)."""
    n, t, c = binned.shape
    ends = np.minimum(window_ends(n_bins, points), t)
    out = np.zeros((n, points, c), np.float32)
    u = np.zeros((n, c), np.float32)
    rows = np.arange(n)
    for b in range(t):
        u = np.float32(decay) * u + binned[:, b]
        hit = ends == b + 1
        for w in range(points):
            sel = rows[hit[:, w]]
            if len(sel):
                out[sel, w] = u[sel]
    return out.reshape(n, points * c)
