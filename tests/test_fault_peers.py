"""Slow and failing peers: a stalled label subscriber stalls neither the daemon nor the other subscribers, and
a checkpoint that cannot be written (full disk) is an error reply, never a dead daemon or a lost
previous checkpoint.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio

from streamlsm.config import from_dict
from streamlsm.daemon.config import DaemonConfig
from streamlsm.daemon.daemon import Daemon
from streamlsm.events import DVS_DTYPE
from streamlsm.model.prototypes import PrototypeMatcher
from streamlsm.testing import (
    EOF,
    FakeReservoir,
    ListSink,
    MemorySource,
    daemon_ctl,
    daemon_test_config,
    packets_from_samples,
    random_samples,
    write_support,
)

F, D = 32, 16
pytestmark = pytest.mark.timeout(120)


def _factory(m):
    return FakeReservoir(F, m)


def _config(tmp_path, hwm=10_000):
    return from_dict(DaemonConfig, daemon_test_config(tmp_path, F, D, outputs={"hwm": hwm},
                                                      limits={"overflow": "block", "stats_every_s": 1.0}))


def _read_labels(endpoint: str, want: int, ready: threading.Event, out: list, timeout_s: float = 20) -> None:
    """A healthy subscriber (its own thread and context): reads labels until ``want`` or timeout."""
    from streamlsm.net import wire

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.subscribe(b"lb/")
    sub.connect(endpoint)
    ready.set()
    end = time.monotonic() + timeout_s
    try:
        while len(out) < want and time.monotonic() < end:
            if sub.poll(200):
                out.append(wire.decode(sub.recv_multipart()))
    finally:
        sub.close(0)
        ctx.term()


@pytest.mark.asyncio
async def test_stalled_subscriber_costs_only_itself(tmp_path):
    """A subscriber that never reads loses labels at its own high-water mark; the daemon is never
    stalled and a healthy subscriber on the same socket gets every label (issue 11, item 3: with
    XPUB_NODROP one full peer made every label a drop for everyone)."""
    cfg = _config(tmp_path, hwm=1000)
    samples = random_samples(400, DVS_DTYPE, seed=2, events=20, duration_us=4_000)
    pkts = packets_from_samples(samples, "cam", packet_us=2_000)
    gate = asyncio.Event()

    async def source():
        await gate.wait()
        async for p in MemorySource([*pkts, EOF]):
            yield p
            await asyncio.sleep(0)

    sink = ListSink()
    daemon = Daemon(cfg, sources=[source()], sinks=[sink], reservoir_factory=_factory)
    task = asyncio.create_task(daemon.run())
    await daemon.started()
    healthy: list = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_labels, args=(daemon.label_endpoint, len(samples), ready, healthy))
    reader.start()
    ready.wait(10)
    await daemon_ctl(daemon, {"cmd": "register", "label": "a",
                              "path": str(write_support(tmp_path / "support" / "a.npz", samples[:3]))})
    stalled = zmq.asyncio.Context.instance().socket(zmq.SUB)
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.RCVBUF, 1024)
    stalled.subscribe(b"lb/")
    stalled.connect(daemon.label_endpoint)
    await asyncio.sleep(1.0)  # both subscribed; from here on the stalled one never reads
    gate.set()
    await asyncio.wait_for(task, 60)  # the daemon finished its input: it was never stalled
    await asyncio.to_thread(reader.join, 70)
    got_stalled = 0
    while await stalled.poll(50):
        await stalled.recv_multipart()
        got_stalled += 1
    stalled.close(0)
    assert len(sink.labels) == len(samples)  # every label reached the sinks
    missing = sorted(set(range(len(samples))) - {lab.seq for lab in healthy})
    assert not missing, f"the healthy subscriber missed seq {missing[:20]} (of {len(missing)}); status {daemon.status()}"
    assert [lab.seq for lab in healthy] == list(range(len(samples)))  # per-stream seq: gaps are visible
    assert not daemon._pub.nodrop  # per-peer drops (test_transport: a full peer costs only itself)
    assert got_stalled <= len(samples)


@pytest.mark.asyncio
async def test_full_disk_on_checkpoint_is_an_error_reply_and_keeps_the_old_one(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    daemon = Daemon(cfg, reservoir_factory=_factory)
    task = asyncio.create_task(daemon.run())
    await daemon.started()
    samples = random_samples(6, DVS_DTYPE, seed=3)
    a_path = str(write_support(tmp_path / "support" / "a.npz", samples[:3]))
    ok = await daemon_ctl(daemon, {"cmd": "register", "label": "a", "path": a_path})
    assert ok["ok"]
    before = (tmp_path / "protos.json").read_bytes()

    real_savez = np.savez

    def full_disk(fh, **arrays):
        real_savez(fh, **arrays)
        raise OSError(errno.ENOSPC, "No space left on device")

    b_path = str(write_support(tmp_path / "support" / "b.npz", samples[3:]))
    monkeypatch.setattr("streamlsm.model.prototypes.np.savez", full_disk)  # the disk fills up
    reply = await daemon_ctl(daemon, {"cmd": "register", "label": "b", "path": b_path})
    assert reply["ok"] is False and "No space" in reply["error"]
    snap = await daemon_ctl(daemon, {"cmd": "snapshot"})
    assert snap["ok"] is False
    monkeypatch.undo()
    assert not task.done()
    assert (tmp_path / "protos.json").read_bytes() == before
    assert PrototypeMatcher.load(tmp_path / "protos.json").labels == ["a"]  # the old one loads
    assert not list(tmp_path.glob("*.tmp"))  # no half-written files left behind
    st = await daemon_ctl(daemon, {"cmd": "status"})
    assert st["ok"] and st["control_errors"] == 2
    assert st["classes"] == ["a"]  # the failed change is rolled back: memory == what a restart loads
    daemon.request_stop()
    await task


def test_label_linger_is_configured_and_bounded(tmp_path):
    """The daemon's label PUB closes with outputs.linger_ms (linger 0 dropped the last labels still
    queued for a healthy subscriber when the daemon stopped at EOF); the value is bounded."""
    from streamlsm.errors import ConfigError

    cfg = from_dict(DaemonConfig, daemon_test_config(tmp_path, F, D, outputs={"linger_ms": 250}))
    assert cfg.outputs.linger_ms == 250
    with pytest.raises(ConfigError, match=r"outputs\.linger_ms"):
        from_dict(DaemonConfig, daemon_test_config(tmp_path, F, D, outputs={"linger_ms": -1}))
