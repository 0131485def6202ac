"""jAER AEDAT 2 cochlea recordings (Neuromorphic Auditory Sensor): reader, writer and NASDataset.

A file is an optional ASCII header of ``#`` lines (ending with ``#End Of ASCII Header``), then
records of a big-endian address (2 or 4 bytes) and a big-endian uint32 timestamp in ticks. NAS
address = ear * channels * 2 + channel * 2 + polarity. Address width, tick and channel count come
from options, else from the file name (``addr2b``/``addr4b``, ``ts02``/``ts1``, ``64ch``/``32ch``,
``mono``/``stereo``), else from the header (``#!AER-DAT1.0``: 2-byte addresses, 2.0: 4-byte).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import COCHLEA_DTYPE

from ._common import SampleDataset, atomic_write, check_sorted, natural_key, read_records

__all__ = ["read_aedat", "write_aedat", "parse_header", "file_options", "NASDataset",
           "HEADER_END"]

HEADER_END = b"#End Of ASCII Header"
STEREO = ("fold", "split")
ON_OFF = ("fold", "split", "drop")
_WRAP = 1 << 32


def parse_header(data: bytes) -> tuple[int, list[str]]:
    """(length in bytes, lines) of the ``#`` header at the start of ``data`` (0, [] if none)."""
    pos, lines = 0, []
    while data[pos:pos + 1] == b"#":
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        line = data[pos:end]
        lines.append(line.decode("ascii", "replace").rstrip("\r\n"))
        pos = end
        if line.startswith(HEADER_END):
            break
    return pos, lines


def file_options(path: str | Path) -> dict[str, object]:
    """What the file name says: addr_bytes, tick_us, channels, ears (only the keys it names)."""
    name = Path(path).name.lower()
    out: dict[str, object] = {}
    if m := re.search(r"addr([124])b", name):
        out["addr_bytes"] = int(m.group(1))
    if m := re.search(r"(?:^|_)ts(\d+)(?=[_.]|$)", name):
        digits = m.group(1)  # "02" = 0.2 us, "1" = 1 us, "005" = 0.05 us
        out["tick_us"] = float(f"0.{digits[1:]}") if digits.startswith("0") else float(digits)
    if m := re.search(r"(\d+)ch", name):
        out["channels"] = int(m.group(1))
    if "stereo" in name:
        out["ears"] = 2
    elif "mono" in name:
        out["ears"] = 1
    return out


def _resolve(path: Path, lines: list[str], addr_bytes, tick_us, channels, ears) -> tuple:
    named = file_options(path)
    if addr_bytes is None:
        addr_bytes = named.get("addr_bytes")
    if addr_bytes is None and lines:
        version = lines[0].strip()
        addr_bytes = {"#!AER-DAT1.0": 2, "#!AER-DAT2.0": 4}.get(version)
    if addr_bytes is None:  # the file does not say: a data problem (datasets may skip it)
        raise DataError(path, "cannot tell the address width: no addr2b/addr4b in the name and no "
                        "#!AER-DAT1.0/2.0 header line; pass addr_bytes", offset=0)
    if addr_bytes not in (2, 4):
        raise ConfigError("addr_bytes", f"must be 2 or 4, got {addr_bytes!r}")
    tick_us = named.get("tick_us", 1.0) if tick_us is None else tick_us
    if not tick_us or tick_us <= 0:
        raise ConfigError("tick_us", f"must be > 0, got {tick_us!r}")
    channels = named.get("channels") if channels is None else channels
    if not isinstance(channels, int) or channels <= 0:
        raise ConfigError("channels", f"must be a channel count > 0 (not given, not in the name "
                          f"{path.name}), got {channels!r}")
    ears = named.get("ears", 2) if ears is None else ears
    if ears not in (1, 2):
        raise ConfigError("ears", f"must be 1 or 2, got {ears!r}")
    return addr_bytes, Fraction(tick_us).limit_denominator(10_000), channels, ears


