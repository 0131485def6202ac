"""Trials of spike recordings (one SPIKES_DTYPE array each), the dataset over them, binned counts -> spikes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import SPIKES_DTYPE

from ._common import SampleDataset

__all__ = ["MAX_UNIT", "Trials", "TrialsDataset", "counts_to_events", "bins_to_events", "fail"]

MAX_UNIT = 0x7FFF  # x is int16


@dataclass
class Trials:
    """Trials of one recording: events[i] (SPIKES_DTYPE), labels[i], durations_us[i], where[i]."""

    events: list[np.ndarray]
    labels: list[str | None]
    durations_us: list[int]
    n_units: int
    where: list[str]
    roles: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def bins_to_events(units: np.ndarray, counts: np.ndarray, bin_us: int) -> np.ndarray:
    """Spikes at bin starts: bins (b,) with unit ids and spike counts -> sorted SPIKES_DTYPE."""
    b = np.flatnonzero(counts)
    reps = counts[b].astype(np.int64)
    ev = np.empty(int(reps.sum()), dtype=SPIKES_DTYPE)
    ev["t"] = np.repeat(b.astype(np.int64) * bin_us, reps)
    ev["x"] = np.repeat(units[b], reps)
    return ev


def counts_to_events(counts: np.ndarray, bin_us: int, seed: int = 0) -> np.ndarray:
    """Binned spike counts (T bins, units) -> SPIKES_DTYPE events spread inside each bin.

    The k-th of c spikes of a unit in bin b lands at ``b * bin_us + floor((k + u) * bin_us / c)``
    with u uniform in [0, 1) from ``np.random.default_rng(seed)``: spikes stay inside their bin,
    evenly spread, and the same input and seed always give the same events (sorted by t, then x).
    """
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ConfigError("counts", f"must be a (bins, units) array, got shape {counts.shape}")
    if counts.shape[1] > MAX_UNIT + 1:
        raise ConfigError("counts", f"at most {MAX_UNIT + 1} units, got {counts.shape[1]}")
    if not isinstance(bin_us, int | np.integer) or bin_us <= 0:
        raise ConfigError("bin_us", f"must be a positive integer of microseconds, got {bin_us!r}")
    if counts.size and (np.any(counts < 0) or np.any(counts != np.round(counts))):
        row = int(np.flatnonzero(np.any((counts < 0) | (counts != np.round(counts)), axis=1))[0])
        raise DataError("counts", "counts must be non-negative integers", row=row)
    c = counts.astype(np.int64)
    b, u = np.nonzero(c)  # row-major: bins in order, units within a bin
    n = c[b, u]
    total = int(n.sum())
    first = np.repeat(np.cumsum(n) - n, n)
    k = np.arange(total) - first  # rank of each spike inside its (bin, unit) cell
    jitter = np.random.default_rng(seed).random(total)
    nn = np.repeat(n, n)
    offset = np.floor((k + jitter) * bin_us / nn).astype(np.int64)
    ev = np.empty(total, dtype=SPIKES_DTYPE)
    ev["t"] = np.repeat(b.astype(np.int64) * bin_us, n) + np.minimum(offset, bin_us - 1)
    ev["x"] = np.repeat(u, n)
    return ev[np.lexsort((ev["x"], ev["t"]))]


def fail(trials_skipped: list | None, path, problem: str, row: int) -> None:
    """Raise DataError naming the row, or (on_error="skip") record the row and its problem."""
    if trials_skipped is None:
        raise DataError(path, problem, row=row)
    trials_skipped.append((f"{path}:row {row}", problem))


class TrialsDataset(SampleDataset):
    """A dataset over a ``Trials`` (already parsed): events(i), label(i), duration_us(i) = trial length."""

    modality = "neural"
    layout = "spikes"

    def _setup(self, trials: Trials, classes: tuple[str, ...], keep: list[int] | None = None) -> None:
        self._trials = trials
        self.skipped = list(trials.skipped)
        idx = range(len(trials.events)) if keep is None else keep
        self._keys = list(idx)
        self._labels = [trials.labels[i] for i in idx]
        self.sensor_size = (trials.n_units,)
        self.classes = classes
        self._finish()

    def _read(self, key: int) -> np.ndarray:
        return self._trials.events[key].copy()  # callers may modify what they get

    def _key_path(self, key: int) -> str:
        return self._trials.where[key]

    def duration_us(self, i: int) -> int:
        return int(self._trials.durations_us[self._keys[i]])
