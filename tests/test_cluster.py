"""Scale-out on Ray: a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster), the real
pipeline (a small reservoir), a gateway on loopback. Labels equal the single-machine daemon's; a
killed shard process, a stuck shard, a removed node: the streams get labels again and the lost
samples are counted exactly (sent = labelled + lost, per stream); a node that joins gets a shard.
Networks namespaces as separate hosts are not used (see docs/cluster.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import zmq

os.environ.setdefault("RAY_AUTH_TOKEN", os.urandom(16).hex())  # token auth on (RAY_ENV), no token file needed
for _k, _v in {"RAY_AUTH_MODE": "token", "RAY_timeout_ms_task_wait_for_death_info": "100"}.items():
    os.environ.setdefault(_k, _v)  # = streamlsm.cluster.RAY_ENV, before ray loads (test_cluster_env checks it)
ray = pytest.importorskip("ray", reason="ray is not installed (the 'cluster' extra: pip install streamlsm[cluster])")

from ray.cluster_utils import Cluster  # noqa: E402

from streamlsm.cluster import ray_env  # noqa: E402
from streamlsm.cluster.gateway import ClusterConfig, Gateway, rendezvous  # noqa: E402
from streamlsm.cluster.shard import Shard  # noqa: E402
from streamlsm.config import from_dict, to_dict  # noqa: E402
from streamlsm.daemon.config import DaemonConfig  # noqa: E402
from streamlsm.daemon.daemon import Daemon  # noqa: E402
from streamlsm.errors import ConfigError  # noqa: E402
from streamlsm.events import DVS_DTYPE  # noqa: E402
from streamlsm.net import wire  # noqa: E402
from streamlsm.reservoir import preset  # noqa: E402
from streamlsm.testing import ListSink, make_bundle, register_classes, write_support  # noqa: E402
from streamlsm.testing.procs import control_request, packets_from_samples, random_samples  # noqa: E402

pytestmark = pytest.mark.timeout(240)

SAMPLE_US, PACKET_US = 100_000, 10_000


def small_config(folder: Path, **limits) -> dict:
    """A daemon config on loopback with a real 64-neuron reservoir bundle (N-MNIST preset)."""
    cfg = to_dict(preset("nmnist"))
    cfg["n_neurons"] = 64
    make_bundle(64, 16, reservoirs={"vision": cfg}).save(folder / "bundle")
    (folder / "support").mkdir(parents=True, exist_ok=True)
    return {"model": {"bundle": str(folder / "bundle"), "prototypes": str(folder / "protos.json")},
            "inputs": [{"endpoint": "tcp://127.0.0.1:*", "kind": "pull", "bind": True}],
            "outputs": {"labels": "tcp://127.0.0.1:*"},
            "control": {"endpoint": "tcp://127.0.0.1:*", "allowed_dirs": [str(folder / "support")]},
            "limits": {"stats_every_s": 0.05, **limits}}


def support(folder: Path) -> list:
    return random_samples(6, DVS_DTYPE, 100_000, events=300, seed=99)


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each (the head runs the driver: the gateway and the registry)."""
    ray_env()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


