"""Soak: 16 streams at 4x real time into `streamlsm serve` (block mode) for >= 10 minutes.

The daemon runs as a process with the real reservoir (N-MNIST preset) and a prototype checkpoint;
this process paces synthetic DVS samples (N-MNIST event rate) on an absolute schedule through PUSH
(block mode: nothing may be dropped; a slow daemon slows the sender instead) and subscribes to the
labels. Every --every seconds it samples the daemon's RSS (/proc) and the label latency (arrival
at the subscriber minus the send time of the sample's last packet). Pass: every sample labelled,
zero drops, RSS growth after warm-up within noise. Usage: python bench/soak.py [--quick]
[--minutes 10] [--streams 16] [--speed 4]. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import LabelThread, nmnist_model  # noqa: E402

from streamlsm.events import DVS_DTYPE, EventPacket  # noqa: E402
from streamlsm.net import wire  # noqa: E402
from streamlsm.testing import DaemonProcess  # noqa: E402
from streamlsm.testing.procs import packets_from_samples, random_samples  # noqa: E402

DIM, SAMPLE_US, PACKET_US = 16, 100_000, 10_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare(work: Path, events: int) -> dict:
    bundle, matcher = nmnist_model(DIM, events, SAMPLE_US, PACKET_US)
    bundle.save(work / "bundle")
    (work / "state").mkdir()
    matcher.save(work / "state" / "protos.json")
    return {"model": {"bundle": str(work / "bundle"), "prototypes": "state/protos.json"},
            "inputs": [{"endpoint": "tcp://127.0.0.1:*", "kind": "pull", "hwm": 1000}],
            "outputs": {"labels": "tcp://127.0.0.1:*", "hwm": 100_000},
            "control": {"endpoint": "tcp://127.0.0.1:*", "allowed_dirs": [str(work)]},
            "limits": {"overflow": "block", "queue": 2000}}


class Labels(LabelThread):
    """The label subscriber: arrival time and the closing packet's send time of every label."""

    def __init__(self, endpoint: str) -> None:
        self.rows: list[tuple[int, int]] = []
        self.n = 0
        super().__init__(endpoint)

    def on_label(self, arrival_ns: int, frames: list) -> None:
        self.rows.append((arrival_ns, wire.decode(frames).source_ns))
        self.n += 1

    def take(self) -> np.ndarray:
        rows, self.rows = self.rows, []
        return np.array([(a - s) / 1e6 for a, s in rows if s], dtype=np.float64)


def packets_forever(streams: int, events: int, pool: int = 8):
    """Packet j of every stream, for j = 0, 1, ...: a pool of samples cycled with fresh times/ids."""
    base = [packets_from_samples(random_samples(pool, DVS_DTYPE, 100_000, events=events, seed=i), f"cam{i}", PACKET_US, duration_us=SAMPLE_US)
            for i in range(streams)]
    per_cycle = len(base[0])
    cycle = 0
    while True:
        shift = cycle * pool * SAMPLE_US
        for j in range(per_cycle):
            out = []
            for pk in base:
                p = pk[j]
                ev = p.events.copy()
                ev["t"] += shift
                out.append(EventPacket(p.stream_id, p.seq + cycle * per_cycle, p.t_start + shift,
                                       p.t_end + shift, ev, p.modality, p.sample_id + cycle * pool,
                                       p.label, p.sample_begin, p.sample_end))
            yield out
        cycle += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="40 s instead of --minutes")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--events", type=int, default=1300, help="events per 100 ms sample (N-MNIST rate)")
    ap.add_argument("--every", type=float, default=10.0, help="sampling period, s")
    args = ap.parse_args()
    duration = 40.0 if args.quick else args.minutes * 60
    every = 5.0 if args.quick else args.every
    rows = []
    with tempfile.TemporaryDirectory(prefix="slsm-soak-") as tmp:
        work = Path(tmp)
        cfg = prepare(work, args.events)
        with DaemonProcess(cfg, work) as daemon:
            pid = daemon.proc.pid
            labels = Labels(daemon.labels)
            push = zmq.Context.instance().socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 10_000)
            push.setsockopt(zmq.SNDHWM, 1000)
            push.connect(daemon.inputs[0])
            time.sleep(0.5)
            t0 = time.monotonic()
            next_row, samples_sent, lateness = t0 + every, 0, []
            for group in packets_forever(args.streams, args.events):
                due = t0 + group[0].t_start / 1e6 / args.speed
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    lateness.append(now - due)
                sent = time.time_ns()
                for p in group:
                    p.sent_ns = sent
                    push.send_multipart(wire.encode(p), copy=False)  # blocks when the daemon lags
                samples_sent += sum(p.sample_end for p in group)
                now = time.monotonic()
                if now >= next_row:
                    lat = labels.take()
                    st = daemon.ctl({"cmd": "status"})
                    rows.append({"t_s": round(now - t0, 1), "rss_mb": round(rss_mb(pid), 1),
                                 "labels": labels.n, "sent": samples_sent,
                                 "lat_p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
                                 "lat_p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
                                 "queue": st["queue_depth"], "dropped": st["dropped"],
                                 "label_drops": st["label_drops"],
                                 "behind_s": round(max(0.0, now - due), 3)})
                    print(json.dumps(rows[-1]), flush=True)
                    next_row = now + every
                if now - t0 >= duration and group[0].sample_end:
                    break
            deadline = time.monotonic() + 60
            while labels.n < samples_sent and time.monotonic() < deadline:
                time.sleep(0.05)
            final = daemon.ctl({"cmd": "status"})
            rss_end = rss_mb(pid)
            labels.close()
            push.close()
    warm = [r["rss_mb"] for r in rows[1:]] or [r["rss_mb"] for r in rows]
    p99 = [r["lat_p99_ms"] for r in rows if r["lat_p99_ms"] is not None]
    out = {"duration_s": round(time.monotonic() - t0, 1), "streams": args.streams,
           "speed": args.speed, "events_per_s_per_stream": args.events * 10,
           "samples_sent": samples_sent, "labels": labels.n, "lost": samples_sent - labels.n,
           "dropped": final["dropped"], "label_drops": final["label_drops"],
           "wire_errors": final.get("wire_errors", 0),
           "rss_first_mb": warm[0] if warm else None, "rss_last_mb": round(rss_end, 1),
           "rss_growth_mb": round(rss_end - warm[0], 1) if warm else None,
           "rss_max_mb": max(warm) if warm else None,
           "lat_p99_first_ms": p99[0] if p99 else None, "lat_p99_last_ms": p99[-1] if p99 else None,
           "lat_p99_max_ms": max(p99) if p99 else None,
           "sender_behind_max_s": round(max([r["behind_s"] for r in rows] or [0]), 3),
           "daemon_busy_s": round(final.get("busy_s", 0.0), 1), "cpus": os.cpu_count()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
