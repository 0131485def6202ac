"""Event layouts (named numpy structured dtypes), EventPacket, LabelEvent and pure time helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import WireError

__all__ = [
    "DVS_DTYPE",
    "COCHLEA_DTYPE",
    "SPIKES_DTYPE",
    "LAYOUTS",
    "MODALITIES",
    "layout_of",
    "dtype_for",
    "EventPacket",
    "LabelEvent",
    "slice_time",
    "empty_events",
    "as_layout",
]

# Field names and units follow tonic: t is int64 microseconds; cochlea and neural data put the
# channel / unit id in x. Little-endian, packed (no padding), so the wire payload is the array bytes.
DVS_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
COCHLEA_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("p", "i1")])
SPIKES_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2")])

#: layout name -> dtype. The wire carries only the name; the receiver takes the dtype from here.
LAYOUTS: dict[str, np.dtype] = {
    "dvs": DVS_DTYPE,
    "cochlea": COCHLEA_DTYPE,
    "spikes": SPIKES_DTYPE,
}

#: modality names used to route streams to reservoirs and projection heads.
MODALITIES = ("vision", "audio", "neural")


def dtype_for(layout: str) -> np.dtype:
    """The dtype of a layout name; raises WireError for an unknown name."""
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise WireError("layout", f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}") from None


def layout_of(events: np.ndarray) -> str:
    """The layout name of an events array (its dtype must be one of LAYOUTS exactly)."""
    for name, dt in LAYOUTS.items():
        if events.dtype == dt:
            return name
    raise WireError("events", f"dtype {events.dtype} is not a streamlsm layout")


def _layout_by_names(names: tuple[str, ...]) -> str | None:
    """The layout whose fields an array's field names cover best (dvs, then cochlea, then spikes)."""
    have = set(names)
    for name in ("dvs", "cochlea", "spikes"):
        if set(LAYOUTS[name].names) <= have:
            return name
    return None


def as_layout(events: np.ndarray, layout: str | None = None) -> np.ndarray:
    """``events`` in a streamlsm layout, converted field by field by NAME (tonic's x, y, t, p).

    Any structured array holding the layout's fields (any integer, bool or float widths, any field
    order, extra fields ignored: e.g. ``tonic.io`` arrays) is converted; an array already of the
    layout is returned as is (no copy). ``layout`` None picks the richest layout the field names
    cover (dvs > cochlea > spikes). ``t`` is microseconds: floats are rounded to whole
    microseconds. WireError (naming the field) for a missing field, a non-finite time or a value
    that does not fit the layout's width.
    """
    fields = getattr(getattr(events, "dtype", None), "fields", None)
    names = tuple(fields) if fields else None  # field names and titles (aedat's p is a title)
    if layout is None:
        if names is None:
            raise WireError("events", f"need a structured array with fields t, x (y, p), got "
                            f"{getattr(events, 'dtype', type(events).__name__)}")
        layout = _layout_by_names(names)
        if layout is None:
            raise WireError("events", f"fields {list(names)} hold no streamlsm layout "
                            f"(need t and x, optionally y and p)")
    want = dtype_for(layout)
    if isinstance(events, np.ndarray) and events.dtype == want:
        return events
    if names is None:
        raise WireError("events", f"need a structured array with fields {list(want.names)}, got "
                        f"{getattr(events, 'dtype', type(events).__name__)}")
    missing = [f for f in want.names if f not in names]
    if missing:
        raise WireError("events", f"layout {layout!r} needs fields {list(want.names)}; "
                        f"missing {missing} (have {list(names)})")
    out = np.empty(len(events), dtype=want)
    for f in want.names:
        src = np.asarray(events[f])
        dst = want[f]
        if src.dtype.kind == "f":
            if len(src) and not np.isfinite(src).all():
                raise WireError(f, "holds NaN or infinite values")
            src = np.rint(src)
        elif src.dtype.kind not in "biu":
            raise WireError(f, f"must be numeric, got {src.dtype}")
        if len(src) and src.dtype != dst and src.dtype.kind != "b":
            info = np.iinfo(dst)
            lo, hi = src.min(), src.max()
            if lo < info.min or hi > info.max:
                raise WireError(f, f"values {lo}..{hi} do not fit {dst} ({info.min}..{info.max})")
        out[f] = src
    return out


def empty_events(layout: str) -> np.ndarray:
    """A zero-length events array of the given layout."""
    return np.zeros(0, dtype=dtype_for(layout))


def slice_time(events: np.ndarray, t_start: int, t_end: int) -> np.ndarray:
    """Events with t_start <= t < t_end (events sorted by t); a view, no copy."""
    t = events["t"]
    i0 = int(np.searchsorted(t, t_start, side="left"))
    i1 = int(np.searchsorted(t, t_end, side="left"))
    return events[i0:i1]


@dataclass(slots=True)
class EventPacket:
    """A run of events of one stream covering the time span [t_start, t_end) in microseconds.

    Events are sorted by t and lie inside the span; an empty packet still advances time. A packet
    lies within one sample: ``sample_begin`` marks the first packet of a sample (the reservoir
    resets there and counts bins from ``t_start``), ``sample_end`` the last (the segmenter emits the
    sample's features after it). ``label`` is the ground truth when the source knows it.
    """

    stream_id: str
    seq: int
    t_start: int
    t_end: int
    events: np.ndarray
    modality: str = ""
    sample_id: int = -1
    label: str | None = None
    sample_begin: bool = False
    sample_end: bool = False
    sent_ns: int = 0

    @property
    def layout(self) -> str:
        return layout_of(self.events)

    def __len__(self) -> int:
        return len(self.events)


@dataclass(slots=True)
class LabelEvent:
    """One label published for a sample or a sliding window of a stream.

    Latency stamps are wall-clock nanoseconds (time.time_ns): ``source_ns`` when the sender sent the
    last packet, ``received_ns`` when the daemon received it, ``published_ns`` when the label left.
    ``probability`` is the calibrated probability that the best class (``topk[0]``) is right, None
    when the model carries no calibration; ``label`` is ``unknown`` where the matcher abstained.
    """

    stream_id: str
    seq: int
    t_start: int
    t_end: int
    label: str
    score: float
    topk: list[tuple[str, float]] = field(default_factory=list)
    margin: float = 0.0
    truth: str | None = None
    modality: str = ""
    sample_id: int = -1
    bundle_hash: str = ""
    prototype_version: int = 0
    seed: int = 0
    source_ns: int = 0
    received_ns: int = 0
    published_ns: int = 0
    probability: float | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (top-k as [label, score] pairs)."""
        return {
            "stream_id": self.stream_id, "seq": self.seq, "t_start": self.t_start,
            "t_end": self.t_end, "label": self.label, "score": float(self.score),
            "topk": [[lab, float(s)] for lab, s in self.topk], "margin": float(self.margin),
            "truth": self.truth, "modality": self.modality, "sample_id": self.sample_id,
            "bundle_hash": self.bundle_hash, "prototype_version": self.prototype_version,
            "seed": self.seed, "source_ns": self.source_ns, "received_ns": self.received_ns,
            "published_ns": self.published_ns,
            "probability": None if self.probability is None else float(self.probability),
        }
