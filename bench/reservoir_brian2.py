"""The reservoir in Brian2 (run by bench/reservoir.py as a subprocess in a separate venv).

Usage: <brian2-venv>/bin/python bench/reservoir_brian2.py IN.npz OUT.json [PER_SAMPLE]
IN.npz: w_in (C, N), w_rec (N, N) float32, decay, threshold, frames_<i> (T_i, C) float32 input
counts per bin. Same equations as streamlsm (float32, input current summed first, hard reset via
(1 - s)); neuron bin b is Brian2 step b + 1 (input spikes of bin b are emitted at step b and summed
into I in that step's synapse slot; the update of step b + 1 uses them). Input counts > 1 use one
virtual input line per count level, so every synaptic weight is added exactly x times.
All samples run back to back in one timed net.run (see below); then the first PER_SAMPLE samples
again, one net.run each (state cleared first), as a stream would drive it. Prints nothing; writes
{"counts", "seconds" (CPU seconds of the continuous run), "per_sample_counts",
"per_sample_seconds", "target", "brian2"} to OUT.json.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> int:
    import brian2 as b2

    src, dst = sys.argv[1], sys.argv[2]
    z = np.load(src, allow_pickle=False)
    w_in, w_rec = z["w_in"], z["w_rec"]
    decay, thr = np.float32(z["decay"]), np.float32(z["threshold"])
    frames = [z[k] for k in sorted((k for k in z.files if k.startswith("frames_")), key=lambda k: int(k[7:]))]
    C, N = w_in.shape
    levels = int(max(f.max() for f in frames)) if frames else 1
    target = "cython"
    try:
        b2.prefs.codegen.target = target
        b2.prefs.core.default_float_dtype = np.float32
    except Exception:  # pragma: no cover - depends on the Brian2 install
        target = "numpy"
        b2.prefs.codegen.target = target
    b2.defaultclock.dt = 1 * b2.ms  # one step per bin (units are irrelevant here)
    # All samples in one run, one after another, as a stream would feed them: sample k starts at
    # step o_k with a reset step (rst = 1: v, I, s cleared; multiplying by 1 - rst = 1 is exact)
    # and its bin b is computed at step o_k + b + 1; o_{k+1} = o_k + T_k + 1.
    lens = [f.shape[0] for f in frames]
    warm = 2  # idle steps first: the untimed run that triggers code generation and compilation
    starts = warm + np.concatenate([[0], np.cumsum(np.asarray(lens) + 1)])
    total = int(starts[-1])
    flag = np.zeros(total + 1, np.float32)
    flag[starts[:-1]] = 1.0
    rst = b2.TimedArray(flag, dt=1 * b2.ms)
    G = b2.NeuronGroup(N, "v : 1\nI : 1\ns : 1", threshold="v > thr", reset="s = 1",
                       namespace={"thr": float(thr), "decay": float(decay), "rst": rst})
    G.run_regularly("v = decay * v * (1 - s) * (1 - rst(t))", when="groups", order=0)
    G.run_regularly("v = v + I * (1 - rst(t))\nI = 0\ns = 0", when="groups", order=1)
    idx, tim = [], []
    per_level_idx, per_level_tim = [[] for _ in range(levels)], [[] for _ in range(levels)]
    for k, f in enumerate(frames):
        b_idx, c_idx = np.nonzero(f)
        cnt = f[b_idx, c_idx].astype(np.int64)
        for lv in range(levels):
            idx.append(c_idx[cnt > lv] + lv * C)
            tim.append(b_idx[cnt > lv] + starts[k])
            per_level_idx[lv].append(c_idx[cnt > lv] + lv * C)
            per_level_tim[lv].append(b_idx[cnt > lv])
    inp = b2.SpikeGeneratorGroup(C * levels, np.concatenate(idx), np.concatenate(tim) * b2.ms)
    S_in = b2.Synapses(inp, G, "w : 1", on_pre="I_post += w")
    S_in.connect()
    # synapse (i, j) of a full connect is ordered i-major: w_in tiled over count levels
    S_in.w[:] = np.tile(w_in, (levels, 1)).ravel()
    S_rec = b2.Synapses(G, G, "w : 1", on_pre="I_post += w")
    S_rec.connect()
    S_rec.w[:] = w_rec.ravel()
    mon = b2.SpikeMonitor(G)
    net = b2.Network(G, inp, S_in, S_rec, mon)
    net.run(warm * b2.ms)  # code generation and compilation, not timed
    c0 = time.process_time()
    net.run((total - warm) * b2.ms)
    seconds = time.process_time() - c0
    steps = np.round(np.asarray(mon.t / b2.ms)).astype(np.int64)
    ids = np.asarray(mon.i)
    counts = []
    for k in range(len(frames)):
        sel = (steps > starts[k]) & (steps <= starts[k] + lens[k])
        counts.append(np.bincount(ids[sel], minlength=N).tolist())
    # one sample per net.run, as a stream would drive it (state cleared, that sample's spikes set)
    per_sample = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    ps_seconds, ps_counts = [], []
    for k in range(min(per_sample, len(frames))):
        c0 = time.process_time()
        G.v = 0
        G.I = 0
        G.s = 0
        t_now = int(round(float(net.t / b2.ms)))
        inp.set_spikes(np.concatenate([ix[k] for ix in per_level_idx]),
                       (np.concatenate([tm[k] for tm in per_level_tim]) + t_now) * b2.ms)
        n_before = mon.num_spikes
        net.run((lens[k] + 1) * b2.ms)
        ps_seconds.append(time.process_time() - c0)
        ps_counts.append(np.bincount(np.asarray(mon.i[n_before:]), minlength=N).tolist())
    with open(dst, "w") as fh:
        json.dump({"counts": counts, "seconds": seconds, "per_sample_seconds": ps_seconds,
                   "per_sample_counts": ps_counts, "target": target, "brian2": b2.__version__}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
