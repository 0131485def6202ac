"""THE wire format: encode(msg) -> [topic, msgpack header, raw little-endian payload] and decode back.

The only module that imports msgpack. It never imports zmq: frames are plain bytes-like objects.
The header names the event layout; the receiver takes the dtype from its own table
(``events.LAYOUTS``), never from the sender. ``decode`` validates every field and size and raises
``WireError`` naming the field. Control messages (daemon REQ/REP) and small metadata documents use
``pack_control`` / ``unpack_control`` with the same limits.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

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
    "encode",
    "decode",
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
_CACHE_MAX = 4096  # validated stream ids kept per cache (cleared when full)
_TOPICS: dict[tuple, bytes] = {}  # (prefix, stream id) -> topic, for ids that passed the regex
_EV_STREAMS: dict[bytes, str] = {}  # topic -> stream id, the receive side of the same cache
_LAYOUT_OF: dict[np.dtype, str] = {dt: name for name, dt in LAYOUTS.items()}
_LOCAL = threading.local()
_UNPACK_KW: dict[tuple, dict] = {}  # (limits, byte limit) -> msgpack.unpackb keyword arguments
_LAST_KW: tuple = (None, None, None)  # the last (limits, byte limit, kwargs) looked up


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


def _topic(prefix: bytes, stream_id: object) -> bytes:
    """The validated topic of a stream, from a small cache (the regex runs once per id)."""
    key = (prefix, stream_id) if type(stream_id) is str else None
    topic = _TOPICS.get(key)
    if topic is None:
        topic = topic_for(prefix, _check_stream_id(stream_id))
        if len(_TOPICS) >= _CACHE_MAX:
            _TOPICS.clear()
        _TOPICS[key] = topic
    return topic


def _packer() -> msgpack.Packer:
    """This thread's Packer (same bytes as msgpack.packb; a Packer is not shared between threads)."""
    try:
        return _LOCAL.packer
    except AttributeError:
        _LOCAL.packer = msgpack.Packer()
        return _LOCAL.packer


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
    return [topic, _packer().pack(header), ev.data.cast("B")]


def encode_label(lab: LabelEvent) -> list:
    """Frames of one LabelEvent (empty payload frame)."""
    topic = _topic(LABEL_TOPIC, lab.stream_id)
    header = {"v": WIRE_VERSION, "kind": "label"}
    header.update(lab.to_dict())
    return [topic, _packer().pack(header), b""]


def encode(msg: EventPacket | LabelEvent) -> list:
    """Frames [topic, header, payload] of an EventPacket or a LabelEvent."""
    if isinstance(msg, EventPacket):
        return encode_packet(msg)
    if isinstance(msg, LabelEvent):
        return encode_label(msg)
    raise WireError("msg", f"cannot encode {type(msg).__name__}")


# ---------------------------------------------------------------- decoding


def _buffer(frame: object, what: str) -> memoryview:
    """A C-contiguous byte view of a bytes-like frame; anything else (int, str, None) is a WireError."""
    if isinstance(frame, (str, int, float)) or frame is None:
        raise WireError(what, f"must be bytes-like, got {type(frame).__name__}")
    try:
        view = memoryview(frame)
    except TypeError:
        raise WireError(what, f"must be bytes-like, got {type(frame).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _unpack(raw: bytes | memoryview, limit: int, limits: WireLimits, what: str) -> Any:
    raw = _buffer(raw, what)
    if raw.nbytes > limit:
        raise WireError(what, f"{raw.nbytes} bytes exceeds the limit of {limit}")
    try:
        return msgpack.unpackb(raw, **_unpack_kwargs(limits, limit))
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, StackError, ...)
        raise WireError(what, f"not valid msgpack: {exc.__class__.__name__}: {exc}") from None


