"""Process and socket test helpers: TOML configs, control requests, a daemon in a child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import zmq

from ..errors import ControlError
from ..net import wire
from ..net.peers import HandshakeWatch  # re-exported for tests (it lives with the peers concept)
from ..stream.synthetic import packets_from_samples, random_samples  # re-exported for tests

__all__ = ["random_samples", "packets_from_samples", "to_toml", "control_request", "HandshakeWatch", "DaemonProcess"]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(doc: dict, prefix: str = "") -> str:
    """A small TOML writer for config dicts: scalars, lists, tables, arrays of tables."""
    lines, tables = [], []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append((k, v, False))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v, True))
        elif v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v, many in tables:
        name = f"{prefix}{k}"
        for item in (v if many else [v]):
            out += f"\n[[{name}]]\n" if many else f"\n[{name}]\n"
            out += to_toml(item, name + ".")
    return out


def control_request(endpoint: str, req: dict, timeout: float = 30.0) -> dict:
    """One request to a daemon's control socket (sync REQ); ControlError on timeout."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(wire.pack_control(req))
        if not sock.poll(int(timeout * 1000)):
            raise ControlError(f"no reply from {endpoint} within {timeout} s")
        return wire.unpack_control(sock.recv())
    finally:
        sock.close(0)


_READY = re.compile(r"inputs (?P<inputs>.*?); labels on (?P<labels>\S+); control on (?P<control>\S+);")


class DaemonProcess:
    """``streamlsm serve`` in a subprocess on a config dict; endpoints parsed from its ready line.

    Use "tcp://127.0.0.1:*" endpoints: the daemon binds free ports and prints them.
    """

    def __init__(self, config: dict, workdir: str | Path, env: dict | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "edge.toml"
        self.config_path.write_text(to_toml(config))
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.inputs: list[str] = []
        self.labels = self.control = ""
        self.stdout = self.stderr = ""  # all the daemon printed, once it has stopped
        self._out: list[str] = []
        self._err: list[str] = []
        self._pumps: list[threading.Thread] = []

    def start(self, timeout: float = 120.0) -> DaemonProcess:
        code = "import sys; from streamlsm.cli import main; sys.exit(main())"
        proc = self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--config", str(self.config_path)],
            cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # both pipes are read for the daemon's whole life: one left unread fills up (64 KiB) and
        # blocks the daemon at its next print (console sink, warnings)
        self._out, self._err = [], []
        ready = threading.Event()

        def pump(stream, into: list[str], signal_ready: bool) -> None:
            for text in stream:
                into.append(text)
                if signal_ready:  # the first stdout line is the ready line
                    ready.set()
            ready.set()  # the daemon exited

        self._pumps = [threading.Thread(target=pump, args=(proc.stdout, self._out, True), daemon=True),
                       threading.Thread(target=pump, args=(proc.stderr, self._err, False), daemon=True)]
        for t in self._pumps:
            t.start()
        ready.wait(timeout)
        m = _READY.search(self._out[0]) if self._out else None
        if m is None:
            proc.kill()
            self._reap(10)
            raise RuntimeError(f"daemon did not start: {self._out[:1]} {self.stderr[-3000:]}")
        self.inputs = [x.strip() for x in m["inputs"].split(",")]
        self.labels, self.control = m["labels"], m["control"]
        return self

    def _reap(self, timeout: float) -> None:
        self.proc.wait(timeout)
        for t in self._pumps:
            t.join(10)
        self.stdout, self.stderr = "".join(self._out), "".join(self._err)

    def ctl(self, req: dict, timeout: float = 60.0) -> dict:
        return control_request(self.control, req, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the daemon and wait; returns its exit status (stderr kept in ``.stderr``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._reap(10)
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(signal.SIGKILL if exc[0] is not None else signal.SIGTERM)
