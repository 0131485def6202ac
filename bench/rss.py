"""Steady RSS of `streamlsm serve` with 1, 64 and 1,024 live streams (issue 11: budgets for a 4 GB board).

For each stream count a fresh daemon process (N-MNIST reservoir preset, 200 neurons; with
``feature_windows`` 1 and 4: the second keeps a spike history of max_bins x neurons per stream)
gets every stream's samples (100 ms of synthetic DVS events in 10 ms packets, block mode), then one
more open sample per stream, so that every stream holds live state; RSS (/proc VmRSS) is read once
the daemon has labelled everything and again after a settle. Also reports the pipeline's own
account of the state (status: streams x slot bytes). Usage: python bench/rss.py [--quick]
[--streams 1,64,1024]. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import zmq

from streamlsm.config import to_dict
from streamlsm.events import DVS_DTYPE
from streamlsm.net import wire
from streamlsm.reservoir import Reservoir, preset
from streamlsm.testing import DaemonProcess, make_bundle, packets_from_samples, random_samples


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(n_streams: int, windows: int, samples_per_stream: int, work: Path) -> dict:
    cfg = preset("nmnist", feature_windows=windows)
    res = Reservoir(cfg)
    make_bundle(res.n_features, 16, reservoirs={"vision": to_dict(cfg)}).save(work / "bundle")
    config = {"model": {"bundle": str(work / "bundle"), "prototypes": "state/protos.json"},
              "inputs": [{"endpoint": "tcp://127.0.0.1:*", "kind": "pull"}],
              "outputs": {"labels": "tcp://127.0.0.1:*"},
              "control": {"endpoint": "tcp://127.0.0.1:*", "allowed_dirs": [str(work)]},
              "limits": {"overflow": "block"}}
    with DaemonProcess(config, work) as d:
        pid = d.proc.pid
        idle = rss_mb(pid)
        samples = random_samples(samples_per_stream + 1, DVS_DTYPE, duration_us=100_000, events=600, seed=3)
        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 5000)
        push.connect(d.inputs[0])
        sent = 0
        for i in range(n_streams):
            pkts = packets_from_samples(samples, f"s{i}", packet_us=10_000, duration_us=100_000)
            for p in pkts[:-1]:  # the last sample stays open: every stream holds live state
                p.sent_ns = time.time_ns()
                push.send_multipart(wire.encode(p))
                sent += 1
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            st = d.ctl({"cmd": "status"})
            if st["pipeline"]["packets"] >= sent:
                break
            time.sleep(0.2)
        busy = rss_mb(pid)
        time.sleep(2.0)
        st = d.ctl({"cmd": "status"})
        settled = rss_mb(pid)
        push.close(0)
        state_bytes = Reservoir(cfg).slot_bytes * st["streams"]
        return {"streams": n_streams, "feature_windows": windows, "rss_idle_mb": round(idle, 1),
                "rss_mb": round(settled, 1), "rss_after_input_mb": round(busy, 1),
                "state_mb": round(state_bytes / (1 << 20), 2), "labels": st["pipeline"]["labels"],
                "live_streams": st["streams"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one sample per stream before the open one")
    ap.add_argument("--streams", default="1,64,1024")
    args = ap.parse_args()
    counts = [int(x) for x in args.streams.split(",")]
    rows = []
    for windows in (1, 4):
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="streamlsm-rss-") as work:
                row = measure(n, windows, 1 if args.quick else 3, Path(work))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"rss": rows, "load_avg_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
