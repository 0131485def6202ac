"""Replay benchmark: tcp loopback throughput with a subscriber process, codec cost, pacing error.

    python bench/replay.py [--quick]

The subscriber is this script run again as a separate process (``--subscriber``): it binds a PULL
socket on 127.0.0.1, decodes every message with ``wire.decode`` (through ``transport.Receiver``)
and reports the event rate between its first and last message. The last printed line is one JSON
object with events_per_s (best synthetic packet size), events_per_s_1ms (real N-MNIST cut into
1 ms packets), codec_vs_raw (per-event payload cost, raw numpy tobytes+frombuffer over wire
encode+decode: slopes of time against packet size), pacing_p50_ms / pacing_p99_ms (speed 1,
1 ms packets) and details (details.message: per-message encode / decode microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlsm.events import DVS_DTYPE, EventPacket  # noqa: E402
from streamlsm.net import wire  # noqa: E402
from streamlsm.net.transport import Receiver, Sender  # noqa: E402
from streamlsm.stream.pacing import PaceStats, pace  # noqa: E402
from streamlsm.stream.replay import ReplayConfig, schedule  # noqa: E402

# ------------------------------------------------------------------ subscriber process


async def _subscribe(n_packets: int) -> dict:
    async with Receiver("tcp://127.0.0.1:*", "pull", bind=True, hwm=10_000, batch=512) as rx:
        print(json.dumps({"endpoint": rx.endpoint}), flush=True)
        got = events = 0
        t_first = t_last = c_first = 0.0
        first_events = 0
        while got < n_packets:
            batch = await rx.recv_batch(timeout=60)
            if not batch:
                break
            now = time.perf_counter()
            if got == 0:
                t_first, first_events = now, sum(len(p.events) for p in batch)
                c_first = time.process_time()
            t_last = now
            got += len(batch)
            events += sum(len(p.events) for p in batch)
        span = t_last - t_first
        cpu = time.process_time() - c_first if got else 0.0
        return {"packets": got, "events": events, "seconds": span,
                "cpu_us_per_packet": cpu / max(1, got - 1) * 1e6,
                "events_per_s": (events - first_events) / span if span > 0 else 0.0,
                "packets_per_s": (got - 1) / span if span > 0 else 0.0,
                "wire_errors": rx.stats["wire_errors"]}


def subscriber_main(n_packets: int) -> None:
    print(json.dumps(asyncio.run(_subscribe(n_packets))), flush=True)


def start_subscriber(n_packets: int) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--subscriber", str(n_packets)],
                            stdout=subprocess.PIPE, text=True, env=env)
    endpoint = json.loads(proc.stdout.readline())["endpoint"]
    return proc, endpoint


def finish_subscriber(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=300)
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------ sender side


def synthetic_packets(size: int, k: int = 8, seed: int = 0) -> list[EventPacket]:
    rng = np.random.default_rng(seed)
    out = []
    for j in range(k):
        ev = np.zeros(size, dtype=DVS_DTYPE)
        ev["t"] = np.sort(rng.integers(0, 1_000_000, size=size))
        ev["x"] = rng.integers(0, 346, size=size)
        ev["y"] = rng.integers(0, 260, size=size)
        ev["p"] = rng.integers(0, 2, size=size)
        out.append(EventPacket("bench", 0, 0, 1_000_000, ev, "vision", j, None))
    return out


async def _send(endpoint: str, packets, n: int, speed="max", stats: PaceStats | None = None) -> dict:
    async with Sender(endpoint, "push", bind=False, hwm=10_000, linger_ms=30_000) as tx:
        t0 = time.perf_counter()
        if isinstance(packets, list) and speed == "max" and len(packets) < n:  # reuse a pool
            k = len(packets)
            for i in range(n):
                pkt = packets[i % k]
                pkt.seq = i
                await tx.send(pkt)
        else:
            async for pkt in pace(packets, speed, stats=stats):
                await tx.send(pkt)
        return {"send_s": time.perf_counter() - t0, **tx.stats}


def run_stream(packets, n: int, speed="max", stats: PaceStats | None = None) -> dict:
    proc, endpoint = start_subscriber(n)
    try:
        sent = asyncio.run(_send(endpoint, packets, n, speed, stats))
    finally:
        rx = finish_subscriber(proc)
    if rx["packets"] != n or rx["events"] != sent["events"]:
        raise RuntimeError(f"lost data: sent {sent}, received {rx}")
    return {"sent": sent, "received": rx}


def bench_sizes(sizes: list[int], events_per_size: int) -> dict:
    out = {}
    for size in sizes:
        n = max(200, events_per_size // size)
        r = run_stream(synthetic_packets(size), n)
        out[size] = {"events_per_s": r["received"]["events_per_s"],
                     "rx_cpu_us_per_packet": r["received"]["cpu_us_per_packet"],
                     # the rate the subscriber could take with one core of its own
                     "events_per_rx_cpu_s": size / max(r["received"]["cpu_us_per_packet"], 1e-9) * 1e6,
                     "packets_per_s": r["received"]["packets_per_s"], "packets": n,
                     "sender_events_per_s": r["sent"]["events"] / r["sent"]["send_s"]}
        print(f"packet {size:6d} events: {out[size]['events_per_s'] / 1e6:7.2f} Mev/s "
              f"{out[size]['packets_per_s']:9.0f} packets/s (subscriber CPU: "
              f"{out[size]['events_per_rx_cpu_s'] / 1e6:.1f} Mev per CPU s)", flush=True)
    return out


def nmnist_items(limit: int, packet_us: int = 1000) -> list | None:
    try:
        from streamlsm_sources.nmnist import NMNISTDataset

        from streamlsm.config import data_root
    except ImportError:
        return None
    root = data_root() / "nmnist"
    if not root.is_dir():
        return None
    ds = NMNISTDataset(root, limit=limit)
    return list(schedule(ds, "nmnist", ReplayConfig(packet_us=packet_us)))


# ------------------------------------------------------------------ codec and pacing


def bench_codec(sizes: list[int], rounds: int) -> dict:
    """Best time of wire encode+decode and of raw tobytes+frombuffer per packet size.

    The two are timed in alternating short blocks (so both see the same machine load) and the
    best block counts. The per-event (payload) costs are the slopes of a least-squares line
    through time against size, which separates them from the fixed per-message header cost.
    """
    per_size: dict[int, dict] = {}
    for size in sizes:
        pkt = synthetic_packets(size, k=1)[0]
        ev = pkt.events
        fns = {"codec": lambda pkt=pkt: wire.decode(wire.encode(pkt)),
               "raw": lambda ev=ev: np.frombuffer(ev.tobytes(), dtype=DVS_DTYPE)}
        if not np.array_equal(fns["codec"]().events, fns["raw"]()):
            raise RuntimeError("codec round trip changed the events")
        reps = max(5, 50_000 // size)
        best = {"codec": float("inf"), "raw": float("inf")}
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                best[name] = min(best[name], (time.perf_counter() - t0) / reps)
        per_size[size] = {"codec_us": best["codec"] * 1e6, "raw_us": best["raw"] * 1e6,
                          "codec_vs_raw": best["raw"] / best["codec"]}
    x = np.asarray(sizes, dtype=float)
    fit = {name: np.polyfit(x, [per_size[s][f"{name}_us"] for s in sizes], 1)
           for name in ("codec", "raw")}
    return {
        "per_size": per_size,
        "codec_ns_per_event": fit["codec"][0] * 1e3, "raw_ns_per_event": fit["raw"][0] * 1e3,
        "codec_fixed_us_per_message": fit["codec"][1],
        "codec_vs_raw_per_event": fit["raw"][0] / fit["codec"][0],
    }


def bench_message_cost(sizes: list[int], repeats: int, number: int) -> dict:
    """Per-message wire.encode and wire.decode time (median and best of ``repeats`` blocks).

    The fixed cost a message pays whatever its size: header packing, validation, EventPacket
    construction. Decode reads bytes frames, as a receiver would after ZeroMQ hands them over.
    """
    out: dict = {}
    for size in sizes:
        pkt = synthetic_packets(size, k=1)[0]
        frames = [bytes(f) for f in wire.encode(pkt)]
        fns = {"encode": lambda pkt=pkt: wire.encode(pkt),
               "decode": lambda frames=frames: wire.decode(frames)}
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():  # alternating blocks: both see the same machine load
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                times[name].append((time.perf_counter() - t0) / number * 1e6)
        out[size] = {f"{name}_us_{stat}": float(f(v)) for name, v in times.items()
                     for stat, f in (("median", np.median), ("best", np.min))}
    return out


def bench_pacing(seconds: float, items: list | None) -> dict:
    if items is None:  # synthetic 1 ms packets of 20 events
        ev = np.zeros(20, dtype=DVS_DTYPE)
        ev["t"] = np.arange(20) * 50
        items = [((k + 1) * 1000, EventPacket("pace", k, 0, 1000, ev, "vision"))
                 for k in range(int(seconds * 1000))]
    horizon = int(seconds * 1e6)
    items = [(due, pkt) for due, pkt in items if due <= horizon]
    stats = PaceStats()
    run_stream(items, len(items), speed=1.0, stats=stats)
    s = stats.summary()
    return {"packets": len(items), "seconds": seconds, **{k: s[k] for k in ("p50_ms", "p99_ms",
                                                                           "max_ms", "mean_ms")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (< 60 s)")
    ap.add_argument("--subscriber", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.subscriber is not None:
        subscriber_main(args.subscriber)
        return
    quick = args.quick
    sizes = [1024, 4096, 16384, 65536] if quick else [256, 1024, 4096, 16384, 65536]
    t_all = time.perf_counter()
    load_start = os.getloadavg()[0]
    throughput = bench_sizes(sizes, 10_000_000 if quick else 60_000_000)
    best = max(throughput, key=lambda s: throughput[s]["events_per_s"] if s >= 1024 else 0)

    items = nmnist_items(200 if quick else 1000)
    nm = None
    if items is not None:
        pkts = [p for _, p in items]
        r = run_stream(iter((0, p) for p in pkts), len(pkts))
        nm = {"packets": len(pkts), "events": r["received"]["events"],
              "events_per_s": r["received"]["events_per_s"],
              "packets_per_s": r["received"]["packets_per_s"],
              "mean_events_per_packet": r["received"]["events"] / len(pkts),
              "rx_cpu_us_per_packet": r["received"]["cpu_us_per_packet"],
              "sender_packets_per_s": len(pkts) / r["sent"]["send_s"]}
        print(f"N-MNIST 1 ms packets: {nm['events_per_s'] / 1e6:.2f} Mev/s "
              f"{nm['packets_per_s']:.0f} packets/s", flush=True)

    codec = bench_codec([1024, 4096, 16384, 65536, 262144], 60 if quick else 200)
    for size, c in codec["per_size"].items():
        print(f"codec {size:6d} events: {c['codec_us']:8.1f} us (raw {c['raw_us']:7.1f} us) "
              f"ratio {c['codec_vs_raw']:.2f}", flush=True)
    print(f"codec per event: {codec['codec_ns_per_event']:.2f} ns (raw "
          f"{codec['raw_ns_per_event']:.2f} ns) ratio {codec['codec_vs_raw_per_event']:.2f}; "
          f"fixed {codec['codec_fixed_us_per_message']:.1f} us/message", flush=True)

    message = bench_message_cost([16, 1024], 9 if quick else 25, 2000)
    for size, m in message.items():
        print(f"per message {size:5d} events: encode {m['encode_us_median']:.2f} us, decode "
              f"{m['decode_us_median']:.2f} us (median)", flush=True)

    pace_seconds = 2.0 if quick else 10.0
    pace_items = None
    if items is not None:  # the first seconds of the N-MNIST stream
        pace_items = [(due, p) for due, p in items if due <= pace_seconds * 1e6]
        del items, pkts
    # a real-time sender keeps the collector from scanning its long-lived objects (gen-2 pauses)
    gc.collect()
    gc.freeze()
    pacing = bench_pacing(pace_seconds, pace_items)
    print(f"pacing at speed 1: p50 {pacing['p50_ms']:.3f} ms p99 {pacing['p99_ms']:.3f} ms",
          flush=True)

    result = {
        "events_per_s": throughput[best]["events_per_s"],
        "events_per_s_best_packet": best,
        "events_per_s_1ms": nm["events_per_s"] if nm else None,
        "codec_vs_raw": codec["codec_vs_raw_per_event"],
        "codec_vs_raw_4096_whole_message": codec["per_size"][4096]["codec_vs_raw"],
        "pacing_p50_ms": pacing["p50_ms"],
        "pacing_p99_ms": pacing["p99_ms"],
        "quick": quick,
        "seconds": time.perf_counter() - t_all,
        "cpus": os.cpu_count(),
        "loadavg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "details": {"throughput": throughput, "nmnist_1ms": nm, "codec": codec, "message": message,
                    "pacing": pacing},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
