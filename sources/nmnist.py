"""N-MNIST: the ATIS ``.bin`` event format (reader and exact writer) and the Train/Test dataset.

Format (Orchard et al. 2015): no header, 5 bytes per event, big-endian: byte0 = x, byte1 = y,
byte2 bit 7 = polarity (1 = ON), byte2 bits 6..0 + byte3 + byte4 = 23-bit timestamp in us. An event
with y == 240 is a timestamp-overflow marker: 2^13 us are added to every later timestamp and the
marker itself is dropped (the original MATLAB reader's rule).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import DVS_DTYPE

from ._common import SampleDataset, atomic_write, check_sorted, natural_key, read_records

__all__ = ["read_bin", "write_bin", "NMNISTDataset", "OVERFLOW_Y", "OVERFLOW_US", "RECORD"]

RECORD = 5
OVERFLOW_Y = 240
OVERFLOW_US = 1 << 13
_TS_MAX = (1 << 23) - 1
SPLITS = {"train": "Train", "test": "Test"}


def read_bin(path: str | Path, *, sort: bool = False,
             sensor: tuple[int, int] | None = None) -> np.ndarray:
    """Events of one ``.bin`` file as DVS_DTYPE, overflow markers applied and dropped.

    DataError (file and byte offset) for a missing, empty or truncated file, a file holding only
    markers, an event outside ``sensor`` (width, height) when given, or timestamps that go
    backwards (unless ``sort``: then a stable sort by time).
    """
    raw = read_records(path, RECORD)
    b2 = raw[:, 2]
    t = ((b2.astype(np.int64) & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    marker = raw[:, 1] == OVERFLOW_Y
    rows = None
    if marker.any():
        t += OVERFLOW_US * np.cumsum(marker)  # an event after k markers gains k * 2^13 us
        rows = np.flatnonzero(~marker)
        if not len(rows):
            raise DataError(path, "file holds only overflow markers, no events", offset=0)
        raw, t = raw[rows], t[rows]
        b2 = raw[:, 2]
    ev = np.empty(len(raw), dtype=DVS_DTYPE)
    ev["t"] = t
    ev["x"] = raw[:, 0]
    ev["y"] = raw[:, 1]
    ev["p"] = b2 >> 7
    if sensor is not None:
        bad = np.flatnonzero((ev["x"] >= sensor[0]) | (ev["y"] >= sensor[1]))
        if len(bad):
            i = int(bad[0])
            row = int(rows[i]) if rows is not None else i
            raise DataError(path, f"event outside the {sensor[0]}x{sensor[1]} sensor "
                            f"(x={ev['x'][i]}, y={ev['y'][i]})", offset=row * RECORD)
    if sort:
        return ev[np.argsort(ev["t"], kind="stable")]
    check_sorted(path, ev["t"], record=RECORD, rows=rows)
    return ev


def _encode(path: str | Path, events: np.ndarray) -> bytes:
    ev = np.asarray(events)
    if ev.dtype.names is None or not {"t", "x", "y", "p"} <= set(ev.dtype.names):
        raise DataError(path, f"events must have fields t, x, y, p (DVS layout), got {ev.dtype}")
    t = ev["t"].astype(np.int64)
    x, y, p = ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["p"].astype(np.int64)
    for name, v, hi in (("x", x, 255), ("y", y, 255), ("p", p, 1)):
        if len(v) and (v.min() < 0 or v.max() > hi):
            raise DataError(path, f"cannot write: {name} must lie in 0..{hi}")
    if (y == OVERFLOW_Y).any():
        raise DataError(path, f"cannot write: y == {OVERFLOW_Y} is the overflow marker")
    if len(t) and t.min() < 0:
        raise DataError(path, "cannot write: negative timestamps")
    # markers needed before each event so that its stored time fits 23 bits
    k = np.where(t > _TS_MAX, (t - _TS_MAX - 1) // OVERFLOW_US + 1, 0)
    if len(k) and k.max() > 0 and (np.diff(t) < 0).any():
        raise DataError(path, "cannot write: times beyond 2^23 us need sorted events")
    stored = t - OVERFLOW_US * k
    n_mark = np.diff(k, prepend=0)  # markers inserted just before each event
    out_rows = np.arange(len(t)) + np.cumsum(n_mark)
    rec = np.zeros((len(t) + int(k[-1] if len(k) else 0), RECORD), dtype=np.uint8)
    rec[:, 1] = OVERFLOW_Y  # every row not overwritten by an event is a marker (x=0, t=0)
    rec[out_rows, 0] = x
    rec[out_rows, 1] = y
    rec[out_rows, 2] = (p << 7) | (stored >> 16)
    rec[out_rows, 3] = (stored >> 8) & 0xFF
    rec[out_rows, 4] = stored & 0xFF
    return rec.tobytes()


def write_bin(path: str | Path, events: np.ndarray) -> None:
    """Write events in the ``.bin`` format so that ``read_bin(path)`` returns them exactly.

    Times past 2^23 - 1 us are written with overflow markers (events must then be sorted); x and y
    must fit a byte and y must not be 240. Written atomically (temporary file, then rename).
    """
    data = _encode(path, events)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


class NMNISTDataset(SampleDataset):
    """N-MNIST in the official layout: ``root/Train|Test/<digit>/<id>.bin``; label = folder name.

    Samples are ordered by digit, then by file name (numbers compared as numbers). Options:
    ``sort`` (default False: backwards timestamps are a DataError; True sorts them stably).
    ``duration_us(i)`` is the last event time + 1 us rounded up to a whole millisecond.
    """

    name = "nmnist"
    modality = "vision"
    layout = "dvs"

    def __init__(self, root: str | Path, split: str = "train", *, on_error: str = "raise",
                 limit: int | None = None, sort: bool = False, transform=None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        if split not in SPLITS:
            raise ConfigError("split", f"must be one of {sorted(SPLITS)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.sort = sort
        self.sensor_size = (34, 34, 2)
        self.classes = tuple(str(d) for d in range(10))
        folder = self.root / SPLITS[split]
        if not folder.is_dir():
            raise DataError(folder, f"N-MNIST {split} folder not found (root must hold Train/ and Test/)")
        for digit in self.classes:
            sub = folder / digit
            if not sub.is_dir():
                continue
            files = sorted(sub.glob("*.bin"), key=lambda q: natural_key(q.name))
            self._keys += files
            self._labels += [digit] * len(files)
        self._finish()  # (subclasses may list other class folders here; see emulated.CameraTreeDataset)
        if not self._keys and not self.skipped and self.limit != 0:
            raise DataError(folder, "no <class>/*.bin files found")

    def _read(self, key: Path) -> np.ndarray:
        return read_bin(key, sort=self.sort, sensor=(34, 34))