def _int(h: dict, key: str, lo: int, hi: int = _MAX_I64) -> int:
    try:
        v = h[key]
    except KeyError:
        raise WireError(key, "missing") from None
    if type(v) is not int:
        raise WireError(key, f"must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise WireError(key, f"{v} out of range [{lo}, {hi}]")
    return v


def _str(h: dict, key: str, limits: WireLimits, *, optional: bool = False) -> str | None:
    if key not in h:
        raise WireError(key, "missing")
    v = h[key]
    if v is None and optional:
        return None
    if type(v) is not str:
        raise WireError(key, f"must be a string, got {type(v).__name__}")
    if len(v) > limits.max_str_len:
        raise WireError(key, f"string of {len(v)} chars exceeds {limits.max_str_len}")
    return v


def _bool(h: dict, key: str) -> bool:
    v = h.get(key, None)
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


def _unpack_kwargs(limits: WireLimits, limit: int) -> dict:
    """msgpack.unpackb keyword arguments for these limits (built once per limits object)."""
    global _LAST_KW
    last = _LAST_KW  # one-slot cache by identity: hashing the limits dataclass costs ~0.2 us
    if last[0] is limits and last[1] == limit:
        return last[2]
    key = (limits, limit)
    kw = _UNPACK_KW.get(key)
    if kw is None:
        kw = dict(raw=False, strict_map_key=True, use_list=True,
                  max_str_len=max(limits.max_str_len, limit), max_bin_len=limit,
                  max_array_len=limits.max_control_items, max_map_len=limits.max_control_items,
                  max_ext_len=0)
        if len(_UNPACK_KW) >= 64:
            _UNPACK_KW.clear()
        _UNPACK_KW[key] = kw
    _LAST_KW = (limits, limit, kw)  # a tuple swapped whole: a reader always sees a matching triple
    return kw


def decode(frames: list | tuple, limits: WireLimits = DEFAULT_LIMITS) -> EventPacket | LabelEvent:
    """Validate and decode [topic, header, payload]; raises WireError naming the bad field."""
    if type(frames) is list and len(frames) == 3:  # the receive hot path: try the fast checker
        got = _decode_fast(frames, limits)
        if type(got) is EventPacket:
            return got
        return _decode_checked(frames, limits, got)
    return _decode_checked(frames, limits)


def _decode_fast(frames: list, limits: WireLimits) -> EventPacket | dict | None:
    """A well-formed events message in one pass of cheap checks; else the unpacked header (None if
    unpacking failed) for the detailed checker, which accepts exactly what this accepts and names
    the field of anything else.
    """
    topic, raw_header, payload = frames
    try:
        raw_header = memoryview(raw_header)
        payload = memoryview(payload)
        if (raw_header.ndim != 1 or raw_header.format != "B" or not raw_header.c_contiguous
                or payload.ndim != 1 or payload.format != "B" or not payload.c_contiguous
                or raw_header.nbytes > limits.max_header_bytes):
            return None
        h = msgpack.unpackb(raw_header, **_unpack_kwargs(limits, limits.max_header_bytes))
    except Exception:  # anything odd: the detailed checker says what
        return None
    if type(h) is not dict or len(h) != 14 or h.get("kind") != "events":
        return h
    try:
        v = h["v"]
        stream = h["stream"]
        seq = h["seq"]
        layout = h["layout"]
        n = h["n"]
        t0 = h["t0"]
        t1 = h["t1"]
        modality = h["modality"]
        sample = h["sample"]
        label = h["label"]
        begin = h["begin"]
        end = h["end"]
        sent_ns = h["sent_ns"]
    except KeyError:
        return h
    if not (type(v) is int and v == WIRE_VERSION
            and type(seq) is int and type(n) is int and type(t0) is int and type(t1) is int
            and type(sample) is int and type(sent_ns) is int
            and type(begin) is bool and type(end) is bool
            and type(layout) is str and type(modality) is str
            and (label is None or (type(label) is str and len(label) <= limits.max_str_len))
            and 0 <= seq <= _MAX_I64 and 0 <= t0 <= t1 <= _MAX_I64 and -1 <= sample <= _MAX_I64
            and 0 <= sent_ns <= _MAX_I64 and 0 <= n <= limits.max_events
            and len(layout) <= limits.max_str_len and len(modality) <= limits.max_str_len
            and (not modality or modality in MODALITIES)):
        return h
    dtype = LAYOUTS.get(layout)
    if dtype is None or payload.nbytes != n * dtype.itemsize:
        return h
    if type(topic) is not bytes:
        try:
            topic = memoryview(topic).tobytes()
        except TypeError:
            return h
    if _EV_STREAMS.get(topic) != stream:
        if (type(stream) is not str or not _STREAM_RE.match(stream)
                or topic != EVENTS_TOPIC + stream.encode()):
            return h
        if len(_EV_STREAMS) >= _CACHE_MAX:
            _EV_STREAMS.clear()
        _EV_STREAMS[topic] = stream
    events = np.frombuffer(payload, dtype=dtype, count=n)
    if n:
        t = np.ascontiguousarray(events["t"])  # one gather of the strided column, then fast compares
        if t.item(0) < t0 or t.item(-1) >= t1 or (n > 1 and np.count_nonzero(t[1:] < t[:-1])):
            return h
    return EventPacket(stream, seq, t0, t1, events, modality, sample, label, begin, end, sent_ns)


def _decode_checked(frames: list | tuple, limits: WireLimits,
                    header: Any = None) -> EventPacket | LabelEvent:
    """decode with every check spelled out: the path of label messages and of anything malformed.

    ``header``: the header frame as _decode_fast already unpacked it (same bytes, same limits).
    """
    if not isinstance(frames, (list, tuple)) or len(frames) != 3:
        n = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise WireError("frames", f"expected 3 frames [topic, header, payload], got {n}")
    topic, raw_header, payload = frames
    topic = _buffer(topic, "topic").tobytes()
    payload = _buffer(payload, "payload")
    if header is None:
        h = _unpack(raw_header, limits.max_header_bytes, limits, "header")
    else:
        h = header
    if not isinstance(h, dict):
        raise WireError("header", f"must be a map, got {type(h).__name__}")
    version = h.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise WireError("v", f"unsupported wire version {version!r} (this side speaks {WIRE_VERSION})")
    kind = h.get("kind")
    if kind == "events":
        return _decode_events(topic, h, payload, limits)
    if kind == "label":
        return _decode_label(topic, h, payload, limits)
    raise WireError("kind", f"unknown message kind {kind!r}")


def _check_topic(topic: bytes, prefix: bytes, stream: str) -> None:
    if topic != prefix + stream.encode("ascii"):
        raise WireError("topic", f"topic {topic[:80]!r} does not match stream {stream!r}")


def _decode_events(topic: bytes, h: dict, payload: memoryview, limits: WireLimits) -> EventPacket:
    stream = _check_stream_id(h.get("stream"))
    _check_topic(topic, EVENTS_TOPIC, stream)
    layout = _str(h, "layout", limits)
    dtype = LAYOUTS.get(layout)
    if dtype is None:
        raise WireError("layout", f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
    n = _int(h, "n", 0, limits.max_events)
    t0 = _int(h, "t0", 0)
    t1 = _int(h, "t1", t0)
    modality = _str(h, "modality", limits)
    if modality and modality not in MODALITIES:
        raise WireError("modality", f"unknown modality {modality!r}; known: {MODALITIES}")
    if payload.nbytes != n * dtype.itemsize:
        raise WireError("payload", f"{payload.nbytes} bytes, expected n={n} x {dtype.itemsize}")
    events = np.frombuffer(payload, dtype=dtype, count=n)
    if n:
        t = np.ascontiguousarray(events["t"])  # one gather of the strided column, then fast compares
        if t[0] < t0 or t[-1] >= t1:
            raise WireError("payload.t", f"event times [{t[0]}, {t[-1]}] outside span [{t0}, {t1})")
        if n > 1 and np.count_nonzero(t[1:] < t[:-1]):
            raise WireError("payload.t", "event times go backwards")
    return EventPacket(
        stream_id=stream, seq=_int(h, "seq", 0), t_start=t0, t_end=t1, events=events,
        modality=modality, sample_id=_int(h, "sample", -1),
        label=_str(h, "label", limits, optional=True),
        sample_begin=_bool(h, "begin"), sample_end=_bool(h, "end"), sent_ns=_int(h, "sent_ns", 0),
    )


def _decode_label(topic: bytes, h: dict, payload: memoryview, limits: WireLimits) -> LabelEvent:
    stream = _check_stream_id(h.get("stream_id"))
    _check_topic(topic, LABEL_TOPIC, stream)
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
    modality = _str(h, "modality", limits)
    if modality and modality not in MODALITIES:
        raise WireError("modality", f"unknown modality {modality!r}")
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
