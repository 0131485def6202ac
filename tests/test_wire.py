"""The wire format: golden bytes, round trips for every layout, and validation errors."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from streamlsm.errors import WireError
from streamlsm.events import LAYOUTS, EventPacket, LabelEvent
from streamlsm.net.wire import (
    WIRE_VERSION,
    Header,
    WireLimits,
    decode,
    encode,
    pack_control,
    peek,
    unpack_control,
)


def _events(layout: str, n: int, t0: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, LAYOUTS[layout])
    ev["t"] = np.sort(rng.integers(t0, t0 + 1000, n))
    ev["x"] = rng.integers(0, 34, n)
    if "y" in ev.dtype.names:
        ev["y"] = rng.integers(0, 34, n)
    if "p" in ev.dtype.names:
        ev["p"] = rng.integers(0, 2, n)
    return ev


def _frames_bytes(frames):
    return [bytes(f) for f in frames]


def test_golden_bytes_pin_the_format():
    ev = np.zeros(2, LAYOUTS["dvs"])
    ev["t"] = [10, 20]
    ev["x"] = [1, 2]
    ev["y"] = [3, 4]
    ev["p"] = [0, 1]
    pkt = EventPacket("cam0", 7, 0, 1000, ev, modality="vision", sample_id=3, label="8",
                      sample_begin=True, sample_end=False, sent_ns=123)
    topic, header, payload = _frames_bytes(encode(pkt))
    assert topic == b"ev/cam0"
    assert header.hex() == (
        "8ea17601a46b696e64a66576656e7473a673747265616da463616d30a373657107a66c61796f7574a3647673"
        "a16e02a2743000a27431cd03e8a86d6f64616c697479a6766973696f6ea673616d706c6503a56c6162656ca138"
        "a5626567696ec3a3656e64c2a773656e745f6e737b"
    )
    assert payload.hex() == (
        "0a00000000000000010003000014000000000000000200040001"
    )


def test_golden_header_is_plain_msgpack_with_named_layout():
    ev = np.zeros(0, LAYOUTS["spikes"])
    _, header, payload = _frames_bytes(encode(EventPacket("n1", 0, 5, 5, ev)))
    h = msgpack.unpackb(header)
    assert h["v"] == WIRE_VERSION and h["layout"] == "spikes" and h["n"] == 0
    assert payload == b""


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("n", [0, 1, 4096])
def test_round_trip_every_layout(layout, n):
    ev = _events(layout, n)
    pkt = EventPacket("s-1", 42, 1000, 2000, ev, modality="neural", sample_id=9, label=None,
                      sample_begin=False, sample_end=True, sent_ns=99)
    out = decode(_frames_bytes(encode(pkt)))
    assert isinstance(out, EventPacket)
    assert out.events.dtype == LAYOUTS[layout]
    np.testing.assert_array_equal(out.events, ev)
    for f in ("stream_id", "seq", "t_start", "t_end", "modality", "sample_id", "label",
              "sample_begin", "sample_end", "sent_ns"):
        assert getattr(out, f) == getattr(pkt, f), f


def test_label_round_trip():
    lab = LabelEvent("cam0", 3, 0, 300_000, "8", 0.93, topk=[("8", 0.93), ("3", 0.4)], margin=0.53,
                     truth="8", modality="vision", sample_id=12, bundle_hash="abc",
                     prototype_version=2, seed=1, source_ns=1, received_ns=2, published_ns=3)
    out = decode(_frames_bytes(encode(lab)))
    assert out == lab


def _valid_frames():
    return _frames_bytes(encode(EventPacket("s", 1, 0, 2000, _events("dvs", 8), modality="vision")))


def _with_header(**changes):
    topic, header, payload = _valid_frames()
    h = msgpack.unpackb(header)
    for k, v in changes.items():
        if v is KeyError:
            del h[k]
        else:
            h[k] = v
    return [topic, msgpack.packb(h), payload]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"v": 2}, "v"),
        ({"kind": "video"}, "kind"),
        ({"layout": "rgb"}, "layout"),
        ({"layout": KeyError}, "layout"),
        ({"n": 9}, "payload"),
        ({"n": -1}, "n"),
        ({"n": "8"}, "n"),
        ({"seq": -3}, "seq"),
        ({"seq": 1.5}, "seq"),
        ({"t0": -1}, "t0"),
        ({"t0": 500, "t1": 100}, "t1"),
        ({"t1": 1500}, "payload.t"),
        ({"stream": "a/b"}, "stream"),
        ({"stream": "other"}, "topic"),
        ({"modality": "smell"}, "modality"),
        ({"begin": 1}, "begin"),
        ({"label": 7}, "label"),
        ({"sent_ns": KeyError}, "sent_ns"),
    ],
)
def test_decode_names_the_bad_field(changes, field):
    with pytest.raises(WireError) as info:
        decode(_with_header(**changes))
    assert info.value.field == field


def test_decode_rejects_backwards_times_and_bad_framing():
    topic, header, payload = _valid_frames()
    arr = np.frombuffer(payload, LAYOUTS["dvs"]).copy()
    arr["t"][3] = arr["t"][2] - 1 if arr["t"][2] > 0 else 0
    arr["t"][2] = arr["t"][3] + 5
    with pytest.raises(WireError, match="backwards"):
        decode([topic, header, arr.tobytes()])
    with pytest.raises(WireError, match="3 frames"):
        decode([topic, header])
    with pytest.raises(WireError) as info:
        decode([topic, b"\xc1\xc1", payload])
    assert info.value.field == "header"
    with pytest.raises(WireError) as info:
        decode([topic, msgpack.packb([1, 2]), payload])
    assert info.value.field == "header"


def test_limits_are_enforced():
    frames = _frames_bytes(encode(EventPacket("s", 0, 0, 10_000, _events("spikes", 100))))
    with pytest.raises(WireError) as info:
        decode(frames, WireLimits(max_events=99))
    assert info.value.field == "n"
    with pytest.raises(WireError) as info:
        decode(frames, WireLimits(max_header_bytes=16))
    assert info.value.field == "header"


def test_control_messages_round_trip_with_limits():
    msg = {"cmd": "status", "args": {"n": 3, "blob": b"\x00\x01"}}
    assert unpack_control(pack_control(msg)) == msg
    with pytest.raises(WireError):
        unpack_control(b"\x00" * 10, WireLimits(max_control_bytes=4))
    with pytest.raises(WireError):
        unpack_control(b"\x92\x01")  # truncated array
    with pytest.raises(WireError):
        pack_control({"x": object()})


def test_label_golden_bytes_and_probability():
    lab = LabelEvent("cam0", 3, 0, 10, "8", 0.5, topk=[("8", 0.5)], margin=0.25, truth=None, modality="vision",
                     sample_id=1, bundle_hash="h", prototype_version=2, seed=1, source_ns=1, received_ns=2,
                     published_ns=3, probability=0.75)
    topic, header, payload = _frames_bytes(encode(lab))
    assert topic == b"lb/cam0" and payload == b""
    h = msgpack.unpackb(header)
    assert list(h)[-1] == "probability" and h["probability"] == 0.75  # appended: older fields keep their place
    assert header.hex() == (
        "de0014a17601a46b696e64a56c6162656ca973747265616d5f6964a463616d30a373657103a7745f737461727400a5745f65"
        "6e640aa56c6162656ca138a573636f7265cb3fe0000000000000a4746f706b9192a138cb3fe0000000000000a66d61726769"
        "6ecb3fd0000000000000a57472757468c0a86d6f64616c697479a6766973696f6ea973616d706c655f696401ab62756e646c"
        "655f68617368a168b170726f746f747970655f76657273696f6e02a47365656401a9736f757263655f6e7301ab7265636569"
        "7665645f6e7302ac7075626c69736865645f6e7303ab70726f626162696c697479cb3fe8000000000000"
    )  # ends with "probability": 0.75 as float64
    assert decode([topic, header, payload]) == lab
    old = {k: v for k, v in h.items() if k != "probability"}  # a label from a sender without the field
    assert decode([topic, msgpack.packb(old), b""]).probability is None
    for bad in (1.5, -0.1, "high", float("nan")):
        with pytest.raises(WireError) as info:
            decode([topic, msgpack.packb({**h, "probability": bad}), b""])
        assert info.value.field == "probability"


# ---------------------------------------------------------------- peek: the same checks, header only


def test_peek_tells_the_header_of_events_and_labels():
    pkt = EventPacket("cam0", 7, 0, 1000, _events("dvs", 5, t0=10), modality="vision", sample_id=3,
                      sample_begin=True, sample_end=False)
    assert peek(_frames_bytes(encode(pkt))) == Header("events", "cam0", 7, 3, True, False)
    lab = LabelEvent("cam0", 3, 0, 10, "8", 0.5, topk=[("8", 0.5)], sample_id=12)
    assert peek(_frames_bytes(encode(lab))) == Header("label", "cam0", 3, 12, False, False)


@pytest.mark.parametrize("changes, field", [
    ({"v": 2}, "v"), ({"kind": "video"}, "kind"), ({"layout": "rgb"}, "layout"), ({"n": 9}, "payload"),
    ({"n": -1}, "n"), ({"seq": 1.5}, "seq"), ({"t0": 500, "t1": 100}, "t1"), ({"stream": "a/b"}, "stream"),
    ({"stream": "other"}, "topic"), ({"modality": "smell"}, "modality"), ({"begin": 1}, "begin"),
    ({"label": 7}, "label"), ({"sent_ns": KeyError}, "sent_ns"), ({"sample": -2}, "sample"),
])
def test_peek_names_the_same_field_as_decode(changes, field):
    frames = _with_header(**changes)
    for fn in (peek, decode):
        with pytest.raises(WireError) as info:
            fn(frames)
        assert info.value.field == field, fn.__name__


def test_peek_leaves_the_event_times_to_decode():
    frames = _with_header(t1=1500)  # events at and after t1: only the payload says so
    assert peek(frames).kind == "events"
    with pytest.raises(WireError, match="outside span"):
        decode(frames)


def test_wire_keeps_no_unbounded_module_state():
    """No module-level dict, list, set or thread-local: caches are functools.lru_cache with a maxsize."""
    import functools
    import threading

    import streamlsm.events as events
    import streamlsm.net.wire as w
    for name, value in vars(w).items():
        if name.startswith("__") or value is getattr(events, name, None):  # dunders, imported tables
            continue
        assert not isinstance(value, (dict, list, set, bytearray, threading.local)), name
        if isinstance(value, functools._lru_cache_wrapper):
            assert value.cache_parameters()["maxsize"] is not None, name
