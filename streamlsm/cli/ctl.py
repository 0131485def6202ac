"""`streamlsm ctl status|register|remove|snapshot|reload`: talk to a running daemon's control socket."""

from __future__ import annotations

import argparse
import json
import sys

from ._net import add_key_options, socket_setup

__all__ = ["add_parser", "run", "request", "CONNECT_S"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ctl", help="control a running daemon (status, classes, snapshot, reload)",
                       description=__doc__)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="control endpoint, e.g. tcp://127.0.0.1:5602")
    where.add_argument("--config", help="the daemon's TOML file (its control.endpoint is used)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    add_key_options(p)  # a daemon whose control socket listens beyond loopback admits CURVE clients only
    cmds = p.add_subparsers(dest="cmd", metavar="CMD", required=True)
    cmds.add_parser("status", help="counters, classes, bundle hash")
    r = cmds.add_parser("register", help="register (or extend) a class from support samples")
    r.add_argument("label")
    r.add_argument("path", help="support .npz (embeddings | features | events+lengths) or a data set root")
    r.add_argument("--modality", default="", help="modality of the support samples")
    r.add_argument("--dataset", default="", help="read PATH with this source plug-in (e.g. nmnist)")
    r.add_argument("--from-label", default=None, help="use the data set's samples of this label")
    r.add_argument("--split", default=None, help="data set split (e.g. train)")
    r.add_argument("--limit", type=int, default=20, help="at most this many support samples")
    r.add_argument("--replace", action="store_true", help="start the class afresh")
    r.add_argument("--rule", choices=("mean", "ema"), default="mean",
                   help="refine an existing class: running mean of all samples (default) or EMA (drift)")
    m = cmds.add_parser("remove", help="remove a class")
    m.add_argument("label")
    cmds.add_parser("snapshot", help="write the prototype checkpoint now")
    rl = cmds.add_parser("reload", help="reload the model bundle (input keeps flowing)")
    rl.add_argument("path", nargs="?", default=None, help="another bundle directory (default: configured)")
    p.set_defaults(func=run)


#: seconds to wait for the daemon's socket to answer the connection before saying it is not there
CONNECT_S = 3.0


def request(endpoint: str, req: dict, timeout: float = 30.0, setup=None,
            connect_s: float = CONNECT_S) -> dict:
    """Send one control request and return the reply (ControlError on timeout).

    ``setup(sock)`` runs before connecting (e.g. CURVE client keys from ``--keys``). When no
    daemon has completed the connection after ``connect_s`` seconds, ControlError asks whether
    `serve` is running there (the reply itself may take up to ``timeout``).
    """
    import time

    import zmq

    from ..errors import ConfigError, ControlError
    from ..net.peers import PeerWatch
    from ..net.wire import pack_control, unpack_control

    if not 0 < timeout <= 86_400:  # inf or NaN would overflow the poll, then wait for ever
        raise ConfigError("timeout", f"must be a number of seconds in (0, 86400], got {timeout!r}")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    peers = PeerWatch()
    try:
        peers(sock)
        if setup is not None:
            setup(sock)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError("endpoint", f"cannot connect to {endpoint!r}: {exc}") from None
        sock.send(pack_control(req))
        t0 = time.monotonic()
        while not sock.poll(100):
            waited = time.monotonic() - t0
            if peers.poll() == 0 and not peers.handshakes and waited >= min(connect_s, timeout):
                if peers.failed:
                    raise ControlError(f"no reply from {endpoint}: the connection failed its "
                                       f"handshake ({peers.last_failure}); a daemon with CURVE keys "
                                       "answers `--keys DIR` clients only")
                raise ControlError(f"no daemon answers at {endpoint} after {waited:.0f} s: is "
                                   f"`streamlsm serve` running at {endpoint}?")
            if waited >= timeout:
                raise ControlError(f"no reply from {endpoint} within {timeout} s")
        return unpack_control(sock.recv())
    finally:
        peers.close()
        sock.close(0)


def _build(args: argparse.Namespace) -> dict:
    req: dict = {"cmd": args.cmd}
    if args.cmd == "register":
        req.update(label=args.label, path=args.path, modality=args.modality, replace=args.replace,
                   limit=args.limit, rule=args.rule)
        if args.dataset:
            req["dataset"] = args.dataset
        if args.from_label is not None:
            req["from_label"] = args.from_label
        if args.split is not None:
            req["split"] = args.split
    elif args.cmd == "remove":
        req["label"] = args.label
    elif args.cmd == "reload" and args.path:
        req["path"] = args.path
    return req


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    endpoint = args.endpoint
    if args.config:
        from ..config import load_toml
        from ..daemon.config import DaemonConfig
        from ..errors import ConfigError

        endpoint = load_toml(args.config, DaemonConfig).control.endpoint
        if not endpoint:
            raise ConfigError("control.endpoint", "the daemon's control socket is off")
    req = _build(args)
    if "path" in req:
        req["path"] = str(Path(req["path"]).resolve())
    import zmq

    setup, _ = socket_setup(args, endpoint, False, zmq.Context.instance())
    reply = request(endpoint, req, args.timeout, setup)
    print(json.dumps(reply, indent=1, default=str))
    if not reply.get("ok"):
        print(f"streamlsm ctl: {reply.get('error')}", file=sys.stderr)
        return 1
    return 0
