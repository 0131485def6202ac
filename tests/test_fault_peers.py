"""Slow and failing peers: a stalled label subscriber does not stall the daemon (drops counted), and
a checkpoint that cannot be written (full disk) is an error reply, never a dead daemon or a lost
previous checkpoint.
"""

from __future__ import annotations

import asyncio
import errno

import numpy as np
import pytest
import zmq
import zmq.asyncio

from streamlsm.config import from_dict
from streamlsm.events import DVS_DTYPE
from streamlsm.readout.matcher import PrototypeMatcher
from streamlsm.runtime import Daemon, DaemonConfig
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


@pytest.mark.asyncio
async def test_stalled_subscriber_does_not_stall_the_daemon(tmp_path):
    cfg = _config(tmp_path, hwm=5)
    samples = random_samples(400, DVS_DTYPE, seed=2, events=20, duration_us=4_000)
    pkts = packets_from_samples(samples, "cam", packet_us=2_000)
    gate = asyncio.Event()

    async def source():
        await gate.wait()
        async for p in MemorySource([*pkts, EOF]):
            yield p

    sink = ListSink()
    daemon = Daemon(cfg, sources=[source()], sinks=[sink], reservoir_factory=_factory)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    await daemon_ctl(daemon, {"cmd": "register", "label": "a",
                              "path": str(write_support(tmp_path / "support" / "a.npz", samples[:3]))})
    stalled = zmq.asyncio.Context.instance().socket(zmq.SUB)
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.RCVBUF, 1024)
    stalled.subscribe(b"lb/")
    stalled.connect(daemon.label_endpoint)
    await asyncio.sleep(0.3)  # subscribed; from here on it never reads
    gate.set()
    await asyncio.wait_for(task, 60)  # the daemon finished its input: it was never stalled
    st = daemon.status()
    stalled.close(0)
    assert len(sink.labels) == len(samples)  # every label reached the sinks
    assert st["label_drops"] > 0  # what the stalled subscriber missed is counted
    assert st["labels"] + st["label_drops"] == len(samples)


@pytest.mark.asyncio
async def test_full_disk_on_checkpoint_is_an_error_reply_and_keeps_the_old_one(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    daemon = Daemon(cfg, reservoir_factory=_factory)
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
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
    monkeypatch.setattr("streamlsm.readout.matcher.np.savez", full_disk)  # the disk fills up
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
