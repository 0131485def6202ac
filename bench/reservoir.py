"""Reservoir benchmark on real N-MNIST (200 neurons, preset "nmnist"): streaming, batch, numpy, Brian2.

python bench/reservoir.py [--quick] [--streams 256] [--brian2-python ../brian2-venv/bin/python]
Data: $STREAMLSM_DATA or ../shared/data. Last line: one JSON object with noise_off_events_per_s,
noise_on_events_per_s (one core; each kernel call carries one 1 ms packet of each of --streams
streams, columnar, prebuilt before timing), feed_packets_events_per_s (the same through
Reservoir.feed with EventPacket objects), call_us_single_packet, batch_samples_per_s (encode, all
cores, wall clock), events_per_s_<N>n / spike_rate_<N>n (the stream with N = 500, 1000, 2048
neurons, each calibrated to 0.06 spikes/neuron/bin; --neurons), numpy_events_per_s / speedup_vs_numpy (dense numpy per-bin loop over a whole
sample's input frames, one sample at a time: numpy's best case), numpy_stream_events_per_s /
speedup_vs_numpy_stream (the same fed 1 ms packets, as a numpy stream would run), brian2_events_per_s / speedup_vs_brian2 (Brian2 in its own venv, one net.run per sample as a
stream would drive it), brian2_continuous_events_per_s / speedup_vs_brian2_continuous (all samples
back to back in one run: Brian2's best case); compilation never timed, and the checks that all gave identical spike counts with noise
off. Single-threaded rates are events per CPU second of this process (= per core, and robust on a
shared machine); the *_wall keys give the same per wall-clock second.
Brian2 venv: python3 -m venv ../brian2-venv && ../brian2-venv/bin/pip install brian2 "numpy<2.4"
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the numpy loop runs on one core too
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from streamlsm.config import data_root  # noqa: E402
from streamlsm.events import EventPacket  # noqa: E402
from streamlsm.reservoir import Reservoir, preset  # noqa: E402
from streamlsm.reservoir.calibrate import calibrate  # noqa: E402
from streamlsm.reservoir.reference import input_frames, reference_run  # noqa: E402

HERE = Path(__file__).resolve().parent


def load(n: int):
    from streamlsm_sources.nmnist import NMNISTDataset
    ds = NMNISTDataset(data_root() / "nmnist", split="train")
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    return [ds.events(int(i)) for i in idx], [ds.duration_us(int(i)) for i in idx]


def stream_batches(samples, durs, n_streams, packet_us=1000):
    """Columnar calls: call j holds packet j of every stream; stream s plays samples s, s+S, ...
    back to back, each cut into packet_us packets from its start (the last one shortened)."""
    per_stream = []
    for s in range(n_streams):
        pk = []  # (t0, t1, flags, key, events)
        t_base = 0
        for k in range(s, len(samples), n_streams):
            ev, dur = samples[k], durs[k]
            edges = np.r_[np.arange(0, dur, packet_us), dur]
            cut = np.searchsorted(ev["t"], edges)
            for j in range(len(edges) - 1):
                part = ev[cut[j]:cut[j + 1]].copy()
                part["t"] += t_base
                flags = (1 if j == 0 else 0) | (2 if j == len(edges) - 2 else 0)
                pk.append((t_base + int(edges[j]), t_base + int(edges[j + 1]), flags, k, part))
            t_base += dur
        per_stream.append(pk)
    n_calls = min(len(p) for p in per_stream)
    calls = []
    for j in range(n_calls):
        rows = [per_stream[s][j] for s in range(n_streams)]
        ev = np.concatenate([r[4] for r in rows])
        offs = np.zeros(n_streams + 1, np.int64)
        np.cumsum([len(r[4]) for r in rows], out=offs[1:])
        calls.append((np.arange(n_streams, dtype=np.int32), np.array([r[0] for r in rows], np.int64),
                      np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.int8),
                      np.array([r[3] for r in rows], np.uint64), offs,
                      np.ascontiguousarray(ev["t"]), np.ascontiguousarray(ev["x"]),
                      np.ascontiguousarray(ev["y"]), np.ascontiguousarray(ev["p"])))
    return calls, per_stream


class Clock:
    """Wall and CPU time of this process. Single-threaded rates are given per CPU second (= per
    core, robust on a shared machine) and per wall second."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def stream_rate(cfg, calls, n_streams, repeat=3):
    """(events per CPU second, events per wall second, features by sample index); best of repeat."""
    best_cpu = best_wall = 0.0
    events = sum(len(c[6]) for c in calls)
    feats = {}
    for _ in range(repeat):
        res = Reservoir(cfg, capacity=n_streams)
        for s in range(n_streams):
            res.slot(f"s{s}")
        res.feed_columns(*calls[0])  # compile / warm
        res = Reservoir(cfg, capacity=n_streams)
        for s in range(n_streams):
            res.slot(f"s{s}")
        feats = {}
        with Clock() as clk:
            for c in calls:
                rows, pk, _ = res.feed_columns(*c)
                for r in range(len(rows)):
                    feats[int(c[4][pk[r]])] = rows[r].copy()
        best_cpu = max(best_cpu, events / clk.cpu)
        best_wall = max(best_wall, events / clk.wall)
    return best_cpu, best_wall, feats


