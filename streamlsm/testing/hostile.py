"""Hostile peers against a running daemon (issue 11): one `streamlsm serve` process on 127.0.0.1,
a well-behaved stream that must keep every label within its latency bound, the regression cases of
the issue (one per item that reaches the daemon) and a seeded generator of hostile sequences.

Used by tests/test_hostile.py (bounded: CI) and bench/hostile.py (the figures). Test helper only:
production code never imports it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from ..config import to_dict
from ..errors import WireError
from ..events import DVS_DTYPE, EventPacket
from ..model.bundle import sign_bundle
from ..net import wire
from ..net.security import load_signing_key, make_signing_key
from . import make_bundle
from .procs import DaemonProcess, HandshakeWatch, packets_from_samples, random_samples

__all__ = ["Outcome", "HostileDaemon", "regression_cases", "random_case", "summary"]

D = 16
GOOD = "good"
# the counters of the daemon's status that say "this input was refused, and counted"
_REFUSALS = ("wire_errors", "control_errors", "dropped")
_PIPE_REFUSALS = ("refused_spans", "seq_resets", "refused_streams", "rejected_packets", "duplicate_packets",
                  "nonfinite_labels", "seq_gaps", "skipped_packets", "incomplete_samples")


@dataclass
class Outcome:
    """What one hostile case did to the daemon."""

    name: str
    rejected: bool = False       # refused and counted (or an error reply); for the control case: accepted
    crashed: bool = False        # the daemon process ended
    hung: bool = False           # no status reply within the bound afterwards
    lost: int = 0                # labels of the well-behaved stream not received within the bound
    rss_mb: float = 0.0
    detail: str = ""


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reservoir_cfg():
    from ..reservoir import preset

    return preset("nmnist", n_neurons=60, bin_us=1000, feature_windows=4)


def _bundle(path: Path, key: bytes | None, **head_edit) -> Path:
    from ..reservoir import Reservoir

    cfg = _reservoir_cfg()
    n = Reservoir(cfg).n_features
    make_bundle(n, D, reservoirs={"vision": to_dict(cfg)}).save(path)
    if key is not None:
        sign_bundle(path, key)
    return path


class HostileDaemon:
    """A `streamlsm serve` subprocess with a real (small) reservoir, a signed bundle, budgets set
    low enough to be reached, a label subscriber and the well-behaved stream ``good``.

    ``good_round(n)`` sends n samples of the good stream and waits (at most ``latency_bound_s``
    each) for their labels; latencies (label received - closing packet sent) are kept in
    ``latencies_ms``, labels that never came counted in ``lost``.
    """

    def __init__(self, workdir: str | Path, *, state_mb: float = 64.0, latency_bound_s: float = 5.0,
                 segment: str = "sample") -> None:
        self.work = Path(workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        for d in ("support", "bundles", "keys"):
            (self.work / d).mkdir(exist_ok=True)
        self.key_path = make_signing_key(self.work / "keys" / "bundle.key", overwrite=True)
        self.key = load_signing_key(self.key_path)
        self.bundle_path = _bundle(self.work / "bundle", self.key)
        self.state_mb = state_mb
        self.segment = segment
        self.latency_bound_s = latency_bound_s
        config = {
            "model": {"bundle": str(self.bundle_path), "prototypes": "state/protos.json",
                      "signing_key": str(self.key_path)},
            "inputs": [{"endpoint": "tcp://127.0.0.1:*", "kind": "pull"}],
            "outputs": {"labels": "tcp://127.0.0.1:*"},
            "control": {"endpoint": "tcp://127.0.0.1:*",
                        "allowed_dirs": [str(self.work / "support"), str(self.work / "bundles")]},
            "limits": {"overflow": "block", "max_events": 65536, "stats_every_s": 0.5, "queue_mb": 32,
                       "max_call_us": 5_000_000},
            "pipeline": {"max_streams": 512, "state_mb": state_mb, "max_advance_us": 2_000_000,
                         "stream_idle_s": 30.0, "segment": segment},
        }
        self.proc = DaemonProcess(config, self.work)
        self.ctx = zmq.Context()
        self.latencies_ms: list[float] = []
        self.lost = 0
        self.bad_labels = 0  # labels the daemon published that a subscriber cannot decode
        self.last_bad_label = ""
        self._good_seq = 0
        self._good_t = 0
        self._good_sample = 0
        self._rng = np.random.default_rng(0)
        self.pending: dict[int, int] = {}
        self.others: dict[str, list] = {}  # labels of other streams, by stream id
        self.rss_start = 0.0
        self.max_rss = 0.0

    # ---- life cycle
    def start(self) -> HostileDaemon:
        self.proc.start(timeout=300)
        self.pid = self.proc.proc.pid
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.setsockopt(zmq.SNDHWM, 100_000)
        self.push.connect(self.proc.inputs[0])
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sub.subscribe(b"lb/")
        watch = HandshakeWatch()
        watch(self.sub)
        self.sub.connect(self.proc.labels)
        watch.wait()
        train = random_samples(9, DVS_DTYPE, duration_us=30_000, events=150, seed=1)
        for lab in sorted({t for _, t in train}):
            evs = [e for e, t in train if t == lab]
            p = self.work / "support" / f"c{lab}.npz"
            np.savez(p, events=np.concatenate(evs), lengths=[len(e) for e in evs])
            reply = self.ctl({"cmd": "register", "label": lab, "path": str(p)}, timeout=120)
            if not reply or not reply.get("ok"):
                raise RuntimeError(f"register failed: {reply}")
        if self.segment == "sample":
            self.good_round(3)  # warm: the first labels take the compile and page-in
            self.latencies_ms.clear()
        self.rss_start = self.rss()
        return self

    def stop(self) -> int:
        for s in (getattr(self, "push", None), getattr(self, "sub", None)):
            if s is not None:
                s.close(0)
        rc = self.proc.stop()
        self.ctx.term()
        return rc

    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    def rss(self) -> float:
        r = _rss_mb(self.pid)
        self.max_rss = max(self.max_rss, r)
        return r

    def ctl(self, req: dict, timeout: float = 10.0) -> dict | None:
        """A control request on a fresh REQ socket; None when no reply came within ``timeout``."""
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.proc.control)
            sock.send(wire.pack_control(req))
            if not sock.poll(int(timeout * 1000)):
                return None
            return wire.unpack_control(sock.recv())
        finally:
            sock.close(0)

    def status(self, timeout: float = 10.0) -> dict | None:
        return self.ctl({"cmd": "status"}, timeout)

    # ---- the well-behaved stream
    def send(self, pkt: EventPacket) -> None:
        pkt.sent_ns = time.time_ns()
        self.push.send_multipart(wire.encode(pkt))

    def send_frames(self, frames: list) -> None:
        self.push.send_multipart(frames)

    def _drain(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < end:
            if not self.sub.poll(50):
                continue
            while self.sub.poll(0):
                try:
                    lab = wire.decode(self.sub.recv_multipart())
                except WireError as exc:  # the daemon published a label a subscriber cannot read
                    self.bad_labels += 1
                    self.last_bad_label = str(exc)
                    continue
                now = time.time_ns()
                if lab.stream_id == GOOD:
                    sent = self.pending.pop(lab.sample_id, None)
                    if sent is not None:
                        self.latencies_ms.append((now - sent) / 1e6)
                else:
                    self.others.setdefault(lab.stream_id, []).append(lab)

    def good_round(self, n: int = 1) -> int:
        """Send n samples of the good stream; the number whose label did not come in time."""
        samples = random_samples(n, DVS_DTYPE, duration_us=30_000, events=150,
                                 seed=int(self._rng.integers(1 << 30)))
        pkts = packets_from_samples(samples, GOOD, packet_us=10_000, duration_us=30_000,
                                    t0=self._good_t, seq0=self._good_seq, first_sample=self._good_sample)
        self._good_seq += len(pkts)
        self._good_t += 30_000 * n
        for p in pkts:
            self.send(p)
            if p.sample_end:
                self.pending[p.sample_id] = p.sent_ns
        self._good_sample += n
        self._drain(self.latency_bound_s + 0.05 * n)
        lost = len(self.pending)
        self.lost += lost
        self.pending.clear()
        return lost

    def collect_others(self, timeout_s: float = 0.5) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.sub.poll(50):
                try:
                    lab = wire.decode(self.sub.recv_multipart())
                except WireError as exc:
                    self.bad_labels += 1
                    self.last_bad_label = str(exc)
                    continue
                self.others.setdefault(lab.stream_id, []).append(lab)

    # ---- one case
    def run_case(self, name: str, attack: Callable[[HostileDaemon], object]) -> Outcome:
        before = self.status() or {}
        try:
            verdict = attack(self)
        except Exception as exc:  # noqa: BLE001 - a case that cannot even be sent is reported, not raised
            verdict, detail = None, f"attack raised {type(exc).__name__}: {exc}"
        else:
            detail = ""
        out = Outcome(name, detail=detail)
        if not self.alive():
            out.crashed = True
            return out
        out.lost = self.good_round(1)
        after = self.status(timeout=max(5.0, self.latency_bound_s))
        # the daemon serves running streams before new stream ids: the attack's packets may still be
        # queued behind the good sample; judge the refusal counters once the queue is empty
        end = time.monotonic() + self.latency_bound_s
        while after is not None and after.get("queue_depth", 0) and time.monotonic() < end:
            time.sleep(0.02)
            after = self.status(timeout=max(5.0, self.latency_bound_s))
        if after is None:
            out.hung = True
            return out
        out.rss_mb = self.rss()
        counted = any(after.get(k, 0) > before.get(k, 0) for k in _REFUSALS)
        bp, ap = before.get("pipeline", {}), after["pipeline"]
        counted = counted or any(ap.get(k, 0) > bp.get(k, 0) for k in _PIPE_REFUSALS)
        out.rejected = bool(verdict) if isinstance(verdict, bool) else counted
        if isinstance(verdict, str):
            out.detail = verdict
        return out


# ---------------------------------------------------------------- the items, one case each
def _one(stream: str, seq: int, t0: int, t1: int, begin: bool = True, end: bool = True, n: int = 1) -> EventPacket:
    ev = np.zeros(n, DVS_DTYPE)
    ev["t"] = t0
    ev["x"], ev["y"] = 12, 12
    return EventPacket(stream, seq, t0, t1, ev, "vision", 1, None, begin, end)


def _huge_span(d: HostileDaemon) -> None:  # item 1
    d.send(_one("h1", 0, 0, 2 ** 62))


def _window_span(d: HostileDaemon) -> None:  # item 2 (the packet of the window-mode report)
    d.send(_one("h2", 0, 0, 5_000_000_000))


def _span_by_gap(d: HostileDaemon) -> None:  # item 1 by a continuation packet far ahead
    d.send(_one("h3", 0, 0, 1_000, end=False))
    d.send(_one("h3", 1, 2 ** 62 - 10, 2 ** 62, begin=False))


def _end_of_time(d: HostileDaemon) -> None:  # found by the generator: t near 2^63 spun the kernel
    d.send(_one("h4", 0, 2 ** 63 - 2, 2 ** 63 - 1, n=5, end=False))
    d.send(_one("h5", 0, 0, 2 ** 63 - 1))


def _stalled_subscribers(d: HostileDaemon) -> bool:  # item 3
    stalled = []
    for _ in range(3):
        s = d.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 1)
        s.setsockopt(zmq.RCVBUF, 1024)
        s.subscribe(b"")
        s.connect(d.proc.labels)
        stalled.append(s)
    time.sleep(0.2)
    lost = d.good_round(40)  # more labels than the stalled peers can hold
    for s in stalled:
        s.close(0)
    return lost == 0


def _vanishing_subscribers(d: HostileDaemon) -> bool:
    for _ in range(20):
        s = d.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.subscribe(b"lb/")
        s.connect(d.proc.labels)
        s.close(0)
    return d.good_round(5) == 0


def _multiframe(d: HostileDaemon) -> None:  # item 4: many big frames in one message
    big = b"\0" * (512 * 1024)
    for _ in range(8):
        d.send_frames([b"ev/mf"] + [big] * 8)


def _oversized_frame(d: HostileDaemon) -> bool:  # one frame over MAXMSGSIZE: the peer is cut off
    s = d.ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.proc.inputs[0])
    s.send_multipart([b"ev/of", b"\0" * (8 << 20), b""])
    time.sleep(0.3)
    s.close(0)
    return d.alive()


def _control_oversized(d: HostileDaemon) -> bool:  # item 4: a control request over the limit
    reply = d.ctl({"cmd": "status", "pad": "x" * (4 << 20)}, timeout=1.0)
    return reply is None and d.status(timeout=5) is not None


_RELOAD_SAYS = {  # what the daemon's error reply must name, per malformed bundle
    "in_features": "takes", "transform": "feature_transform", "neurons": "max_neurons",
    "nan": "non-finite", "unsigned": "unsigned", "tampered": "bad signature",
    "heads_list": "heads", "layers_inf": "layers", "deep": "nested",
}


def _sign(path: Path, key: bytes) -> None:
    """Sign whatever the directory holds (sign_bundle would refuse a bundle that does not load)."""
    from ..model import bundle as bmod

    h = json.loads((path / "manifest.json").read_text())["hash"]
    (path / bmod.SIGNATURE).write_text(json.dumps({"alg": "hmac-sha256", "hash": h, "mac": bmod._mac(key, h)}))


def _rehash(path: Path, m: dict) -> None:
    """Write manifest ``m`` with its content hash recomputed (anyone can: it proves nothing)."""
    from ..model import bundle as bmod

    m["hash"] = bmod._content_hash(dict(np.load(path / "weights.npz")), m)
    (path / "manifest.json").write_text(json.dumps(m))


def _reload_good(d: HostileDaemon) -> bool:
    """The control case: a well-formed bundle signed with the daemon's key is accepted."""
    path = _bundle(d.work / "bundles" / "good", d.key)
    reply = d.ctl({"cmd": "reload", "path": str(path)}, timeout=60)
    return bool(reply) and reply.get("ok") is True and (d.status() or {}).get("bundle_hash") == reply["bundle_hash"]


