"""Shared reader helpers: error policy (raise/skip), file checks, sortedness, durations, dataset base."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import as_layout

__all__ = [
    "ON_ERROR",
    "check_on_error",
    "read_records",
    "check_sorted",
    "round_duration",
    "natural_key",
    "balanced_limit",
    "atomic_write",
    "SampleDataset",
]

ON_ERROR = ("raise", "skip")

#: default unit the durations are rounded up to (1 ms: replay packets of whole milliseconds)
DURATION_UNIT_US = 1000


def check_on_error(on_error: str) -> str:
    """Validate the error policy option ("raise" stops at the first bad file, "skip" records it)."""
    if on_error not in ON_ERROR:
        raise ConfigError("on_error", f"must be one of {list(ON_ERROR)}, got {on_error!r}")
    return on_error


def read_records(path: str | Path, record: int, *, skip: int = 0) -> np.ndarray:
    """The bytes of ``path`` after ``skip`` header bytes as a (n, record) uint8 array.

    DataError (naming the file and the byte offset) if the file is missing, unreadable, holds no
    record or ends inside a record.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    body = len(data) - skip
    if body <= 0:
        raise DataError(path, "file holds no events (empty)", offset=skip)
    tail = body % record
    if tail:
        end = len(data) - tail
        raise DataError(path, f"truncated: {tail} trailing bytes do not make a {record}-byte record",
                        offset=end)
    return np.frombuffer(data, dtype=np.uint8, offset=skip).reshape(-1, record)


def check_sorted(path: str | Path, t: np.ndarray, *, record: int = 0, base: int = 0,
                 rows: np.ndarray | None = None) -> None:
    """DataError at the first event whose time is earlier than its predecessor's.

    The position is reported as a byte offset ``base + index * record`` when ``record`` is given,
    else as a row. ``rows`` maps event indices to file record indices (when markers were dropped).
    """
    if len(t) < 2:
        return
    bad = np.flatnonzero(t[1:] < t[:-1])
    if not len(bad):
        return
    i = int(bad[0]) + 1
    where = int(rows[i]) if rows is not None else i
    msg = f"timestamps go backwards ({int(t[i - 1])} then {int(t[i])}); {len(bad)} such event(s)"
    if record:
        raise DataError(path, msg, offset=base + where * record)
    raise DataError(path, msg, row=where)


