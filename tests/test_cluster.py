"""Scale-out: hash ring, router + workers on loopback (threads, then processes with SIGKILL), netns hosts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamlsm import wire
from streamlsm.cluster import HashRing, Router, RouterConfig, Worker, WorkerConfig
from streamlsm.cluster.drive import drive, make_samples, stream_packets
from streamlsm.errors import ConfigError
from streamlsm.pipeline import Pipeline
from streamlsm.readout.matcher import PrototypeMatcher
from streamlsm.testing import FakeReservoir, make_bundle

ROOT = Path(__file__).resolve().parents[1]
F, D = 32, 16
LOCAL = "tcp://127.0.0.1:*"


# ------------------------------------------------------------------ the ring


def test_ring_is_deterministic_balanced_and_moves_little():
    ids = [f"cam{i}" for i in range(4000)]
    ring = HashRing(["a", "b", "c"], vnodes=128)
    before = ring.assignment(ids)
    assert HashRing(["c", "a", "b"], vnodes=128).assignment(ids) == before  # order-free
    share = Counter(before.values())
    assert min(share.values()) > 4000 / 3 * 0.75
    ring.add("d")
    after = ring.assignment(ids)
    moved = [s for s in ids if before[s] != after[s]]
    assert all(after[s] == "d" for s in moved)  # only to the new worker
    assert 0.15 < len(moved) / len(ids) < 0.35  # about 1/4
    ring.remove("b")
    again = ring.assignment(ids)
    assert all(again[s] == after[s] for s in ids if after[s] != "b")  # only b's streams move
    assert "b" not in set(again.values())
    assert HashRing().lookup("x") is None
    with pytest.raises(ConfigError):
        HashRing(vnodes=0)


def test_router_refuses_remote_bind_without_keys():
    with pytest.raises(ConfigError) as info:
        Router(RouterConfig(input="tcp://0.0.0.0:5555", workers=LOCAL, labels_in=LOCAL, labels=LOCAL))
    assert info.value.key == "router.input"


def test_drive_counts_a_malformed_label_and_keeps_collecting():
    from streamlsm import wire
    from streamlsm.events import LabelEvent

    ctx = zmq.Context()
    inp, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.XPUB)
    inp.linger = pub.linger = 0
    ep_in = f"tcp://127.0.0.1:{inp.bind_to_random_port('tcp://127.0.0.1')}"
    ep_pub = f"tcp://127.0.0.1:{pub.bind_to_random_port('tcp://127.0.0.1')}"

    def fake_cluster():  # garbage first, then a good label for the driver's one sample
        if pub.poll(10_000):
            pub.recv()
            time.sleep(0.5)  # the driver's collector thread is running by now
            pub.send_multipart([wire.LABEL_TOPIC + b"s0", b"\xc1garbage", b""])
            pub.send_multipart(wire.encode(LabelEvent("s0", 0, 0, 100_000, "0", 0.5)))

    t = threading.Thread(target=fake_cluster)
    t.start()
    try:
        res = drive(ep_in, ep_pub, streams=1, samples=1, settle_s=2.0, timeout_s=10, context=ctx)
    finally:
        t.join()
        inp.close(0)
        pub.close(0)
        ctx.term()
    assert res["bad_labels"] == 1 and res["labels"] == 1 == res["expected_labels"]


def test_router_failed_bind_releases_the_sockets_already_bound():
    ctx = zmq.Context()
    taken = ctx.socket(zmq.PULL)
    taken.linger = 0
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        cfg = RouterConfig(input="tcp://127.0.0.1:*", workers=LOCAL, labels_in=LOCAL,
                           labels=f"tcp://127.0.0.1:{port}")
        with pytest.raises(ConfigError) as info:
            Router(cfg, context=ctx)
        assert info.value.key == "router.labels"
    finally:
        taken.close(0)
    # every socket the failed router opened was closed: the context terminates at once
    done = threading.Event()
    threading.Thread(target=lambda: (ctx.term(), done.set()), daemon=True).start()
    assert done.wait(10), "a socket of the failed router is still open"


# ------------------------------------------------------------------ threads on loopback


def _pipeline() -> Pipeline:
    matcher = PrototypeMatcher(D)
    bundle = make_bundle(F, D)
    res = FakeReservoir(F)
    for ev, label in make_samples(6, seed=99):
        matcher.add(label, bundle.embed("vision", res.encode([ev])))
    return Pipeline(bundle, matcher, reservoir_factory=lambda m: FakeReservoir(F, m))


def _expected(streams: int, samples: int, **kw) -> dict:
    """Labels of each (stream, sample) from one single-process pipeline: the reference."""
    pipe = _pipeline()
    out = {}
    for i in range(streams):
        pk = stream_packets(f"s{i}", make_samples(samples, seed=i, events=kw.get("events", 400)),
                            100_000, 10_000)
        out.update({(lab.stream_id, lab.sample_id): lab.label for lab in pipe(pk)})
    return out


class Cluster:
    """A router thread and worker threads in this process (tcp on 127.0.0.1, random ports)."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.router = Router(RouterConfig(input=LOCAL, workers=LOCAL, labels_in=LOCAL, labels=LOCAL,
                                          heartbeat_s=0.05, timeout_s=0.5), self.ctx)
        self._stop = False
        self.thread = threading.Thread(target=self.router.run, args=(lambda: self._stop,))
        self.thread.start()
        self.workers: dict[str, tuple[Worker, threading.Thread]] = {}

    def add(self, name: str) -> Worker:
        ep = self.router.endpoints
        w = Worker(WorkerConfig(router=ep["workers"], labels_in=ep["labels_in"], name=name,
                                heartbeat_s=0.05), _pipeline(), self.ctx)
        t = threading.Thread(target=w.run)
        t.start()
        self.workers[name] = (w, t)
        deadline = time.monotonic() + 10
        while name not in self.router.ring and time.monotonic() < deadline:
            time.sleep(0.01)
        return w

    def drive(self, **kw) -> dict:
        ep = self.router.endpoints
        return drive(ep["input"], ep["labels"], context=self.ctx, settle_s=2.0, **kw)

    def close(self) -> None:
        for w, t in self.workers.values():
            w.kill()
            t.join(10)
        self._stop = True
        self.thread.join(10)
        self.router.close()
        self.ctx.term()


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


