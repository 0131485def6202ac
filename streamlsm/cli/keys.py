"""`streamlsm keys make DIR`: CURVE key pairs for binding beyond loopback (server + clients);
`streamlsm keys signing FILE`: a bundle-signing key; `streamlsm keys sign BUNDLE --key FILE`: sign a
bundle (a daemon whose model.signing_key names the key loads only bundles signed with it)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run", "run_signing", "run_sign"]


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
    sk = ksub.add_parser("signing", help="write a new bundle-signing key (HMAC-SHA256) to FILE")
    sk.add_argument("file", help="key file (mode 0600)")
    sk.add_argument("--force", action="store_true", help="replace an existing key file")
    sk.set_defaults(func=run_signing)
    sg = ksub.add_parser("sign", help="sign a bundle directory with a signing key")
    sg.add_argument("bundle", help="bundle directory (weights.npz + manifest.json)")
    sg.add_argument("--key", required=True, help="signing key file (streamlsm keys signing FILE)")
    sg.set_defaults(func=run_sign)


def run(args: argparse.Namespace) -> int:
    from ..net.security import AUTHORIZED_DIR, make_keys

    clients = tuple(args.client or ("client",))
    pairs = make_keys(args.dir, clients, overwrite=args.force)
    for name, pair in pairs.items():
        print(f"{name}: public {pair.public.decode()}  secret file {pair.path}")
    print(f"authorised client public keys: {args.dir}/{AUTHORIZED_DIR}/ "
          "(copy a client's .key there to let it in)")
    return 0


def run_signing(args: argparse.Namespace) -> int:
    from ..net.security import make_signing_key

    path = make_signing_key(args.file, overwrite=args.force)
    print(f"signing key written to {path} (keep it secret; set model.signing_key to it)")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from ..model.bundle import sign_bundle
    from ..net.security import load_signing_key

    sig = sign_bundle(args.bundle, load_signing_key(args.key))
    print(f"signed: {sig}")
    return 0
