"""Security: CURVE keys and client authentication, the bind rule, path confinement, source scans."""

from __future__ import annotations

import ast
import asyncio
import re
import stat
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from streamlsm.cli import main
from streamlsm.errors import ConfigError, ControlError
from streamlsm.net.security import (
    AUTHORIZED_DIR,
    check_bind,
    confine,
    is_local_endpoint,
    load_keys,
    make_keys,
    secure_client,
    secure_server,
    start_authenticator,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ keys


def test_keys_make_cli_writes_private_secret_files(tmp_path, capsys):
    d = tmp_path / "keys"
    assert main(["keys", "make", str(d), "--client", "ctl", "--client", "worker-1"]) == 0
    for name in ("server", "ctl", "worker-1"):
        secret = d / f"{name}.key_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        pair = load_keys(d, name)
        assert len(pair.public) == 40 and len(pair.secret) == 40
    assert sorted(p.name for p in (d / AUTHORIZED_DIR).iterdir()) == ["ctl.key", "worker-1.key"]
    assert "public" in capsys.readouterr().out
    # never overwrites silently
    assert main(["keys", "make", str(d), "--client", "ctl"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "make", str(d), "--client", "ctl", "--force"]) == 0


def test_load_keys_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="keys make"):
        load_keys(tmp_path, "server")
    (tmp_path / "server.key_secret").write_text("garbage\n")
    with pytest.raises(ConfigError):
        load_keys(tmp_path, "server")
    with pytest.raises(ConfigError):
        make_keys(tmp_path / "k", ("../evil",))


# ------------------------------------------------------------------ bind rule


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://127.3.4.5:9", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x.sock", True), ("inproc://labels", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://eth0:5555", False),
    ("tcp://10.0.0.2:5555", False), ("tcp://[::]:5555", False), ("tcp://example.org:80", False),
    ("tcp://10.0.0.2;127.0.0.1:5555", True), ("pgm://eth0;239.192.1.1:5555", False),
])
def test_local_endpoints(endpoint, local):
    assert is_local_endpoint(endpoint) is local


def test_bind_beyond_loopback_needs_curve_keys(tmp_path):
    check_bind("tcp://127.0.0.1:5555", None)
    check_bind("ipc:///tmp/streamlsm.sock", None)
    for ep in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://192.168.1.4:5555"):
        with pytest.raises(ConfigError) as info:
            check_bind(ep, None, key="runtime.label_endpoint")
        assert info.value.key == "runtime.label_endpoint" and "CURVE" in str(info.value)
    make_keys(tmp_path, ("client",))
    check_bind("tcp://0.0.0.0:5555", load_keys(tmp_path))
    with pytest.raises(ConfigError):  # a public key alone is not enough to serve
        check_bind("tcp://0.0.0.0:5555", load_keys(tmp_path / AUTHORIZED_DIR, "client"))
    with pytest.raises(ConfigError):
        is_local_endpoint("127.0.0.1:5555")


# ------------------------------------------------------------------ CURVE authentication


def _serve_once(ctx, server_keys, authorized):
    auth = start_authenticator(ctx, authorized)
    rep = ctx.socket(zmq.REP)
    rep.linger = 0
    secure_server(rep, server_keys)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    return auth, rep, f"tcp://127.0.0.1:{port}"


def _ask(ctx, endpoint, setup) -> bytes | None:
    req = ctx.socket(zmq.REQ)
    req.linger = 0
    setup(req)
    req.connect(endpoint)
    try:
        req.send(b"ping")
        return req.recv() if req.poll(1500) else None
    finally:
        req.close()


def test_curve_lets_in_authorised_clients_only(tmp_path):
    keys = make_keys(tmp_path / "k", ("ctl",))
    other = make_keys(tmp_path / "other", ("stranger",))
    ctx = zmq.Context()
    auth, rep, ep = _serve_once(ctx, keys["server"], tmp_path / "k" / AUTHORIZED_DIR)
    try:
        server_pub = keys["server"].public

        def answer():
            if rep.poll(2000):
                rep.send(b"pong:" + rep.recv())

        import threading

        t = threading.Thread(target=answer)
        t.start()
        assert _ask(ctx, ep, lambda s: secure_client(s, keys["ctl"], server_pub)) == b"pong:ping"
        t.join()
        # a client whose key is not authorised, and a plain client, get nothing
        assert _ask(ctx, ep, lambda s: secure_client(s, other["stranger"], server_pub)) is None
        assert _ask(ctx, ep, lambda s: None) is None
        assert not rep.poll(100)  # nothing from them ever reached the server
    finally:
        rep.close()
        auth.stop()
        ctx.term()


