"""`streamlsm serve` / `streamlsm ctl` as processes: config check, control, SIGTERM drain, restart keeps classes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

import streamlsm.reservoir as res
from streamlsm.cli import main
from streamlsm.config import to_dict
from streamlsm.events import DVS_DTYPE
from streamlsm.net import wire
from streamlsm.testing import (
    DaemonProcess,
    HandshakeWatch,
    make_bundle,
    packets_from_samples,
    random_samples,
    to_toml,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
D = 16


def _bundle(path):
    cfg = res.preset("nmnist", bin_us=1000)
    n = res.Reservoir(cfg).n_features
    make_bundle(n, D, reservoirs={"vision": to_dict(cfg)}).save(path)
    return path


def _config(work):
    return {"model": {"bundle": str(_bundle(work / "bundle")), "prototypes": "state/protos.json"},
            "inputs": [{"endpoint": "tcp://127.0.0.1:*", "kind": "pull"}],
            "outputs": {"labels": "tcp://127.0.0.1:*",
                        "sinks": [{"name": "jsonl", "options": {"path": "state/labels.jsonl"}}]},
            "control": {"endpoint": "tcp://127.0.0.1:*", "allowed_dirs": [str(work / "support")]},
            "limits": {"overflow": "block"}}


def _support(work, samples):
    (work / "support").mkdir(exist_ok=True)
    paths = {}
    for lab in sorted({t for _, t in samples}):
        evs = [e for e, t in samples if t == lab]
        p = work / "support" / f"c{lab}.npz"
        np.savez(p, events=np.concatenate(evs), lengths=[len(e) for e in evs])
        paths[lab] = p
    return paths


def _ctl_cli(endpoint, *args):
    code = "import sys; from streamlsm.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, "ctl", "--endpoint", endpoint, *args],
                          capture_output=True, text=True, timeout=120)


def _send(endpoint, packets):
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(endpoint)
    for p in packets:
        p.sent_ns = time.time_ns()
        sock.send_multipart(wire.encode(p))
    sock.close()


def _labels(sub, n, timeout=60.0):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        if sub.poll(200):
            out.append(wire.decode(sub.recv_multipart()))
    return out


def test_serve_check_validates_and_names_keys(tmp_path, capsys):
    cfg = _config(tmp_path)
    (tmp_path / "ok.toml").write_text(to_toml(cfg))
    assert main(["serve", "--config", str(tmp_path / "ok.toml"), "--check"]) == 0
    cfg["pipeline"] = {"segment": "window", "window_us": 1000, "hop_us": 5000}
    (tmp_path / "bad.toml").write_text(to_toml(cfg))
    assert main(["serve", "--config", str(tmp_path / "bad.toml"), "--check"]) == 1
    assert "pipeline.hop_us" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.toml"), "--check"]) == 1
    capsys.readouterr()
    (tmp_path / "bundle" / "weights.npz").write_bytes(b"not a bundle")  # --check loads the bundle
    assert main(["serve", "--config", str(tmp_path / "ok.toml"), "--check"]) == 1
    assert "weights.npz" in capsys.readouterr().err


def test_serve_reports_an_endpoint_in_use_instead_of_hanging(tmp_path, capsys, monkeypatch):
    import socket

    monkeypatch.chdir(tmp_path)  # the config's relative state/ paths land here
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = _config(tmp_path)
        cfg["inputs"] = [{"endpoint": f"tcp://127.0.0.1:{busy.getsockname()[1]}", "kind": "pull"}]
        (tmp_path / "busy.toml").write_text(to_toml(cfg))
        assert main(["serve", "--config", str(tmp_path / "busy.toml")]) == 1
    assert "cannot bind" in capsys.readouterr().err


def test_serve_ctl_sigterm_drain_and_restart_keep_classes(tmp_path):
    cfg = _config(tmp_path)
    train = random_samples(9, DVS_DTYPE, seed=1, duration_us=20_000)
    test = random_samples(6, DVS_DTYPE, seed=2, duration_us=20_000)
    support = _support(tmp_path, train)
    daemon = DaemonProcess(cfg, tmp_path).start()
    try:
        for lab, path in support.items():
            r = _ctl_cli(daemon.control, "register", lab, str(path))
            assert r.returncode == 0, r.stderr
        r = _ctl_cli(daemon.control, "register", "x", str(tmp_path / "bundle" / "weights.npz"))
        assert r.returncode == 1 and "outside" in r.stderr
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"lb/")
        watch = HandshakeWatch()
        watch(sub)
        sub.connect(daemon.labels)
        watch.wait()  # the subscription reaches the daemon before labels flow
        _send(daemon.inputs[0], packets_from_samples(test, "cam", packet_us=2_000, duration_us=20_000))
        got = _labels(sub, len(test), timeout=150)
        sub.close(0)
        assert [lab.sample_id for lab in got] == list(range(len(test))), daemon.ctl({"cmd": "status"})
        status = daemon.ctl({"cmd": "status"})
        assert status["classes"] == ["0", "1", "2"] and status["labels"] == len(test)
    finally:
        assert daemon.stop(signal.SIGTERM) == 0, daemon.stderr
    assert '"stopped": true' in daemon.stderr
    lines = (tmp_path / "state" / "labels.jsonl").read_text().splitlines()
    assert len(lines) == len(test)
    # an unclean kill loses no class either: every change was checkpointed when made
    again = DaemonProcess(cfg, tmp_path).start()
    try:
        r = _ctl_cli(again.control, "remove", "2")
        assert r.returncode == 0, r.stderr
    finally:
        again.stop(signal.SIGKILL)
    third = DaemonProcess(cfg, tmp_path).start()
    try:
        r = _ctl_cli(third.control, "status")
        assert r.returncode == 0 and '"classes": [\n  "0",\n  "1"\n ]' in r.stdout
        assert _ctl_cli(third.control, "snapshot").returncode == 0
        assert _ctl_cli(third.control, "reload").returncode == 0
    finally:
        assert third.stop(signal.SIGINT) == 0
