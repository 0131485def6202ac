"""Scale-out benchmark: real-time streams sustained by 1, 2, 3 worker hosts, and the failover time.

Hosts are network namespaces joined by veth pairs when run as root (CURVE keys on the links), else
processes on loopback. Each worker runs the real pipeline (N-MNIST reservoir preset). For n hosts the
driver pushes synthetic 100 ms DVS samples from many streams as fast as the cluster takes them
(block mode, nothing dropped); stream-seconds labelled per wall second = real-time streams sustained.
Failover: with 2 hosts and streams at real time, one host is killed (SIGKILL); failover_ms is the
longest time from the kill until each of its streams is labelled again on the other host (streams
resume at their next sample boundary). Where the hosts share too few cores to show it, the CPU
seconds the workers spent give ``per_worker_core_streams``: real-time streams one worker core
carries, and ``per_router_core_streams`` what one router core forwards: n hosts with a core each
carry about min(n x per_worker_core_streams, per_router_core_streams).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import nmnist_model  # noqa: E402

from streamlsm.cluster.netns import Hosts  # noqa: E402

DIM = 16


def model(folder: Path) -> tuple[Path, Path]:
    bundle, matcher = nmnist_model(DIM)
    return bundle.save(folder / "bundle"), matcher.save(folder / "protos.json")


def netns_allowed() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    ok = subprocess.run(["ip", "netns", "add", "slsm-probe"], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", "slsm-probe"], capture_output=True)
    return ok


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def capacity(n: int, folder: Path, netns: bool, streams: int, samples: int, events: int) -> dict:
    bundle, protos = folder / "bundle", folder / "protos.json"
    with Hosts(n, folder / f"keys{n}", netns=netns) as hosts:
        hosts.start_router()
        for i in range(n):
            hosts.start_worker(i, bundle, protos)
        hosts.wait_workers(n)
        warm = hosts.drive(streams=8 * n, samples=1, prefix="warm", settle_s=60)
        if warm["labels"] < warm["expected_labels"]:  # the kernels must be loaded everywhere
            raise SystemExit(f"warm-up got {warm['labels']}/{warm['expected_labels']} labels")
        time.sleep(0.6)  # a fresh status line (heartbeat info: each worker's busy seconds)
        busy0 = {w: i.get("cpu_s", 0.0) for w, i in hosts.router_status()["workers"].items()}
        router_pid = hosts.procs["router"].pid
        r0 = cpu_s(router_pid)
        res = hosts.drive(streams=streams, samples=samples, speed=0, settle_s=10, events=events)
        res["router_cpu_s"] = cpu_s(router_pid) - r0
        time.sleep(0.6)
        st = hosts.router_status()
    res.pop("got")
    res["owners"] = sorted({o for o in st["owners"].values() if o})
    busy = {w: i.get("cpu_s", 0.0) - busy0.get(w, 0.0) for w, i in st["workers"].items()}
    res["worker_cpu_s"] = {w: round(b, 2) for w, b in busy.items()}
    # what one worker core can carry: stream seconds labelled per CPU second of pipeline work
    total_busy = sum(b for b in busy.values() if b > 0)
    res["per_worker_capacity"] = res["stream_s"] / total_busy if total_busy else None
    return res


def failover(folder: Path, netns: bool, streams: int, samples: int, events: int) -> dict:
    protos = folder / "protos.json"
    with Hosts(2, folder / "keysf", netns=netns) as hosts:
        hosts.start_router()
        for i in range(2):
            hosts.start_worker(i, folder / "bundle", protos)
        hosts.wait_workers(2)
        hosts.drive(streams=16, samples=1, prefix="warm", settle_s=60)
        time.sleep(0.5)
        base = hosts.router_status()["counters"].get("labels", 0)
        proc = hosts.drive(background=True, streams=streams, samples=samples, speed=1.0, events=events,
                           prefix="f", settle_s=3)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill once every stream has had a label or two
            st = hosts.router_status()
            if st.get("counters", {}).get("labels", 0) >= base + 2 * streams:
                break
            time.sleep(0.05)
        owners = hosts.router_status()["owners"]
        t_kill = hosts.kill_worker(1)
        res = json.loads(proc.communicate(timeout=300)[0].strip().splitlines()[-1])
        time.sleep(0.6)
        st = hosts.router_status()
    moved = [s for s, o in owners.items() if o == "w1" and s.startswith("f")]
    back = []
    for sid in moved:
        after = [t for _s, _l, t in res["got"].get(sid, []) if t > t_kill]
        back.append((min(after) - t_kill) * 1000 if after else float("inf"))
    dead = [e for e in st.get("events", []) if e["event"] == "dead"]
    return {"failover_ms": round(max(back), 1) if back else None,
            "failover_median_ms": round(float(np.median(back)), 1) if back else None,
            "detect_ms": round((dead[0]["t"] - t_kill) * 1000, 1) if dead else None,
            "moved_streams": len(moved), "lost_samples": st["counters"].get("lost_samples", 0),
            "labels": res["labels"], "expected": res["expected_labels"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small run (< 60 s)")
    ap.add_argument("--hosts", choices=("auto", "netns", "loopback"), default="auto")
    ap.add_argument("--max-hosts", type=int, default=3)
    ap.add_argument("--streams", type=int, default=0, help="streams in the capacity runs")
    ap.add_argument("--events", type=int, default=400,
                    help="events per 100 ms sample (1300 = the N-MNIST event rate)")
    args = ap.parse_args()
    netns = {"auto": netns_allowed(), "netns": True, "loopback": False}[args.hosts]
    streams = args.streams or (24 if args.quick else 64)
    samples = 4 if args.quick else 20
    out: dict = {"mode": "netns" if netns else "loopback", "cpus": os.cpu_count(),
                 "sample_ms": 100, "packet_ms": 10, "events_per_sample": args.events}
    with tempfile.TemporaryDirectory(prefix="slsm-scale-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        model(folder)
        for n in range(1, args.max_hosts + 1):
            r = capacity(n, folder, netns, streams, samples, args.events)
            key = "streams_1_host" if n == 1 else f"streams_{n}_hosts"
            out[key] = int(r["realtime_factor"])
            out[f"realtime_factor_{n}"] = round(r["realtime_factor"], 2)
            out[f"labels_{n}"] = f"{r['labels']}/{r['expected_labels']}"
            out[f"worker_cpu_s_{n}"] = r["worker_cpu_s"]
            if n == 1 and r["per_worker_capacity"]:
                out["per_worker_core_streams"] = int(r["per_worker_capacity"])
            if n == 1 and r["router_cpu_s"] > 0:  # what one router core forwards (the ceiling)
                out["per_router_core_streams"] = int(r["stream_s"] / r["router_cpu_s"])
            print(f"{n} host(s): {r['realtime_factor']:.1f} x real time over {r['streams']} streams, "
                  f"labels {r['labels']}/{r['expected_labels']}, workers used {r['owners']}",
                  flush=True)
        f = failover(folder, netns, 8 if args.quick else 16, 12 if args.quick else 40, args.events)
        print(f"failover: {f}", flush=True)
        out.update(f)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