def test_asyncio_authenticator(tmp_path):
    keys = make_keys(tmp_path, ("ctl",))

    async def go():
        ctx = zmq.asyncio.Context()
        auth = start_authenticator(ctx, tmp_path / AUTHORIZED_DIR)
        rep, req = ctx.socket(zmq.REP), ctx.socket(zmq.REQ)
        try:
            secure_server(rep, keys["server"])
            port = rep.bind_to_random_port("tcp://127.0.0.1")
            secure_client(req, keys["ctl"], keys["server"].public)
            req.connect(f"tcp://127.0.0.1:{port}")
            await req.send(b"hi")
            msg = await asyncio.wait_for(rep.recv(), 5)
            await rep.send(msg[::-1])
            return await asyncio.wait_for(req.recv(), 5)
        finally:
            rep.close(0)
            req.close(0)
            auth.stop()
            ctx.term()

    assert asyncio.run(go()) == b"ih"


def test_authenticator_needs_a_directory(tmp_path):
    with pytest.raises(ConfigError):
        start_authenticator(zmq.Context.instance(), tmp_path / "missing")


# ------------------------------------------------------------------ path confinement


def test_confine_allows_inside_and_refuses_escapes(tmp_path):
    models, data, outside = tmp_path / "models", tmp_path / "data", tmp_path / "secret"
    for d in (models, data, outside):
        d.mkdir()
    (outside / "passwd").write_text("x")
    (models / "link").symlink_to(outside)
    allowed = [models, data]
    assert confine("a.npz", allowed) == models.resolve() / "a.npz"
    assert confine(data / "sub" / "b.json", allowed) == data.resolve() / "sub" / "b.json"
    assert confine(str(models / "x" / ".." / "c"), allowed) == models.resolve() / "c"
    for bad in ("../secret/passwd", str(outside / "passwd"), "link/passwd", "/etc/passwd",
                str(models / ".." / "secret"), "", "a\x00b", "~/x"):
        with pytest.raises(ControlError):
            confine(bad, allowed)
    with pytest.raises(ControlError):
        confine("a.npz", [])


# ------------------------------------------------------------------ source-tree scans
# (tests/test_architecture.py already bans pickle & co., eval/exec, torch.load without
# weights_only=True and np.load(allow_pickle=True); these add what it does not look for.)


