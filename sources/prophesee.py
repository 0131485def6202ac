"""Prophesee event-camera files: EVT 2.0 / EVT 3.0 ``.raw`` and ``.dat``, decoded by expelliarmus.

A file starts with ``%``-prefixed ASCII header lines (``% evt 3.0``, ``% format EVT3;height=720;
width=1280``, ``% geometry 1280x720``, the sensor's ``plugin_name``, a date), then the binary body:
16-bit (EVT 3.0) or 32-bit (EVT 2.0) little-endian words carrying time-high / time-low, y, x and
polarity (EVT 3.0 packs vectors of events: a base x and a validity mask), or for ``.dat`` an event
type and size byte and then 8-byte events (uint32 t in us, uint32 x:14 y:14 p:4). The body is
decoded by the maintained decoder ``expelliarmus`` (optional extra ``sensors``), chunk by chunk, so
memory stays bounded for files of many gigabytes. The header parsing, the sensor size, the checks
(order, sensor bounds, an undecodable body) and the dataset are ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from streamlsm.errors import DataError

from ._recording import RecordingDataset, missing_extra

__all__ = ["read_header", "encoding_of", "read_prophesee", "iter_prophesee", "ProphRawDataset",
           "EVT3Dataset", "EVT2Dataset", "DATDataset", "SENSOR_SIZES"]

#: sensor sizes (width, height) by the header's plugin / sensor name, for files that do not say
SENSOR_SIZES = {"gen3": (640, 480), "gen31": (640, 480), "gen4": (1280, 720), "gen41": (1280, 720),
                "imx636": (1280, 720), "imx646": (1280, 720), "genx320": (320, 320),
                "imx8": (320, 320), "atis": (304, 240)}
_ENCODINGS = {"evt3": "evt3", "evt3.0": "evt3", "evt2": "evt2", "evt2.0": "evt2"}
_HEADER_MAX = 1 << 16
_WORD = {"evt3": 2, "evt2": 4, "dat": 8}  # bytes per word / event of the body  # a header longer than this is not a Prophesee header


def read_header(path: str | Path) -> tuple[int, dict[str, str]]:
    """(header length in bytes, {key: value}) of the ``%`` lines at the start of a file.

    ``% evt 3.0`` gives {"evt": "3.0"}; ``% format EVT3;height=720;width=1280`` gives "format",
    "height" and "width"; ``% Width 304`` and ``% geometry 1280x720`` give width and height.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_MAX)
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    pos, out = 0, {}
    while head[pos:pos + 1] == b"%":
        end = head.find(b"\n", pos)
        if end < 0:
            raise DataError(path, "header line without an end (truncated file?)", offset=pos)
        line = head[pos + 1:end].decode("ascii", "replace").strip()
        pos = end + 1
        if line == "end":
            break
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip()
        if key == "format":
            fmt, *opts = value.split(";")
            out["format"] = fmt.strip().lower()
            for opt in opts:
                k, _, v = opt.partition("=")
                out[k.strip().lower()] = v.strip()
        elif key == "geometry" and (m := re.fullmatch(r"(\d+)\s*x\s*(\d+)", value)):
            out["width"], out["height"] = m.group(1), m.group(2)
        else:
            out.setdefault(key, value)
    return pos, out


def encoding_of(path: str | Path, header: dict[str, str]) -> str:
    """expelliarmus' encoding name ("evt2", "evt3", "dat") for a file; DataError if unsupported."""
    if Path(path).suffix.lower() == ".dat":
        return "dat"
    for text in (header.get("format", ""), "evt" + header.get("evt", "")):
        enc = _ENCODINGS.get(text.replace(" ", "").lower())
        if enc:
            return enc
    said = header.get("format") or header.get("evt") or "nothing"
    raise DataError(path, f"not an EVT 2.0 / EVT 3.0 RAW file (its header says {said!r}; "
                    f"EVT 2.1 and others are not supported)")


def _sensor(header: dict[str, str]) -> tuple[int | None, int | None]:
    if "width" in header and "height" in header:
        try:
            return int(header["width"]), int(header["height"])
        except ValueError:
            pass
    name = (header.get("plugin_name", "") + " " + header.get("sensor_generation", "")).lower()
    for key in sorted(SENSOR_SIZES, key=len, reverse=True):
        if key in name:
            return SENSOR_SIZES[key]
    return None, None