def round_duration(last_t: int | None, unit: int = DURATION_UNIT_US) -> int:
    """Sample length: last event time + 1 us rounded up to a whole ``unit`` (at least one unit)."""
    if last_t is None or last_t < 0:
        return unit
    return max(unit, -(-(int(last_t) + 1) // unit) * unit)


def natural_key(text: str) -> tuple:
    """Sort key putting "2" before "10" (digit runs compare as numbers)."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok)
                 for tok in re.findall(r"\d+|\D+", text))


def _round_robin(labels: Sequence[Any]) -> list[int]:
    """All indices, taking one sample of each label in turn (labels in order of first appearance)."""
    groups: dict[Any, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    out: list[int] = []
    lists = list(groups.values())
    for k in range(max((len(g) for g in lists), default=0)):
        out += [g[k] for g in lists if k < len(g)]
    return out


def balanced_limit(labels: Sequence[str | None], limit: int | None) -> list[int]:
    """Indices of at most ``limit`` samples taken round-robin over labels, returned in order.

    Keeps a small ``limit`` class-balanced while every kept sample stays in dataset order.
    """
    if limit is not None and limit < 0:
        raise ConfigError("limit", f"must be >= 0 or None, got {limit}")
    if limit is None or limit >= len(labels):
        return list(range(len(labels)))
    return sorted(_round_robin(labels)[:limit])


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename tmp onto ``path`` (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class SampleDataset:
    """Base of the readers' datasets: a list of samples (key, label) loaded lazily by ``_read``.

    Subclasses fill ``self._keys`` / ``self._labels`` and implement ``_read(key) -> events``. With
    ``on_error="skip"`` every sample is read once at construction and the bad ones move to
    ``skipped`` as (path, reason); with "raise" (default) reading is lazy and ``events(i)`` raises
    the DataError. ``limit`` keeps at most that many samples, class-balanced (``balanced_limit``).

    Indexable like a tonic dataset: ``ds[i] -> (events, label)`` and ``len(ds)``. ``transform``
    (any callable on a structured events array, e.g. a tonic transform) is applied to every sample:
    ``ds[i]`` returns what it gives (frames, for ``ToFrame``); ``events(i)``, which replay and the
    experiments read, converts its output back to the dataset's layout by field name
    (``events.as_layout``), so an event-to-event transform also changes what is replayed.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    layout: ClassVar[str] = ""

    def __init__(self, *, on_error: str = "raise", limit: int | None = None,
                 transform: Callable[[np.ndarray], Any] | None = None) -> None:
        self.on_error = check_on_error(on_error)
        if transform is not None and not callable(transform):
            raise ConfigError("transform", f"must be callable (events -> events), got {transform!r}")
        self.transform = transform
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ConfigError("limit", f"must be an integer >= 0 or None, got {limit!r}")
        self.limit = limit
        self.skipped: list[tuple[str, str]] = []
        self._keys: list[Any] = []
        self._labels: list[str | None] = []
        self._last_t: dict[int, int | None] = {}
        self.sensor_size: tuple[int, ...] = ()
        self.classes: tuple[str, ...] = ()

    # -- subclass hooks -------------------------------------------------------------------
    def _read(self, key: Any) -> np.ndarray:
        raise NotImplementedError

    def _key_path(self, key: Any) -> str:
        return str(key)

    def _finish(self) -> None:
        """Apply the limit and the skip policy; call at the end of __init__.

        With "skip", samples are screened (read once) in class round-robin order until ``limit``
        good ones are found, so a small limit does not read the whole data set; bad ones go to
        ``skipped``. The kept samples stay in dataset order.
        """
        if self.on_error != "skip":
            idx = balanced_limit(self._labels, self.limit)
        else:
            idx, last = [], {}
            for i in _round_robin(self._labels):
                if self.limit is not None and len(idx) >= self.limit:
                    break
                try:
                    ev = self._read(self._keys[i])
                except DataError as exc:
                    self.skipped.append((exc.path, str(exc)))
                    continue
                idx.append(i)
                last[i] = int(ev["t"][-1]) if len(ev) else None
            idx.sort()
            self._last_t = {j: last[i] for j, i in enumerate(idx)}
        if len(idx) < len(self._keys):
            self._keys = [self._keys[i] for i in idx]
            self._labels = [self._labels[i] for i in idx]

    # -- the Dataset protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def label(self, i: int) -> str | None:
        return self._labels[i]

    @property
    def labels(self) -> list[str | None]:
        return list(self._labels)

    def path(self, i: int) -> str:
        """Where sample i comes from (file, or file plus row)."""
        return self._key_path(self._keys[i])

    def events(self, i: int) -> np.ndarray:
        ev = self._read(self._keys[i])
        if self.transform is not None:
            ev = as_layout(self.transform(ev), self.layout)
        self._last_t[i] = int(ev["t"][-1]) if len(ev) else None
        return ev

    def __getitem__(self, i: int) -> tuple[Any, str | None]:
        """(events, label) of sample i, the transform applied (tonic's convention)."""
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range: {n} samples")
        i = int(i) % n
        ev = self._read(self._keys[i])
        return (self.transform(ev) if self.transform is not None else ev), self.label(i)

    def duration_us(self, i: int) -> int:
        if i not in self._last_t:
            self.events(i)
        return round_duration(self._last_t[i])

    def samples(self, order: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, int, str | None, int]]:
        """(events, duration_us, label, sample_id) for each sample, in ``order`` or dataset order."""
        for i in (range(len(self)) if order is None else order):
            ev = self.events(i)
            yield ev, self.duration_us(i), self.label(i), int(i)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self)} samples, {len(self.skipped)} skipped>"
