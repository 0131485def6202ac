"""Runtime: queue policies, drain on stop, label PUB over loopback, control commands, restart keeps classes."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio

from streamlsm.config import from_dict
from streamlsm.daemon.config import DaemonConfig, SinkConfig
from streamlsm.daemon.daemon import Daemon
from streamlsm.daemon.sinks import make_sinks
from streamlsm.errors import ConfigError, ModelError
from streamlsm.events import DVS_DTYPE
from streamlsm.net import wire
from streamlsm.net.transport import Receiver
from streamlsm.pipeline import Pipeline
from streamlsm.testing import (
    EOF,
    FAIL,
    PAUSE,
    FakeReservoir,
    HandshakeWatch,
    ListSink,
    MemorySource,
    daemon_ctl,
    daemon_test_config,
    make_bundle,
    packets_from_samples,
    random_samples,
    register_classes,
    write_support,
)

F, D = 32, 16
pytestmark = pytest.mark.timeout(60)


def _factory(m):
    return FakeReservoir(F, m)


def _config(tmp_path, **over):
    return from_dict(DaemonConfig, daemon_test_config(tmp_path, F, D, **over))


@pytest.mark.asyncio
async def test_memory_source_labels_reach_sinks_and_subscriber_once_each(tmp_path):
    cfg = _config(tmp_path)
    train = random_samples(12, DVS_DTYPE, seed=1)
    test = random_samples(9, DVS_DTYPE, seed=2)
    pkts = packets_from_samples(test, "cam", packet_us=5_000)
    gate = asyncio.Event()

    async def gated():
        await gate.wait()
        async for p in MemorySource([*pkts[:10], PAUSE(0.01), *pkts[10:], EOF, pkts[0]]):
            yield p

    sink = ListSink()
    daemon = Daemon(cfg, sources=[gated()], sinks=[sink], reservoir_factory=_factory)
    task = asyncio.create_task(daemon.run())
    await daemon.started()
    await register_classes(daemon, tmp_path / "support", train)
    watch = HandshakeWatch()
    async with Receiver(daemon.label_endpoint, "sub", topics=(b"lb/",), setup=watch) as sub:
        await asyncio.to_thread(watch.wait)  # SUB joins before labels flow
        gate.set()
        got = []
        while len(got) < len(test):
            msg = await sub.recv(timeout=10)
            assert msg is not None, "labels did not arrive"
            got.append(msg)
    await task
    assert sink.closed and len(sink.labels) == len(test)
    assert [lab.sample_id for lab in got] == list(range(len(test)))
    ref = Pipeline(daemon.bundle, daemon.matcher, reservoir_factory=_factory)(pkts)
    assert [lab.label for lab in got] == [lab.label for lab in ref]
    assert all(lab.published_ns >= lab.received_ns > 0 for lab in got)
    st = daemon.status()
    assert st["received"] == len(pkts) and st["dropped"] == 0 and st["labels"] == len(test)


def _slow_factory(delay_s: float, before=None):
    """Fake reservoirs whose feed sleeps ``delay_s`` (and calls ``before()`` first)."""
    def make(m):
        res = FakeReservoir(F, m)
        feed = res.feed

        def slow_feed(p, *args, **kw):
            if before is not None:
                before()
            time.sleep(delay_s)
            return feed(p, *args, **kw)
        res.feed = slow_feed
        return res
    return make


@pytest.mark.asyncio
async def test_drop_oldest_counts_every_drop(tmp_path):
    cfg = _config(tmp_path, limits={"queue": 4, "overflow": "drop_oldest", "batch": 1})

    pkts = packets_from_samples(random_samples(10, DVS_DTYPE), "s", packet_us=2_000)
    daemon = Daemon(cfg, sources=[MemorySource(pkts)], sinks=[], reservoir_factory=_slow_factory(0.002))
    daemon.matcher.add("0", np.ones(D))
    await daemon.run()
    st = daemon.status()
    assert st["dropped"] > 0
    assert st["received"] == len(pkts)
    assert st["pipeline"]["packets"] + st["dropped"] == len(pkts)
    assert st["pipeline"]["seq_gaps"] > 0  # broken samples were discarded, not mislabelled


@pytest.mark.asyncio
async def test_stop_drains_what_is_queued_and_failures_surface(tmp_path):
    cfg = _config(tmp_path)
    pkts = packets_from_samples(random_samples(5, DVS_DTYPE), "s", packet_us=5_000)
    sink = ListSink()
    daemon = Daemon(cfg, sources=[MemorySource([*pkts, PAUSE(30)])], sinks=[sink], reservoir_factory=_factory)
    daemon.matcher.add("0", np.ones(D))
    task = asyncio.create_task(daemon.run())
    while daemon.counters["received"] < len(pkts):
        await asyncio.sleep(0.01)
    daemon.request_stop()
    await asyncio.wait_for(task, 10)
    assert len(sink.labels) == 5

    cfg2 = _config(tmp_path / "b")
    bad = Daemon(cfg2, sources=[MemorySource([*pkts, PAUSE(0.1), FAIL(RuntimeError("sensor unplugged"))])],
                 sinks=[ListSink()], reservoir_factory=_factory)
    bad.matcher.add("0", np.ones(D))
    with pytest.raises(RuntimeError, match="unplugged"):
        await asyncio.wait_for(bad.run(), 10)
    assert bad.sinks[0].closed and len(bad.sinks[0].labels) == 5


@pytest.mark.asyncio
async def test_control_commands_and_restart_keeps_registered_classes(tmp_path):
    cfg = _config(tmp_path)
    train = random_samples(6, DVS_DTYPE, seed=3)
    daemon = Daemon(cfg, sinks=[], reservoir_factory=_factory, stop_at_eof=False)
    task = asyncio.create_task(daemon.run())
    await daemon.started()
    await register_classes(daemon, tmp_path / "support", train)
    st = await daemon_ctl(daemon, {"cmd": "status"})
    assert st["classes"] == ["0", "1", "2"] and st["prototype_version"] == 3
    outside = tmp_path / "elsewhere.npz"
    np.savez(outside, embeddings=np.ones((1, D)))
    reply = await daemon_ctl(daemon, {"cmd": "register", "label": "x", "path": str(outside)})
    assert not reply["ok"] and "outside" in reply["error"]
    sneaky = str(tmp_path / "support" / ".." / "elsewhere.npz")
    assert not (await daemon_ctl(daemon, {"cmd": "register", "label": "x", "path": sneaky}))["ok"]
    assert not (await daemon_ctl(daemon, {"cmd": "nope"}))["ok"]
    assert not (await daemon_ctl(daemon, ["not", "a", "map"]))["ok"]
    support = str(write_support(tmp_path / "support" / "one.npz", train[:1]))
    assert not (await daemon_ctl(daemon, {"cmd": "register", "label": 5, "path": support}))["ok"]
    assert not (await daemon_ctl(daemon, {"cmd": "register", "label": "q", "path": str(tmp_path / "support"),
                                          "dataset": "nmnist", "limit": "many"}))["ok"]
    raw = zmq.asyncio.Context.instance().socket(zmq.REQ)  # a request in two parts
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(daemon.control_endpoint)
    try:
        await raw.send_multipart([wire.pack_control({"cmd": "status"}), b"extra"])
        reply = wire.unpack_control(await asyncio.wait_for(raw.recv(), 10))
    finally:
        raw.close(0)
    assert not reply["ok"] and "one message part" in reply["error"]
    assert (await daemon_ctl(daemon, {"cmd": "status"}))["ok"]  # the control loop still serves
    assert daemon.counters["control_errors"] >= 7
    assert (await daemon_ctl(daemon, {"cmd": "remove", "label": "1"}))["classes"] == ["0", "2"]
    assert not (await daemon_ctl(daemon, {"cmd": "remove", "label": "1"}))["ok"]
    snap = await daemon_ctl(daemon, {"cmd": "snapshot"})
    assert snap["ok"] and snap["path"] == str(cfg.model.prototypes)
    reload = await daemon_ctl(daemon, {"cmd": "reload"})
    assert reload["ok"] and reload["bundle_hash"] == daemon.bundle.hash
    daemon.request_stop()
    await task
    # a new daemon on the same checkpoint has the same classes (also after an unclean kill: every
    # change was checkpointed when it was made)
    again = Daemon(cfg, sinks=[], reservoir_factory=_factory)
    assert again.matcher.labels == ["0", "2"]
    np.testing.assert_array_equal(again.matcher.prototypes, daemon.matcher.prototypes)


@pytest.mark.asyncio
async def test_a_failing_sink_is_counted_and_labelling_goes_on(tmp_path, caplog):
    class Broken:
        def write(self, label):
            raise OSError(28, "No space left on device")

        def observe(self, status):
            raise KeyError("nope")

        def close(self):
            pass

    cfg = _config(tmp_path)
    pkts = packets_from_samples(random_samples(4, DVS_DTYPE), "s", packet_us=5_000)
    good = ListSink()
    daemon = Daemon(cfg, sources=[MemorySource([*pkts, PAUSE(0.2)])], sinks=[Broken(), good],
                    reservoir_factory=_factory)
    daemon.matcher.add("0", np.ones(D))
    await asyncio.wait_for(daemon.run(), 30)
    st = daemon.status()
    assert len(good.labels) == 4 and st["labels"] == 4
    assert st["sink_errors"] >= 4 and st["last_sink_error"].startswith("Broken: ")
    warned = [r for r in caplog.records if r.name == "streamlsm.daemon" and "sink failed" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"  # logged once per sink


def test_a_failing_periodic_checkpoint_is_counted_and_retried(tmp_path, caplog):
    from streamlsm.errors import CheckpointError

    daemon = Daemon(_config(tmp_path), sources=[], sinks=[], reservoir_factory=_factory)
    daemon.matcher.add("0", np.ones(D))
    save = daemon.matcher.save

    def full(path):
        raise CheckpointError(str(path), "No space left on device")

    daemon.matcher.save = full
    daemon._checkpoint_quietly()  # the observer task's periodic save: must not raise
    assert daemon.counters["checkpoint_errors"] == 1 and daemon.status()["checkpoints"] == 0
    assert any(r.levelname == "WARNING" and "checkpoint failed" in r.getMessage() for r in caplog.records)
    daemon.matcher.save = save
    daemon._checkpoint_quietly()  # retried: the change is still unsaved
    assert daemon.status()["checkpoints"] == 1 and daemon.status()["checkpoint_errors"] == 1


def test_sink_construction_errors_name_the_sink(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_sinks([SinkConfig("jsonl", {"path": str(tmp_path / "a.jsonl"), "bogus": 1})])
    assert err.value.key == "outputs.sinks[0].options"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as err:  # OSError: a directory under a file
        make_sinks([SinkConfig("jsonl", {"path": str(tmp_path / "b.jsonl")}),
                    SinkConfig("jsonl", {"path": str(blocker / "sub" / "x.jsonl")})])
    assert err.value.key == "outputs.sinks[1].options" and "jsonl" in str(err.value)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        from_dict(DaemonConfig, {"model": {"bundle": "b", "prototypes": "p"},
                                 "limits": {"overflow": "spill"}})
    assert err.value.key == "limits.overflow"
    with pytest.raises(ConfigError) as err:
        from_dict(DaemonConfig, {"model": {"bundle": "b"}})
    assert err.value.key == "model.prototypes"


@pytest.mark.asyncio
async def test_sinks_from_config_jsonl_console_relay_prometheus(tmp_path, capsys):
    import json
    import urllib.request

    sinks = [{"name": "jsonl", "options": {"path": str(tmp_path / "labels.jsonl")}},
             {"name": "console", "options": {"unseen": ["2"], "every_s": 0.0}},
             {"name": "relay", "options": {"endpoint": "tcp://127.0.0.1:*"}},
             {"name": "prometheus", "options": {"port": 0}}]
    cfg = _config(tmp_path, outputs={"sinks": sinks})
    samples = random_samples(6, DVS_DTYPE, seed=4)
    pkts = packets_from_samples(samples, "s", packet_us=5_000)
    gate, read = asyncio.Event(), asyncio.Event()

    async def gated():
        await gate.wait()
        for p in pkts:
            yield p
        await read.wait()  # the daemon stays up until the metrics are read

    daemon = Daemon(cfg, sources=[gated()], reservoir_factory=_factory)
    jsonl, console, relay, prom = daemon.sinks
    for lab in ("0", "1", "2"):
        daemon.matcher.add(lab, daemon.pipeline.embed_support("vision", [e for e, t in samples if t == lab]))
    task = asyncio.create_task(daemon.run())
    watch = HandshakeWatch()
    async with Receiver(relay.endpoint, "sub", setup=watch) as sub:
        await asyncio.to_thread(watch.wait)
        gate.set()
        relayed = [await sub.recv(timeout=30) for _ in samples]
    want = [f"streamlsm_packets_total {float(len(pkts))}", 'streamlsm_labels_total{modality="vision"} 6.0',
            "streamlsm_label_latency_seconds_count 6.0", "streamlsm_real_time_factor"]
    url = f"http://127.0.0.1:{prom.port}/metrics"
    for _ in range(600):  # the stats observer runs every 0.05 s: poll until it has seen every label
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        if all(w in metrics for w in want):
            break
        await asyncio.sleep(0.05)
    read.set()
    await task
    lines = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [x["sample_id"] for x in lines] == list(range(6)) == [lab.sample_id for lab in relayed]
    assert lines[0]["bundle_hash"] == daemon.bundle.hash
    s = console.tally.summary()
    assert s["labels"] == 6 and s["unseen_n"] == 2 and s["seen_n"] == 4
    assert "unseen" in capsys.readouterr().out
    assert [w for w in want if w not in metrics] == []


@pytest.mark.asyncio
async def test_reload_mid_stream_loses_no_sample(tmp_path):
    cfg = _config(tmp_path, control={"allowed_dirs": [str(tmp_path)]})
    make_bundle(F, D, seed=5).save(tmp_path / "bundle2")
    samples = random_samples(10, DVS_DTYPE, seed=6)
    pkts = packets_from_samples(samples, "s", packet_us=5_000)
    half = len(pkts) // 2 + 3  # mid-sample
    sink = ListSink()
    reloaded = asyncio.Event()

    async def source():
        for p in pkts[:half]:
            yield p
        await reloaded.wait()
        for p in pkts[half:]:
            yield p

    daemon = Daemon(cfg, sources=[source()], sinks=[sink], reservoir_factory=_factory)
    daemon.matcher.add("0", np.ones(D))
    task = asyncio.create_task(daemon.run())
    while daemon.counters["received"] < half:
        await asyncio.sleep(0.01)
    old = daemon.bundle.hash
    reply = await daemon_ctl(daemon, {"cmd": "reload", "path": str(tmp_path / "bundle2")})
    assert reply["ok"] and reply["bundle_hash"] != old
    reloaded.set()
    await task
    assert [lab.sample_id for lab in sink.labels] == list(range(10))
    hashes = [lab.bundle_hash for lab in sink.labels]
    assert hashes[0] == old and hashes[-1] == reply["bundle_hash"]


def test_sinks_are_closed_when_start_up_fails(tmp_path):
    cfg = _config(tmp_path, control={"endpoint": "tcp://0.0.0.0:*"})  # the bind rule refuses it
    sink = ListSink()
    daemon = Daemon(cfg, sources=[], sinks=[sink], reservoir_factory=_factory)
    with pytest.raises(ConfigError) as info:
        asyncio.run(daemon.run())
    assert info.value.key == "control.endpoint"
    assert sink.closed, "a daemon that failed to start left its sinks open"


def test_a_bad_bundle_opens_no_sinks(tmp_path):
    raw = daemon_test_config(tmp_path, F, D, outputs={"sinks": [
        {"name": "jsonl", "options": {"path": str(tmp_path / "out" / "labels.jsonl")}}]})
    raw["model"]["bundle"] = str(tmp_path / "no-such-bundle")
    with pytest.raises(ModelError) as info:
        Daemon(from_dict(DaemonConfig, raw), reservoir_factory=_factory)
    assert "no-such-bundle" in str(info.value)
    assert not (tmp_path / "out").exists(), "a sink was opened (and left open) before the bundle failed"


def test_jsonl_sink_flushes_on_time_not_only_every_n_labels(tmp_path):
    """Issue 11, minor list: with flush_every = 64 a kill -9 left labels.jsonl empty though 11 labels
    went out; the daemon's periodic observe() now flushes what is older than flush_s."""
    from streamlsm.events import LabelEvent
    from streamlsm.plugins import SINK_GROUP, load

    sink = load(SINK_GROUP, "jsonl")(path=str(tmp_path / "l.jsonl"), flush_every=64, flush_s=0.0)
    lab = LabelEvent(stream_id="s", seq=0, t_start=0, t_end=1, label="a", score=0.5, topk=[("a", 0.5)],
                     margin=0.1)
    for _ in range(11):
        sink.write(lab)
    sink.observe({})
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 11  # on disk before any close
    bad = LabelEvent(stream_id="s", seq=1, t_start=0, t_end=1, label="a", score=float("nan"), topk=[],
                     margin=0.0)
    with pytest.raises(ValueError):  # never 'NaN' in the file (not JSON): the daemon counts a sink error
        sink.write(bad)
    sink.close()
    assert all(json.loads(x) for x in (tmp_path / "l.jsonl").read_text().splitlines())


