"""Fuzzing the wire decoder: every input decodes to a valid message or raises WireError, nothing else.

Seeded (hypothesis derandomized + numpy seeded mutation loops), tens of thousands of cases in all;
the cases tried / accepted / rejected (by field) are printed at the end of the module's run and
written to $STREAMLSM_FUZZ_SUMMARY (JSON) when that is set.
"""

from __future__ import annotations

import collections
import json
import os
import re

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlsm.errors import WireError
from streamlsm.events import LAYOUTS, MODALITIES, EventPacket, LabelEvent
from streamlsm.net.wire import (
    DEFAULT_LIMITS,
    WIRE_VERSION,
    decode,
    encode,
    pack_control,
    peek,
    unpack_control,
)

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STREAM_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    total = {k: {"tried": sum(v.values()), "accepted": v["accepted"],
                 "rejected": sum(n for r, n in v.items() if r != "accepted"),
                 "by_field": {r: n for r, n in sorted(v.items()) if r != "accepted"}}
             for k, v in sorted(COUNTS.items())}
    line = "fuzz summary: " + json.dumps(
        {k: {"tried": v["tried"], "rejected": v["rejected"]} for k, v in total.items()})
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    path = os.environ.get("STREAMLSM_FUZZ_SUMMARY")
    if path:
        with open(path, "w") as fh:
            json.dump(total, fh, indent=1)


def _valid_message(msg) -> None:
    """What decode promises about anything it returns."""
    assert STREAM_RE.match(msg.stream_id)
    assert 0 <= msg.t_start <= msg.t_end and msg.seq >= 0
    assert msg.modality in ("",) + MODALITIES
    if isinstance(msg, EventPacket):
        assert msg.events.dtype in LAYOUTS.values()
        assert len(msg.events) <= DEFAULT_LIMITS.max_events
        t = msg.events["t"]
        if len(t):
            assert t[0] >= msg.t_start and t[-1] < msg.t_end
            assert bool((np.diff(t) >= 0).all())
        assert isinstance(msg.sample_begin, bool) and isinstance(msg.sample_end, bool)
    else:
        assert isinstance(msg, LabelEvent)
        assert np.isfinite(msg.score) and np.isfinite(msg.margin)
        assert len(msg.topk) <= DEFAULT_LIMITS.max_topk


def _peek_agrees(frames, msg, error) -> None:
    """peek runs decode's checks but the event times: it accepts what decode accepts, with the same
    header, and refuses with decode's field everything decode refuses but for the event times."""
    try:
        head = peek(frames)
    except WireError as exc:
        assert error is not None and exc.field == error.field, (exc, error)
        return
    if error is not None:
        assert error.field == "payload.t", error
        return
    assert (head.stream_id, head.seq) == (msg.stream_id, msg.seq)
    if isinstance(msg, EventPacket):
        assert head == ("events", msg.stream_id, msg.seq, msg.sample_id, msg.sample_begin, msg.sample_end)
    else:
        assert head.kind == "label" and head.sample_id == msg.sample_id


def check(kind: str, frames) -> object | None:
    """Decode (and peek); count the outcome; any exception other than WireError fails the test."""
    try:
        msg = decode(frames)
    except WireError as exc:
        _peek_agrees(frames, None, exc)
        COUNTS[kind][exc.field.split("[")[0]] += 1
        return None
    _peek_agrees(frames, msg, None)
    _valid_message(msg)
    again = decode([bytes(f) for f in encode(msg)])  # what was accepted re-encodes to itself
    assert type(again) is type(msg)
    COUNTS[kind]["accepted"] += 1
    return msg


# ------------------------------------------------------------------ strategies

stream_ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)


@st.composite
def packets(draw) -> EventPacket:
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    n = draw(st.integers(0, 40))
    t0 = draw(st.integers(0, 2**40))
    span = draw(st.integers(1, 10**6))
    ev = np.zeros(n, LAYOUTS[layout])
    ev["t"] = np.sort(np.array(draw(st.lists(st.integers(t0, t0 + span - 1), min_size=n,
                                             max_size=n)), dtype=np.int64))
    ev["x"] = draw(st.integers(-2**15, 2**15 - 1))
    return EventPacket(draw(stream_ids), draw(st.integers(0, 2**63 - 1)), t0, t0 + span, ev,
                       modality=draw(st.sampled_from(("",) + MODALITIES)),
                       sample_id=draw(st.integers(-1, 2**31)),
                       label=draw(st.none() | st.text(max_size=8)),
                       sample_begin=draw(st.booleans()), sample_end=draw(st.booleans()),
                       sent_ns=draw(st.integers(0, 2**63 - 1)))