def iter_prophesee(path: str | Path, *, chunk_events: int = 1 << 20,
                   encoding: str | None = None) -> Iterator[np.ndarray]:
    """The events of a ``.raw`` / ``.dat`` file in chunks of about ``chunk_events`` (expelliarmus'
    structured arrays: t int64 us as stored, x, y int16, p uint8). DataError for a missing file,
    an unknown encoding or a body of which the decoder can read no event."""
    try:
        from expelliarmus import Wizard
    except ImportError:
        raise missing_extra("expelliarmus", "reading Prophesee RAW / DAT files") from None
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    size_hdr, header = read_header(path)
    enc = encoding or encoding_of(path, header)
    body = path.stat().st_size - size_hdr
    word = _WORD[enc]
    tail = (body - (2 if enc == "dat" else 0)) % word if body > 0 else 0
    if tail:  # a file cut inside a word (a recording that was not closed properly)
        raise DataError(path, f"truncated: {tail} trailing bytes do not make a {word}-byte "
                        f"{enc} word", offset=path.stat().st_size - tail)
    wiz = Wizard(encoding=enc, fpath=str(path), chunk_size=int(chunk_events))
    n = 0
    for chunk in wiz.read_chunk():
        n += len(chunk)
        yield chunk
    if n == 0 and body > (2 if enc == "dat" else 0):
        raise DataError(path, f"the {enc} decoder (expelliarmus) read no event from the "
                        f"{body}-byte body: not a valid {enc} stream", offset=size_hdr)


def read_prophesee(path: str | Path, *, encoding: str | None = None) -> np.ndarray:
    """All events of a ``.raw`` / ``.dat`` file in one array (see ``iter_prophesee``); for large
    files use ``iter_prophesee`` or a dataset's ``chunks``."""
    parts = list(iter_prophesee(path, encoding=encoding))
    if not parts:
        from streamlsm.events import DVS_DTYPE

        return np.zeros(0, DVS_DTYPE)
    return np.concatenate(parts)


class ProphRawDataset(RecordingDataset):
    """Prophesee ``.raw`` recordings, EVT 2.0 or 3.0 as each file's header says (``evt`` option
    "2"/"3" to insist). See RecordingDataset for root, labels, options; t from the first event."""

    name = "prophesee-raw"
    suffixes: ClassVar[tuple[str, ...]] = (".raw",)
    _require: ClassVar[str | None] = None

    def _encoding(self, path: Path) -> tuple[str, dict[str, str]]:
        _, header = read_header(path)
        enc = encoding_of(path, header)
        if self._require and enc != self._require:
            raise DataError(path, f"is {enc}, not {self._require} (the 'prophesee-raw' source "
                            f"reads either)")
        return enc, header

    @classmethod
    def accepts(cls, path: str | Path) -> bool:
        if not super().accepts(path):
            return False
        if Path(path).is_dir() or cls._require is None:
            return True
        try:
            return encoding_of(path, read_header(path)[1]) == cls._require
        except DataError:
            return False

    def _file_size(self, path: Path) -> tuple[int | None, int | None]:
        _, header = self._encoding(path)
        w, h = _sensor(header)
        if w is None:  # the header does not say: one bounded pass over the file finds the extent
            xmax = ymax = -1
            for c in iter_prophesee(path, chunk_events=self.chunk_events):
                if len(c):
                    xmax, ymax = max(xmax, int(c["x"].max())), max(ymax, int(c["y"].max()))
            return (xmax + 1, ymax + 1) if xmax >= 0 else (None, None)
        return w, h

    def _raw_chunks(self, path: Path) -> Iterator[np.ndarray]:
        enc, _ = self._encoding(path)
        return iter_prophesee(path, chunk_events=self.chunk_events, encoding=enc)


class EVT3Dataset(ProphRawDataset):
    """Prophesee EVT 3.0 ``.raw`` recordings (a file of another encoding is a DataError)."""

    name = "evt3"
    _require = "evt3"


class EVT2Dataset(ProphRawDataset):
    """Prophesee EVT 2.0 ``.raw`` recordings (a file of another encoding is a DataError)."""

    name = "evt2"
    _require = "evt2"


class DATDataset(ProphRawDataset):
    """Prophesee ``.dat`` recordings (e.g. N-CARS: ``cars/`` and ``background/`` folders give the
    labels). The sensor size is the header's, else the extent of the first file's events."""

    name = "prophesee-dat"
    suffixes: ClassVar[tuple[str, ...]] = (".dat",)