def _wait_labels(router, n, timeout=30.0):
    """Wait until the router has seen ``n`` labels (the run is under way)."""
    deadline = time.monotonic() + timeout
    while router.status()["counters"].get("labels", 0) < n and time.monotonic() < deadline:
        time.sleep(0.01)


@contextlib.contextmanager
def _driving(cluster, samples: int):
    """Drive 8 streams of ``samples`` samples at real time in a thread; the body runs once labels
    flow; on leaving, the drive has ended and the yielded dict holds its result."""
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(cluster.drive(streams=8, samples=samples, speed=1.0)))
    t.start()
    try:
        _wait_labels(cluster.router, 8)
        yield result
    finally:
        t.join()


def _labels(result) -> dict:
    return {(sid, s): lab for sid, rows in result["got"].items() for s, lab, _t in rows}


def test_streams_spread_and_labels_equal_single_process(cluster):
    for name in ("w1", "w2", "w3"):
        cluster.add(name)
    res = cluster.drive(streams=12, samples=3, bad_every=7)
    st = cluster.router.status()
    assert _labels(res) == _expected(12, 3)  # bad messages changed nothing
    assert st["counters"]["rejected"] == res["bad_messages"] > 0 and st["rejected"] == {"header": res["bad_messages"]}
    assert len({o for o in st["owners"].values()}) == 3
    assert st["counters"].get("lost_samples", 0) == 0