def _reload(kind: str) -> Callable[[HostileDaemon], bool]:  # items 5, 10, 12
    def attack(d: HostileDaemon) -> bool:
        from ..reservoir import Reservoir

        path = d.work / "bundles" / kind
        cfg = _reservoir_cfg()
        n, rc = Reservoir(cfg).n_features, to_dict(cfg)
        if kind == "neurons":
            rc = {**rc, "n_neurons": 10 ** 6}
        b = make_bundle(n + (kind == "in_features"), D, reservoirs={"vision": rc})
        if kind == "transform":
            b.extra["feature_transform"] = "sqrt"
        if kind == "nan":
            b.heads["vision"].weights[0][0, 0] = np.nan
        b.save(path)
        m = json.loads((path / "manifest.json").read_text())
        if kind == "heads_list":
            m["heads"] = []
            _rehash(path, m)
        elif kind == "layers_inf":
            m["heads"]["vision"]["layers"] = float("inf")
            _rehash(path, m)
        if kind != "unsigned":
            _sign(path, d.key)  # signed by the right key: the other checks must refuse it
        if kind == "tampered":  # a valid bundle changed after signing, its hash recomputed
            m["classes"] = m["seen_classes"] = list(reversed(m["classes"]))
            _rehash(path, m)
        if kind == "deep":
            text = (path / "manifest.json").read_text().rstrip()[:-1]
            (path / "manifest.json").write_text(text + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
        reply = d.ctl({"cmd": "reload", "path": str(path)}, timeout=60)
        ok = bool(reply) and reply.get("ok") is False and _RELOAD_SAYS[kind] in str(reply.get("error"))
        return ok and d.status() is not None
    return attack


def _state_flood(d: HostileDaemon) -> None:  # item 7: empty packets spanning 1,024 bins, new ids
    for i in range(4096):
        d.send(EventPacket(f"fl{i}", 0, 0, 1_024_000, np.zeros(0, DVS_DTYPE), "vision", 1, None, True, False))


def _spoofed_seq(d: HostileDaemon) -> str | bool:  # item 9
    samples = random_samples(6, DVS_DTYPE, duration_us=30_000, events=150, seed=7)
    pkts = packets_from_samples(samples, "cam7", packet_us=10_000, duration_us=30_000)
    for p in pkts[:6]:
        d.send(p)
    d.send(_one("cam7", 2 ** 63 - 1, 10 ** 9, 10 ** 9 + 5, begin=False, end=False))
    for p in pkts[6:]:
        d.send(p)
    d.others.pop("cam7", None)
    d.collect_others(1.0)
    got = {lab.sample_id for lab in d.others.get("cam7", [])}
    return got >= {2, 3, 4, 5}  # the samples sent after the spoof are labelled


def _bad_ids(d: HostileDaemon) -> None:  # item 6 (at the daemon): long and odd stream ids
    hdr = wire.pack_control({"v": 1, "kind": "events", "stream": "x" * 3000, "seq": 0, "layout": "dvs", "n": 0,
                         "t0": 0, "t1": 1, "modality": "vision", "sample": 0, "label": None, "begin": True,
                         "end": True, "sent_ns": 0})
    for topic in (b"ev/" + b"x" * 3000, b"ev/\xff\xfe", b"ev/a b"):
        d.send_frames([topic, hdr, b""])


def _nonfinite_header(d: HostileDaemon) -> None:
    hdr = wire.pack_control({"v": 1, "kind": "events", "stream": "nf", "seq": 0, "layout": "dvs", "n": 0,
                         "t0": float("nan"), "t1": float("inf"), "modality": "vision", "sample": 0,
                         "label": None, "begin": True, "end": True, "sent_ns": 0})
    d.send_frames([b"ev/nf", hdr, b""])


def regression_cases() -> list[tuple[str, Callable[[HostileDaemon], object]]]:
    """The issue's items that reach a running daemon, one case each (items 6, 8, 10, 11 and the minor
    list are not daemon traffic: see tests/test_hostile.py and tests/test_cli_bad_values.py)."""
    return [
        ("1_span_2^62", _huge_span), ("2_span_5e9", _window_span), ("1_span_by_gap", _span_by_gap),
        ("1_times_near_2^63", _end_of_time),
        ("3_stalled_subscribers", _stalled_subscribers), ("3_vanishing_subscribers", _vanishing_subscribers),
        ("4_multiframe", _multiframe), ("4_oversized_frame", _oversized_frame),
        ("4_control_oversized", _control_oversized),
        ("5_reload_in_features", _reload("in_features")), ("5_reload_transform", _reload("transform")),
        ("5_reload_n_neurons_1e6", _reload("neurons")), ("5_reload_unsigned", _reload("unsigned")),
        ("5_reload_tampered", _reload("tampered")), ("12_reload_nan", _reload("nan")),
        ("10_reload_heads_list", _reload("heads_list")), ("10_reload_layers_inf", _reload("layers_inf")),
        ("10_reload_deep", _reload("deep")), ("5_reload_good_signed_accepted", _reload_good),
        ("6_bad_ids", _bad_ids), ("9_spoofed_seq", _spoofed_seq), ("7_state_flood", _state_flood),
        ("nonfinite_header", _nonfinite_header),
    ]


# ---------------------------------------------------------------- the seeded generator
_T = (0, 1, 999, 2 ** 31, 2 ** 40, 2 ** 62, 2 ** 63 - 2)
_SEQ = (0, 1, 2, 2 ** 16, 2 ** 32, 2 ** 63 - 1)


def random_case(seed: int) -> tuple[str, Callable[[HostileDaemon], object]]:
    """A seeded hostile sequence: valid headers with extreme spans, seq, ids and rates; bursts of
    new streams; malformed frames. The same seed always gives the same sequence."""
    rng = random.Random(seed)
    kind = rng.choice(["extreme", "burst", "garbage", "streams", "mixed"])

    def packet() -> EventPacket:
        t0 = rng.choice(_T)
        t1 = min(2 ** 63 - 1, t0 + rng.choice((0, 1, 1000, 2 ** 20, 2 ** 40, 2 ** 62)))
        n = rng.choice((0, 1, 5, 50))
        ev = np.zeros(n, DVS_DTYPE)
        if n and t1 > t0:
            ev["t"] = np.sort(np.array([rng.randrange(t0, t1) for _ in range(n)], np.int64))
            ev["x"] = [rng.randrange(-5, 40) for _ in range(n)]
            ev["y"] = [rng.randrange(-5, 40) for _ in range(n)]
            ev["p"] = [rng.randrange(0, 3) for _ in range(n)]
        else:
            n = 0
            ev = ev[:0]
        sid = rng.choice(["r0", "r1", "r2", "cam7", f"x{rng.randrange(10 ** 6)}",
                          "z" * 64, "a:b.c-d_e"])
        return EventPacket(sid, rng.choice(_SEQ), t0, t1, ev, rng.choice(("vision", "", "audio")),
                           rng.choice((-1, 0, 2 ** 63 - 1)), rng.choice((None, "0", "x" * 256)),
                           rng.random() < 0.5, rng.random() < 0.5)

    def garbage() -> list:
        choice = rng.randrange(5)
        if choice == 0:
            return [b"ev/r0", bytes(rng.randrange(256) for _ in range(rng.randrange(64))), b""]
        if choice == 1:
            return [b"ev/r0"]
        if choice == 2:
            return [b"ev/r0", wire.pack_control({"v": 1, "kind": "events", "n": 2 ** 40}), b""]
        if choice == 3:
            p = packet()
            frames = wire.encode(p)
            return [frames[0], frames[1], bytes(memoryview(frames[2]))[:-1] + b"\0\0"]
        return [b"lb/r0", wire.pack_control({"v": 1, "kind": "label"}), b""]

    def attack(d: HostileDaemon) -> None:
        if kind in ("extreme", "mixed"):
            for _ in range(rng.randrange(5, 40)):
                d.send(packet())
        if kind in ("garbage", "mixed"):
            for _ in range(rng.randrange(5, 40)):
                d.send_frames(garbage())
        if kind == "burst":
            p = packet()
            for i in range(rng.randrange(200, 2000)):
                d.send(EventPacket(p.stream_id, i, p.t_start, p.t_end, p.events, p.modality, p.sample_id,
                                   p.label, i == 0, False))
        if kind == "streams":
            base = rng.randrange(10 ** 6)
            for i in range(rng.randrange(100, 1500)):
                d.send(EventPacket(f"s{base}-{i}", 0, 0, rng.choice((1, 1000, 1_024_000)),
                                   np.zeros(0, DVS_DTYPE), "vision", 0, None, True, rng.random() < 0.3))

    return f"random_{seed}_{kind}", attack


def summary(outcomes: list[Outcome], d: HostileDaemon, baseline_p99: float | None = None) -> dict:
    """The bench's JSON line: cases, rejected, crashes, hangs, good-stream losses, RSS, p99."""
    lat = d.latencies_ms
    return {
        "cases": len(outcomes),
        "rejected": sum(o.rejected for o in outcomes),
        "crashes": sum(o.crashed for o in outcomes),
        "hangs": sum(o.hung for o in outcomes),
        "good_stream_labels_lost": d.lost,
        "undecodable_labels": d.bad_labels,
        "max_rss_mb": round(d.max_rss, 1),
        "rss_start_mb": round(d.rss_start, 1),
        "state_mb": d.state_mb,
        "good_stream_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
        "good_stream_p99_ms_baseline": baseline_p99,
        "not_rejected": [o.name for o in outcomes if not o.rejected],
    }
