"""Timed replay schedule: a dataset becomes (due_us, EventPacket) pairs, pure and synchronous (no sleeping)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..events import EventPacket, dtype_for

__all__ = ["ReplayConfig", "schedule", "merge", "sample_order", "split_sample", "split_chunks",
           "stream_ids", "parse_speed"]


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """How a dataset is replayed as a stream.

    ``packet_us`` cuts each sample into packets of that many microseconds of sample time (the last
    one shorter); ``packet_events`` (when set) cuts by event count instead. ``speed`` is used by
    ``clock.pace`` (1 = real time, k = k times faster, "max" = no sleeping). ``gap_us`` of stream
    time separates consecutive samples. ``order`` is "file" or "shuffle" (with ``seed``; every
    repeat is shuffled anew). ``limit`` keeps the first ``limit`` samples of the order; the whole
    order is played ``repeat`` times. ``streams`` is how many streams a replayer runs (each its own
    schedule; ``stream_ids`` names them and the replayer offsets their seeds).
    """

    packet_us: int = 1000
    packet_events: int | None = None
    speed: float | Literal["max"] = 1.0
    gap_us: int = 0
    order: Literal["file", "shuffle"] = "file"
    seed: int = 0
    repeat: int = 1
    limit: int | None = None
    streams: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if type(self.packet_us) is not int or self.packet_us < 1:
            raise ConfigError("packet_us", f"must be an integer >= 1, got {self.packet_us!r}")
        if self.packet_events is not None and (type(self.packet_events) is not int
                                               or self.packet_events < 1):
            raise ConfigError("packet_events", f"must be an integer >= 1 or None, got {self.packet_events!r}")
        if self.speed != "max":
            if type(self.speed) not in (int, float) or not (0 < self.speed < float("inf")):
                raise ConfigError("speed", f"must be a positive number or 'max', got {self.speed!r}")
        if type(self.gap_us) is not int or self.gap_us < 0:
            raise ConfigError("gap_us", f"must be an integer >= 0, got {self.gap_us!r}")
        if self.order not in ("file", "shuffle"):
            raise ConfigError("order", f"must be 'file' or 'shuffle', got {self.order!r}")
        if type(self.seed) is not int:
            raise ConfigError("seed", f"must be an integer, got {self.seed!r}")
        if type(self.repeat) is not int or self.repeat < 1:
            raise ConfigError("repeat", f"must be an integer >= 1, got {self.repeat!r}")
        if self.limit is not None and (type(self.limit) is not int or self.limit < 0):
            raise ConfigError("limit", f"must be an integer >= 0 or None, got {self.limit!r}")
        if type(self.streams) is not int or self.streams < 1:
            raise ConfigError("streams", f"must be an integer >= 1, got {self.streams!r}")


def parse_speed(text: str) -> float | str:
    """'max' or a positive number from a command-line string."""
    if text == "max":
        return "max"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError("speed", f"must be a positive number or 'max', got {text!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError("speed", f"must be a positive number or 'max', got {text!r}")
    return value


def stream_ids(prefix: str, n: int) -> list[str]:
    """Names of n streams: ``prefix`` alone for one stream, else ``prefix.0`` .. ``prefix.<n-1>``."""
    return [prefix] if n == 1 else [f"{prefix}.{i}" for i in range(n)]


def sample_order(n: int, cfg: ReplayConfig) -> Iterator[int]:
    """Sample indices in replay order: file order or seeded shuffles, limited, repeated."""
    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.repeat):
        idx = np.arange(n) if cfg.order == "file" else rng.permutation(n)
        if cfg.limit is not None:
            idx = idx[: cfg.limit]
        yield from (int(i) for i in idx)


def _edges(events: np.ndarray, duration: int, cfg: ReplayConfig) -> tuple[np.ndarray, np.ndarray]:
    """Packet boundaries in sample time and the matching event indices (both of length k + 1)."""
    t = events["t"]
    n = len(events)
    if cfg.packet_events is None:
        times = np.arange(0, duration, cfg.packet_us, dtype=np.int64)
        times = np.append(times, np.int64(duration))
        idx = np.searchsorted(t, times, side="left")
        idx[-1] = n
        return times, idx
    if n == 0:
        return np.array([0, duration], dtype=np.int64), np.array([0, 0], dtype=np.int64)
    # at most packet_events per packet, never splitting the events of one timestamp (a run of
    # equal times longer than packet_events stays whole)
    cuts, start, size = [], 0, cfg.packet_events
    while start + size < n:
        cut = int(np.searchsorted(t, t[start + size], side="left"))
        if cut <= start:
            cut = int(np.searchsorted(t, t[start + size], side="right"))
            if cut >= n:
                break
        cuts.append(cut)
        start = cut
    cuts = np.asarray(cuts, dtype=np.int64)
    idx = np.concatenate(([0], cuts, [n])).astype(np.int64)
    times = np.empty(len(idx), dtype=np.int64)
    times[0] = 0
    times[1:-1] = t[cuts - 1] + 1  # a packet ends just after its last event
    times[-1] = duration
    return times, idx


def split_sample(events: np.ndarray, duration: int, cfg: ReplayConfig) -> Iterator[tuple[int, int, np.ndarray]]:
    """(t_start, t_end, events view) of each packet of one sample, covering [0, duration)."""
    times, idx = _edges(events, duration, cfg)
    for k in range(len(times) - 1):
        yield int(times[k]), int(times[k + 1]), events[idx[k]: idx[k + 1]]


def split_chunks(chunks: Iterable[np.ndarray], packet_us: int, want: np.dtype | None = None,
                 where: str = "recording", unit_us: int = 1000) -> Iterator[tuple[int, int, np.ndarray, bool]]:
    """(t_start, t_end, events, is_last) packets of ``packet_us`` covering a sample given as
    consecutive sorted chunks (t from the sample's start), without holding more than a chunk and
    one packet: the same packets ``split_sample`` cuts from the whole sample when its duration is
    its last event time + 1 rounded up to a whole ``unit_us`` (the readers' rule; one unit when
    there is no event); the last packet may be shorter.
    DataError (naming ``where``) for a chunk of another layout, a negative time or time going back.
    """
    buf = None          # events not yet packed (all at or after ``edge``)
    edge = 0            # start of the next packet
    pending = None      # the last packet cut, held back until we know whether it is the last
    last_t = -1
    for chunk in chunks:
        if want is not None and chunk.dtype != want:
            raise DataError(where, f"events dtype {chunk.dtype} is not the layout {want}")
        if not len(chunk):
            continue
        t = chunk["t"]
        if int(t[0]) < max(last_t, 0) or (len(t) > 1 and np.count_nonzero(t[1:] < t[:-1])):
            raise DataError(where, "negative event time" if int(t[0]) < 0 else
                            "events are not sorted by time")
        last_t = int(t[-1])
        buf = chunk if buf is None or not len(buf) else np.concatenate((buf, chunk))
        # packets ending at or before the last time seen are complete (later events come after it)
        tb = buf["t"]
        ends = np.arange(edge + packet_us, last_t + 1, packet_us, dtype=np.int64)
        if not len(ends):
            continue
        cut = np.searchsorted(tb, ends, side="left")
        start = 0
        for e, c in zip(ends.tolist(), cut.tolist(), strict=True):
            if pending is not None:
                yield (*pending, False)
            pending = (edge, e, buf[start:c])
            edge, start = e, c
        buf = buf[start:]
    end = max(unit_us, -(-(last_t + 1) // unit_us) * unit_us)
    if buf is None:
        buf = np.zeros(0, want) if want is not None else np.zeros(0)
    while edge < end:
        e = min(edge + packet_us, end)
        c = int(np.searchsorted(buf["t"], e, side="left")) if len(buf) else 0
        if pending is not None:
            yield (*pending, False)
        pending = (edge, e, buf[:c])
        buf, edge = buf[c:], e
    yield (*pending, True)


def schedule(dataset: Any, stream_id: str, cfg: ReplayConfig) -> Iterator[tuple[int, EventPacket]]:
    """(due_us, packet) of one stream: each packet is due when its span has passed in stream time.

    Packet times are sample time (t from the sample's start, as the dataset gives them); stream time
    runs on over samples and gaps: sample k starts at the sum of the earlier durations and gaps.
    Packets carry modality, sample id, label, sample_begin/sample_end and contiguous ``seq`` from 0;
    an empty packet (no events in its span) is still sent, so time advances.
    """
    layout = getattr(dataset, "layout", "")
    modality = getattr(dataset, "modality", "")
    want = dtype_for(layout) if layout else None
    seq = 0
    offset = 0  # stream time at which the current sample starts
    chunked = callable(getattr(dataset, "chunks", None)) and cfg.packet_events is None
    for i in sample_order(len(dataset), cfg):
        if chunked:  # a long recording: streamed chunk by chunk, memory bounded by a chunk
            label = dataset.label(i)
            duration = 0
            for t0, t1, ev, last in split_chunks(dataset.chunks(i), cfg.packet_us, want,
                                                 f"{getattr(dataset, 'name', 'dataset')}[{i}]"):
                yield offset + t1, EventPacket(stream_id=stream_id, seq=seq, t_start=t0, t_end=t1,
                                               events=ev, modality=modality, sample_id=i,
                                               label=label, sample_begin=t0 == 0, sample_end=last)
                seq += 1
                duration = t1
            offset += duration + cfg.gap_us
            continue
        events = dataset.events(i)
        if want is not None and events.dtype != want:
            raise DataError(f"{getattr(dataset, 'name', 'dataset')}[{i}]",
                            f"events dtype {events.dtype} is not the {layout!r} layout")
        duration = int(dataset.duration_us(i))
        if len(events):
            t = events["t"]
            where = f"{getattr(dataset, 'name', 'dataset')}[{i}]"
            if int(t[0]) < 0:
                raise DataError(where, "negative event time")
            if len(t) > 1 and np.count_nonzero(t[1:] < t[:-1]):
                raise DataError(where, "events are not sorted by time")
            duration = max(duration, int(t[-1]) + 1)
        duration = max(duration, 1)
        label = dataset.label(i)
        parts = list(split_sample(events, duration, cfg))
        last = len(parts) - 1
        for k, (t0, t1, ev) in enumerate(parts):
            pkt = EventPacket(stream_id=stream_id, seq=seq, t_start=t0, t_end=t1, events=ev,
                              modality=modality, sample_id=i, label=label,
                              sample_begin=k == 0, sample_end=k == last)
            seq += 1
            yield offset + t1, pkt
        offset += duration + cfg.gap_us


def merge(schedules: Iterable[Iterator[tuple[int, EventPacket]]]) -> Iterator[tuple[int, EventPacket]]:
    """Several streams' schedules as one, ordered by due time (ties keep the given stream order).

    ``heapq.merge`` is stable: of equal keys, the item of the earlier iterable comes first.
    """
    yield from heapq.merge(*schedules, key=lambda item: item[0])
