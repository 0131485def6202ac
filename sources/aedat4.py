"""iniVation AEDAT 4.0 files (DV software), decoded by the maintained decoder ``aedat``.

A file is the line ``#!AER-DAT4.0``, a FlatBuffers IOHeader (compression, and an XML description of
the streams: their ids, types and, for event streams, the sensor's width and height), then packets
(a stream id, a size, an LZ4- or ZSTD-compressed FlatBuffers body); event packets hold ``t`` (int64
us), ``x``, ``y`` and the polarity ``p``. The PyPI package ``aedat`` (optional extra ``sensors``)
decodes the packets one at a time, so memory stays bounded by a packet; packets of the chosen event
stream are gathered into chunks of about ``chunk_events``; frames, IMU and trigger packets are
skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from streamlsm.errors import ConfigError, DataError

from ._recording import RecordingDataset, missing_extra

__all__ = ["MAGIC", "streams", "iter_aedat4", "read_aedat4", "AEDAT4Dataset"]

MAGIC = b"#!AER-DAT4.0"


def _decoder(path: str | Path):
    try:
        import aedat
    except ImportError:
        raise missing_extra("aedat", "reading AEDAT 4 files") from None
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    if magic != MAGIC:
        raise DataError(path, f"not an AEDAT 4.0 file (starts with {magic[:12]!r}, expected {MAGIC!r})",
                        offset=0)
    try:
        return aedat.Decoder(str(path))
    except Exception as exc:  # the decoder's own error types: translated at the boundary
        raise DataError(path, f"AEDAT 4 header: {exc}") from None


def streams(path: str | Path) -> dict[int, dict]:
    """The file's streams: {id: {"type": "events", "width": 346, "height": 260}, ...}."""
    return dict(_decoder(path).id_to_stream())


def _event_stream(path: str | Path, table: dict[int, dict], stream: int | None) -> int:
    ids = sorted(i for i, s in table.items() if s.get("type") == "events")
    if stream is None:
        if not ids:
            raise DataError(path, f"holds no event stream (streams: {table})")
        return ids[0]
    if stream not in ids:
        raise ConfigError("stream", f"{path}: no event stream {stream}; event streams: {ids}")
    return stream


def iter_aedat4(path: str | Path, *, stream: int | None = None,
                chunk_events: int = 1 << 20) -> Iterator[np.ndarray]:
    """Events of one event stream (default: the first) in chunks of at least ``chunk_events``
    (whole packets; the last chunk shorter), as the decoder gives them (t uint64 us, x, y uint16,
    p bool). DataError for a file that is not AEDAT 4.0 or a packet the decoder rejects."""
    dec = _decoder(path)
    sid = _event_stream(path, dict(dec.id_to_stream()), stream)
    parts: list[np.ndarray] = []
    n = 0
    try:
        for packet in dec:
            if packet.get("stream_id") != sid or "events" not in packet:
                continue
            ev = packet["events"]
            parts.append(ev)
            n += len(ev)
            if n >= chunk_events:
                yield np.concatenate(parts)
                parts, n = [], 0
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(path, f"AEDAT 4 packet: {exc}") from None
    if parts:
        yield np.concatenate(parts)


def read_aedat4(path: str | Path, *, stream: int | None = None) -> np.ndarray:
    """All events of one event stream in one array (see ``iter_aedat4``)."""
    parts = list(iter_aedat4(path, stream=stream))
    if not parts:
        from streamlsm.events import DVS_DTYPE

        return np.zeros(0, DVS_DTYPE)
    return np.concatenate(parts)


class AEDAT4Dataset(RecordingDataset):
    """AEDAT 4.0 recordings (``.aedat4``); ``stream`` picks the event stream (default: the first).
    The sensor size comes from the stream's description in the header. See RecordingDataset."""

    name = "aedat4"
    suffixes: ClassVar[tuple[str, ...]] = (".aedat4",)

    def __init__(self, root: str | Path, *, stream: int | None = None, **options) -> None:
        if stream is not None and (type(stream) is not int or stream < 0):
            raise ConfigError("stream", f"must be an integer >= 0 or None, got {stream!r}")
        self.stream = stream
        super().__init__(root, **options)

    def _file_size(self, path: Path) -> tuple[int | None, int | None]:
        table = streams(path)
        s = table[_event_stream(path, table, self.stream)]
        return s.get("width"), s.get("height")

    def _raw_chunks(self, path: Path) -> Iterator[np.ndarray]:
        return iter_aedat4(path, stream=self.stream, chunk_events=self.chunk_events)
