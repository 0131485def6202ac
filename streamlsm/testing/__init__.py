"""Test doubles shipped with the library: scripted in-memory sources, list sinks, a fake reservoir and bundle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from ..errors import ControlError, ReservoirError
from ..events import EventPacket, LabelEvent
from ..model.bundle import Bundle
from ..model.projection import ProjectionHead
from ..net import wire
from .procs import (
    DaemonProcess,
    HandshakeWatch,
    control_request,
    packets_from_samples,
    random_samples,
    to_toml,
)

__all__ = ["EOF", "PAUSE", "FAIL", "MemorySource", "ListSink", "FakeFeatures", "FakeReservoir",
           "make_bundle", "packets_from_samples", "random_samples", "to_toml", "control_request",
           "DaemonProcess", "HandshakeWatch", "daemon_ctl", "write_support", "register_classes",
           "daemon_test_config"]


@dataclass(frozen=True, slots=True)
class PAUSE:
    """Script step: the source goes quiet for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class FAIL:
    """Script step: the source raises ``error``."""

    error: BaseException


class _EOF:
    def __repr__(self) -> str:
        return "EOF"


#: Script step: the source ends here (the rest of the script is never read).
EOF = _EOF()


class MemorySource:
    """An async iterator over a script of EventPackets and PAUSE / FAIL / EOF steps."""

    def __init__(self, script: Iterable[object]) -> None:
        self.script = list(script)
        self.sent = 0

    def __aiter__(self) -> AsyncIterator[EventPacket]:
        return self._run()

    async def _run(self) -> AsyncIterator[EventPacket]:
        for step in self.script:
            if step is EOF:
                return
            if isinstance(step, PAUSE):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, FAIL):
                raise step.error
            else:
                self.sent += 1
                yield step
                await asyncio.sleep(0)


@dataclass
class ListSink:
    """A sink that keeps every label in a list (plugins.Sink protocol)."""

    labels: list[LabelEvent] = field(default_factory=list)
    closed: bool = False

    def write(self, label: LabelEvent) -> None:
        self.labels.append(label)

    def close(self) -> None:
        self.closed = True


@dataclass(slots=True)
class FakeFeatures:
    stream_id: str
    sample_id: int
    t_start: int
    t_end: int
    counts: np.ndarray
    label: str | None = None
    modality: str = ""
    seq: int = -1
    sent_ns: int = 0
    received_ns: int = 0


class FakeReservoir:
    """Stands in for ``streamlsm.reservoir.Reservoir``: counts events per (x mod n_features).

    Same contract: one object holds every stream's state, reset at ``sample_begin``, features
    emitted at ``sample_end``; ``encode`` of whole samples equals feeding them as packets.
    """

    def __init__(self, n_features: int = 32, modality: str = "vision") -> None:
        self.n_features = n_features
        self.modality = modality
        self._acc: dict[str, tuple[int, np.ndarray]] = {}

    def _counts(self, events: np.ndarray) -> np.ndarray:
        ch = events["x"].astype(np.int64)
        return np.bincount(ch % self.n_features, minlength=self.n_features).astype(np.float32)

    def release(self, *keys) -> None:
        for key in keys:
            self._acc.pop(key, None)

    @property
    def streams(self) -> list[str]:
        return list(dict.fromkeys(k[0] if isinstance(k, tuple) else k for k in self._acc))

    def feed(self, packets: EventPacket | Sequence[EventPacket], received_ns=0, *,
             slots=None, keys=None) -> list[FakeFeatures]:
        out = []
        packets = [packets] if isinstance(packets, EventPacket) else list(packets)
        for i, pkt in enumerate(packets):
            slot = slots[i] if slots is not None else pkt.stream_id
            if pkt.sample_begin:
                self._acc[slot] = (pkt.t_start, np.zeros(self.n_features, np.float32))
            if slot not in self._acc:
                raise ReservoirError(f"stream {pkt.stream_id}: packet before any sample_begin")
            t0, acc = self._acc[slot]
            acc += self._counts(pkt.events)
            if pkt.sample_end:
                out.append(FakeFeatures(pkt.stream_id, pkt.sample_id, t0, pkt.t_end, acc.copy(),
                                        pkt.label, pkt.modality or self.modality, pkt.seq,
                                        pkt.sent_ns, received_ns if isinstance(received_ns, int) else received_ns[i]))
        return out

    def encode(self, samples: Sequence[np.ndarray], durations_us=None, sample_ids=None) -> np.ndarray:
        return np.stack([self._counts(ev) for ev in samples]) if len(samples) else \
            np.zeros((0, self.n_features), np.float32)


