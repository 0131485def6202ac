"""`streamlsm replay`: stream a dataset's samples as timed event packets over ZeroMQ."""

from __future__ import annotations

import argparse
import json
import sys

from ._net import add_key_options, socket_setup

__all__ = ["add_parser", "run", "parse_options"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay a dataset as timed event packets over ZeroMQ",
                       description=__doc__)
    p.add_argument("dataset", help="dataset plug-in name (see entry points 'streamlsm.sources')")
    p.add_argument("--root", required=True, help="dataset root folder or file")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset constructor option, e.g. -o split=test (repeatable)")
    p.add_argument("--speed", default="1", help="1 = real time, k = k times faster, max (default 1)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint")
    p.add_argument("--socket", choices=("push", "pub"), default="push",
                   help="push waits for the consumer (nothing lost); pub drops at the HWM (counted)")
    p.add_argument("--connect", action="store_true", help="connect to the endpoint instead of binding")
    p.add_argument("--hwm", type=int, default=1000, help="send high-water mark in messages")
    p.add_argument("--packet-us", type=int, default=1000, help="packet length in microseconds")
    p.add_argument("--packet-events", type=int, default=None, help="cut packets by event count")
    p.add_argument("--streams", type=int, default=1, help="concurrent streams (seed + i each)")
    p.add_argument("--stream-id", default=None, help="stream id (prefix; default: dataset name)")
    p.add_argument("--limit", type=int, default=None,
                   help="samples per repeat: the first N of the order (-o limit=N asks the dataset "
                        "for a class-balanced subset instead)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", choices=("file", "shuffle"), default="file")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--gap-us", type=int, default=0,
                   help="stream time between samples; the next sample's file is read during the "
                        "gap, so a gap longer than its read time keeps real-time pacing exact")
    p.add_argument("--start-delay", type=float, default=0.0,
                   help="seconds to wait after opening the socket (lets PUB subscribers join)")
    p.add_argument("--linger-ms", type=int, default=10_000,
                   help="how long queued messages may still leave at the end")
    add_key_options(p)
    p.set_defaults(func=run)


def parse_options(items: list[str]) -> dict:
    """KEY=VALUE strings -> dict; values become int, float, true/false/none, or stay strings."""
    from ..errors import ConfigError

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("option", f"expected KEY=VALUE, got {item!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif low == "none":
            out[key] = None
        else:
            for conv in (int, float):
                try:
                    out[key] = conv(value)
                    break
                except ValueError:
                    continue
            else:
                out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses

    from ..errors import ConfigError
    from ..plugins import SOURCE_GROUP, load
    from ..replay import ReplayConfig, merge, parse_speed, schedule, stream_ids

    cfg = ReplayConfig(packet_us=args.packet_us, packet_events=args.packet_events,
                       speed=parse_speed(args.speed), gap_us=args.gap_us, order=args.order,
                       seed=args.seed, repeat=args.repeat, limit=args.limit, streams=args.streams)
    cls = load(SOURCE_GROUP, args.dataset)
    try:
        dataset = cls(args.root, **parse_options(args.option))
    except TypeError as exc:
        raise ConfigError("option", f"{args.dataset}: {exc}") from None
    ids = stream_ids(args.stream_id or getattr(dataset, "name", args.dataset), cfg.streams)
    schedules = [schedule(dataset, sid, dataclasses.replace(cfg, seed=cfg.seed + i))
                 for i, sid in enumerate(ids)]
    items = schedules[0] if len(schedules) == 1 else merge(schedules)
    summary = asyncio.run(_replay(items, cfg, args))
    print(json.dumps(summary), flush=True)
    return 0


async def _replay(items, cfg, args) -> dict:
    import asyncio
    import time

    import zmq.asyncio

    from ..clock import PaceStats, pace
    from ..transport import Sender

    ctx = zmq.asyncio.Context()
    stats = PaceStats()
    auth = None
    try:
        setup, auth = socket_setup(args, args.endpoint, not args.connect, ctx)
        async with Sender(args.endpoint, args.socket, bind=not args.connect, hwm=args.hwm,
                          linger_ms=args.linger_ms, context=ctx, setup=setup) as sender:
            print(f"replay: {args.socket} {'connected to' if args.connect else 'bound to'} "
                  f"{sender.endpoint}", file=sys.stderr, flush=True)
            if args.start_delay > 0:
                await asyncio.sleep(args.start_delay)
            t0 = time.perf_counter()
            async for pkt in pace(items, cfg.speed, stats=stats):
                await sender.send(pkt)
            elapsed = time.perf_counter() - t0
    finally:
        if auth is not None:
            auth.stop()
        ctx.term()  # waits up to linger_ms for queued messages
    out = {"replay": True, "endpoint": sender.endpoint, **sender.stats,
           "elapsed_s": round(elapsed, 6),
           "events_per_s": round(sender.stats["events"] / elapsed, 1) if elapsed > 0 else 0.0}
    if cfg.speed != "max":
        out["pacing"] = {k: round(v, 4) if isinstance(v, float) else v
                         for k, v in stats.summary().items()}
    return out