def single_packet_call_us(cfg, samples):
    res = Reservoir(cfg)
    ev = samples[0][:16]
    pk = EventPacket("one", 0, 0, 1000, ev, sample_id=0, sample_begin=True)
    res.feed(pk)
    cols = (np.zeros(1, np.int32), np.zeros(1, np.int64), np.full(1, 1000, np.int64), np.zeros(1, np.int8),
            np.zeros(1, np.uint64), np.array([0, len(ev)], np.int64), np.ascontiguousarray(ev["t"]),
            np.ascontiguousarray(ev["x"]), np.ascontiguousarray(ev["y"]), np.ascontiguousarray(ev["p"]))
    res.slot("one")
    n = 20000
    with Clock() as clk:
        for _ in range(n):
            res.feed_columns(*cols)
    columns_us = clk.cpu / n * 1e6
    with Clock() as clk:
        for _ in range(n // 4):
            res.feed(pk)
    packet_us = clk.cpu / (n // 4) * 1e6
    return columns_us, packet_us


def feed_packets_rate(cfg, per_stream, n_streams, limit_calls):
    """Through Reservoir.feed: EventPacket objects, one call per 1 ms of all streams."""
    n_calls = min(limit_calls, min(len(p) for p in per_stream))
    calls = [[EventPacket(f"s{s}", j, *per_stream[s][j][:2], per_stream[s][j][4], "vision",
                          per_stream[s][j][3], None, bool(per_stream[s][j][2] & 1), bool(per_stream[s][j][2] & 2))
              for s in range(n_streams)] for j in range(n_calls)]
    res = Reservoir(cfg, capacity=n_streams)
    res.feed(calls[0])
    res = Reservoir(cfg, capacity=n_streams)
    events = sum(len(p) for c in calls for p in c)
    with Clock() as clk:
        for c in calls:
            res.feed(c)
    return events / clk.cpu


def numpy_stream(samples, durs, res, cfg, packet_us=1000):
    """The network as plain numpy fed 1 ms packets one sample at a time: events mapped per packet
    (vectorised), counts added to the open bin's dense input, one dense update per finished bin."""
    m, W_in, W_rec = res.map, res.w_in, res.w_rec
    decay, thr, bu, N = np.float32(cfg.decay), np.float32(cfg.threshold), cfg.bin_us, cfg.n_neurons
    feats = []
    for ev, dur in zip(samples, durs, strict=True):
        v = np.zeros(N, np.float32)
        s = np.zeros(N, bool)
        cnt = np.zeros(N, np.float32)
        x_bin = np.zeros(m.n_inputs, np.float32)
        cur_bin = 0
        edges = np.r_[np.arange(0, dur, packet_us), dur]
        cut = np.searchsorted(ev["t"], edges)
        for j in range(len(edges) - 1):
            part = ev[cut[j]:cut[j + 1]]
            t_end = int(edges[j + 1])
            last = j == len(edges) - 2
            x = part["x"].astype(np.int64)
            ok = (x >= 0) & (x < m.xm)
            ch = np.full(len(part), -1, np.int64)
            ch[ok] = m.lut[((part["y"].astype(np.int64) * m.xm + x) * m.pm + part["p"])[ok]]
            b = part["t"] // bu
            done = -(-t_end // bu) if last else t_end // bu
            for bb in range(cur_bin, max(done, int(b.max()) + 1 if len(b) else 0)):
                sel = (b == bb) & (ch >= 0)
                np.add.at(x_bin, ch[sel], 1.0)
                if bb < done:
                    current = x_bin @ W_in + s.astype(np.float32) @ W_rec
                    v = np.where(s, np.float32(0), decay * v).astype(np.float32) + current
                    s = v > thr
                    cnt += s
                    x_bin[:] = 0
            cur_bin = done
        feats.append(cnt)
    return feats


def brian2_run(python, w_in, w_rec, cfg, frames, per_sample, timeout):
    if not python or not Path(python).exists():
        return None, f"no Brian2 interpreter at {python!r}"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(src, w_in=w_in, w_rec=w_rec, decay=np.float32(cfg.decay), threshold=np.float32(cfg.threshold),
                 **{f"frames_{i}": f for i, f in enumerate(frames)})
        try:
            proc = subprocess.run([python, str(HERE / "reservoir_brian2.py"), str(src), str(dst), str(per_sample)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"Brian2 run exceeded {timeout} s"
        if proc.returncode != 0:
            return None, "Brian2 failed: " + proc.stderr.strip().splitlines()[-1][:300]
        return json.loads(dst.read_text()), None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--streams", type=int, default=256)
    ap.add_argument("--eta", type=float, default=0.05)
    ap.add_argument("--neurons", type=lambda v: [int(x) for x in v.split(",") if x], default=[500, 1000, 2048],
                    help="larger reservoirs to time (comma list; default 500,1000,2048; empty: none)")
    ap.add_argument("--brian2-python", default=os.environ.get("BRIAN2_PYTHON", "../brian2-venv/bin/python"))
    args = ap.parse_args(argv)
    n = 300 if args.quick else 1000
    samples, durs = load(n)
    S = min(args.streams, len(samples))
    cfg = preset("nmnist")
    out: dict = {"samples": len(samples), "streams_per_call": S, "neurons": cfg.n_neurons,
                 "bin_us": cfg.bin_us, "eta": args.eta, "cpus": os.cpu_count()}
    calls, per_stream = stream_batches(samples, durs, S)
    out["events_streamed"] = int(sum(len(c[6]) for c in calls))
    out["noise_off_events_per_s"], out["noise_off_events_per_s_wall"], off_feats = stream_rate(cfg, calls, S)
    noisy = dataclasses.replace(cfg, read_noise=args.eta)
    out["noise_on_events_per_s"], out["noise_on_events_per_s_wall"], on_feats = stream_rate(noisy, calls, S)
    out["feed_packets_events_per_s"] = feed_packets_rate(cfg, per_stream, S, 100 if args.quick else 300)
    out["call_us_single_packet"], out["call_us_single_packet_feed"] = single_packet_call_us(cfg, samples)
    # larger reservoirs (each calibrated to 0.06 spikes/neuron/bin on 50 samples, as the presets):
    # events/s of the same columnar stream, one core, noise off
    for n_neurons in args.neurons:
        big, rep = calibrate(preset("nmnist", n_neurons=n_neurons), samples[:50], durs[:50])
        rate, _, _ = stream_rate(big, calls, S, repeat=1 if args.quick else 2)
        out[f"events_per_s_{n_neurons}n"] = rate
        out[f"spike_rate_{n_neurons}n"] = rep["rate"]
    # batch encode, all cores; equal to streaming (noise off and on)
    res = Reservoir(cfg)
    res.encode(samples[:4], durs[:4])
    with Clock() as clk:
        enc = res.encode(samples, durs)
    out["batch_samples_per_s"] = len(samples) / clk.wall
    out["batch_threads"] = res.threads
    done = sorted(off_feats)
    out["stream_equals_batch"] = bool(all(np.array_equal(off_feats[k], enc[k]) for k in done))
    enc_noisy = Reservoir(noisy).encode(samples, durs)
    out["stream_equals_batch_noise_on"] = bool(all(np.array_equal(on_feats[k], enc_noisy[k]) for k in sorted(on_feats)))
    # numpy dense per-bin loop, one sample at a time
    k_np = 10 if args.quick else 40
    frames = [input_frames(samples[i], durs[i], res.map, cfg.bin_us, cfg.clip) for i in range(k_np)]
    np_cpu = []
    for _ in range(3):  # best of 3, like the kernel's rates
        with Clock() as clk:
            ref = [reference_run(input_frames(samples[i], durs[i], res.map, cfg.bin_us, cfg.clip), res.w_in,
                                 res.w_rec, cfg.decay, cfg.threshold)[0] for i in range(k_np)]
        np_cpu.append(clk.cpu)
    np_rate = sum(len(samples[i]) for i in range(k_np)) / min(np_cpu)
    out["numpy_events_per_s"] = np_rate
    out["numpy_equal"] = bool(all(np.array_equal(ref[i], enc[i]) for i in range(k_np)))
    out["speedup_vs_numpy"] = out["noise_off_events_per_s"] / np_rate
    with Clock() as clk:
        ref_s = numpy_stream(samples[:k_np], durs[:k_np], res, cfg)
    out["numpy_stream_events_per_s"] = sum(len(samples[i]) for i in range(k_np)) / clk.cpu
    out["numpy_stream_equal"] = bool(all(np.array_equal(ref_s[i], enc[i]) for i in range(k_np)))
    out["speedup_vs_numpy_stream"] = out["noise_off_events_per_s"] / out["numpy_stream_events_per_s"]
    # Brian2, same weights: one net.run per sample (as a stream would drive it), and all samples
    # back to back in one run (Brian2's best case); code generation and compilation not timed
    k_b2, k_ps = (6, 3) if args.quick else (20, 6)
    b2, why = brian2_run(args.brian2_python, res.w_in, res.w_rec, cfg, frames[:k_b2], k_ps, 900)
    if b2 is None:
        out.update(brian2_events_per_s=None, speedup_vs_brian2=None, brian2_note=why)
    else:
        per_sample = sum(len(samples[i]) for i in range(k_ps)) / sum(b2["per_sample_seconds"])
        continuous = sum(len(samples[i]) for i in range(k_b2)) / b2["seconds"]
        same = all(np.array_equal(np.asarray(b2["counts"][i], np.float32), enc[i]) for i in range(k_b2))
        same &= all(np.array_equal(np.asarray(b2["per_sample_counts"][i], np.float32), enc[i]) for i in range(k_ps))
        out.update(brian2_events_per_s=per_sample, speedup_vs_brian2=out["noise_off_events_per_s"] / per_sample,
                   brian2_continuous_events_per_s=continuous,
                   speedup_vs_brian2_continuous=out["noise_off_events_per_s"] / continuous,
                   brian2_equal=bool(same), brian2_target=b2["target"], brian2_version=b2["brian2"])
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
