"""THE segmenter: where a stream is cut into the pieces a reservoir runs, and each piece's noise key.

Two ways to cut, one unit with one set of settings (``[pipeline] segment, window_us, hop_us``):

- ``"sample"``: the source marks the boundaries (``sample_begin`` / ``sample_end`` on its packets).
  A stream joined mid-sample skips packets until the next sample begins; a sample cut short by a new
  ``sample_begin`` is counted incomplete. One reservoir slot per stream, ``(stream_id, 0)``.
- ``"window"``: continuous input. Window ``k`` of a stream covers ``[T0 + k hop, T0 + k hop +
  window)`` (``T0``: the start of the stream's first packet, or of the first packet after a break)
  and is its own reservoir run from rest; sample markers are ignored. A stream holds
  ``ceil(window / hop)`` slots ``(stream_id, k mod slots)``; window ``k`` ends (and gives features)
  once a packet reaches its end.

Deciding where to cut (``Segmenter.cut``, over the stream's explicit ``Cursor``) is apart from
running the pieces (the reservoir). A piece keeps stream time: its events are not copied or
shifted, and a window's first piece starts at the window's start, so the reservoir counts bins
from there exactly as an offline run of the window's events rebased to 0.

Read noise: one key rule (``noise_key``): a sample's key is its ``sample_id``; window ``k`` of a
stream has ``window_key(stream_id, k)``. The offline ``Reservoir.encode`` with the same keys gives
the same features.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..events import EventPacket

__all__ = ["Segmenter", "Cursor", "Piece", "Slot", "window_key", "noise_key"]

Slot = tuple[str, int]  # a reservoir state slot: (stream_id, k)


def window_key(stream_id: str, k: int) -> int:
    """Read-noise key of window ``k`` of a stream (pass it as ``Reservoir.encode``'s sample_id)."""
    return ((zlib.crc32(stream_id.encode()) & 0x7FFFFFFF) << 32) | (int(k) & 0xFFFFFFFF)


def noise_key(mode: str, stream_id: str, index: int) -> int:
    """THE read-noise key rule: ``index`` is the sample id (sample mode) or window index (window mode)."""
    return window_key(stream_id, index) if mode == "window" else int(index)


@dataclass(slots=True)
class Cursor:
    """Where one stream is in its segmentation (explicit state, owned by the caller)."""

    in_sample: bool = False                 # sample mode: inside a sample
    origin: int | None = None               # window mode: T0, start of window 0 (None: not started)
    slot_window: list[int] = field(default_factory=list)  # window mode: window index held per slot
    open: set[int] = field(default_factory=set)           # window mode: windows begun, not ended


@dataclass(slots=True)
class Piece:
    """What the reservoir runs: a part of one sample or window, its slot and its noise key.

    ``packet`` is in stream time; its ``sample_begin`` / ``sample_end`` are the piece's own (a
    window's first and last piece); its ``sample_id`` is the sample id or the window index.
    """

    packet: EventPacket
    slot: Slot
    key: int


class Segmenter:
    """Cuts packets into pieces: ``cut(cursor, packet) -> list[Piece]``; counts what it skips.

    ``skipped_packets`` (outside any sample) and ``incomplete_samples`` (samples or windows ended
    early) are counted on ``stats`` (any object with those attributes, e.g. ``PipelineStats``).
    """

    def __init__(self, mode: Literal["sample", "window"] = "sample", window_us: int = 100_000,
                 hop_us: int = 50_000, stats=None) -> None:
        if mode not in ("sample", "window"):
            raise ValueError(f"segment mode must be 'sample' or 'window', got {mode!r}")
        self.mode = mode
        self.window_us, self.hop_us = int(window_us), int(hop_us)
        self.stats = stats if stats is not None else _Counts()
        self.slots = -(-self.window_us // self.hop_us) if mode == "window" else 1

    def slots_of(self, stream_id: str) -> list[Slot]:
        """Every reservoir slot a stream may hold."""
        return [(stream_id, k) for k in range(self.slots)]

    def cut(self, cur: Cursor, pkt: EventPacket) -> list[Piece]:
        if self.mode == "window":
            return self._windows(cur, pkt)
        if pkt.sample_begin:
            if cur.in_sample:
                self.stats.incomplete_samples += 1
            cur.in_sample = True
        if not cur.in_sample:
            self.stats.skipped_packets += 1
            return []
        if pkt.sample_end:
            cur.in_sample = False
        return [Piece(pkt, (pkt.stream_id, 0), noise_key("sample", pkt.stream_id, pkt.sample_id))]

    def restart(self, cur: Cursor) -> None:
        """End what the stream has in flight (counted incomplete): a gap, a refused packet, a
        reservoir error. The next sample (or, in window mode, the next packet) starts afresh."""
        if cur.in_sample:
            self.stats.incomplete_samples += 1
        self.stats.incomplete_samples += len(cur.open)
        cur.in_sample, cur.origin = False, None
        cur.slot_window, cur.open = [], set()

    def _windows(self, cur: Cursor, pkt: EventPacket) -> list[Piece]:
        W, hop, M = self.window_us, self.hop_us, self.slots
        if cur.origin is None:
            cur.origin, cur.slot_window = pkt.t_start, [-1] * M
        T0 = cur.origin
        a, b = max(pkt.t_start, T0), pkt.t_end
        if b <= a:
            return []
        t = pkt.events["t"]
        sid = pkt.stream_id
        out = []
        # windows overlapping [a, b), oldest first: a window ending in this packet frees its slot
        # before a later window of this packet begins in it
        for k in range(max(0, (a - T0 - W) // hop + 1), (b - 1 - T0) // hop + 1):
            ws = T0 + k * hop
            sa, sb = max(a, ws), min(b, ws + W)
            if sa >= sb:
                continue
            j = k % M
            begin = cur.slot_window[j] != k
            end = sb == ws + W
            if begin:
                if cur.slot_window[j] in cur.open:  # a window replaced before its end: incomplete
                    cur.open.discard(cur.slot_window[j])
                    self.stats.incomplete_samples += 1
                cur.slot_window[j] = k
                cur.open.add(k)
            if end:
                cur.open.discard(k)
            i0, i1 = np.searchsorted(t, (sa, sb))
            piece = EventPacket(sid, pkt.seq, ws if begin else sa, sb, pkt.events[i0:i1], pkt.modality, k,
                                pkt.label, begin, end, pkt.sent_ns)
            out.append(Piece(piece, (sid, j), noise_key("window", sid, k)))
        return out


@dataclass(slots=True)
class _Counts:
    skipped_packets: int = 0
    incomplete_samples: int = 0
