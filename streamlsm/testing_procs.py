"""Test helpers below the runtime: synthetic samples/packets, TOML configs, control requests, a daemon process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from . import wire
from .errors import ControlError
from .events import EventPacket, slice_time
from .peers import HandshakeWatch  # re-exported for tests (it lives with the peers concept)

__all__ = ["random_samples", "packets_from_samples", "make_samples", "stream_packets", "to_toml", "control_request", "HandshakeWatch", "DaemonProcess"]


def random_samples(n: int, layout_dtype: np.dtype, duration_us: int = 50_000, events: int = 200,
                   classes: int = 3, seed: int = 0, width: int = 34) -> list[tuple[np.ndarray, str]]:
    """``n`` (events, label) samples of random events whose channel distribution depends on the class."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = i % classes
        ev = np.zeros(events, dtype=layout_dtype)
        ev["t"] = np.sort(rng.integers(0, duration_us, events))
        ev["x"] = (rng.integers(0, 8, events) + c * 10) % width
        if "y" in layout_dtype.names:
            ev["y"] = rng.integers(0, width, events)
        if "p" in layout_dtype.names:
            ev["p"] = rng.integers(0, 2, events)
        out.append((ev, str(c)))
    return out


def packets_from_samples(samples: Sequence[tuple[np.ndarray, str | None]], stream_id: str = "s0",
                         packet_us: int = 10_000, modality: str = "vision", duration_us: int | None = None,
                         gap_us: int = 0, t0: int = 0, seq0: int = 0, first_sample: int = 0) -> list[EventPacket]:
    """Cut samples (events with t from the sample's start) into contiguous packets in stream time.

    Each sample lasts ``duration_us`` (default: to its last event); sample ids count from ``first_sample``.
    """
    out, seq, t = [], seq0, t0
    for sid, (ev, label) in enumerate(samples):
        dur = duration_us or (int(ev["t"][-1]) + 1 if len(ev) else packet_us)
        shifted = ev.copy()
        shifted["t"] += t
        edges = list(range(t, t + dur, packet_us)) + [t + dur]
        for j in range(len(edges) - 1):
            a, b = edges[j], edges[j + 1]
            out.append(EventPacket(stream_id, seq, a, b, slice_time(shifted, a, b).copy(), modality,
                                   first_sample + sid, label, sample_begin=j == 0, sample_end=j == len(edges) - 2))
            seq += 1
        t += dur + gap_us
    return out


def make_samples(n: int, layout: str = "dvs", duration_us: int = 100_000, events: int = 400,
                 classes: int = 3, seed: int = 0, width: int = 34) -> list[tuple[np.ndarray, str]]:
    """``n`` (events, label) samples of a layout by name whose channel distribution depends on the class."""
    from .events import LAYOUTS

    return random_samples(n, LAYOUTS[layout], duration_us, events, classes, seed, width)


def stream_packets(stream_id: str, samples, duration_us: int, packet_us: int,
                   modality: str = "vision", first_sample: int = 0, t0: int = 0,
                   seq0: int = 0) -> list[EventPacket]:
    """Contiguous packets of consecutive fixed-length samples (sample ids from ``first_sample``)."""
    return packets_from_samples(samples, stream_id, packet_us, modality, duration_us, t0=t0, seq0=seq0,
                                first_sample=first_sample)


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