def _py_files():
    for folder in ("streamlsm", "sources", "sinks", "bench"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_unsafe_loaders_or_shell_in_source_tree():
    problems = []
    for path in _py_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "numpy", "yaml"):
                if any(a.name == "load" for a in node.names):
                    problems.append(f"{path}:{node.lineno}: imports load from {node.module} "
                                    "(call it as module.load so the scans can see it)")
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            kw = {k.arg: k.value for k in node.keywords}
            if isinstance(fn, ast.Attribute) and getattr(fn.value, "id", "") == "yaml" and fn.attr in (
                    "load", "unsafe_load", "full_load"):
                problems.append(f"{path}:{node.lineno}: yaml.{fn.attr} (use yaml.safe_load)")
            if isinstance(fn, ast.Name) and fn.id == "__import__":
                problems.append(f"{path}:{node.lineno}: __import__")
            shell = kw.get("shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                problems.append(f"{path}:{node.lineno}: subprocess with shell=True")
            if isinstance(fn, ast.Attribute) and fn.attr == "system" and getattr(fn.value, "id", "") == "os":
                problems.append(f"{path}:{node.lineno}: os.system")
    assert not problems, "\n".join(problems)


def test_no_default_binds_beyond_loopback():
    """Everything binds to 127.0.0.1 by default: no wildcard/any-address literal in the package."""
    problems = []
    for path in _py_files():
        if path.parts[-2:] == ("streamlsm", "security.py"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                v = node.value
                if re.fullmatch(r"tcp://\S+:(\d+|\*)", v) and not is_local_endpoint(v):
                    problems.append(f"{path}:{node.lineno}: default endpoint {v!r}")
    assert not problems, "\n".join(problems)


def test_secret_key_files_not_in_repo():
    tracked = [p for p in ROOT.rglob("*.key_secret") if ".venv" not in p.parts]
    assert not tracked, tracked


# ------------------------------------------------------------------ the daemon applies the rule


def _daemon_config(tmp_path, keys_dir=None, control="tcp://0.0.0.0:*"):
    from streamlsm.config import from_dict
    from streamlsm.daemon.config import DaemonConfig
    from streamlsm.testing import make_bundle

    make_bundle(32, 16).save(tmp_path / "bundle")
    raw = {"model": {"bundle": str(tmp_path / "bundle"), "prototypes": str(tmp_path / "p.json")},
           "outputs": {"labels": "tcp://127.0.0.1:*"}, "control": {"endpoint": control}}
    if keys_dir:
        raw["security"] = {"keys_dir": str(keys_dir)}
    return from_dict(DaemonConfig, raw)


def test_daemon_refuses_remote_bind_without_keys(tmp_path):
    from streamlsm.daemon.daemon import Daemon

    daemon = Daemon(_daemon_config(tmp_path))
    with pytest.raises(ConfigError) as info:
        asyncio.run(daemon.run())
    assert info.value.key == "control.endpoint"


def test_daemon_control_beyond_loopback_lets_in_authorised_keys_only(tmp_path):
    from streamlsm.daemon.daemon import Daemon
    from streamlsm.net import wire
    from streamlsm.testing import FakeReservoir

    keys = make_keys(tmp_path / "keys", ("ctl",))
    stranger = make_keys(tmp_path / "other", ("x",))["x"]

    async def go():
        daemon = Daemon(_daemon_config(tmp_path, tmp_path / "keys"),
                        reservoir_factory=lambda m: FakeReservoir(32, m))
        task = asyncio.create_task(daemon.run())
        await daemon.started()
        port = daemon.control_endpoint.rsplit(":", 1)[1]
        ctx = zmq.asyncio.Context.instance()

        async def ask(setup):
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            setup(req)
            req.connect(f"tcp://127.0.0.1:{port}")
            try:
                await req.send(wire.pack_control({"cmd": "status"}))
                if not await req.poll(1500):
                    return None
                return wire.unpack_control(await req.recv())
            finally:
                req.close(0)

        try:
            good = await ask(lambda s: secure_client(s, keys["ctl"], keys["server"].public))
            bad = await ask(lambda s: secure_client(s, stranger, keys["server"].public))
            plain = await ask(lambda s: None)
        finally:
            daemon.request_stop()
            await task
        return good, bad, plain

    good, bad, plain = asyncio.run(go())
    assert good["ok"] is True and bad is None and plain is None


def test_ctl_command_reaches_a_keyed_daemon_with_its_client_key(tmp_path, capsys):
    from streamlsm.cli import main
    from streamlsm.daemon.daemon import Daemon
    from streamlsm.testing import FakeReservoir

    make_keys(tmp_path / "keys", ("client",))

    async def go():
        daemon = Daemon(_daemon_config(tmp_path, tmp_path / "keys"),
                        reservoir_factory=lambda m: FakeReservoir(32, m))
        task = asyncio.create_task(daemon.run())
        await daemon.started()
        endpoint = "tcp://127.0.0.1:" + daemon.control_endpoint.rsplit(":", 1)[1]
        try:
            keyed = await asyncio.to_thread(
                main, ["ctl", "--endpoint", endpoint, "--timeout", "5", "--keys", str(tmp_path / "keys"),
                       "status"])
            plain = await asyncio.to_thread(
                main, ["ctl", "--endpoint", endpoint, "--timeout", "1.5", "status"])
        finally:
            daemon.request_stop()
            await task
        return keyed, plain

    keyed, plain = asyncio.run(go())
    out = capsys.readouterr()
    assert keyed == 0 and '"ok": true' in out.out
    assert plain == 1 and "no reply" in out.err  # without keys the daemon does not answer


def test_shipped_configs_bind_to_loopback_or_carry_keys():
    import tomllib

    found = 0
    for path in sorted((ROOT / "deploy").glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        eps = [doc.get("outputs", {}).get("labels", ""), doc.get("control", {}).get("endpoint", "")]
        eps += [i.get("endpoint", "") for i in doc.get("inputs", []) if i.get("bind", True)]
        for ep in filter(None, eps):
            found += 1
            assert is_local_endpoint(ep) or doc.get("security", {}).get("keys_dir"), (path, ep)
    assert found or not list((ROOT / "deploy").glob("*.toml"))


def test_relay_sink_keeps_the_bind_rule():
    """The relay sink has no CURVE keys: it binds loopback only, and connects anywhere."""
    from streamlsm_sinks.relay import RelaySink

    for ep in ("tcp://0.0.0.0:*", "tcp://*:*"):
        with pytest.raises(ConfigError) as info:
            RelaySink(ep)
        assert info.value.key == "sinks.relay.endpoint"
    sink = RelaySink("tcp://127.0.0.1:*")
    try:
        assert sink.endpoint.startswith("tcp://127.0.0.1:")
    finally:
        sink.close()

    from streamlsm.daemon.config import SinkConfig
    from streamlsm.daemon.sinks import make_sinks

    with pytest.raises(ConfigError) as info:  # from a daemon config: the sink's key, the rule's reason
        make_sinks([SinkConfig("relay", {"endpoint": "tcp://127.0.0.1:*"}),
                    SinkConfig("relay", {"endpoint": "tcp://*:*"})])
    assert info.value.key == "outputs.sinks[1].options" and "CURVE" in str(info.value)
