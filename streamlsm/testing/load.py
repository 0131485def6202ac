"""A load generator that can out-run the daemon: many real-time streams, pre-encoded, from a few processes.

``streamlsm replay`` builds, stamps and encodes each packet as it goes, through an asyncio pacer: a
process drives some tens of real-time streams. Here each worker process reads its share of the
dataset, cuts every stream's samples into packets by ``replay.schedule``, encodes every packet ahead
of time (``wire.encode`` once) and merges them into one list ordered by due time. After a common
start time it runs a tight loop: sleep until the next packet is due (an absolute schedule: a late
packet never delays the ones after it), write the send time into the header's ``sent_ns`` (the
last field of the header: 8 bytes patched in place) and send; packets due together go back to
back. It records each packet's lateness (send time minus due time).

Stream ``k`` of ``n`` starts ``k / n`` of a packet period after the common start (independent
sensors are not phase-locked; ``spread=False`` aligns them all). Workers are plain subprocesses
(``python -m streamlsm.testing.load``) that read their options from the command line, take the
start time from stdin and print one JSON line: nothing is pickled. They share CLOCK_MONOTONIC,
which Linux keeps machine-wide. Imported by tests/ and bench/ only.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import zmq

from ..net import wire
from ..plugins import SOURCE_GROUP, load
from ..stream.replay import ReplayConfig, schedule

__all__ = ["LoadPlan", "run_load", "prepare", "send_all"]

_PLACEHOLDER = (1 << 62) + 12345  # sent_ns while encoding: packs as 0xcf + 8 bytes, patched at send
_SENT_NS = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What the generator sends: ``streams`` streams named ``<prefix>-<k>``, each ``samples`` samples
    of ``dataset`` under ``root`` (seeded shuffle, stream k with seed ``seed + k``) cut into packets
    of ``packet_us``, in real time, from ``procs`` worker processes."""

    endpoint: str
    root: str
    streams: int
    samples: int
    packet_us: int = 10_000
    procs: int = 1
    prefix: str = "lg"
    seed: int = 0
    dataset: str = "nmnist"
    spread: bool = True
    hwm: int = 1_000_000
    cpus: tuple[int, ...] = ()  # the CPU cores the workers may run on (empty: any)

    def share(self, j: int) -> range:
        """The stream numbers worker ``j`` sends."""
        per, extra = divmod(self.streams, self.procs)
        first = j * per + min(j, extra)
        return range(first, first + per + (j < extra))


def prepare(plan: LoadPlan, ks: Sequence[int]) -> tuple[np.ndarray, list[list]]:
    """(due times in ns from the start, frames) of streams ``ks``, merged in due order.

    Every header ends with the placeholder ``sent_ns`` (checked), as a bytearray to patch in place.
    """
    dataset = load(SOURCE_GROUP, plan.dataset)(plan.root)
    per_stream = []
    for k in ks:
        cfg = ReplayConfig(packet_us=plan.packet_us, order="shuffle", seed=plan.seed + k, limit=plan.samples)
        phase_us = k * plan.packet_us // plan.streams if plan.spread else 0
        items = []
        for due_us, pkt in schedule(dataset, f"{plan.prefix}-{k}", cfg):
            pkt = dataclasses.replace(pkt, sent_ns=_PLACEHOLDER)
            topic, header, payload = wire.encode(pkt)
            header = bytearray(header)
            if header[-9] != 0xCF or _SENT_NS.unpack_from(header, len(header) - 8)[0] != _PLACEHOLDER:
                raise RuntimeError("the wire header no longer ends with sent_ns: the generator cannot stamp it")
            items.append(((due_us + phase_us) * 1000, k, pkt.seq, [topic, header, bytes(payload)]))
        per_stream.append(items)
    merged = list(heapq.merge(*per_stream, key=lambda item: item[:3]))
    return np.array([m[0] for m in merged], dtype=np.int64), [m[3] for m in merged]


def send_all(sock: zmq.Socket, due_ns: np.ndarray, messages: list[list], start_ns: int) -> np.ndarray:
    """Send each message at ``start_ns + due_ns[i]`` (time.monotonic_ns); lateness of each in ns."""
    late = np.empty(len(messages), dtype=np.int64)
    clock, sleep, stamp, wall = time.monotonic_ns, time.sleep, _SENT_NS.pack_into, time.time_ns
    more = zmq.SNDMORE
    for i, (topic, header, payload) in enumerate(messages):
        due = start_ns + int(due_ns[i])
        now = clock()
        if now < due:
            sleep((due - now) / 1e9)
            now = clock()
        stamp(header, len(header) - 8, wall())
        sock.send(topic, more)
        sock.send(header, more)
        sock.send(payload, copy=False)
        late[i] = now - due
    return late


def _worker(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m streamlsm.testing.load")
    ap.add_argument("plan", help="the LoadPlan as JSON")
    ap.add_argument("worker", type=int)
    args = ap.parse_args(argv)
    fields = json.loads(args.plan)
    plan = LoadPlan(**{**fields, "cpus": tuple(fields.get("cpus", ()))})
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    ks = plan.share(args.worker)
    due_ns, messages = prepare(plan, ks)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.sndhwm = plan.hwm
    sock.linger = 10_000
    sock.connect(plan.endpoint)
    print(json.dumps({"ready": len(messages)}), flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 1
    start_ns = int(line)
    t0 = time.monotonic_ns()
    late = send_all(sock, due_ns, messages, start_ns)
    elapsed = (time.monotonic_ns() - t0) / 1e9
    sock.close()  # waits (up to linger) until ZeroMQ handed every message on
    ctx.term()
    ms = late / 1e6 if len(late) else np.zeros(1)
    print(json.dumps({"sent": len(messages), "streams": len(ks), "elapsed_s": elapsed,
                      "late_p50_ms": float(np.percentile(ms, 50)), "late_p99_ms": float(np.percentile(ms, 99)),
                      "late_max_ms": float(ms.max()), "span_s": float(due_ns[-1] / 1e9) if len(due_ns) else 0.0}),
          flush=True)
    return 0


def run_load(plan: LoadPlan, lead_s: float = 0.5, timeout_s: float = 600.0) -> dict:
    """Run ``plan`` to the end: start the workers, let each prepare its packets, start them all at one
    time ``lead_s`` after the last is ready; their merged summary (lateness: the worst worker's)."""
    cmd = [sys.executable, "-m", "streamlsm.testing.load", json.dumps(dataclasses.asdict(plan))]
    procs = [subprocess.Popen(cmd + [str(j)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for j in range(plan.procs)]
    try:
        packets = 0
        for p in procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"load worker failed: {p.communicate(timeout=30)[1][-2000:]}")
            packets += json.loads(line)["ready"]
        start_ns = time.monotonic_ns() + int(lead_s * 1e9)
        for p in procs:
            p.stdin.write(f"{start_ns}\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            so, se = p.communicate(timeout=timeout_s)
            if p.returncode != 0:
                raise RuntimeError(f"load worker failed: {se[-2000:]}")
            outs.append(json.loads(so.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"sent": sum(o["sent"] for o in outs), "prepared": packets, "procs": plan.procs,
            "elapsed_s": max(o["elapsed_s"] for o in outs), "span_s": max(o["span_s"] for o in outs),
            "late_p50_ms": max(o["late_p50_ms"] for o in outs), "late_p99_ms": max(o["late_p99_ms"] for o in outs),
            "late_max_ms": max(o["late_max_ms"] for o in outs)}


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
