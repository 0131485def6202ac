"""The README's tour, its Python quick-start, docs/wire.md, docs/live.md and deploy/README.md's quick
start, run exactly as written (in scratch folders, on the loopback) and checked against what they print.

Commands are taken from the documents themselves: a change there changes what runs here. The
conventions the documents follow: `DATA` (README) and `data` (deploy) are links to the real data
folder made here; `serve` (without --check) runs in the background until the end; a `subscribe`
runs in the background and the next command starts once its peer is there; a binding `replay`
(a PUB that waits for its subscriber) runs in the background until the block's subscriber has it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.realdata, pytest.mark.timeout(900)]
PORTS = (5555, 5600, 5601, 5602)  # what the tour and deploy/edge.toml use


def section(text: str, title: str) -> str:
    """The text of the section `## title` (up to the next `## `)."""
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start: end if end >= 0 else len(text)]


def fenced(text: str, lang: str) -> list[str]:
    blocks = re.findall(rf"^( *)```{lang}\n(.*?)^ *```", text, re.S | re.M)
    return ["".join(ln[len(indent):] for ln in body.splitlines(keepends=True)) for indent, body in blocks]


def commands(block: str) -> list[str]:
    return [ln.strip() for ln in block.splitlines() if ln.strip().startswith("streamlsm ")]


class Proc:
    """A command in the background, its stdout/stderr collected by two threads."""

    def __init__(self, argv: list[str], cwd: Path, env: dict) -> None:
        self.argv = argv
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [threading.Thread(target=self._pump, args=(s, d), daemon=True)
                        for s, d in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(stream, dest: list[str]) -> None:
        for line in stream:
            dest.append(line)

    def wait_for(self, what: str, where: str = "err", timeout: float = 120.0) -> None:
        lines = self.err if where == "err" else self.out
        deadline = time.monotonic() + timeout
        while not any(what in ln for ln in lines):
            if self.p.poll() is not None or time.monotonic() > deadline:
                self.finish(5)
                pytest.fail(f"{shlex.join(self.argv)}: no {what!r} (rc {self.p.returncode});\n"
                            f"stdout: {''.join(self.out)[-2000:]}\nstderr: {''.join(self.err)[-2000:]}")
            time.sleep(0.05)

    def finish(self, timeout: float = 120.0, stop: bool = False) -> tuple[int, str, str]:
        if stop and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)
        for t in self.threads:
            t.join(10)
        return self.p.returncode, "".join(self.out), "".join(self.err)


class Tour:
    """Runs documented command lines in one folder; remembers (line, rc, stdout, stderr)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        exe = Path(sys.executable).parent / "streamlsm"
        self.prefix = [str(exe)] if exe.is_file() else [sys.executable, "-m", "streamlsm"]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.results: dict[str, tuple[int, str, str]] = {}
        self.serve: Proc | None = None
        self.serve_result: tuple[int, str, str] = (-1, "", "")
        self.background: list[tuple[str, Proc]] = []

    def argv(self, line: str) -> list[str]:
        words = shlex.split(line, comments=True)
        assert words[0] == "streamlsm", line
        return self.prefix + words[1:]

    def run_line(self, line: str) -> None:
        words = shlex.split(line, comments=True)
        cmd = words[1]
        if cmd == "serve" and "--check" not in words:
            self.serve = Proc(self.argv(line), self.cwd, self.env)
            self.serve.wait_for("streamlsm serve: inputs", "out")
            self.results[line] = (0, "".join(self.serve.out), "")
        elif cmd == "subscribe":
            proc = Proc(self.argv(line), self.cwd, self.env)
            proc.wait_for("a peer is there")
            time.sleep(0.3)  # the subscription crosses the loopback after the handshake
            self.background.append((line, proc))
        elif cmd == "replay" and "--connect" not in words and "--no-wait" not in words:
            proc = Proc(self.argv(line), self.cwd, self.env)
            proc.wait_for("waiting for a subscriber")
            self.background.append((line, proc))
        else:
            r = subprocess.run(self.argv(line), cwd=self.cwd, env=self.env, capture_output=True,
                               text=True, timeout=300)
            self.results[line] = (r.returncode, r.stdout, r.stderr)
            assert r.returncode == 0, f"{line}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"

    def run_block(self, lines: list[str]) -> None:
        for line in lines:
            self.run_line(line)
        for line, proc in self.background:
            self.results[line] = proc.finish(120)
            assert self.results[line][0] == 0, f"{line}: {self.results[line]}"
        self.background = []

    def stop_all(self) -> None:
        """Stop the daemon (SIGTERM: it drains and exits 0) and anything left in the background."""
        for _, proc in self.background:
            proc.finish(10, stop=True)
        self.background = []
        if self.serve is not None:
            self.serve_result = self.serve.finish(60, stop=True)
            self.serve = None

    def python(self, code: str, timeout: float = 120.0) -> str:
        r = subprocess.run([sys.executable, "-c", code], cwd=self.cwd, env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{code}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        return r.stdout


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def find(results: dict, prefix: str) -> tuple[int, str, str]:
    hits = [v for k, v in results.items() if k.startswith(prefix)]
    assert len(hits) == 1, f"{len(hits)} commands start with {prefix!r}: {list(results)}"
    return hits[0]


@pytest.fixture
def tour(tmp_path):
    """A Tour in tmp_path; whatever it left running is stopped at the end, pass or fail."""
    for port in PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ's listeners do
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                pytest.fail(f"port {port} (used by the README tour and deploy/edge.toml) is busy")
    t = Tour(tmp_path)
    yield t
    t.stop_all()


def test_readme_tour_quickstart_and_docs_as_written(real_data, tmp_path, tour):
    readme = (ROOT / "README.md").read_text()
    tour_text = section(readme, "A tour")
    blocks = [commands(b) for b in fenced(tour_text, "bash")]
    assert len(blocks) == 6 and all(blocks)
    (tmp_path / "DATA").symlink_to(real_data.resolve())
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    r = tour.results

    # 1. a replay and its subscriber
    tour.run_block(blocks[0])
    rc, out, err = find(r, "streamlsm replay nmnist --root DATA/nmnist --limit 20 --speed 10 --endpoint")
    rep = last_json(out)
    assert rep["socket"] == "pub" and rep["sent"] > 0 and rep["unheard"] == 0 and rep["dropped"] == 0
    assert "waiting for a subscriber" in err and "a subscriber joined" in err
    rc, out, err = find(r, "streamlsm subscribe tcp://127.0.0.1:5555")
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(f"summary: {rep['sent']} messages: {rep['sent']} packets "
                              f"({rep['events']:,} events) on 1 stream(s)"), summary
    assert "gaps 0, duplicates 0, wire errors 0" in summary
    assert re.search(r"^packets: [\d,]+/s, [\d,]+ events/s on 1 stream\(s\)", out, re.M)

    # 2. data of every kind
    tour.run_block(blocks[1])
    out = find(r, "streamlsm data info DATA/nmnist")[1]
    assert "per class: 0=" in out and "(10 panels, one sample per class, 10 classes)" in out
    out = find(r, "streamlsm data info DATA/nas_cochlea")[1]
    assert "per class: unlabelled=4" in out and "(4 panels, 4 of 4 unlabelled samples)" in out
    out = find(r, "streamlsm data info DATA/neural/auditory_cortex")[1]
    assert "(18 panels, one sample per class, 18 classes)" in out
    assert "NTidigitsDataset: 1 samples" in find(r, "streamlsm data info DATA/ntidigits/")[1]
    for png in ("nmnist.png", "nas.png", "cortex.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    rep = last_json(find(r, "streamlsm replay ntidigits")[1])
    assert rep["sent"] == 0 and rep["unheard_events"] == 898  # the real utterance, no subscriber

    # 3. a bundle, the seen prototypes, a support file
    tour.run_block(blocks[2])
    made = last_json(find(r, "streamlsm bundle train")[1])
    assert made["seen_classes"] == list("01234567") and made["classes"] == list("0123456789")
    assert last_json(find(r, "streamlsm bundle support")[1])["samples"] == 5

    # 4. the daemon: checked, then running
    try:
        tour.run_block(blocks[3])
        check = json.loads(r["streamlsm serve --config deploy/edge.toml --check"][1])
        assert check["ok"] is True and check["bundle_hash"] == made["hash"]
        assert "8 classes" in r["streamlsm serve --config deploy/edge.toml"][1].splitlines()[-1]
        # the live-sensor example of docs/live.md and its plug-in registration
        live_md = (ROOT / "docs" / "live.md").read_text()
        toml = tomllib.loads(fenced(live_md, "toml")[0])
        assert list(toml["project"]["entry-points"]) == ["streamlsm.live"]
        stats = ast.literal_eval(tour.python(fenced(live_md, "python")[0]).strip().splitlines()[-1])
        assert stats == {"sent": 301, "events": 15_000, "dropped": 0, "dropped_events": 0, "late_events": 0}

        # 5. talk to it
        tour.run_block(blocks[4])
        reg = json.loads(find(r, "streamlsm ctl --config deploy/edge.toml register 8")[1])
        assert reg["ok"] and reg["label"] == "8" and reg["samples"] == 5 and "8" in reg["classes"]
        rep = last_json(find(r, "streamlsm replay nmnist --root DATA/nmnist --limit 20 --order shuffle")[1])
        assert rep["socket"] == "push" and rep["dropped"] == 0 and rep["sent"] > 0
        live = last_json(find(r, "streamlsm live playback")[1])
        assert live["sent"] > 0 and live["dropped"] == 0
        status = json.loads(find(r, "streamlsm ctl --config deploy/edge.toml status")[1])
        assert status["ok"] and status["dropped"] == 0 and status["wire_errors"] == 0
        assert status["received"] >= 301 + rep["sent"]
        out = find(r, "streamlsm subscribe tcp://127.0.0.1:5601")[1]
        label_lines = [ln for ln in out.splitlines() if re.match(r"(nmnist|cam0)\s+\S+\s+[+-]\d\.\d{3}  truth", ln)]
        assert len(label_lines) == 21, out  # 20 replayed samples + the live stream's one sample
        assert "summary: 21 messages: 0 packets" in out and "21 labels; accuracy" in out

        # the Python quick-start: in-process replay, then a plain pyzmq + msgpack subscriber
        in_process, subscriber = fenced(section(readme, "Python API quick-start"), "python")
        out = tour.python(in_process)
        assert re.fullmatch(r"\d+ of 30 samples right \(classes \[.*'8'.*\]\)\n", out), out
        sub = Proc([sys.executable, "-c", subscriber], tmp_path, tour.env)
        for _ in range(5):  # labels until the subscriber (no handshake signal of its own) has 5
            time.sleep(1.0)
            tour.run_line("streamlsm replay nmnist --root DATA/nmnist --limit 10 --speed max "
                          "--connect --endpoint tcp://127.0.0.1:5600 --stream-id quick")
            if sub.p.poll() is not None:
                break
        rc, out, err = sub.finish(30)
        assert rc == 0, err
        lines = out.strip().splitlines()
        assert len(lines) == 5 and all(re.fullmatch(r"quick \d -?\d\.\d+ truth \d", ln) for ln in lines), out
    finally:
        tour.stop_all()
    rc, out, err = tour.serve_result
    assert rc == 0 and "streamlsm.serve: received" in err  # the periodic status line (logging)
    assert '"stopped": true' in err

    # More commands: each --help
    tour.run_block(blocks[5])
    for line in blocks[5]:
        assert r[line][1].startswith("usage: streamlsm " + shlex.split(line)[1]), line

    # docs/wire.md: a subscriber written from the spec alone decodes real traffic
    wire_md = (ROOT / "docs" / "wire.md").read_text()
    cmd = "streamlsm replay nmnist --root DATA/nmnist --limit 2 --endpoint tcp://127.0.0.1:5555"
    assert f"`{cmd}`" in wire_md
    assert "streamlsm" not in fenced(wire_md, "python")[0]
    replay = Proc(tour.argv(cmd), tmp_path, tour.env)
    replay.wait_for("waiting for a subscriber")
    out = tour.python(fenced(wire_md, "python")[0])
    rc, rout, rerr = replay.finish(60)
    rep = last_json(rout)
    assert rc == 0 and rep["unheard"] == 0
    last = re.fullmatch(r"sample 0 label 0: up to seq \d+, \d+ events\n"
                        r"sample 1 label 0: up to seq (\d+), (\d+) events\n", out)
    assert last, out
    assert int(last.group(1)) + 1 == rep["sent"] and int(last.group(2)) == rep["events"]


def test_deploy_quick_start_as_written(real_data, tmp_path, tour):
    text = section((ROOT / "deploy" / "README.md").read_text(), "Quick start")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("streamlsm ")]
    assert [shlex.split(ln)[1] for ln in lines] == ["bundle", "bundle", "bundle", "serve", "serve", "ctl",
                                                    "ctl", "ctl", "subscribe", "replay"]
    (tmp_path / "data").symlink_to(real_data.resolve())
    for d in ("support", "bundles", "state"):
        (tmp_path / d).mkdir()
    shutil.copy(ROOT / "deploy" / "edge.toml", tmp_path / "edge.toml")
    r = tour.results

    # before anything runs: serve --check says how to make the bundle, ctl that serve is not there
    check = subprocess.run(tour.argv("streamlsm serve --config edge.toml --check"), cwd=tmp_path,
                           env=tour.env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "streamlsm bundle train" in check.stderr
    t0 = time.monotonic()
    ctl = subprocess.run(tour.argv("streamlsm ctl --config edge.toml --timeout 60 status"),
                         cwd=tmp_path, env=tour.env, capture_output=True, text=True, timeout=120)
    assert ctl.returncode == 1
    assert "is `streamlsm serve` running at tcp://127.0.0.1:5602?" in ctl.stderr
    assert time.monotonic() - t0 < 30  # it did not wait for the 60 s reply timeout

    try:
        tour.run_block(lines)
        assert last_json(find(r, "streamlsm bundle train")[1])["seen_classes"] == list("01234567")
        assert json.loads(find(r, "streamlsm serve --config edge.toml --check")[1])["ok"] is True
        reg = json.loads(find(r, "streamlsm ctl --config edge.toml register 8 support/eight.npz")[1])
        assert reg["ok"] and reg["classes"] == list("012345678") and reg["enrolled"] == 5
        ema = json.loads(find(r, "streamlsm ctl --config edge.toml register 8 support/more.npz")[1])
        assert ema["ok"] and ema["rule"] == "ema" and ema["enrolled"] == 15  # refined, not replaced
        assert ema["prototype_version"] > reg["prototype_version"]
        assert json.loads(find(r, "streamlsm ctl --config edge.toml status")[1])["classes"] == list("012345678")
        rep = last_json(find(r, "streamlsm replay nmnist")[1])
        assert rep["socket"] == "push" and rep["dropped"] == 0
        out = find(r, "streamlsm subscribe tcp://127.0.0.1:5601")[1]
        assert "summary: 10 messages: 0 packets (0 events) on 0 stream(s), 10 labels" in out
    finally:
        tour.stop_all()
    rc, out, err = tour.serve_result
    assert rc == 0 and '"labels": 10' in err
    # the label log of the jsonl sink holds the 10 labels once the daemon stopped
    assert len((tmp_path / "state" / "labels.jsonl").read_text().splitlines()) == 10
