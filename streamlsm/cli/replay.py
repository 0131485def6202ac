"""`streamlsm replay`: stream a dataset's samples as timed event packets over ZeroMQ."""

from __future__ import annotations

import argparse
import json
import sys

from ._net import add_key_options, socket_setup

__all__ = ["add_parser", "run", "parse_options", "open_dataset", "socket_kind"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay a dataset as timed event packets over ZeroMQ",
                       description=__doc__)
    p.add_argument("dataset", help="dataset plug-in name: " + _source_names())
    p.add_argument("--root", required=True, help="dataset root folder or file")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset constructor option, e.g. -o split=test (repeatable)")
    p.add_argument("--speed", default="1", help="1 = real time, k = k times faster, max (default 1)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint")
    p.add_argument("--socket", choices=("auto", "push", "pub"), default="auto",
                   help="auto: pub when binding (for `streamlsm subscribe`), push with --connect (into "
                        "`serve`); push waits for the consumer (nothing lost); pub waits for a "
                        "subscriber, then drops at the HWM (counted)")
    p.add_argument("--no-wait", action="store_true",
                   help="pub: do not wait for a subscriber (packets no one receives are counted as "
                        "'unheard')")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
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


def _source_names() -> str:
    from ..plugins import SOURCE_GROUP, available

    return ", ".join(sorted(available(SOURCE_GROUP))) + f" (entry-point group {SOURCE_GROUP})"


def open_dataset(name: str, root: str, options: dict):
    """The source plug-in ``name`` on ``root``; an unknown option is a ConfigError listing the valid ones."""
    import inspect

    from ..errors import ConfigError
    from ..plugins import SOURCE_GROUP, load

    cls = load(SOURCE_GROUP, name)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    valid = [n for n, prm in params.items() if n != "root"
             and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)]
    takes_any = any(prm.kind is prm.VAR_KEYWORD for prm in params.values())
    unknown = sorted(set(options) - set(valid))
    if params and unknown and not takes_any:
        raise ConfigError("option", f"{name} has no option {', '.join(map(repr, unknown))}; valid: "
                          + ", ".join(f"{n}={params[n].default!r}" if params[n].default is not
                                      inspect.Parameter.empty else n for n in valid))
    try:
        return cls(root, **options)
    except TypeError as exc:
        raise ConfigError("option", f"{name}: {exc}") from None


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

    from ..stream.replay import ReplayConfig, merge, parse_speed, schedule, stream_ids

    cfg = ReplayConfig(packet_us=args.packet_us, packet_events=args.packet_events,
                       speed=parse_speed(args.speed), gap_us=args.gap_us, order=args.order,
                       seed=args.seed, repeat=args.repeat, limit=args.limit, streams=args.streams)
    dataset = open_dataset(args.dataset, args.root, parse_options(args.option))
    ids = stream_ids(args.stream_id or getattr(dataset, "name", args.dataset), cfg.streams)
    schedules = [schedule(dataset, sid, dataclasses.replace(cfg, seed=cfg.seed + i))
                 for i, sid in enumerate(ids)]
    items = schedules[0] if len(schedules) == 1 else merge(schedules)
    n = len(dataset) if cfg.limit is None else min(cfg.limit, len(dataset))
    summary = asyncio.run(_replay(items, cfg, args, n * cfg.repeat * cfg.streams))
    print(json.dumps(summary), flush=True)
    return 0


def socket_kind(args: argparse.Namespace) -> str:
    """--socket auto: pub when binding (subscribers connect), push with --connect (into a PULL)."""
    if args.socket != "auto":
        return args.socket
    return "push" if args.connect else "pub"


def _say(msg: str) -> None:
    print(f"replay: {msg}", file=sys.stderr, flush=True)


