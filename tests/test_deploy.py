"""deploy/: the example config validates, the unit and container file run the same daemon command."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from streamlsm.cli import build_parser, main
from streamlsm.config import load_toml
from streamlsm.daemon.config import DaemonConfig

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ROOT = DEPLOY.parent


def test_edge_toml_loads_and_serve_check_accepts_it(tmp_path, monkeypatch, capsys):
    cfg = load_toml(DEPLOY / "edge.toml", DaemonConfig)
    assert cfg.inputs and cfg.inputs[0].kind == "pull"
    assert cfg.control.endpoint.startswith("tcp://127.0.0.1") and cfg.control.allowed_dirs
    assert cfg.limits.overflow in ("block", "drop_oldest")
    from streamlsm.testing import make_bundle

    monkeypatch.chdir(tmp_path)  # the config's relative paths are taken from here
    make_bundle().save(tmp_path / "bundle")
    assert main(["serve", "--config", str(DEPLOY / "edge.toml"), "--check"]) == 0
    out = capsys.readouterr().out
    assert '"ok": true' in out and '"bundle_hash": "sha256:' in out


def test_serve_check_fails_without_a_bundle_and_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--config", str(DEPLOY / "edge.toml"), "--check"]) == 1
    cap = capsys.readouterr()
    assert '"ok": false' in cap.out
    assert "model.bundle 'bundle'" in cap.err and "does not exist" in cap.err
    assert "streamlsm bundle train" in cap.err
    (tmp_path / "bundle").mkdir()  # a folder that is not a bundle
    assert main(["serve", "--config", str(DEPLOY / "edge.toml"), "--check"]) == 1
    assert "is not a bundle (no manifest.json)" in capsys.readouterr().err
    assert main(["serve", "--config", str(DEPLOY / "edge.toml")]) == 1  # not only --check
    assert "streamlsm bundle train" in capsys.readouterr().err


def test_serve_check_names_the_bad_key(tmp_path, capsys):
    text = (DEPLOY / "edge.toml").read_text().replace('overflow = "block"', 'overflow = "spill"')
    (tmp_path / "bad.toml").write_text(text)
    assert main(["serve", "--config", str(tmp_path / "bad.toml"), "--check"]) == 1
    assert "limits.overflow" in capsys.readouterr().err


def test_systemd_unit_runs_serve_and_stops_with_sigterm():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "streamlsm.service")
    svc = unit["Service"]
    cmd = shlex.split(svc["ExecStart"])
    assert cmd[0].endswith("/streamlsm") and cmd[1:3] == ["serve", "--config"]
    build_parser().parse_args(cmd[1:])
    assert svc["KillSignal"] == "SIGTERM" and svc["WorkingDirectory"] in svc["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    if shutil.which("systemd-analyze"):
        out = subprocess.run(["systemd-analyze", "verify", str(DEPLOY / "streamlsm.service")],
                             capture_output=True, text=True, timeout=30)
        assert "Unknown" not in out.stderr and "Invalid" not in out.stderr


def test_containerfile_copies_existing_paths_and_runs_serve():
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM \S+python:3\.1[1-9]", text, re.M)
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), f"Containerfile copies missing {src}"
    entry = re.search(r'^ENTRYPOINT (\[.*\])$', text, re.M).group(1)
    import json

    cmd = json.loads(entry)
    assert cmd[:3] == ["streamlsm", "serve", "--config"]
    pip = " ".join(re.findall(r"^RUN pip install (.+)$", text, re.M))
    assert pip and "torch" not in pip and "train" not in pip and "all" not in pip  # numpy-only edge image


def test_readme_commands_parse_and_aarch64_is_covered():
    text = (DEPLOY / "README.md").read_text()
    assert "aarch64" in text and "NUMBA_CACHE_DIR" in text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("streamlsm ")]
    assert len(lines) >= 5
    parser = build_parser()
    for ln in lines:
        argv = shlex.split(ln.split("#")[0])[1:]
        if "--help" in argv:
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # pragma: no cover - the message says which line
            pytest.fail(f"README command does not parse: {ln} ({exc})")


def test_signing_example_runs_as_written(tmp_path, monkeypatch):
    """deploy/README.md's bundle-signing lines, run as written: the signed bundle loads with the key
    and is refused under another key."""
    from streamlsm.errors import ModelError
    from streamlsm.model.bundle import Bundle
    from streamlsm.net.security import load_signing_key, make_signing_key
    from streamlsm.testing import make_bundle

    text = (DEPLOY / "README.md").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("streamlsm keys sign")]
    assert [shlex.split(ln)[2] for ln in lines] == ["signing", "sign"]
    monkeypatch.chdir(tmp_path)  # the example's relative paths
    make_bundle().save(tmp_path / "bundle")
    (tmp_path / "keys").mkdir()
    for ln in lines:
        assert main(shlex.split(ln)[1:]) == 0, ln
    key = load_signing_key(tmp_path / "keys" / "bundle.key")
    assert Bundle.load(tmp_path / "bundle", key).heads  # signed with that key: loads
    other = load_signing_key(make_signing_key(tmp_path / "other.key"))
    with pytest.raises(ModelError, match="sign"):
        Bundle.load(tmp_path / "bundle", other)
