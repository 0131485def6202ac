"""`streamlsm keys make DIR`: CURVE key pairs for binding beyond loopback (server + clients)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="make ZeroMQ CURVE keys (needed to bind beyond 127.0.0.1)",
                       description=__doc__)
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    make = ksub.add_parser("make", help="write server and client key pairs into DIR")
    make.add_argument("dir", help="key directory (created, mode 0700)")
    make.add_argument("--client", action="append", default=None, metavar="NAME",
                      help="client key pair to make and authorise (repeatable; default: client)")
    make.add_argument("--force", action="store_true", help="replace existing keys")
    make.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..security import AUTHORIZED_DIR, make_keys

    clients = tuple(args.client or ("client",))
    pairs = make_keys(args.dir, clients, overwrite=args.force)
    for name, pair in pairs.items():
        print(f"{name}: public {pair.public.decode()}  secret file {pair.path}")
    print(f"authorised client public keys: {args.dir}/{AUTHORIZED_DIR}/ "
          "(copy a client's .key there to let it in)")
    return 0
