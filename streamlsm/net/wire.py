"""THE wire format: encode(msg) -> [topic, msgpack header, raw little-endian payload] and decode back.

The only module that imports msgpack. It never imports zmq: frames are plain bytes-like objects.
The header names the event layout; the receiver takes the dtype from its own table
(``events.LAYOUTS``), never from the sender. One validator checks every field and size:
``decode`` runs it and returns the message, ``peek`` runs the same checks on the header and frame
sizes alone (no arrays: what a router or gateway needs to place a message) and returns its
``Header``; both raise ``WireError`` naming the field. Control messages (daemon REQ/REP) and small
metadata documents use ``pack_control`` / ``unpack_control`` with the same limits.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import msgpack
import numpy as np

from ..errors import WireError
from ..events import LAYOUTS, MODALITIES, EventPacket, LabelEvent, as_layout

__all__ = [
    "WIRE_VERSION",
    "WireLimits",
    "DEFAULT_LIMITS",
    "EVENTS_TOPIC",
    "LABEL_TOPIC",
    "Header",
    "encode",
    "decode",
    "peek",
    "encode_packet",
    "encode_label",
    "pack_control",
    "unpack_control",
    "topic_for",
    "check_stream_id",
]

WIRE_VERSION = 1
EVENTS_TOPIC = b"ev/"
LABEL_TOPIC = b"lb/"
_STREAM_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
_MAX_I64 = (1 << 63) - 1
_LAYOUT_OF = MappingProxyType({dt: name for name, dt in LAYOUTS.items()})  # LAYOUTS inverted (read-only)
_TOPIC_CACHE = 4096  # validated stream ids remembered (least recently used dropped): the regex runs once per id


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Limits that decode enforces before it trusts anything in a message."""

    max_events: int = 1 << 20
    max_header_bytes: int = 4096
    max_str_len: int = 256
    max_topk: int = 64
    max_control_bytes: int = 1 << 20
    max_control_items: int = 10_000


DEFAULT_LIMITS = WireLimits()


def topic_for(kind_prefix: bytes, stream_id: str) -> bytes:
    """The ZeroMQ topic of a stream: b'ev/<stream>' for events, b'lb/<stream>' for labels."""
    return kind_prefix + stream_id.encode("ascii")


def _check_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str) or not _STREAM_RE.match(stream_id):
        raise WireError("stream", f"stream id must be 1-64 chars of [A-Za-z0-9_.:-], got {stream_id!r}")
    return stream_id


def check_stream_id(stream_id: object) -> str:
    """The stream id if it is 1-64 chars of [A-Za-z0-9_.:-]; WireError naming the field otherwise."""
    return _check_stream_id(stream_id)


@functools.lru_cache(maxsize=_TOPIC_CACHE)
def _valid_topic(prefix: bytes, stream_id: str) -> bytes:
    """prefix + stream id once the id passed the check (bounded cache: the regex runs once per id)."""
    return topic_for(prefix, _check_stream_id(stream_id))


def _topic(prefix: bytes, stream_id: object) -> bytes:
    """The validated topic of a stream; WireError for an id that is no valid string."""
    if type(stream_id) is not str:  # only exact strings reach the cache (hashable, no subclass tricks)
        _check_stream_id(stream_id)
    return _valid_topic(prefix, stream_id)


def encode_packet(pkt: EventPacket) -> list:
    """Frames of one EventPacket; the payload frame is a zero-copy view of the events array."""
    stream = pkt.stream_id
    topic = _topic(EVENTS_TOPIC, stream)
    ev = pkt.events
    layout = _LAYOUT_OF.get(getattr(ev, "dtype", None)) if isinstance(ev, np.ndarray) else None
    if layout is None:  # not a layout's exact dtype: convert by field name (tonic arrays)
        ev = as_layout(ev)
        layout = _LAYOUT_OF[ev.dtype]
    if not ev.flags.c_contiguous:
        ev = np.ascontiguousarray(ev)
    header = {
        "v": WIRE_VERSION,
        "kind": "events",
        "stream": stream,
        "seq": int(pkt.seq),
        "layout": layout,
        "n": len(ev),
        "t0": int(pkt.t_start),
        "t1": int(pkt.t_end),
        "modality": pkt.modality,
        "sample": int(pkt.sample_id),
        "label": pkt.label,
        "begin": bool(pkt.sample_begin),
        "end": bool(pkt.sample_end),
        "sent_ns": int(pkt.sent_ns),
    }
    return [topic, msgpack.packb(header), ev.data.cast("B")]


