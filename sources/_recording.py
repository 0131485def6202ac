"""Continuous camera recordings as a dataset: one file = one sample, read in bounded chunks.

Base of the event-camera file readers (``prophesee``, ``aedat4``): a subclass names its file
suffixes and implements ``_raw_chunks(path)`` (the file's events, DVS layout, times as the file
holds them, in chunks of about ``chunk_events``). This class lists the files, offsets the times so
that a recording starts at t = 0 (the first event; ``t0_us(i)`` is the offset), checks order and
sensor bounds chunk by chunk, applies the transform, and offers ``chunks(i)``, which
``replay.schedule`` streams from with memory bounded by the chunk size, whatever the file size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import DVS_DTYPE, as_layout

from ._common import SampleDataset, natural_key

__all__ = ["RecordingDataset", "DEFAULT_CHUNK_EVENTS", "missing_extra"]

#: events per chunk by default (about 13 MB in the DVS layout)
DEFAULT_CHUNK_EVENTS = 1 << 20


def missing_extra(package: str, what: str) -> ConfigError:
    """The one-line error for an absent optional decoder package."""
    return ConfigError("sensors", f"{what} needs the PyPI package {package!r}: "
                       f"pip install 'streamlsm[sensors]'")


class RecordingDataset(SampleDataset):
    """Event-camera recordings: ``root`` is one file, or a folder searched recursively for files
    with the format's suffixes (a file in a subfolder is labelled with the subfolder's name, e.g.
    N-CARS' ``cars/`` and ``background/``; a file directly in ``root`` has no label).

    Options: ``chunk_events`` (events per read, bounding memory), ``width``/``height`` (sensor
    size when the file does not say it), ``transform`` (see SampleDataset; on a chunked read it is
    applied chunk by chunk, exact for per-event transforms, approximate at chunk edges for
    neighbourhood ones such as a denoise filter).
    """

    modality: ClassVar[str] = "vision"
    layout: ClassVar[str] = "dvs"
    suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path, *, chunk_events: int = DEFAULT_CHUNK_EVENTS,
                 width: int | None = None, height: int | None = None, on_error: str = "raise",
                 limit: int | None = None, transform: Callable[[np.ndarray], Any] | None = None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        if type(chunk_events) is not int or chunk_events < 1:
            raise ConfigError("chunk_events", f"must be an integer >= 1, got {chunk_events!r}")
        for key, v in (("width", width), ("height", height)):
            if v is not None and (type(v) is not int or not 0 < v <= 32768):
                raise ConfigError(key, f"must be an integer in 1..32768, got {v!r}")
        self.chunk_events = chunk_events
        self.root = Path(root)
        self._size = (width, height)
        self._t0: dict[Path, int] = {}
        if self.root.is_file():
            files, labels = [self.root], [None]
        elif self.root.is_dir():
            files = sorted((p for p in self.root.rglob("*") if p.suffix.lower() in self.suffixes
                            and p.is_file()), key=lambda q: natural_key(str(q.relative_to(self.root))))
            labels = [p.parent.relative_to(self.root).parts[0] if p.parent != self.root else None
                      for p in files]
        else:
            raise DataError(self.root, f"{self.name}: no such file or folder")
        if not files:
            raise DataError(self.root, f"{self.name}: no {'/'.join(self.suffixes)} files found")
        self._keys, self._labels = list(files), labels
        self.classes = tuple(sorted({lab for lab in labels if lab is not None}, key=natural_key))
        w, h = self._size
        if w is None or h is None:
            fw = fh = None
            for f in files:  # the first file that can say (with "skip", a bad one is passed over)
                try:
                    fw, fh = self._file_size(f)
                    break
                except DataError:
                    if self.on_error != "skip":
                        raise
            w, h = w or fw, h or fh
        self.sensor_size = (int(w), int(h), 2) if w and h else ()
        self._finish()

    def _finish(self) -> None:
        """The limit, and with on_error="skip" a screening that reads only each file's header and
        first chunk (the base class would read every recording whole)."""
        if self.on_error == "skip":
            keep = []
            for i, path in enumerate(self._keys):
                try:
                    self._file_size(path)
                    for _ in self._chunks(path):
                        break
                except DataError as exc:
                    self.skipped.append((exc.path, str(exc)))
                    continue
                keep.append(i)
            self._keys = [self._keys[i] for i in keep]
            self._labels = [self._labels[i] for i in keep]
            self.on_error, screened = "raise", True
        else:
            screened = False
        super()._finish()
        if screened:
            self.on_error = "skip"

    # -- subclass hooks -------------------------------------------------------------------
    def _raw_chunks(self, path: Path) -> Iterator[np.ndarray]:
        """The file's events (any structured array with t, x, y, p) in chunks, times as stored."""
        raise NotImplementedError

    def _file_size(self, path: Path) -> tuple[int | None, int | None]:
        """(width, height) the file's header says, else (None, None)."""
        return None, None

    @classmethod
    def accepts(cls, path: str | Path) -> bool:
        """Whether ``path`` is a file of this format, or a folder holding some (by suffix)."""
        path = Path(path)
        if path.is_file():
            return path.suffix.lower() in cls.suffixes
        return path.is_dir() and any(p.suffix.lower() in cls.suffixes
                                     for p in path.rglob("*") if p.is_file())

    # -- reading ----------------------------------------------------------------------------
    def t0_us(self, i: int) -> int:
        """The file time of recording i's first event (subtracted from every event time)."""
        path = self._keys[i]
        if path not in self._t0:
            for _ in self._chunks(path):
                break
        return self._t0.get(path, 0)

    def _chunks(self, path: Path) -> Iterator[np.ndarray]:
        """Chunks of the recording in the DVS layout, t from the first event, checked."""
        w, h = self.sensor_size[:2] if self.sensor_size else (None, None)
        last = None
        done = 0
        for raw in self._raw_chunks(path):
            if not len(raw):
                continue
            ev = as_layout(raw, "dvs") if raw.dtype != DVS_DTYPE else raw.copy()
            t = ev["t"]
            if last is None:
                last = int(t[0])
                self._t0.setdefault(path, last)
            t0 = self._t0[path]
            if int(t[0]) < last or (len(t) > 1 and (t[1:] < t[:-1]).any()):  # one pass when good
                back = np.flatnonzero(np.diff(t, prepend=last) < 0)
                k = int(back[0])
                raise DataError(path, f"timestamps go backwards at event {done + k} "
                                f"({last if k == 0 else int(t[k - 1])} then {int(t[k])} us)")
            # as unsigned, a negative coordinate is out of range too: one comparison per field
            if w and h and ((ev["x"].view(np.uint16) >= w).any() or (ev["y"].view(np.uint16) >= h).any()):
                bad = np.flatnonzero((ev["x"] < 0) | (ev["x"] >= w) | (ev["y"] < 0) | (ev["y"] >= h))
                k = int(bad[0])
                raise DataError(path, f"event {done + k} lies outside the {w}x{h} sensor "
                                f"(x={int(ev['x'][k])}, y={int(ev['y'][k])})")
            last = int(t[-1])
            done += len(ev)
            t -= t0
            yield ev

    def chunks(self, i: int) -> Iterator[np.ndarray]:
        """Recording i as consecutive sorted chunks (DVS layout, t from its first event), the
        transform applied to each; memory is bounded by ``chunk_events``."""
        for ev in self._chunks(self._keys[i]):
            if self.transform is not None:
                ev = as_layout(self.transform(ev), self.layout)
                if not len(ev):
                    continue
            yield ev

    def _read(self, key: Path) -> np.ndarray:
        parts = list(self._chunks(key))
        return np.concatenate(parts) if parts else np.zeros(0, DVS_DTYPE)
