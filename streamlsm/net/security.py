"""Security: CURVE key pairs, client authentication (zmq.auth), the bind rule, path confinement."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from ..errors import ConfigError, ControlError

__all__ = [
    "SERVER_NAME",
    "AUTHORIZED_DIR",
    "KeyPair",
    "make_keys",
    "load_keys",
    "is_local_endpoint",
    "check_bind",
    "secure_server",
    "secure_client",
    "start_authenticator",
    "confine",
    "SecurityConfig",
    "ServerSecurity",
    "make_signing_key",
    "load_signing_key",
]

SERVER_NAME = "server"
AUTHORIZED_DIR = "authorized"  # public keys of the clients a server lets in


@dataclass(frozen=True)
class KeyPair:
    """One CURVE key pair (Z85 bytes); ``secret`` is None for a public-only certificate."""

    public: bytes
    secret: bytes | None
    path: Path


def _write_pair(directory: Path, name: str) -> KeyPair:
    public_file, secret_file = zmq.auth.create_certificates(directory, name)
    os.chmod(secret_file, 0o600)
    public, secret = zmq.auth.load_certificate(secret_file)
    return KeyPair(public, secret, Path(secret_file))


def make_keys(directory: str | os.PathLike, clients: tuple[str, ...] = ("client",),
              *, overwrite: bool = False) -> dict[str, KeyPair]:
    """Write a server pair and one pair per client; copy the clients' public keys to authorized/.

    Layout: ``DIR/server.key(_secret)``, ``DIR/<client>.key(_secret)``, ``DIR/authorized/<client>.key``.
    Secret files are mode 0600. Existing keys are never overwritten unless ``overwrite``.
    """
    root = Path(directory)
    names = (SERVER_NAME, *clients)
    for name in names:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("keys.name", f"key names are letters, digits, - and _; got {name!r}")
        if (root / f"{name}.key_secret").exists() and not overwrite:
            raise ConfigError("keys.dir", f"{root / name}.key_secret exists (use --force to replace)")
    if root.exists() and not root.is_dir():
        raise ConfigError("keys.dir", f"{root} exists and is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / AUTHORIZED_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError("keys.dir", f"cannot make {root}: {exc.strerror or exc}") from None
    os.chmod(root, 0o700)
    pairs = {name: _write_pair(root, name) for name in names}
    for name in clients:
        dest = root / AUTHORIZED_DIR / f"{name}.key"
        dest.write_bytes((root / f"{name}.key").read_bytes())
    return pairs


def load_keys(directory: str | os.PathLike, name: str = SERVER_NAME) -> KeyPair:
    """Load ``DIR/<name>.key_secret`` (or the public ``.key`` when no secret exists)."""
    root = Path(directory)
    for suffix in (".key_secret", ".key"):
        path = root / f"{name}{suffix}"
        if path.is_file():
            try:
                public, secret = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                raise ConfigError("keys.dir", f"{path}: not a CURVE certificate ({exc})") from None
            if not public or len(public) != 40:
                raise ConfigError("keys.dir", f"{path}: no valid public-key line")
            return KeyPair(public, secret, path)
    raise ConfigError("keys.dir", f"no key named {name!r} in {root} (make one: streamlsm keys make DIR)")


_SIGNING_KEY_BYTES = 32


def make_signing_key(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a new bundle-signing key (32 random bytes, hex, mode 0600) to ``path``.

    The key signs bundles (HMAC-SHA256, ``streamlsm keys sign``) and a daemon whose
    ``model.signing_key`` names it loads only bundles signed with it. Never overwrites unless asked.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError("keys.file", f"{p} is a directory; give a file name for the key")
    if p.exists() and not overwrite:
        raise ConfigError("keys.file", f"{p} exists (use --force to replace it)")
    if not p.parent.is_dir():
        raise ConfigError("keys.file", f"directory {p.parent} does not exist")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(os.urandom(_SIGNING_KEY_BYTES).hex() + "\n")
    os.chmod(p, 0o600)
    return p


def load_signing_key(path: str | os.PathLike) -> bytes:
    """The key bytes of a file written by ``make_signing_key`` (ConfigError naming the problem)."""
    p = Path(path)
    try:
        if p.stat().st_size > 1024:
            raise ConfigError("model.signing_key", f"{p}: not a signing key (larger than 1 KiB)")
        text = p.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        raise ConfigError("model.signing_key", f"{p} not found (make one: streamlsm keys signing FILE)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError("model.signing_key", f"{p}: not a signing key ({type(exc).__name__})") from None
    if len(key) < 16:
        raise ConfigError("model.signing_key", f"{p}: a signing key has at least 16 bytes, got {len(key)}")
    return key


_TRANSPORTS = ("tcp", "ipc", "inproc", "pgm", "epgm", "ws", "wss", "tipc", "vmci", "udp")


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address or ``localhost``."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ConfigError("endpoint", f"{endpoint!r} is not a ZeroMQ endpoint (scheme://address)")
    if scheme not in _TRANSPORTS:
        raise ConfigError("endpoint", f"{endpoint!r}: unknown transport {scheme!r}; use tcp://, ipc:// or inproc://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    port = rest.rsplit(":", 1)[-1] if ":" in rest else ""
    if port.isdigit() and not 0 <= int(port) <= 65535:  # libzmq would bind the port modulo 65536
        raise ConfigError("endpoint", f"{endpoint!r}: port {port} is not in [0, 65535]")
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.split(";")[-1]  # "tcp://source;dest" connect syntax: the destination decides
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names and host names are not local


def check_bind(endpoint: str, keys: KeyPair | None, key: str = "bind") -> None:
    """The rule: binding anywhere but loopback/ipc/inproc needs a server CURVE secret key."""
    if is_local_endpoint(endpoint):
        return
    if keys is None or not keys.secret:
        raise ConfigError(key, f"binding to {endpoint!r} (not loopback/ipc/inproc) requires CURVE "
                               "keys: make them with `streamlsm keys make DIR` and set keys_dir")


def secure_server(sock: zmq.Socket, keys: KeyPair) -> None:
    """Make ``sock`` a CURVE server (call before bind)."""
    if not keys.secret:
        raise ConfigError("keys", f"{keys.path}: a server needs a secret key")
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def secure_client(sock: zmq.Socket, keys: KeyPair, server_public: bytes) -> None:
    """Make ``sock`` a CURVE client of a server whose public key is ``server_public`` (before connect)."""
    if not keys.secret:
        raise ConfigError("keys", f"{keys.path}: a client needs its secret key")
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = server_public


def start_authenticator(context: zmq.Context, authorized: str | os.PathLike, *,
                        asyncio: bool | None = None):
    """Start a ZAP authenticator on ``context`` that lets in only the CURVE keys in ``authorized``.

    Uses ``AsyncioAuthenticator`` for a ``zmq.asyncio.Context`` (call inside the running loop),
    else ``ThreadAuthenticator``. Returns the started authenticator; call ``.stop()`` when done.
    """
    directory = Path(authorized)
    if not directory.is_dir():
        raise ConfigError("keys.authorized", f"{directory} is not a directory of client public keys")
    if asyncio is None:
        import zmq.asyncio

        asyncio = isinstance(context, zmq.asyncio.Context)
    if asyncio:
        from zmq.auth.asyncio import AsyncioAuthenticator

        auth = AsyncioAuthenticator(context)
    else:
        from zmq.auth.thread import ThreadAuthenticator

        auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(directory))
    return auth


def confine(path: object, allowed_dirs: list | tuple, what: str = "path") -> Path:
    """``path`` resolved inside one of ``allowed_dirs`` (control.allowed_dirs), else ControlError.

    A relative path is taken from the first allowed directory (never from the server's working
    directory); symlinks and ``..`` are resolved before the check, so neither can lead outside.
    """
    if not isinstance(path, str | os.PathLike):
        raise ControlError(f"{what} must be a non-empty path string")
    raw = os.fspath(path)
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise ControlError(f"{what} must be a non-empty path string")
    if not allowed_dirs:
        raise ControlError(f"{what} {raw!r}: no folder is allowed for file paths in control commands; add one "
                           "to [control] allowed_dirs in the daemon's config")
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs]
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    raise ControlError(f"{what} {raw!r} lies outside control.allowed_dirs {[str(r) for r in roots]}: put it in "
                       "one of them, or add its folder to [control] allowed_dirs in the daemon's config")


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """``keys_dir``: made by ``streamlsm keys make DIR`` (server pair + authorized/ client keys).

    Without it every socket must bind to loopback, ipc or inproc; with it, sockets bound beyond
    loopback are CURVE servers that let in only the authorised client keys.
    """

    keys_dir: str | None = None


class ServerSecurity:
    """The bind rule and CURVE for the sockets a process binds (one ZAP authenticator, on demand).

    ``check(endpoint, key)`` raises ConfigError (naming ``key``) for a non-local bind without keys;
    ``setup(endpoint)`` returns the socket-options hook to run before bind (None where local).
    Call ``start(context)`` inside the running loop for asyncio contexts, ``close()`` at the end.
    """

    def __init__(self, config: SecurityConfig | None = None) -> None:
        self.config = config or SecurityConfig()
        self.keys = load_keys(self.config.keys_dir) if self.config.keys_dir else None
        self._auth = None

    def check(self, endpoint: str, key: str) -> None:
        check_bind(endpoint, self.keys, key)

    def needs_curve(self, endpoint: str) -> bool:
        return self.keys is not None and not is_local_endpoint(endpoint)

    def setup(self, endpoint: str) -> Callable[[zmq.Socket], None] | None:
        if not self.needs_curve(endpoint):
            return None
        keys = self.keys
        return lambda sock: secure_server(sock, keys)

    def start(self, context: zmq.Context, endpoints: list | tuple = ()) -> None:
        """Start the authenticator when any of ``endpoints`` needs CURVE (idempotent)."""
        if self._auth is None and any(self.needs_curve(e) for e in endpoints):
            self._auth = start_authenticator(context, Path(self.config.keys_dir) / AUTHORIZED_DIR)

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
