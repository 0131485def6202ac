"""N-TIDIGITS: the ``n-tidigits.hdf5`` layout (reader, writer, dataset) and SLAYER's 1-D ``.bs1`` format.

HDF5 layout (Anumula et al. 2018): groups ``<split>_addresses`` and ``<split>_timestamps`` hold one
1-D dataset per utterance, keyed by its label string ``<gender>-<speaker>-<a|b>-<digits>``
(digits from ``z``, ``1``..``9``, ``o``); ``<split>_labels`` lists those keys as byte strings.
Addresses are channels 0..63, timestamps float seconds from the utterance start; no polarity.

``.bs1`` (SLAYER 1-D binary spikes): no header, 5 bytes per event: bytes 0-1 channel (uint16
big-endian), byte 2 bit 7 polarity, byte 2 bits 6..0 + bytes 3-4 a 23-bit timestamp in us.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import COCHLEA_DTYPE

from ._common import SampleDataset, atomic_write, check_sorted, read_records

__all__ = ["read_bs1", "write_bs1", "write_hdf5", "parse_label", "NTidigitsDataset",
           "DIGITS", "SPLITS", "HDF5_NAME"]

RECORD = 5
_TS_MAX = (1 << 23) - 1
DIGITS = ("z", "1", "2", "3", "4", "5", "6", "7", "8", "9", "o")
SPLITS = ("train", "test")
HDF5_NAME = "n-tidigits.hdf5"
N_CHANNELS = 64


def read_bs1(path: str | Path, *, sort: bool = False) -> np.ndarray:
    """Events of one ``.bs1`` file as COCHLEA_DTYPE (x = channel, p = polarity, t in us).

    DataError (file and byte offset) for a missing, empty or truncated file, or for timestamps that
    go backwards (unless ``sort``: then a stable sort by time).
    """
    raw = read_records(path, RECORD)
    chan = (raw[:, 0].astype(np.int32) << 8) | raw[:, 1]
    bad = np.flatnonzero(chan > 0x7FFF)
    if len(bad):
        raise DataError(path, f"channel {chan[bad[0]]} beyond 32767", offset=int(bad[0]) * RECORD)
    ev = np.empty(len(raw), dtype=COCHLEA_DTYPE)
    ev["x"] = chan
    ev["p"] = raw[:, 2] >> 7
    ev["t"] = (((raw[:, 2].astype(np.int64) & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8)
               | raw[:, 4])
    if sort:
        return ev[np.argsort(ev["t"], kind="stable")]
    check_sorted(path, ev["t"], record=RECORD)
    return ev


def write_bs1(path: str | Path, events: np.ndarray) -> None:
    """Write events (fields t, x, p) as ``.bs1`` so that ``read_bs1`` returns them exactly.

    t must lie in 0..2^23-1 us (the format has no overflow marker), x in 0..32767, p in 0..1.
    Written atomically.
    """
    ev = np.asarray(events)
    if ev.dtype.names is None or not {"t", "x", "p"} <= set(ev.dtype.names):
        raise DataError(path, f"events must have fields t, x, p (cochlea layout), got {ev.dtype}")
    t, x, p = (ev[k].astype(np.int64) for k in ("t", "x", "p"))
    for name, v, hi in (("t", t, _TS_MAX), ("x", x, 0x7FFF), ("p", p, 1)):
        if len(v) and (v.min() < 0 or v.max() > hi):
            raise DataError(path, f"cannot write: {name} must lie in 0..{hi}")
    rec = np.empty((len(ev), RECORD), dtype=np.uint8)
    rec[:, 0] = x >> 8
    rec[:, 1] = x & 0xFF
    rec[:, 2] = (p << 7) | (t >> 16)
    rec[:, 3] = (t >> 8) & 0xFF
    rec[:, 4] = t & 0xFF
    data = rec.tobytes()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def parse_label(label: str) -> dict[str, str]:
    """``"<gender>-<speaker>-<a|b>-<digits>"`` -> dict(gender, speaker, take, digits); ValueError if not."""
    parts = label.split("-")
    if len(parts) != 4 or not parts[3] or any(c not in DIGITS for c in parts[3]):
        raise ValueError(f"label {label!r} is not <gender>-<speaker>-<a|b>-<digits of {''.join(DIGITS)}>")
    return dict(zip(("gender", "speaker", "take", "digits"), parts, strict=True))


def _to_arrays(path: Path, key: str, value) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, np.ndarray) and value.dtype.names:
        if not {"t", "x"} <= set(value.dtype.names):
            raise DataError(path, f"utterance {key!r}: events need fields t, x")
        return value["x"], value["t"].astype(np.float64) / 1e6
    addresses, timestamps = value
    return np.asarray(addresses), np.asarray(timestamps, dtype=np.float64)


def write_hdf5(path: str | Path, split: str, utterances: Mapping[str, object]) -> None:
    """Write (or replace) one split of an ``n-tidigits.hdf5`` file in the documented layout.

    ``utterances`` maps label strings to ``(addresses, timestamps_s)`` or to cochlea events (t in
    us). Addresses are stored as uint8 channels, timestamps as float64 seconds. Other splits already
    in the file are kept; the file is replaced atomically. ``write_hdf5(path, utterances, split)``
    (the order INTERFACES.md first named) is accepted too.
    """
    import h5py

    path = Path(path)
    if isinstance(split, Mapping) and isinstance(utterances, str):  # (path, utterances, split) order
        split, utterances = utterances, split
    if split not in SPLITS:
        raise ConfigError("split", f"must be one of {list(SPLITS)}, got {split!r}")
    arrays = {}
    for key, value in utterances.items():
        try:
            parse_label(key)
        except ValueError as exc:
            raise DataError(path, f"cannot write: {exc}") from None
        addr, ts = _to_arrays(path, key, value)
        if addr.ndim != 1 or addr.shape != ts.shape:
            raise DataError(path, f"utterance {key!r}: addresses and timestamps must be 1-D, same length")
        if len(addr) and (addr.min() < 0 or addr.max() >= N_CHANNELS):
            raise DataError(path, f"utterance {key!r}: channels must lie in 0..{N_CHANNELS - 1}")
        arrays[key] = (addr.astype(np.uint8), ts)

    def write(tmp: Path) -> None:
        if path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            for name in ("addresses", "timestamps", "labels"):
                if f"{split}_{name}" in f:
                    del f[f"{split}_{name}"]
            ga, gt = f.create_group(f"{split}_addresses"), f.create_group(f"{split}_timestamps")
            for key, (addr, ts) in arrays.items():
                ga.create_dataset(key, data=addr)
                gt.create_dataset(key, data=ts)
            f.create_dataset(f"{split}_labels", data=np.array([k.encode() for k in arrays], dtype="S"))

    atomic_write(path, write)


class NTidigitsDataset(SampleDataset):
    """N-TIDIGITS from ``n-tidigits.hdf5`` (``root`` is the file or a folder holding it), or from
    ``.bs1`` files (``root`` is one, or a folder of them without the HDF5 file): one unlabelled
    utterance per file.

    ``single_digits=True`` (default) keeps the one-digit utterances, labelled by their digit
    (11 classes ``z``, ``1``..``9``, ``o``); False keeps all, labelled by the digit string.
    ``speaker(i)``, ``gender(i)``, ``utterance(i)`` give the parts of the label string. Events: x =
    channel, p = 0 (no polarity), t = round(seconds * 1e6) us.
    """

    name = "ntidigits"
    modality = "audio"
    layout = "cochlea"

    def __init__(self, root: str | Path, split: str = "train", *, single_digits: bool = True,
                 on_error: str = "raise", limit: int | None = None, transform=None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        import h5py

        if split not in SPLITS:
            raise ConfigError("split", f"must be one of {list(SPLITS)}, got {split!r}")
        root = Path(root)
        self.file = root / HDF5_NAME if root.is_dir() else root
        self.split = split
        self.single_digits = single_digits
        self.sensor_size = (N_CHANNELS,)
        self.classes = DIGITS
        self._parts: list[dict[str, str]] = []
        bs1 = sorted(root.glob("*.bs1")) if root.is_dir() else [root] if root.suffix == ".bs1" else []
        if bs1 and not self.file.is_file() or root.suffix == ".bs1":
            self._from_bs1(root, bs1)
            return
        if not self.file.exists():
            raise DataError(self.file, f"cannot open: no such file (a data set folder holds "
                            f"{HDF5_NAME} or .bs1 files)")
        try:
            with h5py.File(self.file, "r") as f:
                missing = [g for g in (f"{split}_labels", f"{split}_addresses", f"{split}_timestamps")
                           if g not in f]
                names = None if missing else f[f"{split}_labels"][()]
        except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError... on corrupt files
            raise DataError(self.file, f"cannot open as HDF5: {exc!r}") from None
        if missing:
            raise DataError(self.file, f"no {missing[0]!r} in the file (not the n-tidigits layout)")
        for row, raw in enumerate(np.atleast_1d(names)):
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            try:
                parts = parse_label(key)
            except ValueError as exc:
                if self.on_error == "raise":
                    raise DataError(self.file, f"{split}_labels: {exc}", row=row) from None
                self.skipped.append((f"{self.file}:{split}_labels[{row}]", str(exc)))
                continue
            if single_digits and len(parts["digits"]) != 1:
                continue
            self._keys.append(key)
            self._labels.append(parts["digits"])
            self._parts.append(parts)
        by_key = dict(zip(self._keys, self._parts, strict=True))
        self._finish()
        self._parts = [by_key[k] for k in self._keys]

    def _from_bs1(self, root: Path, files: list[Path]) -> None:
        """Utterances in SLAYER's ``.bs1`` format, one per file: no label (it is not in the file)."""
        self.file = root
        self.classes = ()
        for path in files:
            self._keys.append(path)
            self._labels.append(None)
            self._parts.append({"gender": "", "speaker": "", "digits": ""})
        by_key = dict(zip(self._keys, self._parts, strict=True))
        self._finish()
        self._parts = [by_key[k] for k in self._keys]

    def _key_path(self, key: str | Path) -> str:
        if isinstance(key, Path):
            return str(key)
        return f"{self.file}:{self.split}/{key}"

    def _read(self, key: str | Path) -> np.ndarray:
        import h5py

        if isinstance(key, Path):
            ev = read_bs1(key)
            check_sorted(str(key), ev["t"])
            return ev

        where = self._key_path(key)
        try:
            with h5py.File(self.file, "r") as f:
                ga, gt = f[f"{self.split}_addresses"], f[f"{self.split}_timestamps"]
                found = key in ga and key in gt
                addr, ts = (np.asarray(ga[key][()]), np.asarray(gt[key][()])) if found else (None, None)
        except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError... on corrupt files
            raise DataError(where, f"cannot read: {exc!r}") from None
        if addr is None or ts is None:
            raise DataError(where, "utterance listed in labels but has no addresses/timestamps")
        if addr.dtype.kind not in "iuf" or ts.dtype.kind not in "iuf":
            raise DataError(where, f"addresses ({addr.dtype}) and timestamps ({ts.dtype}) must be numbers")
        if addr.ndim != 1 or addr.shape != ts.shape:
            raise DataError(where, f"addresses {addr.shape} and timestamps {ts.shape} differ")
        if not len(addr):
            raise DataError(where, "utterance holds no events (empty)", row=0)
        bad = np.flatnonzero(~np.isfinite(ts) | (ts < 0) | (ts > 1e9))
        if len(bad):
            raise DataError(where, f"timestamp {ts[bad[0]]!r} is not a time in 0..1e9 s", row=int(bad[0]))
        bad = np.flatnonzero((addr < 0) | (addr >= N_CHANNELS) | (addr != np.round(addr)))
        if len(bad):
            raise DataError(where, f"address {addr[bad[0]]!r} is not a channel 0..{N_CHANNELS - 1}",
                            row=int(bad[0]))
        ev = np.empty(len(addr), dtype=COCHLEA_DTYPE)
        ev["t"] = np.round(ts.astype(np.float64) * 1e6).astype(np.int64)
        ev["x"] = addr
        ev["p"] = 0
        check_sorted(where, ev["t"])
        return ev

    def utterance(self, i: int) -> str:
        """The full label string of sample i (``<gender>-<speaker>-<a|b>-<digits>``; a .bs1 file's name)."""
        return str(self._keys[i])

    def speaker(self, i: int) -> str:
        return self._parts[i]["speaker"]

    def gender(self, i: int) -> str:
        return self._parts[i]["gender"]