def encode_label(lab: LabelEvent) -> list:
    """Frames of one LabelEvent (empty payload frame)."""
    topic = _topic(LABEL_TOPIC, lab.stream_id)
    header = {"v": WIRE_VERSION, "kind": "label"}
    header.update(lab.to_dict())
    return [topic, msgpack.packb(header), b""]


def encode(msg: EventPacket | LabelEvent) -> list:
    """Frames [topic, header, payload] of an EventPacket or a LabelEvent."""
    if isinstance(msg, EventPacket):
        return encode_packet(msg)
    if isinstance(msg, LabelEvent):
        return encode_label(msg)
    raise WireError("msg", f"cannot encode {type(msg).__name__}")


# ---------------------------------------------------------------- decoding


class Header(NamedTuple):
    """What ``peek`` tells of a message without its payload (labels: begin and end are False)."""

    kind: str            # "events" or "label"
    stream_id: str
    seq: int
    sample_id: int
    begin: bool
    end: bool


def _buffer(frame: object, what: str) -> memoryview:
    """A C-contiguous 1-D byte view of a bytes-like frame; anything else (int, str, None) is a WireError."""
    try:
        view = memoryview(frame)
    except TypeError:
        raise WireError(what, f"must be bytes-like, got {type(frame).__name__}") from None
    if view.ndim == 1 and view.format == "B" and view.c_contiguous:
        return view
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B")


def _unpack_kwargs(limits: WireLimits, limit: int) -> dict:
    """msgpack.unpackb keyword arguments for these limits."""
    return dict(raw=False, strict_map_key=True, use_list=True,
                max_str_len=max(limits.max_str_len, limit), max_bin_len=limit,
                max_array_len=limits.max_control_items, max_map_len=limits.max_control_items,
                max_ext_len=0)


def _unpack(raw: bytes | memoryview, limit: int, limits: WireLimits, what: str) -> Any:
    raw = _buffer(raw, what)
    if raw.nbytes > limit:
        raise WireError(what, f"{raw.nbytes} bytes exceeds the limit of {limit}")
    try:
        return msgpack.unpackb(raw, **_unpack_kwargs(limits, limit))
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, StackError, ...)
        raise WireError(what, f"not valid msgpack: {exc.__class__.__name__}: {exc}") from None


def _unpack_header(raw: object, limits: WireLimits) -> dict:
    """The header map, unpacked only once its size is within limits.max_header_bytes.

    msgpack.unpackb bounds every string, array and map by the buffer's length, which is no more
    than the header limit here; extension types are refused (strings keys, plain lists as in
    ``_unpack_kwargs``: those are msgpack's defaults).
    """
    if type(raw) is not bytes:
        raw = _buffer(raw, "header")
    if len(raw) > limits.max_header_bytes:
        raise WireError("header", f"{len(raw)} bytes exceeds the limit of {limits.max_header_bytes}")
    try:
        h = msgpack.unpackb(raw, max_ext_len=0)
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, StackError, ...)
        raise WireError("header", f"not valid msgpack: {exc.__class__.__name__}: {exc}") from None
    if type(h) is not dict:
        raise WireError("header", f"must be a map, got {type(h).__name__}")
    version = h.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise WireError("v", f"unsupported wire version {version!r} (this side speaks {WIRE_VERSION})")
    return h


def _int_error(h: dict, key: str, lo: int, hi: int) -> WireError:
    """Why h[key] is no integer in [lo, hi] (the caller has decided that it is not)."""
    if key not in h:
        return WireError(key, "missing")
    v = h[key]
    if type(v) is not int:
        return WireError(key, f"must be an integer, got {type(v).__name__}")
    return WireError(key, f"{v} out of range [{lo}, {hi}]")


def _str_error(h: dict, key: str, limits: WireLimits) -> WireError:
    """Why h[key] is no string of at most limits.max_str_len chars (the caller has decided that it is not)."""
    if key not in h:
        return WireError(key, "missing")
    v = h[key]
    if type(v) is not str:
        return WireError(key, f"must be a string, got {type(v).__name__}")
    return WireError(key, f"string of {len(v)} chars exceeds {limits.max_str_len}")


def _int(h: dict, key: str, lo: int, hi: int = _MAX_I64) -> int:
    v = h.get(key)
    if type(v) is int and lo <= v <= hi:
        return v
    raise _int_error(h, key, lo, hi)


def _str(h: dict, key: str, limits: WireLimits, *, optional: bool = False) -> str | None:
    v = h.get(key)
    if type(v) is str and len(v) <= limits.max_str_len:
        return v
    if v is None and optional and key in h:
        return None
    raise _str_error(h, key, limits)


def _bool(h: dict, key: str) -> bool:
    v = h.get(key)
    if type(v) is not bool:
        raise WireError(key, f"must be a boolean, got {type(v).__name__}")
    return v


