"""A load driver for cluster tests and benchmarks: many synthetic streams in, every label out, timed.

``python -m streamlsm.cluster.drive '<json options>'`` prints one JSON result line (so it can run
inside a network namespace); ``drive(**options)`` does the same in-process.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import zmq

from ..errors import WireError
from ..events import LAYOUTS, EventPacket
from ..net import wire
from ..stream.synthetic import packets_from_samples, random_samples

__all__ = ["make_samples", "stream_packets", "drive"]


def make_samples(n: int, layout: str = "dvs", duration_us: int = 100_000, events: int = 400,
                 classes: int = 3, seed: int = 0, width: int = 34) -> list[tuple[np.ndarray, str]]:
    """``n`` (events, label) samples whose channel distribution depends on the class."""
    return random_samples(n, LAYOUTS[layout], duration_us, events, classes, seed, width)


def stream_packets(stream_id: str, samples, duration_us: int, packet_us: int,
                   modality: str = "vision", first_sample: int = 0, t0: int = 0,
                   seq0: int = 0) -> list[EventPacket]:
    """Contiguous packets of consecutive fixed-length samples (sample ids from ``first_sample``)."""
    return packets_from_samples(samples, stream_id, packet_us, modality, duration_us, t0=t0, seq0=seq0,
                                first_sample=first_sample)


def drive(input: str, labels: str, streams: int = 4, samples: int = 4, duration_us: int = 100_000,
          packet_us: int = 10_000, speed: float = 0.0, events: int = 400, seed: int = 0,
          settle_s: float = 5.0, layout: str = "dvs", modality: str = "vision",
          prefix: str = "s", bad_every: int = 0, timeout_s: float = 120.0,
          context: zmq.Context | None = None) -> dict:
    """Send ``streams`` x ``samples`` samples (PUSH, block mode) and collect the labels (SUB).

    ``speed`` = 0 sends as fast as the cluster takes them, else k x real time. ``bad_every`` > 0
    slips a malformed message in after every that many packets. Returns what was sent and, per
    stream, each label as [sample_id, label, monotonic receive time].
    """
    ctx = context or zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.subscribe(wire.LABEL_TOPIC)
    sub.connect(labels)
    push = ctx.socket(zmq.PUSH)
    push.linger = 5000
    push.connect(input)
    expected = streams * samples
    got: dict[str, list] = {}
    n_labels, bad_labels = [0], [0]
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            if not sub.poll(100):
                continue
            frames = sub.recv_multipart()
            try:
                lab = wire.decode(frames)
            except WireError:  # counted: a dead collector would report every later label as lost
                bad_labels[0] += 1
                continue
            got.setdefault(lab.stream_id, []).append([lab.sample_id, lab.label, time.monotonic()])
            n_labels[0] += 1

    time.sleep(0.3)  # let the subscription reach the router
    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    per_stream = [stream_packets(f"{prefix}{i}", make_samples(samples, layout, duration_us, events,
                                                             seed=seed + i), duration_us, packet_us,
                                 modality) for i in range(streams)]
    n_packets = len(per_stream[0]) if per_stream else 0
    t_start = time.monotonic()
    sent = bad = 0
    for j in range(n_packets):
        if speed > 0:
            due = t_start + per_stream[0][j].t_start / 1e6 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for pkts in per_stream:
            pkt = pkts[j]
            pkt.sent_ns = time.time_ns()
            push.send_multipart(wire.encode(pkt), copy=False)
            sent += 1
            if bad_every and sent % bad_every == 0:
                push.send_multipart([b"ev/" + pkt.stream_id.encode(), b"\xc1garbage", b"\x00"])
                bad += 1
    t_sent = time.monotonic()
    deadline = t_sent + timeout_s
    last, last_change = -1, time.monotonic()
    while n_labels[0] < expected and time.monotonic() < deadline:
        if n_labels[0] != last:
            last, last_change = n_labels[0], time.monotonic()
        elif time.monotonic() - last_change > settle_s:
            break  # nothing new for settle_s: the rest is lost (the router says which)
        time.sleep(0.02)
    t_end = time.monotonic()
    done.set()
    collector.join()
    push.close()
    sub.close()
    stream_s = streams * samples * duration_us / 1e6
    return {"streams": streams, "samples": samples, "expected_labels": expected,
            "labels": n_labels[0], "bad_labels": bad_labels[0], "packets": sent, "bad_messages": bad,
            "t_start": t_start, "t_sent": t_sent, "t_end": t_end,
            "wall_s": t_end - t_start, "stream_s": stream_s,
            "realtime_factor": stream_s / max(t_end - t_start, 1e-9), "got": got}


if __name__ == "__main__":  # pragma: no cover - used across network namespaces
    print(json.dumps(drive(**json.loads(sys.argv[1]))), flush=True)
