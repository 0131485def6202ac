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
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import WireError
from .events import LAYOUTS, MODALITIES, EventPacket, LabelEvent, layout_of

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
]

WIRE_VERSION = 1
EVENTS_TOPIC = b"ev/"
LABEL_TOPIC = b"lb/"
_STREAM_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
_MAX_I64 = (1 << 63) - 1


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


def encode_packet(pkt: EventPacket) -> list:
    """Frames of one EventPacket; the payload frame is a zero-copy view of the events array."""
    stream = _check_stream_id(pkt.stream_id)
    ev = pkt.events
    layout = layout_of(ev)
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
    return [topic_for(EVENTS_TOPIC, stream), msgpack.packb(header), memoryview(ev).cast("B")]


def encode_label(lab: LabelEvent) -> list:
    """Frames of one LabelEvent (empty payload frame)."""
    stream = _check_stream_id(lab.stream_id)
    header = {"v": WIRE_VERSION, "kind": "label"}
    header.update(lab.to_dict())
    return [topic_for(LABEL_TOPIC, stream), msgpack.packb(header), b""]


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
        return msgpack.unpackb(
            raw, raw=False, strict_map_key=True, use_list=True,
            max_str_len=max(limits.max_str_len, limit), max_bin_len=limit,
            max_array_len=limits.max_control_items, max_map_len=limits.max_control_items,
            max_ext_len=0,
        )
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


def decode(frames: list | tuple, limits: WireLimits = DEFAULT_LIMITS) -> EventPacket | LabelEvent:
    """Validate and decode [topic, header, payload]; raises WireError naming the bad field."""
    if not isinstance(frames, (list, tuple)) or len(frames) != 3:
        n = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise WireError("frames", f"expected 3 frames [topic, header, payload], got {n}")
    topic, raw_header, payload = frames
    topic = _buffer(topic, "topic").tobytes()
    payload = _buffer(payload, "payload")
    h = _unpack(raw_header, limits.max_header_bytes, limits, "header")
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
        published_ns=_int(h, "published_ns", 0),
    )


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