def _float(h: dict, key: str) -> float:
    v = h.get(key, None)
    if type(v) not in (int, float):
        raise WireError(key, f"must be a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise WireError(key, f"must be finite, got {v}")
    return v


def _modality(h: dict, limits: WireLimits) -> str:
    modality = _str(h, "modality", limits)
    if modality and modality not in MODALITIES:
        raise WireError("modality", f"unknown modality {modality!r}; known: {MODALITIES}")
    return modality


@functools.lru_cache(maxsize=_TOPIC_CACHE)
def _events_topic(stream: str) -> bytes:
    """The topic an event packet of a valid stream id arrives on (bounded cache: the regex runs once
    per id; one argument, so the cache key is the id itself)."""
    return EVENTS_TOPIC + _check_stream_id(stream).encode("ascii")


@functools.lru_cache(maxsize=_TOPIC_CACHE)
def _label_topic(stream: str) -> bytes:
    """The topic a label of a valid stream id arrives on (as _events_topic)."""
    return LABEL_TOPIC + _check_stream_id(stream).encode("ascii")


def _stream(h: dict, key: str, topic: bytes, expected_topic: Callable[[str], bytes]) -> str:
    """The header's stream id, valid and matching the topic frame."""
    stream = h.get(key)
    if type(stream) is not str:  # only exact strings reach the cache
        _check_stream_id(stream)
    if topic != expected_topic(stream):
        raise WireError("topic", f"topic {topic[:80]!r} does not match stream {stream!r}")
    return stream


def _split(frames: object, limits: WireLimits) -> tuple[bytes, dict, memoryview]:
    """(topic, header map of a supported version, payload view) of a [topic, header, payload] message."""
    if not isinstance(frames, (list, tuple)) or len(frames) != 3:
        n = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise WireError("frames", f"expected 3 frames [topic, header, payload], got {n}")
    topic, raw_header, payload = frames
    try:
        if type(topic) is not bytes:
            topic = memoryview(topic).tobytes()  # its bytes in C order, whatever the buffer's shape
        view = memoryview(payload)
    except TypeError:
        what, obj = ("topic", topic) if type(topic) is not bytes else ("payload", payload)
        raise WireError(what, f"must be bytes-like, got {type(obj).__name__}") from None
    if not (view.ndim == 1 and view.format == "B" and view.c_contiguous):
        view = _buffer(view, "payload")
    return topic, _unpack_header(raw_header, limits), view


def _events_header(topic: bytes, h: dict, payload: memoryview, limits: WireLimits) -> tuple:
    """THE check of an events header and of its payload's size (times inside the payload: _times).

    The per-packet path: each field's rule is one inline test (the same rules as _int / _str /
    _bool, inlined because calls cost more than the tests); only a field that fails goes on to
    the helper that says why.
    """
    get = h.get
    stream = _stream(h, "stream", topic, _events_topic)
    max_str = limits.max_str_len
    layout = get("layout")
    dtype = LAYOUTS.get(layout) if type(layout) is str else None
    if dtype is None:
        if type(layout) is not str or len(layout) > max_str:
            raise _str_error(h, "layout", limits)
        raise WireError("layout", f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
    n = get("n")
    if type(n) is not int or not 0 <= n <= limits.max_events:
        raise _int_error(h, "n", 0, limits.max_events)
    t0 = get("t0")
    if type(t0) is not int or not 0 <= t0 <= _MAX_I64:
        raise _int_error(h, "t0", 0, _MAX_I64)
    t1 = get("t1")
    if type(t1) is not int or not t0 <= t1 <= _MAX_I64:
        raise _int_error(h, "t1", t0, _MAX_I64)
    modality = get("modality")
    if type(modality) is not str or modality and modality not in MODALITIES:
        modality = _modality(h, limits)  # raises: says why
    if payload.nbytes != n * dtype.itemsize:
        raise WireError("payload", f"{payload.nbytes} bytes, expected n={n} x {dtype.itemsize}")
    seq = get("seq")
    if type(seq) is not int or not 0 <= seq <= _MAX_I64:
        raise _int_error(h, "seq", 0, _MAX_I64)
    sample = get("sample")
    if type(sample) is not int or not -1 <= sample <= _MAX_I64:
        raise _int_error(h, "sample", -1, _MAX_I64)
    label = get("label")
    if label is not None and (type(label) is not str or len(label) > max_str) or "label" not in h:
        raise _str_error(h, "label", limits)
    begin = get("begin")
    if type(begin) is not bool:
        _bool(h, "begin")  # raises: says why
    end = get("end")
    if type(end) is not bool:
        _bool(h, "end")
    sent_ns = get("sent_ns")
    if type(sent_ns) is not int or not 0 <= sent_ns <= _MAX_I64:
        raise _int_error(h, "sent_ns", 0, _MAX_I64)
    return stream, seq, t0, t1, dtype, n, modality, sample, label, begin, end, sent_ns


_count_nonzero, _less = np.count_nonzero, np.less


def _times(events: np.ndarray, t0: int, t1: int) -> None:
    """Event times sorted and inside [t0, t1)."""
    t = events["t"].copy()  # one gather of the strided column, then fast compares
    first, last = t.item(0), t.item(-1)
    if first < t0 or last >= t1:
        raise WireError("payload.t", f"event times [{first}, {last}] outside span [{t0}, {t1})")
    if len(t) > 1 and _count_nonzero(_less(t[1:], t[:-1])):
        raise WireError("payload.t", "event times go backwards")


def decode(frames: list | tuple, limits: WireLimits = DEFAULT_LIMITS) -> EventPacket | LabelEvent:
    """Validate and decode [topic, header, payload]; raises WireError naming the bad field."""
    topic, h, payload = _split(frames, limits)
    kind = h.get("kind")
    if kind == "events":
        (stream, seq, t0, t1, dtype, n, modality, sample, label, begin, end,
         sent_ns) = _events_header(topic, h, payload, limits)
        events = np.frombuffer(payload, dtype=dtype, count=n)
        if n:
            _times(events, t0, t1)
        return EventPacket(stream, seq, t0, t1, events, modality, sample, label, begin, end, sent_ns)
    if kind == "label":
        return _decode_label(topic, h, payload, limits)
    raise WireError("kind", f"unknown message kind {kind!r}")


def peek(frames: list | tuple, limits: WireLimits = DEFAULT_LIMITS) -> Header:
    """The ``Header`` of a message, checked as ``decode`` checks it except the event times inside
    the payload (no array is made): what a router needs to place a message it forwards unopened.
    Raises WireError naming the bad field.
    """
    topic, h, payload = _split(frames, limits)
    kind = h.get("kind")
    if kind == "events":
        f = _events_header(topic, h, payload, limits)
        return Header("events", f[0], f[1], f[7], f[9], f[10])
    if kind == "label":
        lab = _decode_label(topic, h, payload, limits)
        return Header("label", lab.stream_id, lab.seq, lab.sample_id, False, False)
    raise WireError("kind", f"unknown message kind {kind!r}")


def _decode_label(topic: bytes, h: dict, payload: memoryview, limits: WireLimits) -> LabelEvent:
    stream = _stream(h, "stream_id", topic, _label_topic)
    if payload.nbytes:
        raise WireError("payload", "a label message carries no payload")
    raw_topk = h.get("topk")
    if not isinstance(raw_topk, list) or len(raw_topk) > limits.max_topk:
        raise WireError("topk", f"must be a list of at most {limits.max_topk} [label, score] pairs")
    topk = []
    for i, pair in enumerate(raw_topk):
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is str
                and len(pair[0]) <= limits.max_str_len):
            raise WireError(f"topk[{i}]", "must be a [label, score] pair")
        topk.append((pair[0], _float({"s": pair[1]}, "s")))
    modality = _modality(h, limits)
    t0 = _int(h, "t_start", 0)
    return LabelEvent(
        stream_id=stream, seq=_int(h, "seq", 0), t_start=t0, t_end=_int(h, "t_end", t0),
        label=_str(h, "label", limits), score=_float(h, "score"), topk=topk,
        margin=_float(h, "margin"), truth=_str(h, "truth", limits, optional=True),
        modality=modality, sample_id=_int(h, "sample_id", -1),
        bundle_hash=_str(h, "bundle_hash", limits),
        prototype_version=_int(h, "prototype_version", 0), seed=_int(h, "seed", 0),
        source_ns=_int(h, "source_ns", 0), received_ns=_int(h, "received_ns", 0),
        published_ns=_int(h, "published_ns", 0), probability=_probability(h),
    )


def _probability(h: dict) -> float | None:
    """The optional calibrated probability of a label (absent in labels from older senders: None)."""
    if h.get("probability") is None:
        return None
    v = _float(h, "probability")
    if not 0.0 <= v <= 1.0:
        raise WireError("probability", f"must lie in [0, 1], got {v}")
    return v


# ---------------------------------------------------------------- control messages


def pack_control(obj: Any) -> bytes:
    """msgpack bytes of a control message or metadata document (plain types only)."""
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError("control", f"cannot pack: {exc}") from None


def unpack_control(raw: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Any:
    """Decode a control message with size limits; raises WireError on anything malformed."""
    return _unpack(raw, limits.max_control_bytes, limits, "control")
