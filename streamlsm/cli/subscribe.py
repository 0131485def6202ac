"""`streamlsm subscribe`: print what arrives on a ZeroMQ endpoint as JSON lines, then a summary."""

from __future__ import annotations

import argparse
import json
import sys

from ._net import add_key_options, socket_setup

__all__ = ["add_parser", "run", "StreamTally"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscribe", help="print packets and labels arriving on an endpoint",
                       description=__doc__)
    p.add_argument("endpoint", help="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--kind", choices=("sub", "pull"), default="sub", help="socket type (default sub)")
    p.add_argument("--bind", action="store_true", help="bind instead of connecting")
    p.add_argument("--topic", action="append", default=None,
                   help="SUB topic prefix, e.g. ev/ or lb/cam0 (repeatable; default everything)")
    p.add_argument("--count", type=int, default=None, help="stop after N messages")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop after S seconds without a message (default: wait forever)")
    p.add_argument("--hwm", type=int, default=100_000, help="receive high-water mark")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    add_key_options(p)
    p.set_defaults(func=run)


class StreamTally:
    """Per-stream counts, sequence gaps and duplicates, and packet latency (pure bookkeeping)."""

    def __init__(self) -> None:
        self.streams: dict[str, dict] = {}
        self.latency_ms: list[float] = []
        self.label_latency_ms: list[float] = []
        self.labels = 0
        self.packets = 0
        self.events = 0

    def packet(self, pkt, now_ns: int) -> float | None:
        s = self.streams.get(pkt.stream_id)
        if s is None:
            s = self.streams[pkt.stream_id] = {"packets": 0, "events": 0, "gaps": 0, "duplicates": 0,
                                               "first_seq": pkt.seq, "last_seq": pkt.seq,
                                               "next": pkt.seq, "samples": 0}
        if pkt.seq > s["next"]:
            s["gaps"] += pkt.seq - s["next"]
        elif pkt.seq < s["next"]:
            s["duplicates"] += 1
        s["next"] = max(s["next"], pkt.seq + 1)
        s["last_seq"] = max(s["last_seq"], pkt.seq)
        s["packets"] += 1
        s["events"] += len(pkt.events)
        s["samples"] += int(pkt.sample_end)
        self.packets += 1
        self.events += len(pkt.events)
        if pkt.sent_ns:
            lat = (now_ns - pkt.sent_ns) / 1e6
            self.latency_ms.append(lat)
            return lat
        return None

    def label(self, lab, now_ns: int) -> float | None:
        """Count a LabelEvent; its end-to-end latency (last packet sent -> label here) if stamped."""
        self.labels += 1
        if lab.source_ns:
            lat = (now_ns - lab.source_ns) / 1e6
            self.label_latency_ms.append(lat)
            return lat
        return None

    def summary(self) -> dict:
        import numpy as np

        streams = {sid: {k: v for k, v in s.items() if k != "next"} for sid, s in self.streams.items()}

        def dist(values: list[float]) -> dict:
            lat = np.asarray(values)
            if not lat.size:
                return {"p50": None, "p99": None, "max": None, "n": 0}
            return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                    "max": float(lat.max()), "n": int(lat.size)}

        return {"type": "summary", "summary": True, "packets": self.packets, "labels": self.labels,
                "events": self.events, "streams": streams,
                "gaps": sum(s["gaps"] for s in streams.values()),
                "duplicates": sum(s["duplicates"] for s in streams.values()),
                "latency_ms": dist(self.latency_ms),
                "label_latency_ms": dist(self.label_latency_ms)}


def run(args: argparse.Namespace) -> int:
    import asyncio

    asyncio.run(_subscribe(args))
    return 0


async def _subscribe(args: argparse.Namespace) -> None:
    import time

    import zmq.asyncio

    from ..errors import ConfigError
    from ..events import EventPacket
    from ..transport import Receiver

    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError("timeout", f"must be > 0 seconds, got {args.timeout}")
    if args.count is not None and args.count < 1:
        raise ConfigError("count", f"must be >= 1, got {args.count}")
    topics = tuple(args.topic) if args.topic else (b"",)
    tally = StreamTally()
    out = sys.stdout
    ctx = zmq.asyncio.Context()
    n = 0
    t_first = t_last = None
    auth = None
    rx = None
    try:
        setup, auth = socket_setup(args, args.endpoint, args.bind, ctx)
        rx = Receiver(args.endpoint, args.kind, bind=args.bind, hwm=args.hwm, topics=topics,
                      context=ctx, setup=setup)
        async with rx:
            print(f"subscribe: {args.kind} {'bound to' if args.bind else 'connected to'} "
                  f"{rx.endpoint}", file=sys.stderr, flush=True)
            while args.count is None or n < args.count:
                batch = await rx.recv_batch(args.timeout)
                if not batch:
                    break
                now = time.time_ns()
                t_last = time.perf_counter()
                t_first = t_first or t_last
                for msg in batch:
                    n += 1
                    if isinstance(msg, EventPacket):
                        lat = tally.packet(msg, now)
                        if not args.quiet:
                            out.write(json.dumps({
                                "type": "packet", "stream": msg.stream_id, "seq": msg.seq,
                                "n": len(msg.events), "t_start": msg.t_start, "t_end": msg.t_end,
                                "sample": msg.sample_id, "label": msg.label,
                                "begin": msg.sample_begin, "end": msg.sample_end,
                                "modality": msg.modality,
                                "latency_ms": None if lat is None else round(lat, 4)}) + "\n")
                    else:
                        lat = tally.label(msg, now)
                        if not args.quiet:
                            out.write(json.dumps({
                                "type": "label", **msg.to_dict(),
                                "latency_ms": None if lat is None else round(lat, 4)}) + "\n")
                    if args.count is not None and n >= args.count:
                        break
    finally:  # the summary is printed also when interrupted
        if auth is not None:
            auth.stop()
        ctx.destroy(linger=0)
        if rx is not None:
            summary = tally.summary()
            summary.update({"messages": n, "wire_errors": rx.stats["wire_errors"],
                            "last_wire_error": str(rx.last_error) if rx.last_error else None,
                            "receive_s": round(t_last - t_first, 6) if t_first else 0.0})
            out.write(json.dumps(summary) + "\n")
            out.flush()
