"""`streamlsm subscribe`: print what arrives on a ZeroMQ endpoint as JSON lines, then a summary."""

from __future__ import annotations

import argparse
import json
import sys

from ..model.prototypes import UNKNOWN
from ._net import add_key_options, socket_setup

__all__ = ["add_parser", "run", "Pretty"]


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
    p.add_argument("--pretty", action="store_true",
                   help="for people: one line per label (stream, label, score, truth, running "
                        "accuracy), packets summarised once a second, a readable summary")
    add_key_options(p)
    p.set_defaults(func=run)


class Pretty:
    """The --pretty view: a line per label with the running accuracy, a line a second for packets."""

    def __init__(self, out, tally, every_s: float = 1.0) -> None:
        self.out, self.tally, self.every_s = out, tally, every_s
        self._t = None
        self._packets = self._events = self._gaps = 0
        self._streams: set[str] = set()

    def label(self, lab, lat_ms: float | None) -> None:
        mark = ""
        t = self.tally  # the label is counted there already
        if lab.truth is not None:
            ok = lab.label == lab.truth
            mark = "ok  " if ok else ("abst" if lab.label == UNKNOWN else "MISS")  # abstained: not a guess
        acc = f"{100 * t.correct / t.n_truth:5.1f}% of {t.n_truth}" if t.n_truth else "-"
        lat = "" if lat_ms is None else f"  {lat_ms:6.1f} ms"
        self.out.write(f"{lab.stream_id:<12} {lab.label:<10} {lab.score:+.3f}  truth "
                       f"{'-' if lab.truth is None else lab.truth:<8} {mark:<4}  acc {acc}{lat}\n")

    def packet(self, pkt, gaps_now: int, now: float) -> None:
        self._packets += 1
        self._events += len(pkt.events)
        self._gaps = gaps_now
        self._streams.add(pkt.stream_id)
        self.tick(now)

    def tick(self, now: float, force: bool = False) -> None:
        if self._t is None:
            self._t = now
            return
        dt = now - self._t
        if self._packets and (force or dt >= self.every_s):
            self.out.write(f"packets: {self._packets / max(dt, 1e-9):,.0f}/s, "
                           f"{self._events / max(dt, 1e-9):,.0f} events/s on {len(self._streams)} "
                           f"stream(s), {self._gaps} sequence gaps so far\n")
            self.out.flush()
            self._t, self._packets, self._events = now, 0, 0
            self._streams.clear()

    def summary(self, s: dict) -> str:
        parts = [f"{s['messages']} messages: {s['packets']} packets ({s['events']:,} events) on "
                 f"{len(s['streams'])} stream(s), {s['labels']} labels"]
        if self.tally.n_truth:
            parts.append(f"accuracy {100 * self.tally.correct / self.tally.n_truth:.1f}% of {self.tally.n_truth}")
        parts.append(f"gaps {s['gaps']}, duplicates {s['duplicates']}, wire errors {s['wire_errors']}")
        for name, key in (("packet latency", "latency_ms"), ("label latency", "label_latency_ms")):
            d = s[key]
            if d["n"]:
                parts.append(f"{name} p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms")
        return "summary: " + "; ".join(parts)