def test_join_at_run_time_moves_streams_at_sample_boundaries_without_loss(cluster):
    cluster.add("w1")
    with _driving(cluster, 12) as result:
        cluster.add("w2")
    got = _labels(result)
    st = cluster.router.status()
    assert got == _expected(8, 12)  # every sample, each labelled as by a single process
    assert set(st["owners"].values()) == {"w1", "w2"}
    assert st["counters"].get("lost_samples", 0) == 0


def test_graceful_leave_loses_nothing(cluster):
    cluster.add("w1")
    w2 = cluster.add("w2")
    with _driving(cluster, 12) as result:
        w2.stop()
    st = cluster.router.status()
    assert _labels(result) == _expected(8, 12)
    assert set(st["owners"].values()) == {"w1"} and "w2" not in st["workers"]
    assert [e["event"] for e in st["events"] if e["worker"] == "w2"][-2:] == ["leave", "left"]


def test_dead_worker_streams_resume_and_losses_are_counted(cluster):
    cluster.add("w1")
    w2 = cluster.add("w2")
    with _driving(cluster, 10) as result:
        owners_before = dict(cluster.router.status()["owners"])
        w2.kill()
    st = cluster.router.status()
    got, want = _labels(result), _expected(8, 10)
    lost = st["lost_by_stream"]
    moved = {s for s, o in owners_before.items() if o == "w2"}
    assert moved and st["counters"]["worker_deaths"] == 1
    assert all(got[k] == want[k] for k in got)  # what was labelled is right
    assert st["counters"]["lost_samples"] >= 1  # killed mid-sample
    assert len(got) + st["counters"]["lost_samples"] == len(want)  # the rest is counted lost
    assert set(lost) <= moved
    for sid in moved:  # resumed on w1: the last samples of every moved stream are labelled
        assert (sid, 9) in got
    assert st["failover_ms"]


# ------------------------------------------------------------------ processes, SIGKILL


def _model(tmp_path) -> tuple[Path, Path]:
    from streamlsm.config import to_dict
    from streamlsm.reservoir import Reservoir, preset

    cfg = preset("nmnist")
    n = Reservoir(cfg).n_features
    bundle = make_bundle(n, D, reservoirs={"vision": to_dict(cfg)})
    matcher = PrototypeMatcher(D)
    res = Reservoir(cfg)
    for i, (ev, label) in enumerate(make_samples(6, seed=99)):
        feats = res.feed(stream_packets(f"support{i}", [(ev, label)], 100_000, 10_000))
        matcher.add(label, bundle.embed("vision", np.stack([f.counts for f in feats])))
    return bundle.save(tmp_path / "bundle"), matcher.save(tmp_path / "protos")


def _spawn(args, prefix=()):
    main = "import sys; from streamlsm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([*prefix, sys.executable, "-c", main, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_workers(router_status, n, procs, timeout=120):
    deadline = time.monotonic() + timeout
    while len(router_status()["workers"]) < n:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"a worker exited ({p.returncode}): {p.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"workers did not join within {timeout} s")
        time.sleep(0.1)


