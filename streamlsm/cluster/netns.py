"""A lab of hosts for tests and benchmarks: network namespaces joined by veth pairs (root), or loopback.

``Hosts(n, keys_dir, netns=True)`` makes a router namespace and ``n`` worker namespaces, each joined
to the router's by its own veth pair (10.231.i.1 <-> 10.231.i.2, /30). The router binds its worker
and label-input sockets on every interface of its namespace with CURVE keys (the bind rule) and its
packet input and label output on the namespace's own 127.0.0.1, where the driver runs. With
``netns=False`` everything runs as processes on this host's loopback, without keys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import TransportError
from ..net.security import make_keys

__all__ = ["Hosts", "MAIN"]

MAIN = "import sys; from streamlsm.cli import main; sys.exit(main(sys.argv[1:]))"
ROOT = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        raise TransportError(f"ip {' '.join(args)}: {r.stderr.strip()}")


class Hosts:
    """Context manager owning the namespaces and every process started in them."""

    def __init__(self, n_workers: int, keys_dir: str | os.PathLike, *, netns: bool = True,
                 base_port: int = 15570) -> None:
        self.n = n_workers
        self.netns = netns
        self.keys_dir = Path(keys_dir)
        self.tag = f"{os.getpid() % 100000}"
        self.router_ns = f"slsm{self.tag}r"
        self.worker_ns = [f"slsm{self.tag}w{i}" for i in range(n_workers)]
        p = base_port + (os.getpid() % 1000) * 4 if not netns else base_port
        self.ports = {"input": p, "workers": p + 1, "labels_in": p + 2, "labels": p + 3}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._made: list[str] = []

    # ------------------------------------------------------------ set-up and tear-down
    def __enter__(self) -> Hosts:
        if self.netns:
            try:
                self._make()
            except BaseException:
                self.close()
                raise
            make_keys(self.keys_dir, tuple(f"worker{i}" for i in range(self.n)), overwrite=True)
        else:
            self.keys_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make(self) -> None:
        for ns in (self.router_ns, *self.worker_ns):
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, ns in enumerate(self.worker_ns):
            a, b = f"v{self.tag}r{i}", f"v{self.tag}w{i}"
            _ip("link", "add", a, "netns", self.router_ns, "type", "veth", "peer", "name", b,
                "netns", ns)
            _ip("-n", self.router_ns, "addr", "add", f"10.231.{i}.1/30", "dev", a)
            _ip("-n", ns, "addr", "add", f"10.231.{i}.2/30", "dev", b)
            _ip("-n", self.router_ns, "link", "set", a, "up")
            _ip("-n", ns, "link", "set", b, "up")

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()

    # ------------------------------------------------------------ processes
    def _prefix(self, ns: str | None) -> list[str]:
        return ["ip", "netns", "exec", ns] if self.netns and ns else []

    def _start(self, key: str, ns: str | None, args: list[str]) -> subprocess.Popen:
        log = self.keys_dir / f"{key}.log"
        self.logs[key] = log
        fh = open(log, "w")  # noqa: SIM115 - the child owns it
        p = subprocess.Popen([*self._prefix(ns), sys.executable, "-c", MAIN, *args], cwd=ROOT,
                             stdout=fh, stderr=subprocess.STDOUT, text=True)
        fh.close()
        self.procs[key] = p
        return p

    def endpoint(self, key: str, worker: int | None = None) -> str:
        port = self.ports[key]
        if worker is not None and self.netns:
            return f"tcp://10.231.{worker}.1:{port}"
        if key in ("workers", "labels_in") and self.netns:
            return f"tcp://*:{port}"
        return f"tcp://127.0.0.1:{port}"

    def start_router(self, status_every: float = 0.25) -> subprocess.Popen:
        args = ["cluster", "router", "--status-every", str(status_every)]
        for key in self.ports:
            args += [f"--{key.replace('_', '-')}", self.endpoint(key)]
        if self.netns:
            args += ["--keys", str(self.keys_dir)]
        return self._start("router", self.router_ns, args)

    def start_worker(self, i: int, bundle, prototypes, heartbeat: float = 0.1) -> subprocess.Popen:
        args = ["cluster", "worker", "--bundle", str(bundle), "--prototypes", str(prototypes),
                "--router", self.endpoint("workers", i), "--labels-in", self.endpoint("labels_in", i),
                "--name", f"w{i}", "--heartbeat", str(heartbeat)]
        if self.netns:
            args += ["--keys", str(self.keys_dir), "--key-name", f"worker{i}"]
        return self._start(f"w{i}", self.worker_ns[i] if self.netns else None, args)

    def kill_worker(self, i: int) -> float:
        """SIGKILL worker i; returns the monotonic time of the kill."""
        t = time.monotonic()
        self.procs[f"w{i}"].send_signal(signal.SIGKILL)
        return t

    def router_status(self) -> dict:
        """The router's latest JSON status line."""
        lines = [ln for ln in self.logs["router"].read_text().splitlines() if ln.startswith("{")]
        for line in reversed(lines):
            doc = json.loads(line)
            if "workers" in doc:
                return doc
        return {"workers": {}}

    def wait_status(self, pred, timeout: float = 30.0) -> dict:
        """The first router status line for which ``pred(status)`` holds (TransportError after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.router_status()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise TransportError(f"router status never satisfied the condition: {st}")
            time.sleep(0.05)

    def wait_workers(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.router_status()["workers"]) < n:
            for key, p in self.procs.items():
                if p.poll() is not None:
                    raise TransportError(f"{key} exited ({p.returncode}): "
                                         f"{self.logs[key].read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TransportError(f"{n} workers did not join within {timeout} s")
            time.sleep(0.1)

    def drive(self, background: bool = False, **options):
        """Run the load driver next to the router (its namespace); the result dict (or the process)."""
        options = {"input": self.endpoint("input"), "labels": self.endpoint("labels"), **options}
        cmd = [*self._prefix(self.router_ns), sys.executable, "-m", "streamlsm.cluster.drive",
               json.dumps(options)]
        if background:
            return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if out.returncode:
            raise TransportError(f"driver failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