async def _watch_peers(peers, args) -> None:
    """Say within a few seconds when nothing is there to talk to, or the peer cannot talk to us."""
    import asyncio

    waited, warned_failed, next_warning = 0.0, 0, 3.0
    while True:
        await asyncio.sleep(0.1)
        waited += 0.1
        peers.poll()
        if peers.failed > warned_failed:
            warned_failed = peers.failed
            other = "PUB (`streamlsm replay` binding, or `serve`'s labels)" if args.kind == "sub" \
                else "PUSH (`streamlsm replay --socket push`)"
            print(f"subscribe: the peer at {args.endpoint} failed the handshake ({peers.last_failure}): "
                  f"a {args.kind.upper()} talks to a {other} only", file=sys.stderr, flush=True)
        if peers.handshakes:
            print(f"subscribe: a peer is there ({args.endpoint}): listening", file=sys.stderr,
                  flush=True)
            return
        if waited >= next_warning:
            next_warning = waited + 30.0
            what = ("a publisher (`streamlsm replay ...` binds a PUB by default; `streamlsm serve` "
                    "publishes labels)" if args.kind == "sub" else "a PUSH sender")
            verb = "has connected to" if args.bind else "answers at"
            print(f"subscribe: nothing {verb} {args.endpoint} after {waited:.0f} s: is {what} "
                  "running there?", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import asyncio

    asyncio.run(_subscribe(args))
    return 0


async def _subscribe(args: argparse.Namespace) -> None:
    import asyncio
    import time

    import zmq.asyncio

    from ..errors import ConfigError
    from ..events import EventPacket
    from ..net.peers import PeerWatch
    from ..net.transport import Receiver
    from ..tally import Tally

    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError("timeout", f"must be > 0 seconds, got {args.timeout}")
    if args.count is not None and args.count < 1:
        raise ConfigError("count", f"must be >= 1, got {args.count}")
    topics = tuple(args.topic) if args.topic else (b"",)
    tally = Tally()
    out = sys.stdout
    pretty = Pretty(out, tally) if args.pretty else None
    peers = PeerWatch()
    watcher = None
    ctx = zmq.asyncio.Context()
    n = 0
    t_first = t_last = None
    auth = None
    rx = None
    try:
        setup, auth = socket_setup(args, args.endpoint, args.bind, ctx)

        def setup_all(sock) -> None:
            peers(sock)
            if setup is not None:
                setup(sock)

        rx = Receiver(args.endpoint, args.kind, bind=args.bind, hwm=args.hwm, topics=topics,
                      context=ctx, setup=setup_all)
        async with rx:
            print(f"subscribe: {args.kind} {'bound to' if args.bind else 'connected to'} "
                  f"{rx.endpoint}", file=sys.stderr, flush=True)
            watcher = asyncio.create_task(_watch_peers(peers, args))
            idle = 0.0
            while args.count is None or n < args.count:
                wait = 1.0 if args.timeout is None else min(1.0, args.timeout - idle)
                batch = await rx.recv_batch(wait)
                if not batch:
                    idle += wait
                    if pretty is not None:
                        pretty.tick(time.perf_counter(), force=True)
                    if args.timeout is not None and idle >= args.timeout - 1e-9:
                        break
                    continue
                idle = 0.0
                now = time.time_ns()
                t_last = time.perf_counter()
                t_first = t_first or t_last
                for msg in batch:
                    n += 1
                    if isinstance(msg, EventPacket):
                        lat = tally.packet(msg, now)
                        if pretty is not None:
                            pretty.packet(msg, tally.gaps,
                                          t_last)
                        elif not args.quiet:
                            out.write(json.dumps({
                                "type": "packet", "stream": msg.stream_id, "seq": msg.seq,
                                "n": len(msg.events), "t_start": msg.t_start, "t_end": msg.t_end,
                                "sample": msg.sample_id, "label": msg.label,
                                "begin": msg.sample_begin, "end": msg.sample_end,
                                "modality": msg.modality,
                                "latency_ms": None if lat is None else round(lat, 4)}) + "\n")
                    else:
                        tally.label(msg, now)
                        lat = (now - msg.source_ns) / 1e6 if msg.source_ns else None  # end to end
                        if pretty is not None and not args.quiet:
                            pretty.label(msg, lat)
                        elif not args.quiet:
                            out.write(json.dumps({
                                "type": "label", **msg.to_dict(),
                                "latency_ms": None if lat is None else round(lat, 4)}) + "\n")
                    if args.count is not None and n >= args.count:
                        break
    finally:  # the summary is printed also when interrupted
        if watcher is not None:
            watcher.cancel()
        peers.close()
        if auth is not None:
            auth.stop()
        ctx.destroy(linger=0)
        if rx is not None:
            summary = {"type": "summary", "summary": True, **tally.summary()}
            summary.update({"messages": n, "wire_errors": rx.stats["wire_errors"],
                            "last_wire_error": str(rx.last_error) if rx.last_error else None,
                            "receive_s": round(t_last - t_first, 6) if t_first else 0.0})
            if pretty is not None:
                pretty.tick(time.perf_counter(), force=True)
                out.write(pretty.summary(summary) + "\n")
            else:
                out.write(json.dumps(summary) + "\n")
            out.flush()
