"""Samples of a dataset, reservoir features cached by a hash of data + reservoir config, input binning."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import default_cache_dir, to_dict
from ..errors import DataError
from ..reservoir import Reservoir, ReservoirConfig

__all__ = ["Samples", "features_key", "encode_cached", "binned_input", "window_pool", "CACHE_VERSION"]

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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, x)
        os.replace(tmp, path)
    return x


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