async def _watch_push(peers, endpoint: str, connect: bool) -> None:
    """Say within a few seconds when a PUSH has no consumer (it then waits for ever) or a wrong peer."""
    import asyncio

    waited, warned_failed, next_warning = 0.0, 0, 3.0
    while True:
        await asyncio.sleep(0.5)
        waited += 0.5
        n = peers.poll()
        if peers.failed > warned_failed:
            warned_failed = peers.failed
            _say(f"a peer at {endpoint} failed the handshake ({peers.last_failure}): a PUSH replay "
                 "talks to a PULL only (`streamlsm serve`, `streamlsm subscribe --kind pull`); "
                 "for `streamlsm subscribe`'s default SUB use --socket pub")
        if n == 0 and peers.handshakes == 0 and waited >= next_warning:
            next_warning = waited + 30.0
            where = "to connect to" if connect else "has connected to"
            _say(f"no consumer {where} {endpoint} after {waited:.0f} s; a PUSH replay waits for a "
                 "PULL peer (`streamlsm serve`, or `streamlsm subscribe ENDPOINT --kind pull"
                 f"{' --bind' if connect else ''}`); for `streamlsm subscribe`'s SUB use --socket pub")
        if peers.handshakes:
            return


async def _replay(items, cfg, args, total_samples: int) -> dict:
    import asyncio
    import time

    import zmq.asyncio

    from ..net.peers import PeerWatch
    from ..net.publisher import Publisher
    from ..net.transport import Sender
    from ..stream.pacing import PaceStats, pace

    kind = socket_kind(args)
    ctx = zmq.asyncio.Context()
    stats = PaceStats()
    auth = None
    peers = PeerWatch()
    bar = watcher = None
    try:
        setup, auth = socket_setup(args, args.endpoint, not args.connect, ctx)

        def setup_all(sock) -> None:
            peers(sock)
            if setup is not None:
                setup(sock)

        if kind == "pub":
            sender = Publisher(args.endpoint, bind=not args.connect, hwm=args.hwm,
                               linger_ms=args.linger_ms, context=ctx, setup=setup_all)
        else:
            sender = Sender(args.endpoint, kind, bind=not args.connect, hwm=args.hwm,
                            linger_ms=args.linger_ms, context=ctx, setup=setup_all)
        async with sender:
            _say(f"{kind} {'connected to' if args.connect else 'bound to'} {sender.endpoint}")
            if kind == "pub" and args.no_wait:
                _say("not waiting for subscribers (--no-wait): what no one receives is counted as "
                     "'unheard'")
            elif kind == "pub":
                _say(f"waiting for a subscriber (e.g. `streamlsm subscribe {sender.endpoint}`; "
                     "--no-wait sends at once)")
                await sender.wait_for_subscriber(say=lambda s: _say(
                    f"still no subscriber on {sender.endpoint} after {s:.0f} s"))
                _say("a subscriber joined: replaying")
            else:
                watcher = asyncio.create_task(_watch_push(peers, sender.endpoint, args.connect))
            if args.start_delay > 0:
                await asyncio.sleep(args.start_delay)
            bar = _progress(args, total_samples)
            t0 = time.perf_counter()
            async for pkt in pace(items, cfg.speed, stats=stats):
                await sender.send(pkt)
                if bar is not None and pkt.sample_end:
                    bar.update(1)
            elapsed = time.perf_counter() - t0
            peers.poll()
            if kind == "push" and not peers.handshakes:
                _say(f"no consumer ever connected to {sender.endpoint}: the {sender.stats['sent']} "
                     f"packets only queued are lost after --linger-ms ({args.linger_ms} ms)")
    finally:
        if watcher is not None:
            watcher.cancel()
        if bar is not None:
            bar.close()
        peers.close()
        if auth is not None:
            auth.stop()
        ctx.term()  # waits up to linger_ms for queued messages
    out = {"replay": True, "socket": kind, "endpoint": sender.endpoint, **sender.stats,
           "peers_seen": peers.handshakes,
           "elapsed_s": round(elapsed, 6),
           "events_per_s": round(sender.stats["events"] / elapsed, 1) if elapsed > 0 else 0.0}
    if cfg.speed != "max":
        out["pacing"] = {k: round(v, 4) if isinstance(v, float) else v
                         for k, v in stats.summary().items()}
    return out


def _progress(args: argparse.Namespace, total: int):
    """A tqdm bar on stderr counting replayed samples (None when off)."""
    if args.progress == "off" or (args.progress == "auto" and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="replay", unit="sample", file=sys.stderr, dynamic_ncols=True)