@st.composite
def labels(draw) -> LabelEvent:
    t0 = draw(st.integers(0, 2**50))
    score = st.floats(-1e3, 1e3, allow_nan=False)
    return LabelEvent(draw(stream_ids), draw(st.integers(0, 2**40)), t0,
                      t0 + draw(st.integers(0, 10**7)), draw(st.text(max_size=10)), draw(score),
                      topk=draw(st.lists(st.tuples(st.text(max_size=5), score), max_size=6)),
                      margin=draw(score), truth=draw(st.none() | st.text(max_size=4)),
                      modality=draw(st.sampled_from(("",) + MODALITIES)))


# any msgpack-able value, including the awkward ones (NaN, huge ints, nesting, bytes)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20)
    | st.sampled_from(["dvs", "DVS", "cochlea\x00", "spikes ", "<i8", "vision", "events", "label"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4),
    max_leaves=12)
HEADER_KEYS = ["v", "kind", "stream", "seq", "layout", "n", "t0", "t1", "modality", "sample",
               "label", "begin", "end", "sent_ns", "stream_id", "t_start", "t_end", "score",
               "topk", "margin", "truth", "sample_id", "bundle_hash", "prototype_version", "seed",
               "source_ns", "received_ns", "published_ns"]


def _frames(msg) -> list[bytes]:
    return [bytes(f) for f in encode(msg)]


# ------------------------------------------------------------------ hypothesis properties


@settings(FUZZ, max_examples=200)
@given(st.one_of(packets(), labels()))
def test_valid_messages_round_trip(msg):
    out = check("valid", _frames(msg))
    assert out is not None and out.stream_id == msg.stream_id and out.seq == msg.seq


@settings(FUZZ, max_examples=600)
@given(st.one_of(packets(), labels()), st.sampled_from(HEADER_KEYS), values,
       st.booleans())
def test_header_field_mutations(msg, key, value, delete):
    topic, header, payload = _frames(msg)
    h = msgpack.unpackb(header)
    if delete:
        h.pop(key, None)
    else:
        h[key] = value
    check("header_field", [topic, msgpack.packb(h), payload])


@settings(FUZZ, max_examples=400)
@given(packets(), st.data())
def test_byte_level_mutations(pkt, data):
    frames = _frames(pkt)
    which = data.draw(st.integers(0, 2))
    raw = bytearray(frames[which])
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    if op == "flip" and raw:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "truncate":
        raw = raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif op == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=64))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(max_size=16))
    frames[which] = bytes(raw)
    check("byte_mutation", frames)


@settings(FUZZ, max_examples=1000)
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=5))
def test_random_frames(frames):
    check("random_frames", frames)


@settings(FUZZ, max_examples=400)
@given(st.binary(max_size=400) | values.map(lambda v: msgpack.packb(v)))
def test_unpack_control_random(raw):
    try:
        obj = unpack_control(raw)
    except WireError as exc:
        COUNTS["control"][exc.field] += 1
        return
    COUNTS["control"]["accepted"] += 1
    packed = pack_control(obj)  # accepted documents survive a round trip byte for byte
    assert pack_control(unpack_control(packed)) == packed


# ------------------------------------------------------------------ targeted cases


def _packet(n=4, t0=1000, t1=2000, layout="dvs") -> EventPacket:
    ev = np.zeros(n, LAYOUTS[layout])
    ev["t"] = np.linspace(t0, t1 - 1, n).astype(np.int64) if n else []
    return EventPacket("cam0", 1, t0, t1, ev, modality="vision", sample_begin=True)


def _with(**fields) -> list:
    topic, header, payload = _frames(_packet())
    h = msgpack.unpackb(header)
    h.update(fields)
    return [topic, msgpack.packb(h), payload]