@pytest.mark.slow
def test_worker_processes_sigkill_failover(tmp_path):
    bundle, protos = _model(tmp_path)
    ctx = zmq.Context()
    router = Router(RouterConfig(input=LOCAL, workers=LOCAL, labels_in=LOCAL, labels=LOCAL,
                                 heartbeat_s=0.1, timeout_s=1.0), ctx)
    stop = []
    rt = threading.Thread(target=router.run, args=(lambda: bool(stop),))
    rt.start()
    ep = router.endpoints
    procs = {n: _spawn(["cluster", "worker", "--bundle", str(bundle), "--prototypes", str(protos),
                        "--router", ep["workers"], "--labels-in", ep["labels_in"], "--name", n,
                        "--heartbeat", "0.1"]) for n in ("p1", "p2")}
    try:
        _wait_workers(router.status, 2, procs.values())
        result = {}
        t = threading.Thread(target=lambda: result.update(
            drive(ep["input"], ep["labels"], streams=6, samples=20, speed=1.0, context=ctx, settle_s=3)))
        t.start()
        deadline = time.monotonic() + 60
        while router.status()["counters"].get("labels", 0) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)  # kill once both workers are labelling (the kernel is compiled)
        owners = dict(router.status()["owners"])
        t_kill = time.monotonic()
        procs["p2"].send_signal(signal.SIGKILL)
        t.join()
        st = router.status()
        got = _labels(result)
        assert st["counters"]["worker_deaths"] == 1
        assert len(got) + st["counters"]["lost_samples"] == 120
        moved = {s for s, o in owners.items() if o == "p2"}
        for sid in moved:
            after = [ts for s, _l, ts in result["got"].get(sid, []) if ts > t_kill]
            assert after, f"{sid} never labelled again after its worker died"
        dead = [e for e in st["events"] if e["event"] == "dead"][0]
        # the death is recorded after the kill (detection time is a figure of bench/scale.py,
        # failover_ms, not a timed assertion here)
        assert dead["t"] >= t_kill and dead["worker"] == "p2"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        stop.append(1)
        rt.join(10)
        router.close()
        ctx.term()


# ------------------------------------------------------------------ network namespaces as hosts


def _netns_ok() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "the ip command is absent"
    r = subprocess.run(["ip", "netns", "add", "slsm-probe"], capture_output=True, text=True)
    if r.returncode:
        return f"network namespaces not allowed here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "slsm-probe"], capture_output=True)
    return None


@pytest.mark.netns
@pytest.mark.slow
def test_netns_hosts(tmp_path):
    why = _netns_ok()
    if why:
        pytest.skip(why)
    from streamlsm.cluster.netns import Hosts

    bundle, protos = _model(tmp_path)
    with Hosts(2, tmp_path / "keys") as hosts:
        router = hosts.start_router()
        for i in range(2):
            hosts.start_worker(i, bundle, protos)
        hosts.wait_workers(2)
        res = hosts.drive(streams=6, samples=4, speed=0)
        assert res["labels"] == 24
        status = hosts.wait_status(lambda st: st.get("counters", {}).get("labels", 0) >= 24)
        assert len(set(status["owners"].values())) == 2
        assert all(ep.startswith("tcp://") for ep in status["endpoints"].values())
        assert router.poll() is None
        # a host dies mid-run: its streams resume on the other one; losses counted
        proc = hosts.drive(background=True, streams=6, samples=20, speed=1.0, prefix="k", settle_s=3)
        hosts.wait_status(lambda st: st["counters"].get("labels", 0) >= 24 + 12, timeout=60)
        hosts.kill_worker(1)  # every k-stream has been labelled twice: the run is under way
        res = json.loads(proc.communicate(timeout=120)[0].strip().splitlines()[-1])
        status = hosts.wait_status(lambda st: st["counters"].get("worker_deaths", 0) == 1
                                   and all(st["owners"].get(f"k{i}") == "w0" for i in range(6)))
        c = status["counters"]
        assert c["worker_deaths"] == 1
        assert res["labels"] + c["lost_samples"] == 120
        assert set(status["owners"][f"k{i}"] for i in range(6)) == {"w0"}
        assert c["lost_samples"] >= 1  # it died mid-sample


def test_a_failing_worker_dies_loudly_and_its_streams_move(cluster):
    cluster.add("w1")
    ep = cluster.router.endpoints

    class Broken:
        stats = None

        def __init__(self):
            self.calls = 0

        def __call__(self, packets, received_ns=None):
            self.calls += 1
            if self.calls > 3:
                raise RuntimeError("pipeline broke")
            return []

    errors = []
    bad = Worker(WorkerConfig(router=ep["workers"], labels_in=ep["labels_in"], name="w0",
                              heartbeat_s=0.05, queue=4), Broken(), cluster.ctx)

    def run():
        try:
            bad.run()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    _wait_workers(cluster.router.status, 2, ())
    res = cluster.drive(streams=8, samples=6, speed=2.0)
    t.join(10)
    st = cluster.router.status()
    assert errors and "pipeline broke" in str(errors[0])
    assert st["counters"]["worker_deaths"] == 1 and set(st["owners"].values()) == {"w1"}
    assert res["labels"] + st["counters"]["lost_samples"] == 48