def read_aedat(path: str | Path, addr_bytes: int | None = None, tick_us: float | None = None,
               channels: int | None = None, stereo: str = "fold", on_off: str = "fold", *,
               ears: int | None = None) -> np.ndarray:
    """Events of one NAS ``.aedat`` file as COCHLEA_DTYPE, t in us from the recording's time 0.

    ``stereo``: "fold" puts both ears on channels 0..channels-1, "split" offsets the right ear by
    ``channels``. ``on_off``: "fold" keeps the polarity in p (address bit 0), "split" makes each
    polarity its own channel (x = 2 * channel + polarity), "drop" sets p = 0. Timestamp wrap-around
    (uint32) is unwrapped. DataError (file and byte offset) for an empty or truncated file, an
    address beyond ``ears * channels * 2`` or timestamps going backwards.
    """
    path = Path(path)
    if stereo not in STEREO:
        raise ConfigError("stereo", f"must be one of {list(STEREO)}, got {stereo!r}")
    if on_off not in ON_OFF:
        raise ConfigError("on_off", f"must be one of {list(ON_OFF)}, got {on_off!r}")
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    skip, lines = parse_header(head)
    if skip == len(head) == 1 << 16:
        raise DataError(path, "ASCII header longer than 64 KiB or not terminated", offset=skip)
    addr_bytes, tick, channels, ears = _resolve(path, lines, addr_bytes, tick_us, channels, ears)
    record = addr_bytes + 4
    raw = read_records(path, record, skip=skip)
    rec = raw.reshape(-1).view(np.dtype([("a", f">u{addr_bytes}"), ("t", ">u4")]))
    addr = rec["a"].astype(np.int64)
    bad = np.flatnonzero(addr >= ears * channels * 2)
    if len(bad):
        i = int(bad[0])
        raise DataError(path, f"address {addr[i]} beyond {ears} ear(s) x {channels} channels x 2 "
                        f"polarities", offset=skip + i * record)
    ticks = rec["t"].astype(np.int64)
    if len(ticks) > 1:
        wraps = np.diff(ticks) < -(1 << 31)  # a huge step back is the uint32 counter wrapping
        if wraps.any():
            ticks[1:] += _WRAP * np.cumsum(wraps)
    ev = np.empty(len(rec), dtype=COCHLEA_DTYPE)
    ev["t"] = ticks * tick.numerator // tick.denominator
    check_sorted(path, ev["t"], record=record, base=skip)
    ear, rest = np.divmod(addr, channels * 2)
    chan, pol = np.divmod(rest, 2)
    if stereo == "split":
        chan = chan + ear * channels
    ev["x"] = 2 * chan + pol if on_off == "split" else chan
    ev["p"] = 0 if on_off == "drop" else pol
    return ev


def write_aedat(path: str | Path, addresses: np.ndarray, ticks: np.ndarray, addr_bytes: int = 2,
                header: bool = True) -> None:
    """Write raw records (big-endian address, uint32 ticks) with an optional AEDAT 2 header."""
    dt = np.dtype([("a", f">u{addr_bytes}"), ("t", ">u4")])
    rec = np.empty(len(addresses), dtype=dt)
    rec["a"], rec["t"] = addresses, ticks
    head = b""
    if header:
        version = b"2.0" if addr_bytes == 4 else b"1.0"
        head = b"#!AER-DAT" + version + b"\r\n# written by streamlsm\r\n" + HEADER_END + b"\r\n"
    data = head + rec.tobytes()
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


class NASDataset(SampleDataset):
    """The ``.aedat`` recordings in a folder (``root`` or ``root/nas_cochlea``), one sample per file.

    No labels (``label(i)`` is None, ``classes`` is empty). Options are passed to ``read_aedat``
    (what a file name says is used where an option is not given). ``sensor_size`` covers the widest
    file: (channels * (2 if stereo split) * (2 if on_off split),).
    """

    name = "nas"
    modality = "audio"
    layout = "cochlea"

    def __init__(self, root: str | Path, *, stereo: str = "fold", on_off: str = "fold",
                 addr_bytes: int | None = None, tick_us: float | None = None,
                 channels: int | None = None, on_error: str = "raise",
                 limit: int | None = None, transform=None) -> None:
        super().__init__(on_error=on_error, limit=limit, transform=transform)
        root = Path(root)
        if not list(root.glob("*.aedat")) and (root / "nas_cochlea").is_dir():
            root = root / "nas_cochlea"
        self.root = root
        self.options = dict(addr_bytes=addr_bytes, tick_us=tick_us, channels=channels,
                            stereo=stereo, on_off=on_off)
        if stereo not in STEREO:
            raise ConfigError("stereo", f"must be one of {list(STEREO)}, got {stereo!r}")
        if on_off not in ON_OFF:
            raise ConfigError("on_off", f"must be one of {list(ON_OFF)}, got {on_off!r}")
        self._keys = sorted(root.glob("*.aedat"), key=lambda q: natural_key(q.name))
        if not self._keys:
            raise DataError(root, "no .aedat files found")
        self._labels = [None] * len(self._keys)
        widest = max(channels or file_options(k).get("channels", 0) for k in self._keys)
        if not widest:
            raise ConfigError("channels", f"no file name in {root} gives the channel count "
                              "(e.g. 64ch): pass channels")
        self.sensor_size = (widest * (2 if stereo == "split" else 1) * (2 if on_off == "split" else 1),)
        self.classes = ()
        self._finish()

    def _read(self, key: Path) -> np.ndarray:
        return read_aedat(key, **self.options)

    def stem(self, i: int) -> str:
        """The recording's file name without extension (what it holds: tone, speech...)."""
        return Path(self._keys[i]).stem