@pytest.mark.parametrize("fields, field", [
    ({"v": 0}, "v"), ({"v": 2}, "v"), ({"v": 1.0}, "v"), ({"v": True}, "v"), ({"v": "1"}, "v"),
    ({"layout": "DVS"}, "layout"), ({"layout": "<i8"}, "layout"), ({"layout": None}, "layout"),
    ({"n": 2**40}, "n"), ({"n": -1}, "n"), ({"n": 5}, "payload"), ({"n": 2**64 - 1}, "n"),
    ({"t0": -5}, "t0"), ({"t1": 999}, "t1"), ({"t0": 1500}, "payload.t"), ({"t1": 1500}, "payload.t"),
    ({"t0": float("nan")}, "t0"), ({"t1": float("inf")}, "t1"), ({"seq": -1}, "seq"),
    ({"sent_ns": -3}, "sent_ns"), ({"stream": "x" * 65}, "stream"), ({"stream": "a b"}, "stream"),
    ({"stream": "cam1"}, "topic"), ({"modality": "smell"}, "modality"), ({"kind": "evil"}, "kind"),
    ({"begin": 1}, "begin"), ({"label": "x" * 1000}, "label"), ({"sample": -2}, "sample"),
])
def test_targeted_header_mutations_name_the_field(fields, field):
    with pytest.raises(WireError) as info:
        decode(_with(**fields))
    assert info.value.field == field
    COUNTS["targeted"][field] += 1


def test_backwards_and_negative_event_times_rejected():
    topic, header, payload = _frames(_packet())
    ev = np.frombuffer(payload, LAYOUTS["dvs"]).copy()
    for t in ([1500, 1200, 1300, 1400], [-1, 1000, 1001, 1002], [1000, 1001, 1002, 2**62]):
        ev["t"] = t
        with pytest.raises(WireError) as info:
            decode([topic, header, ev.tobytes()])
        assert info.value.field == "payload.t"
        COUNTS["targeted"]["payload.t"] += 1


def test_oversized_header_and_packet_rejected_before_parsing():
    topic, header, payload = _frames(_packet())
    with pytest.raises(WireError) as info:
        decode([topic, header + b"\x00" * DEFAULT_LIMITS.max_header_bytes, payload])
    assert info.value.field == "header"
    big = msgpack.packb({"v": WIRE_VERSION, "pad": "x" * 10_000})
    with pytest.raises(WireError, match="exceeds"):
        decode([topic, big, payload])
    with pytest.raises(WireError) as info:
        decode([topic, header, payload + b"\x00" * 13 * 1000])
    assert info.value.field == "payload"
    with pytest.raises(WireError, match="exceeds"):
        unpack_control(b"\x00" * (DEFAULT_LIMITS.max_control_bytes + 1))
    COUNTS["targeted"]["oversized"] += 4


@pytest.mark.parametrize("frames", [
    None, 5, "abc", b"abc", [], [b"", b""], [b"", b"", b"", b""],
    [b"ev/cam0", 5, b""], [-1, b"\x80", b""], [10**12, b"\x80", b""], [b"ev/cam0", None, b""],
    [b"ev/cam0", "header-as-str", b""], [b"ev/cam0", b"\x80", 3.5],
], ids=lambda f: type(f).__name__)
def test_wrong_frame_types_raise_wire_error(frames):
    with pytest.raises(WireError):
        decode(frames)
    COUNTS["targeted"]["frames"] += 1


def test_non_contiguous_and_typed_buffers():
    topic, header, payload = _frames(_packet())
    wide = np.frombuffer(payload * 2, np.uint8)[::2]  # non-contiguous view of the right length
    check("buffers", [topic, header, memoryview(wide)])
    out = check("buffers", [memoryview(topic), bytearray(header), memoryview(payload)])
    assert isinstance(out, EventPacket) and len(out.events) == 4
    for raw in (5, -1, 10**12, None, memoryview(np.zeros(4, np.int32))[::2]):
        with pytest.raises(WireError):
            unpack_control(raw)