@pytest.mark.parametrize("seed", [1, 2])
def test_churn_join_kill_leave_every_sample_labelled_right_or_counted_lost(cluster, seed):
    """Workers join, die and leave during one run: each sample is labelled (as a single process
    would) or counted lost, never both and never neither."""
    rng = np.random.default_rng(seed)
    for name in ("w1", "w2"):
        cluster.add(name)
    with _driving(cluster, 16) as result:
        cluster.add("w3")
        _wait_labels(cluster.router, 30)
        names = ["w1", "w2", "w3"]
        victim = names.pop(int(rng.integers(3)))
        cluster.workers[victim][0].kill()
        _wait_labels(cluster.router, 60)
        cluster.workers[names[int(rng.integers(2))]][0].stop()
    st = cluster.router.status()
    got, want = _labels(result), _expected(8, 16)
    assert all(got[k] == want[k] for k in got)
    assert len(got) + st["counters"].get("lost_samples", 0) == len(want)
    assert st["counters"]["worker_deaths"] == 1
    assert len(set(st["owners"].values())) == 1  # one worker left standing holds every stream


def test_bad_payload_passes_the_router_and_is_counted_by_the_worker(cluster):
    from streamlsm import wire

    cluster.add("w1")
    pkt = stream_packets("s0", make_samples(1, seed=0), 100_000, 10_000)[3]
    topic, header, payload = (bytes(f) for f in wire.encode(pkt))
    push = cluster.ctx.socket(zmq.PUSH)
    push.linger = 1000
    push.connect(cluster.router.endpoints["input"])
    ev = np.frombuffer(payload, pkt.events.dtype)[::-1].copy()  # event times backwards: only decode sees it
    assert len(ev) > 1 and ev["t"][0] > ev["t"][-1]
    push.send_multipart([topic, header, ev.tobytes()])  # the header routes it (wire.peek), the payload is bad
    push.send_multipart([topic, b"\x93\x01", payload])  # a header that is not a map
    push.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = cluster.router.status()
        if st["workers"]["w1"].get("rejected") == 1 and st["rejected"]:
            break
        time.sleep(0.05)
    assert st["workers"]["w1"]["rejected"] == 1 and st["rejected"] == {"header": 1}


def test_router_checks_stream_ids_and_bounds_its_tables():
    """Issue 11, item 6: 3,000-character ids were accepted and 200,000 ids took the router from 37 to
    676 MB for good; now ids are checked (counted refusals) and the tables keep max_streams."""
    router = Router(RouterConfig(input=LOCAL, workers=LOCAL, labels_in=LOCAL, labels=LOCAL, max_streams=100))
    try:
        def frames(sid, sample=0, end=True):
            hdr = wire.pack_control({"v": 1, "kind": "events", "stream": sid, "seq": 0, "layout": "dvs", "n": 0,
                                     "t0": 0, "t1": 10, "modality": "vision", "sample": sample, "label": None,
                                     "begin": True, "end": end, "sent_ns": 0})  # a whole header (wire.peek)
            return [b"ev/" + sid.encode("utf-8", "replace"), hdr, b""]

        for sid in ("x" * 3000, "a b", "caf\u00e9", ""):
            router._route(frames(sid))
        assert router.counters["rejected"] == 4 and router.rejected["stream"] == 4
        assert len(router.streams) == 0
        for i in range(1000):
            router._route(frames(f"s{i}", end=i % 2 == 0))
        assert len(router.streams) == 100 and router.counters["evicted_streams"] == 900
        assert list(router.streams)[-1] == "s999"  # the most recent stay
        assert len(router.pending) <= 100
    finally:
        router.close()
