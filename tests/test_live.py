"""Live sensors: LiveSender from a fake camera thread, field conversion, drops counted, the plug-in group."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from streamlsm.errors import ConfigError, DataError, TransportError
from streamlsm.events import DVS_DTYPE
from streamlsm.net import wire
from streamlsm.plugins import LIVE_GROUP, LiveSource, available, load
from streamlsm.stream.live import LiveSender, run_source, to_layout

CD = np.dtype([("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")])  # Metavision's CD event


def _pull():
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"


def _drain(sock, n_min: int, timeout_ms: int = 10_000) -> list:
    out = []
    while sock.poll(timeout_ms if len(out) < n_min else 300):
        out.append(wire.decode(sock.recv_multipart()))
    return out


def _buffers(n: int, per: int = 20, t0: int = 1_700_000_000_000_000, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bufs = []
    for k in range(n):
        b = np.zeros(per, CD)
        b["x"], b["y"], b["p"] = rng.integers(0, 34, per), rng.integers(0, 34, per), rng.integers(0, 2, per)
        b["t"] = np.sort(t0 + k * 1000 + rng.integers(0, 1000, per))
        bufs.append(b)
    return bufs


def test_fake_camera_thread_to_packets_in_order_with_contiguous_spans():
    sock, endpoint = _pull()
    bufs = _buffers(200)
    try:
        with LiveSender(endpoint, stream_id="cam7", block=True) as tx:
            cam = threading.Thread(target=lambda: [tx.send_events(b) for b in bufs])
            cam.start()  # the SDK's own thread calls the callback
            cam.join()
        got = _drain(sock, 201)
    finally:
        sock.close(0)
    assert [p.seq for p in got] == list(range(201))  # 200 buffers + the closing packet
    assert tx.stats == {"sent": 201, "events": 4000, "dropped": 0, "dropped_events": 0, "late_events": 0}
    assert got[0].sample_begin and not got[0].sample_end and got[-1].sample_end and len(got[-1].events) == 0
    assert all(a.t_end == b.t_start for a, b in zip(got, got[1:], strict=False))
    assert got[0].t_start == 0
    ev = np.concatenate([p.events for p in got])
    assert ev.dtype == DVS_DTYPE and {p.stream_id for p in got} == {"cam7"}
    want = np.concatenate(bufs)
    np.testing.assert_array_equal(ev["t"], want["t"] - want["t"][0])  # rebased to the first event
    np.testing.assert_array_equal(ev["x"], want["x"])
    np.testing.assert_array_equal(ev["p"], want["p"])


def test_callbacks_from_two_threads_never_interleave_a_packet():
    sock, endpoint = _pull()
    bufs = _buffers(100, seed=1)
    try:
        with LiveSender(endpoint, block=True) as tx:
            threads = [threading.Thread(target=lambda part=part: [tx.send_events(b) for b in part])
                       for part in (bufs[0::2], bufs[1::2])]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        got = _drain(sock, 101)
    finally:
        sock.close(0)
    assert [p.seq for p in got] == list(range(101))
    # a buffer older than the stream's present is dropped and counted, never sent out of order
    sent = sum(len(p.events) for p in got)
    assert sent + tx.stats["late_events"] == 2000 and tx.stats["events"] == sent
    t = np.concatenate([p.events["t"] for p in got])
    assert np.all(np.diff(t) >= 0)


def test_full_queue_drops_and_counts_without_blocking_the_sensor():
    ctx = zmq.Context()
    try:
        tx = LiveSender("tcp://127.0.0.1:1", hwm=1, linger_ms=0, context=ctx)  # nobody there
        results = [tx.send_events(b) for b in _buffers(10)]
        stats = dict(tx.stats)
        tx.close()
    finally:
        ctx.term()
    # ZeroMQ queues one message (hwm 1) for the peer it is connecting to; every later send
    # returns at once, dropped and counted: the sensor thread never waits
    assert results == [True] + [False] * 9
    assert stats == {"sent": 1, "events": 20, "dropped": 9, "dropped_events": 180, "late_events": 0}
    with pytest.raises(TransportError, match="closed"):
        tx.send_events(_buffers(1)[0])


def test_to_layout_converts_by_name_and_says_what_is_missing():
    dv = np.zeros(3, [("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "?")])
    dv["timestamp"], dv["x"], dv["polarity"] = [5, 6, 7], [1, 2, 3], [True, False, True]
    out = to_layout(dv, "dvs")
    assert out.dtype == DVS_DTYPE and out["t"].tolist() == [5, 6, 7] and out["p"].tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="no field 'y'"):
        to_layout(np.zeros(2, [("t", "<i8"), ("x", "<u2")]), "dvs")
    wide = np.zeros(1, [("t", "<i8"), ("x", "<u4"), ("y", "<u2"), ("p", "u1")])
    wide["x"] = 70_000
    with pytest.raises(DataError, match="outside int16"):
        to_layout(wide, "dvs")
    with pytest.raises(ConfigError, match="modality"):
        LiveSender("tcp://127.0.0.1:1", modality="smell")


def test_playback_is_a_live_source_plugin_and_runs_into_a_sender(real_data):
    assert "playback" in available(LIVE_GROUP)
    cls = load(LIVE_GROUP, "playback")
    src = cls(dataset="nmnist", root=str(real_data / "nmnist"), limit=2, speed=50.0)
    assert isinstance(src, LiveSource) and src.layout == "dvs" and src.modality == "vision"
    expected = sum(len(src.ds.events(i)) for i in range(2))
    sock, endpoint = _pull()
    try:
        with LiveSender(endpoint, block=True) as tx:
            stats = run_source(src, tx, threading.Event())
        got = _drain(sock, stats["sent"] + 1)
    finally:
        sock.close(0)
    assert stats["events"] == expected and stats["dropped"] == 0 and stats["late_events"] == 0
    assert sum(len(p.events) for p in got) == expected and len(got) == stats["sent"] + 1
    stop = threading.Event()
    stop.set()  # a stop before the first buffer sends nothing
    with LiveSender(endpoint, linger_ms=0) as idle:
        assert run_source(src, idle, stop)["sent"] == 0
