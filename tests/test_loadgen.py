"""The load generator (bench/latency.py's source): every packet of every stream arrives, in order, on time."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest
import zmq

from streamlsm.config import data_root
from streamlsm.net import wire
from streamlsm.testing.load import LoadPlan, prepare, run_load

ROOT = data_root() / "nmnist"
pytestmark = pytest.mark.skipif(not (ROOT / "Train").is_dir(), reason=f"N-MNIST not found under {ROOT}")


def test_prepare_merges_streams_by_due_time_with_spread_phases():
    plan = LoadPlan("tcp://127.0.0.1:1", str(ROOT), streams=4, samples=1, packet_us=10_000)
    due, messages = prepare(plan, [0, 1, 2, 3])
    assert len(due) == len(messages) > 4 * 25  # an N-MNIST sample is ~300 ms: ~30 packets of 10 ms
    assert bool((np.diff(due) >= 0).all())
    firsts = {}
    for d, frames in zip(due, messages, strict=True):
        pkt = wire.decode([bytes(f) for f in frames])  # pre-encoded frames are valid wire messages
        firsts.setdefault(pkt.stream_id, (int(d), pkt))
    assert sorted(firsts) == [f"lg-{k}" for k in range(4)]
    for k in range(4):  # stream k is due k/4 of a packet after stream 0: 10 ms span + phase
        d, pkt = firsts[f"lg-{k}"]
        assert pkt.sample_begin and pkt.seq == 0
        assert d == (pkt.t_end + k * 2_500) * 1000


def test_load_generator_delivers_every_packet_in_order_and_in_real_time():
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.linger = 0
    pull.rcvhwm = 0
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    try:
        plan = LoadPlan(f"tcp://127.0.0.1:{port}", str(ROOT), streams=5, samples=2, packet_us=10_000, procs=2,
                        prefix="t")
        import threading

        got: list = []

        def receive() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if pull.poll(200):
                    frames = pull.recv_multipart()
                    got.append((time.monotonic_ns(), wire.decode(frames)))
                elif done.is_set():
                    return

        done = threading.Event()
        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        summary = run_load(plan, lead_s=0.3)
        done.set()
        reader.join(70)
    finally:
        pull.close(0)
    assert summary["sent"] == summary["prepared"] == len(got) > 5 * 2 * 25
    by_stream = defaultdict(list)
    for _t, pkt in got:
        by_stream[pkt.stream_id].append(pkt)
    assert sorted(by_stream) == [f"t-{k}" for k in range(5)]
    for pkts in by_stream.values():
        assert [p.seq for p in pkts] == list(range(len(pkts)))  # every packet, in order
        assert sum(p.sample_begin for p in pkts) == sum(p.sample_end for p in pkts) == 2
        sent = [p.sent_ns for p in pkts]
        assert sent == sorted(sent) and sent[0] > 0  # stamped at send time, not the placeholder
        assert sent[-1] < time.time_ns()
    # paced, not blasted: the sends span the schedule (stream time of the longest stream)
    arrivals = np.array([t for t, _ in got])
    assert (arrivals.max() - arrivals.min()) / 1e9 >= summary["span_s"] - 0.05 > 0.4
    assert summary["late_p50_ms"] < 20.0
