"""docs/cluster.md "One machine", run as written: `streamlsm cluster serve` with a local Ray, and
`cluster up / status / serve --address auto / down`; packets pushed to the gateway come back as
labels, the final JSON line counts them, nothing is lost. (`cluster down` runs `ray stop`: every
Ray process of this user on this machine stops, so this file must not run beside test_cluster.py
in parallel.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

pytest.importorskip("ray", reason="ray is not installed (the 'cluster' extra: pip install streamlsm[cluster])")

from test_cluster import interleaved, small_config  # noqa: E402
from test_tour import Proc, commands, fenced, section  # noqa: E402

from streamlsm.net import wire  # noqa: E402
from streamlsm.testing.procs import to_toml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def blocks() -> list[list[str]]:
    text = section((ROOT / "docs" / "cluster.md").read_text(), "Several machines")
    one = text[text.index("### One machine"):text.index("### Several hosts")]
    return [commands(b) for b in fenced(one, "bash")]


def serve_and_feed(line: str, cwd: Path, env: dict) -> tuple[dict, int]:
    """Run the serve line; once ready, push 3 streams x 4 samples and count the labels."""
    exe = Path(sys.executable).parent / "streamlsm"
    argv = [str(exe) if exe.is_file() else sys.executable, *([] if exe.is_file() else ["-m", "streamlsm"]),
            *line.split()[1:]]
    proc = Proc(argv, cwd, env)
    proc.wait_for("streamlsm cluster serve: inputs", "out", timeout=180)
    ready = next(ln for ln in proc.out if ln.startswith("streamlsm cluster serve: inputs"))
    inp, labels = re.search(r"inputs (\S+); labels on (\S+);", ready).groups()
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.subscribe(wire.LABEL_TOPIC)
    sub.connect(labels)
    got = []

    def read() -> None:
        while proc.p.poll() is None:
            if sub.poll(50):
                got.append(wire.decode(sub.recv_multipart()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)
    push = ctx.socket(zmq.PUSH)
    push.linger = 2000
    push.connect(inp)
    packets, _ = interleaved(["d0", "d1", "d2"], 4)
    for p in packets:
        push.send_multipart(wire.encode(p))
    push.close()
    rc, out, err = proc.finish(120)
    reader.join(5)
    sub.close()
    assert rc == 0, f"{line}\n{out[-3000:]}\n{err[-3000:]}"
    final = json.loads(out.strip().splitlines()[-1])
    assert final["stopped"] and final["received"] == len(packets), final
    return final, len(got)


def test_one_machine_as_written(tmp_path):
    (tmp_path / "cluster.toml").write_text(to_toml(small_config(tmp_path)))
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    found = blocks()
    assert [len(b) for b in found] == [1, 4]
    readme = [commands(b) for b in fenced(section((ROOT / "README.md").read_text(), "Scale-out on Ray"), "bash")]
    assert readme == [found[0]]  # the README's one-machine line is this one, run here as written
    exe = Path(sys.executable).parent / "streamlsm"
    up = False
    try:
        for block in found:
            for line in block:
                if line.startswith("streamlsm cluster serve"):
                    final, heard = serve_and_feed(line, tmp_path, env)
                    assert final["labels"] == 12 and heard == 12 and final["lost_samples"] == 0, final
                    assert final["live_shards"] == 2 and len(final["shards"]) == 2
                else:
                    up = up or line.startswith("streamlsm cluster up")
                    r = subprocess.run([str(exe), *line.split()[1:]], cwd=tmp_path, env=env, capture_output=True,
                                       text=True, timeout=180)
                    assert r.returncode == 0, f"{line}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
                    if line == "streamlsm cluster status":
                        assert "Active:" in r.stdout and "2.0 CPU" in r.stdout, r.stdout
    finally:  # a failed step must not leave a Ray node behind for the next test or run
        if up:
            subprocess.run([str(exe), "cluster", "down"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