def test_seeded_mutation_sweep():
    """Tens of thousands of cheap mutations (numpy seeded): bit flips, cuts, header garbling."""
    rng = np.random.default_rng(20261128)
    base = [_frames(_packet(n, layout=lay)) for lay in sorted(LAYOUTS) for n in (0, 1, 7)]
    lab = LabelEvent("mic.1", 5, 0, 10, "yes", 0.5, topk=[("yes", 0.5), ("no", 0.1)])
    base.append(_frames(lab))
    for _ in range(30_000):
        frames = [bytearray(f) for f in base[rng.integers(len(base))]]
        which = int(rng.integers(3))
        raw = frames[which]
        op = rng.integers(4)
        if op == 0 and raw:
            for i in rng.integers(0, len(raw), int(rng.integers(1, 5))):
                raw[i] ^= 1 << int(rng.integers(8))
        elif op == 1:
            del raw[int(rng.integers(len(raw) + 1)):]
        elif op == 2:
            raw[int(rng.integers(len(raw) + 1)):0] = rng.bytes(int(rng.integers(1, 9)))
        elif raw:
            i = int(rng.integers(len(raw)))
            raw[i] = int(rng.choice([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCF, 0xD3, 0xDB, 0xDF, 0xFF]))
        check("seeded_sweep", [bytes(f) for f in frames])
    assert COUNTS["seeded_sweep"]["accepted"] > 0  # some mutations stay valid (e.g. in the payload)
    assert sum(COUNTS["seeded_sweep"].values()) == 30_000


def test_seeded_header_value_sweep():
    """Tens of thousands of header rewrites: each known field set to an awkward value or removed."""
    rng = np.random.default_rng(20261129)
    awkward = [None, True, False, 0, -1, 1, 2**63 - 1, 2**63, 2**64 - 1, -2**63, 1.0, float("nan"),
               float("inf"), -0.0, "", "x" * 300, "dvs", "vision", "label", "events", b"\x00\xff",
               [], [1, 2], {}, {"a": 1}, [["a", 0.1]], [["a", float("nan")]], "\udc80"[:0] + "ü"]
    headers = []
    for msg in (_packet(4), _packet(0, layout="spikes"),
                LabelEvent("mic.1", 5, 0, 10, "yes", 0.5, topk=[("yes", 0.5), ("no", 0.1)])):
        topic, header, payload = _frames(msg)
        headers.append((topic, msgpack.unpackb(header), payload))
    for _ in range(20_000):
        topic, h, payload = headers[rng.integers(len(headers))]
        h = dict(h)
        for key in rng.choice(HEADER_KEYS, int(rng.integers(1, 3)), replace=False):
            if rng.random() < 0.15:
                h.pop(str(key), None)
            else:
                h[str(key)] = awkward[rng.integers(len(awkward))]
        check("header_sweep", [topic, msgpack.packb(h), payload])
    assert sum(COUNTS["header_sweep"].values()) == 20_000
    assert COUNTS["header_sweep"]["accepted"] > 0


def test_bad_frames_between_good_ones_change_nothing():
    """A decode loop that skips (and counts) bad messages yields exactly the clean stream."""
    rng = np.random.default_rng(7)
    good = [_frames(EventPacket("cam0", i, 1000 * i, 1000 * (i + 1), _packet(3, 1000 * i, 1000 * (i + 1)).events,
                                modality="vision", sample_id=i // 4, sample_begin=i % 4 == 0,
                                sample_end=i % 4 == 3)) for i in range(40)]
    bad = [[b"ev/cam0", b"\xc1", b""], [b"ev/cam0", good[0][1], b"\x00"], None,
           _with(v=2), _with(n=2**40), _with(stream="cam9"), [b"x", b"y"], _with(t0=-1)]
    mixed = []
    for f in good:
        mixed.append(f)
        for _ in range(int(rng.integers(0, 3))):
            mixed.append(bad[rng.integers(len(bad))])
    out, rejected = [], collections.Counter()
    for frames in mixed:
        try:
            out.append(decode(frames))
        except WireError as exc:
            rejected[exc.field] += 1
    assert [p.seq for p in out] == list(range(40))
    for got, frames in zip(out, good, strict=True):
        ref = decode(frames)
        assert np.array_equal(got.events, ref.events) and got.sample_id == ref.sample_id
    assert sum(rejected.values()) == len(mixed) - 40 > 0
    COUNTS["interleaved"].update(rejected)