class Run:
    """A gateway in a thread of its own (asyncio), a PUSH sender and a SUB label collector."""

    def __init__(self, raw: dict, cluster_cfg: ClusterConfig, shard_class=Shard) -> None:
        self.loop = asyncio.new_event_loop()
        self.gw: Gateway | None = None
        self.error: BaseException | None = None
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)

            async def go() -> None:
                try:
                    self.gw = Gateway(from_dict(DaemonConfig, raw), cluster_cfg, shard_class=shard_class)
                    task = asyncio.create_task(self.gw.run())
                    await self.gw.ready.wait()
                    started.set()
                    await task
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    self.error = exc
                    started.set()

            self.loop.run_until_complete(go())

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(180), "the gateway did not start"
        if self.error:
            raise self.error
        ctx = zmq.Context.instance()
        self.sub = ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.subscribe(wire.LABEL_TOPIC)
        self.sub.connect(self.gw.label_endpoint)
        self.push = ctx.socket(zmq.PUSH)
        self.push.linger = 2000
        self.push.connect(self.gw.input_endpoints[0])
        self.labels: list = []
        self._reading = True
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        time.sleep(0.3)  # the subscription reaches the PUB

    def _read(self) -> None:
        while self._reading:
            if self.sub.poll(20):
                self.labels.append((time.monotonic(), wire.decode(self.sub.recv_multipart())))

    def call(self, coro_fn, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    def ctl(self, req: dict) -> dict:
        return wire.unpack_control(self.call(lambda: self.gw.control(wire.pack_control(req))))

    def send(self, packets, pace_s: float = 0.0) -> None:
        """Send packets; with ``pace_s`` sleep that long after each packet of the first stream's
        time step (packets must be in time order across streams)."""
        last_t = None
        for p in packets:
            if pace_s and last_t is not None and p.t_start != last_t:
                time.sleep(pace_s)
            last_t = p.t_start
            self.push.send_multipart(wire.encode(p))

    def wait_labels(self, n: int, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        while len(self.labels) < n and time.monotonic() - t0 < timeout:
            time.sleep(0.02)

    def quiet(self, gap_s: float = 1.0, timeout: float = 60.0) -> None:
        """Wait until no label arrived for ``gap_s`` and the gateway has nothing in flight."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            busy = any(s.inflight or s.pending for s in self.gw.slots)
            last = self.labels[-1][0] if self.labels else 0
            if not busy and time.monotonic() - last > gap_s:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self._reading = False
        self.reader.join(5)
        self.loop.call_soon_threadsafe(self.gw.request_stop)
        self.thread.join(60)
        for s in self.gw.slots:
            ray.kill(s.actor, no_restart=True)
        ray.kill(self.gw.registry, no_restart=True)
        self.sub.close(0)
        self.push.close(0)


def interleaved(streams: list[str], samples: int, seed0: int = 0) -> tuple[list, dict]:
    """Packets of several streams in time order (one packet of each stream per 10 ms step)."""
    per = {sid: packets_from_samples(random_samples(samples, DVS_DTYPE, 100_000, events=300, seed=seed0 + i), sid, PACKET_US, duration_us=SAMPLE_US)
           for i, sid in enumerate(streams)}
    out = [p for step in zip(*per.values(), strict=True) for p in step]
    return out, {sid: samples for sid in streams}


def register_in_gateway(run: Run, folder: Path) -> None:
    samples = support(folder)
    for lab in sorted({lab for _, lab in samples}):
        path = write_support(folder / "support" / f"c{lab}.npz", [s for s in samples if s[1] == lab])
        reply = run.ctl({"cmd": "register", "label": lab, "path": str(path)})
        assert reply["ok"], reply


def daemon_labels(raw: dict, folder: Path, packets: list) -> list:
    """The single-machine daemon's labels for the same packets and the same registered classes."""
    raw = {**raw, "inputs": [], "outputs": {"labels": "tcp://127.0.0.1:*"},
           "model": {**raw["model"], "prototypes": str(folder / "daemon-protos.json")}}

    async def go() -> list:
        gate = asyncio.Event()

        async def gated():
            await gate.wait()
            for p in packets:
                yield p

        sink = ListSink()
        d = Daemon(from_dict(DaemonConfig, raw), sources=[gated()], sinks=[sink])
        task = asyncio.create_task(d.run())
        await d.ready.wait()
        await register_classes(d, folder / "support", support(folder))
        gate.set()
        await asyncio.wait_for(task, 120)
        return sink.labels

    return asyncio.run(go())


def test_cluster_env_is_what_the_product_sets():
    from streamlsm.cluster import RAY_ENV

    assert all(os.environ[k] == v for k, v in RAY_ENV.items())


def test_rendezvous_moves_only_to_or_from_the_changed_shard():
    ids = [f"cam{i}" for i in range(3000)]
    before = {s: rendezvous(s, ["a", "b", "c"]) for s in ids}
    assert min(Counter(before.values()).values()) > 3000 / 3 * 0.8
    after = {s: rendezvous(s, ["a", "b", "c", "d"]) for s in ids}
    moved = [s for s in ids if before[s] != after[s]]
    assert all(after[s] == "d" for s in moved) and 0.15 < len(moved) / len(ids) < 0.35
    gone = {s: rendezvous(s, ["a", "c", "d"]) for s in ids}
    assert all(gone[s] == after[s] for s in ids if after[s] != "b")
    assert rendezvous("x", []) is None


def test_cluster_refuses_what_shards_cannot_share(tmp_path):
    raw = small_config(tmp_path)
    for section, key, val in (("model", "update", "mean"), ("pipeline", "segment", "window")):
        bad = {**raw, section: {**raw.get(section, {}), key: val}}
        with pytest.raises(ConfigError) as info:
            Shard(bad, {}, "")
        assert info.value.key == f"{section}.{key}"


def test_labels_equal_the_daemons_and_register_reaches_every_shard(cluster, tmp_path):
    raw = small_config(tmp_path)
    raw["outputs"]["sinks"] = [{"name": "jsonl", "options": {"path": str(tmp_path / "labels.jsonl")}}]
    streams = [f"cam{i}" for i in range(6)]
    packets, _ = interleaved(streams, 3)
    run = Run(raw, ClusterConfig(shards=2, shard_cpus=0.5, batch_ms=2))
    try:
        assert len({s.node for s in run.gw.slots}) == 2  # one shard per node (0.5 CPU each... spread by Ray)
        register_in_gateway(run, tmp_path)
        version = run.gw.prototype_version
        assert version > 0
        run.send(packets)
        run.wait_labels(len(streams) * 3)
        run.quiet(0.5)
        st = control_request(run.gw.control_endpoint, {"cmd": "status"})  # over the REP socket, as `ctl`
        bad = control_request(run.gw.control_endpoint, {"cmd": "reload"})
    finally:
        run.close()
    got = sorted((lab.stream_id, lab.seq, lab.label, lab.sample_id) for _t, lab in run.labels)
    ref = daemon_labels(raw, tmp_path, packets)
    want = sorted((lab.stream_id, lab.seq, lab.label, lab.sample_id) for lab in ref)
    assert len(want) == 18 and got == want
    lines = [json.loads(ln) for ln in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert sorted((d["stream_id"], d["seq"], d["label"], d["sample_id"]) for d in lines) == want  # the config's sinks
    scores = {(lab.stream_id, lab.seq): lab.score for _t, lab in run.labels}
    assert all(abs(scores[(lab.stream_id, lab.seq)] - lab.score) < 1e-5 for lab in ref)
    assert {lab.prototype_version for _t, lab in run.labels} == {version}
    assert len({lab.label for _t, lab in run.labels}) > 1  # registered classes, not all "unknown"
    assert st["lost_samples"] == 0 and st["received"] == len(packets) and st["labels"] == 18
    assert sorted(st["classes"]) == ["0", "1", "2"]
    assert not bad["ok"] and "restart `streamlsm cluster serve`" in bad["error"]
    assert all(s["counters"].get("prototype_version") == version for s in st["shards"] if s["counters"])


class Sender(threading.Thread):
    """Paced real-time packets of ``streams`` (one 10 ms packet of each per 10 ms) in a thread."""

    def __init__(self, run: Run, streams: list[str], samples: int, seed0: int = 0) -> None:
        super().__init__(daemon=True)
        self.packets, self.sent = interleaved(streams, samples, seed0)
        self.stopping = False
        self.push = zmq.Context.instance().socket(zmq.PUSH)
        self.push.linger = 2000
        self.push.connect(run.gw.input_endpoints[0])
        self.start()

    def run(self) -> None:
        t0, last_t = time.monotonic(), None
        begun: Counter = Counter()
        for p in self.packets:
            if self.stopping and p.sample_begin and all(begun[s] == begun[p.stream_id] for s in self.sent):
                break  # every stream is between two samples
            if p.sample_begin:
                begun[p.stream_id] += 1
            if p.t_start != last_t:
                last_t = p.t_start
                delay = t0 + p.t_start / 1e6 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.push.send_multipart(wire.encode(p))
        self.sent = {sid: begun[sid] for sid in self.sent}

    def stop(self) -> None:
        """Stop at the next sample boundary of every stream (``sent`` then counts what was sent)."""
        self.stopping = True

    def finish(self) -> None:
        self.join(120)
        self.push.close()


def check_accounting(run: Run, sent: dict, st: dict) -> dict:
    """Every sample sent was labelled or counted lost, per stream; seq leaves a gap per lost one."""
    labelled = Counter(lab.stream_id for _t, lab in run.labels)
    lost = {sid: st["lost_by_stream"].get(sid, 0) for sid in sent}
    assert {sid: labelled[sid] + lost[sid] for sid in sent} == sent
    assert sum(lost.values()) == st["lost_samples"]
    seqs = defaultdict(list)
    for _t, lab in run.labels:
        seqs[lab.stream_id].append(lab.seq)
    for sid, got in seqs.items():
        assert len(set(got)) == len(got) and max(got) < sent[sid], (sid, got)
    return lost


def first_label_after(run: Run, sid: str, t: float) -> float | None:
    times = [at for at, lab in run.labels if lab.stream_id == sid and at > t]
    return min(times) - t if times else None


def test_killed_shard_process_streams_resume_and_losses_are_counted(cluster, tmp_path, caplog):
    caplog.set_level("INFO", logger="streamlsm.cluster")
    run = Run(small_config(tmp_path), ClusterConfig(shards=2, shard_cpus=0.5, batch_ms=2))
    try:
        streams = [f"k{i}" for i in range(8)]
        snd = Sender(run, streams, 25)
        time.sleep(0.45)
        victim = run.gw.slots[0]
        owned = [sid for sid, s in run.gw.streams.items() if s.owner == victim.index]
        assert owned, "the victim shard owns no stream"
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        snd.finish()
        run.quiet(1.0)
        t0 = time.monotonic()
        while victim.restarts < 1 and time.monotonic() - t0 < 60:  # Ray restarts it
            time.sleep(0.05)
        st = run.ctl({"cmd": "status"})
    finally:
        run.close()
    assert victim.restarts == 1 and victim.failures == 1 and victim.pid
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "streamlsm.cluster"]
    assert ("WARNING", f"shard {victim.name} failed") in [(lv, m[:len(f"shard {victim.name} failed")]) for lv, m in said]
    lost = check_accounting(run, snd.sent, st)
    assert st["lost_samples"] >= 1 and set(k for k, v in lost.items() if v) <= set(owned)
    for sid in owned:  # the killed shard's streams are labelled again (on the other shard)
        after = first_label_after(run, sid, killed_at)
        assert after is not None and after < 3.0, (sid, after)


def test_stuck_shard_is_killed_at_the_deadline_and_restarted(cluster, tmp_path):
    class StuckOnce(Shard):
        """Hangs on sample 2 of stream 'stuck' (a pipeline that stopped answering)."""

        def process(self, frames, received_ns, prototype_version=-1):
            for i in range(0, len(frames), 3):
                pkt = wire.decode(frames[i:i + 3])
                if pkt.stream_id == "stuck" and pkt.sample_id == 2:
                    time.sleep(30)
            return super().process(frames, received_ns, prototype_version)

    run = Run(small_config(tmp_path), ClusterConfig(shards=2, shard_cpus=0.5, batch_ms=2, call_deadline_s=1.0),
              shard_class=StuckOnce)
    try:
        snd = Sender(run, ["stuck", "a", "b", "c"], 12)
        snd.finish()
        run.quiet(1.5)
        st = run.ctl({"cmd": "status"})
    finally:
        run.close()
    assert st["deadline_kills"] == 1
    lost = check_accounting(run, snd.sent, st)
    assert lost["stuck"] >= 1
    assert max(lab.sample_id for _t, lab in run.labels if lab.stream_id == "stuck") == 11  # labelled again


def test_joined_node_gets_a_shard_and_a_removed_nodes_streams_move(cluster, tmp_path):
    run = Run(small_config(tmp_path), ClusterConfig(shards=0, shard_cpus=1.0, batch_ms=2, rescale_every_s=0.3))
    try:
        assert len(run.gw.slots) == 2  # one shard per CPU of the cluster: one per node
        snd = Sender(run, [f"n{i}" for i in range(6)], 120)
        node = cluster.add_node(num_cpus=1)
        t0 = time.monotonic()
        while len([s for s in run.gw.slots if s.live]) < 3 and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        new = run.gw.slots[-1]
        assert len(run.gw.slots) == 3 and new.live and new.node == node.node_id
        time.sleep(1.0)  # samples begin on it
        moved_in = [sid for sid, s in run.gw.streams.items() if s.owner == new.index]
        assert moved_in, "no stream moved to the new shard"
        removed_at = time.monotonic()
        cluster.remove_node(node)
        time.sleep(1.5)
        snd.stop()
        snd.finish()
        run.quiet(1.0)
        st = run.ctl({"cmd": "status"})
    finally:
        run.close()
    assert new.failures == 1 and not new.live  # no free CPU left to restart it on
    check_accounting(run, snd.sent, st)
    for sid in moved_in:
        after = first_label_after(run, sid, removed_at)
        assert after is not None and after < 5.0, (sid, after)


def test_gateway_keeps_the_bind_rule_and_bounds_its_stream_table(cluster, tmp_path):
    raw = small_config(tmp_path)
    bad = {**raw, "inputs": [{"endpoint": "tcp://0.0.0.0:*", "kind": "pull", "bind": True}]}
    gw = Gateway(from_dict(DaemonConfig, bad), ClusterConfig(shards=1, shard_cpus=0.5))
    try:
        with pytest.raises(ConfigError) as info:  # beyond loopback only with CURVE keys, as the daemon
            asyncio.run(gw.run())
        assert info.value.key == "inputs[0].endpoint" and not gw.slots
    finally:
        ray.kill(gw.registry, no_restart=True)
    gw = Gateway(from_dict(DaemonConfig, raw), ClusterConfig(shards=1, max_streams=2, stream_idle_s=60))
    try:
        first = [packets_from_samples(random_samples(1, DVS_DTYPE, 100_000, events=50, seed=i), f"t{i}", PACKET_US, duration_us=SAMPLE_US)[0]
                 for i in range(3)]
        for p in first:
            assert gw.route(p, [], 0, time.monotonic()) is None  # no shard is live yet
        assert list(gw.streams) == ["t0", "t1"] and gw.counters["refused_streams"] == 1
        assert gw.counters["lost_samples"] == 2  # the admitted streams' samples: no shard to take them
    finally:
        ray.kill(gw.registry, no_restart=True)


def test_two_gateways_share_one_registry(cluster, tmp_path):
    """Several gateways (each sources' own) with one source of prototypes: a class registered
    through one gateway labels the streams of the other; another config cannot join it."""
    raw = small_config(tmp_path)
    cfg = ClusterConfig(shards=1, shard_cpus=0.25, batch_ms=2, registry="shared-test", version_every_s=0.1)
    a = Run(raw, cfg)
    b = None
    try:
        other = {**raw, "model": {**raw["model"], "prototypes": str(tmp_path / "other.json")}}
        with pytest.raises(ConfigError) as info:
            Gateway(from_dict(DaemonConfig, other), cfg)
        assert info.value.key == "cluster.registry"
        b = Run(raw, cfg)
        register_in_gateway(a, tmp_path)
        version = a.gw.prototype_version
        t0 = time.monotonic()
        while b.gw.prototype_version != version and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        packets, _ = interleaved(["g0", "g1"], 3)
        b.send(packets)
        b.wait_labels(6)
    finally:
        if b is not None:
            b.close()  # kills the shared registry too (a's close then finds it gone)
        a.close()
    assert b.gw.prototype_version == version > 0
    assert len(b.labels) == 6 and {lab.prototype_version for _t, lab in b.labels} == {version}
    assert {lab.label for _t, lab in b.labels} - {"unknown"}  # the classes registered through a
