"""`streamlsm live NAME`: run a live-source plug-in (a sensor driver) into the daemon's input."""

from __future__ import annotations

import argparse
import json
import sys

from ._net import add_key_options, socket_setup

__all__ = ["add_parser", "run"]


def _names() -> str:
    from ..plugins import LIVE_GROUP, available

    return ", ".join(sorted(available(LIVE_GROUP))) or "(none installed)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("live", help="stream a live sensor (a LiveSource plug-in) into the daemon",
                       description=__doc__ + "\n\nLive sources are plug-ins of the entry-point group "
                       "'streamlsm.live' (docs/live.md); installed: " + _names())
    p.add_argument("source", help="live-source plug-in name: " + _names())
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="source option, e.g. -o root=DATA/nmnist (repeatable)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:5600",
                   help="the daemon's input (a PULL: this side connects and PUSHes)")
    p.add_argument("--stream-id", default="cam0", help="stream id of the events")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: "
                   "until the sensor ends or Ctrl-C)")
    p.add_argument("--hwm", type=int, default=1000, help="send high-water mark in packets")
    add_key_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import inspect
    import threading

    import zmq

    from ..errors import ConfigError
    from ..plugins import LIVE_GROUP, load
    from ..stream.live import LiveSender, run_source
    from .replay import parse_options

    cls = load(LIVE_GROUP, args.source)
    options = parse_options(args.option)
    params = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError("option", f"{args.source} has no option {', '.join(unknown)}; valid: "
                          + ", ".join(f"{n}={p.default!r}" for n, p in params.items()))
    source = cls(**options)
    setup, auth = socket_setup(args, args.endpoint, False, zmq.Context.instance())
    stop = threading.Event()
    timer = threading.Timer(args.seconds, stop.set) if args.seconds else None
    try:
        with LiveSender(args.endpoint, stream_id=args.stream_id, modality=source.modality,
                        layout=source.layout, hwm=args.hwm, setup=setup) as sender:
            print(f"live: {args.source} -> push to {args.endpoint} as stream {args.stream_id}",
                  file=sys.stderr, flush=True)
            if timer is not None:
                timer.start()
            try:
                run_source(source, sender, stop)
            except KeyboardInterrupt:
                stop.set()
    finally:
        if timer is not None:
            timer.cancel()
        if auth is not None:
            auth.stop()
    print(json.dumps({"live": args.source, "stream": args.stream_id, **sender.stats}), flush=True)
    return 0