def test_start_removes_checkpoint_orphans_of_a_kill_9(tmp_path):
    """Issue 11, minor list: each kill -9 during a checkpoint could leave prototypes.*.npz(.tmp)."""
    from streamlsm.daemon.served import sweep_checkpoint_orphans
    from streamlsm.model.prototypes import PrototypeMatcher

    path = tmp_path / "protos.json"
    m = PrototypeMatcher(4)
    m.add("a", np.ones(4))
    m.save(path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    for name in ("protos.0123456789ab.npz", "protos.0123456789ac.npz.tmp", "protos.json.01234567.tmp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "other.npz").write_bytes(b"x")
    assert sweep_checkpoint_orphans(path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["other.npz"])
    assert PrototypeMatcher.load(path).labels == ["a"]


@pytest.mark.asyncio
async def test_register_dataset_refuses_a_symlink_leading_outside_allowed_dirs(tmp_path):
    """Issue 11, minor list: `register --dataset` followed symlinks inside the data set root."""
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"\0" * 10)
    root = tmp_path / "support" / "ds" / "Train" / "0"
    root.mkdir(parents=True)
    (root / "00001.bin").symlink_to(secret)
    daemon = Daemon(_config(tmp_path), reservoir_factory=_factory)
    task = asyncio.create_task(daemon.run())
    await daemon.started()
    try:
        reply = await daemon_ctl(daemon, {"cmd": "register", "label": "0", "dataset": "nmnist",
                                          "path": str(tmp_path / "support" / "ds")})
        assert reply["ok"] is False and "a link in the data set" in reply["error"]
        assert "lies outside control.allowed_dirs" in reply["error"]
    finally:
        daemon.request_stop()
        await task


@pytest.mark.asyncio
async def test_packet_buffer_bounds_bytes_too():
    """Issue 11, item 4 / budgets: the queue is bounded in event bytes (limits.queue_mb), not only in
    packets: 10,000 queued packets of 1M events were ~13 GB."""
    from streamlsm.daemon.buffer import PacketBuffer
    from streamlsm.events import EventPacket

    def pkt(i, n):
        return EventPacket("s", i, 0, 1, np.zeros(n, DVS_DTYPE))

    buf = PacketBuffer(100, "drop_oldest", limit_bytes=1000)
    await buf.put([pkt(i, 20) for i in range(5)], 0)  # 13 bytes per DVS event: 260 each
    assert len(buf) == 3 and buf.dropped == 2 and buf.nbytes == 780
    await buf.put([pkt(9, 100)], 0)  # one packet larger than the bound is still taken alone
    assert [p.seq for p, _ in buf.items] == [9] and buf.nbytes == 1300
    assert [p.seq for p, _ in await buf.take(10)] == [9] and buf.nbytes == 0
    block = PacketBuffer(100, "block", limit_bytes=600)
    await block.put([pkt(0, 20), pkt(1, 20)], 0)
    waiter = asyncio.create_task(block.put([pkt(2, 20)], 0))
    await asyncio.sleep(0.05)
    assert not waiter.done() and len(block) == 2  # waits for room
    await block.take(1)
    await asyncio.wait_for(waiter, 5)
    assert [p.seq for p, _ in block.items] == [1, 2]
@pytest.mark.asyncio
async def test_packet_buffer_is_fair_between_streams():
    """A burst on one stream never makes another wait behind it: take() serves the streams in turn,
    each stream keeping its own order; drop_oldest drops from the stream with the most queued."""
    from streamlsm.daemon.buffer import PacketBuffer
    from streamlsm.events import EventPacket

    def pkt(sid, i):
        return EventPacket(sid, i, 0, 1, np.zeros(1, DVS_DTYPE))

    buf = PacketBuffer(10_000, "block")
    await buf.put([pkt("burst", i) for i in range(1000)], 0)
    await buf.put([pkt("good", 0), pkt("good", 1)], 0)
    first = [(p.stream_id, p.seq) for p, _ in await buf.take(8)]
    assert first == [("burst", 0), ("good", 0), ("burst", 1), ("good", 1), ("burst", 2), ("burst", 3),
                     ("burst", 4), ("burst", 5)]
    rest = [p.seq for p, _ in await buf.take(10_000)]
    assert rest == list(range(6, 1000)) and len(buf) == 0 and buf.nbytes == 0  # the burst's order kept
    # a flood of new stream ids (one packet each) queued ahead of a stream served before: that
    # stream's packets come first, then the new streams in turn
    await buf.put([pkt(f"new{i}", 0) for i in range(500)] + [pkt("good", 2), pkt("good", 3)], 0)
    turn = [(p.stream_id, p.seq) for p, _ in await buf.take(4)]
    assert turn == [("good", 2), ("good", 3), ("new0", 0), ("new1", 0)]
    assert [p.stream_id for p, _ in await buf.take(1000)] == [f"new{i}" for i in range(2, 500)]
    drop = PacketBuffer(4, "drop_oldest")
    await drop.put([pkt("burst", i) for i in range(4)] + [pkt("quiet", 0)], 0)
    assert drop.dropped == 1 and [(p.stream_id, p.seq) for p, _ in drop.items] == [
        ("burst", 1), ("burst", 2), ("burst", 3), ("quiet", 0)]


@pytest.mark.asyncio
async def test_calibrated_bundle_few_shot_register_and_error_target(tmp_path):
    from streamlsm.model.bundle import Bundle
    from streamlsm.model.calibration import Calibration

    cfg = _config(tmp_path, model={"error_target": 0.2})
    b = Bundle.load(cfg.model.bundle)
    conf, correct = (0.95,) * 100 + (0.5,) * 100, (True,) * 100 + (True, False) * 50
    b.extra["calibration"] = Calibration(((1, 0.25),), 0.1, conf, correct, order_confidence=conf,
                                         order_correct=correct).to_dict()
    b.save(cfg.model.bundle)
    daemon = Daemon(cfg, sinks=[], reservoir_factory=_factory, stop_at_eof=False)
    assert daemon.matcher.calibration["error_target"] == 0.2  # configurable, applied at start
    task = asyncio.create_task(daemon.run())
    await daemon.started()
    rng = np.random.default_rng(0)
    seen = daemon.bundle.seen_classes[0]
    for lab, n in ((seen, 20), ("new", 5)):  # a trained class and a new one enrolled from 5 embeddings
        np.savez(tmp_path / "support" / f"{lab}.npz", embeddings=rng.normal(size=(n, D)))
        r = await daemon_ctl(daemon, {"cmd": "register", "label": lab, "path": str(tmp_path / "support" / f"{lab}.npz")})
        assert r["ok"] and r["enrolled"] == n and r["rule"] == "mean", r
    assert r["calibration"]["offset"] == 0.25 and r["calibration"]["seen"] == [seen]  # updated on register
    np.savez(tmp_path / "support" / "more.npz", embeddings=rng.normal(size=(3, D)))
    r = await daemon_ctl(daemon, {"cmd": "register", "label": "new", "path": str(tmp_path / "support" / "more.npz"),
                                  "rule": "ema"})
    assert r["ok"] and r["enrolled"] == 8 and r["rule"] == "ema"
    bad = await daemon_ctl(daemon, {"cmd": "register", "label": "new", "rule": "median",
                                    "path": str(tmp_path / "support" / "more.npz")})
    assert not bad["ok"] and "rule" in bad["error"]
    m = daemon.matcher.match(rng.normal(size=D), k=len(daemon.matcher.labels))
    z = np.array([s for _, s in m.topk]) / 0.1  # the bundle's temperature, over every class
    assert m.probability == pytest.approx(1.0 / np.exp(z - z.max()).sum(), abs=1e-6)
    daemon.request_stop()
    await task


@pytest.mark.asyncio
@pytest.mark.parametrize("compute, inline_ms, delay, inline_expected", [
    ("auto", 100.0, 0.0, "all"), ("auto", 1.0, 0.005, "first only"), ("thread", 100.0, 0.0, "none"),
    ("inline", 1.0, 0.005, "all")])
async def test_compute_auto_runs_quick_small_calls_inline_and_slow_ones_in_the_thread(
        tmp_path, compute, inline_ms, delay, inline_expected):
    import threading

    cfg = _config(tmp_path, limits={"compute": compute, "batch": 4, "inline_ms": inline_ms})
    where: list[bool] = []
    pkts = packets_from_samples(random_samples(4, DVS_DTYPE), "s", packet_us=5_000)
    daemon = Daemon(cfg, sources=[MemorySource(pkts)], sinks=[], reservoir_factory=_slow_factory(
        delay, lambda: where.append(threading.current_thread() is threading.main_thread())))
    daemon.matcher.add("0", np.ones(D))
    await daemon.run()
    calls = where  # (the fake reservoir names no layout: no warm-up feed)
    assert len(calls) >= 4 and daemon.status()["pipeline"]["labels"] == 4
    got = "all" if all(calls) else "none" if not any(calls) else "first only" if calls[0] and not any(calls[1:]) \
        else f"mixed {calls}"
    assert got == inline_expected
