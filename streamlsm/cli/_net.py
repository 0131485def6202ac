"""Shared socket security for the replay/subscribe commands: the bind rule and optional CURVE keys."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_key_options", "socket_setup"]


def add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", default=None, metavar="DIR",
                   help="CURVE key folder (streamlsm keys make DIR): a binding side is the server "
                        "and admits DIR/authorized/*.key; a connecting side uses --key-name")
    p.add_argument("--key-name", default="client", help="client key name in --keys (default client)")


def socket_setup(args: argparse.Namespace, endpoint: str, bind: bool, context: Any) -> tuple[
        Callable | None, Any]:
    """(setup callback for the socket, authenticator or None); binding off loopback needs --keys."""
    from ..net.security import (
        AUTHORIZED_DIR,
        SERVER_NAME,
        check_bind,
        load_keys,
        secure_client,
        secure_server,
        start_authenticator,
    )

    if args.keys is None:
        if bind:
            check_bind(endpoint, None, "endpoint")
        return None, None
    if bind:
        server = load_keys(args.keys, SERVER_NAME)
        check_bind(endpoint, server, "endpoint")
        auth = start_authenticator(context, Path(args.keys) / AUTHORIZED_DIR)
        return (lambda sock: secure_server(sock, server)), auth
    client = load_keys(args.keys, args.key_name)
    server_public = load_keys(args.keys, SERVER_NAME).public
    return (lambda sock: secure_client(sock, client, server_public)), None