def make_bundle(n_features: int = 32, dim: int = 16, modalities: Sequence[str] = ("vision",),
                classes: Sequence[str] = tuple("0123456789"), seed: int = 0,
                reservoirs: dict | None = None) -> Bundle:
    """A bundle of random one-layer projection heads (numpy only) for tests.

    ``reservoirs`` maps a modality to its ReservoirConfig (or dict) so the real pipeline can run it.
    """
    rng = np.random.default_rng(seed)
    heads = {m: ProjectionHead([rng.normal(size=(n_features, dim)).astype(np.float32)],
                               [np.zeros(dim, np.float32)], np.zeros(n_features), np.ones(n_features))
             for m in modalities}
    return Bundle(heads=heads, classes=list(classes), seed=seed, reservoirs=dict(reservoirs or {}))



def daemon_test_config(folder: str | Path, n_features: int = 32, dim: int = 16, **sections: Any) -> dict:
    """A daemon config (raw dict) for tests, all under ``folder``: a random bundle saved there (make_bundle),
    prototypes in protos.json, labels PUB and control REP on 127.0.0.1 random ports, support files
    allowed from ``folder``/support (made), stats every 0.05 s. Each keyword updates that section
    (a dict) or sets it (anything else, e.g. the ``inputs`` list).
    """
    folder = Path(folder)
    make_bundle(n_features, dim).save(folder / "bundle")
    (folder / "support").mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        "model": {"bundle": str(folder / "bundle"), "prototypes": str(folder / "protos.json")},
        "outputs": {"labels": "tcp://127.0.0.1:*"},
        "control": {"endpoint": "tcp://127.0.0.1:*", "allowed_dirs": [str(folder / "support")]},
        "limits": {"stats_every_s": 0.05}}
    for key, val in sections.items():
        if isinstance(val, dict):
            raw.setdefault(key, {}).update(val)
        else:
            raw[key] = val
    return raw


async def daemon_ctl(daemon, req: object, raw: bytes | None = None, timeout: float = 10.0) -> object:
    """One request to an in-process daemon's control socket (asyncio REQ): the decoded reply.

    ``raw`` sends those bytes instead of the packed ``req`` (for malformed requests).
    """
    sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.control_endpoint)
    try:
        await sock.send(raw if raw is not None else wire.pack_control(req))
        return wire.unpack_control(await asyncio.wait_for(sock.recv(), timeout))
    finally:
        sock.close(0)


def write_support(path: str | Path, samples: Sequence[tuple[np.ndarray, str | None]]) -> Path:
    """Save (events, label) samples as a support file (``events`` concatenated, ``lengths``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, events=np.concatenate([e for e, _ in samples]), lengths=np.array([len(e) for e, _ in samples]))
    return path


async def register_classes(daemon, folder: str | Path, samples: Sequence[tuple[np.ndarray, str]]) -> None:
    """Register each class of ``samples`` with a running daemon (support file ``folder``/c<label>.npz)."""
    for lab in sorted({lab for _, lab in samples}):
        path = write_support(Path(folder) / f"c{lab}.npz", [s for s in samples if s[1] == lab])
        reply = await daemon_ctl(daemon, {"cmd": "register", "label": lab, "path": str(path)})
        if not reply.get("ok"):
            raise ControlError(f"register {lab!r}: {reply.get('error')}")
