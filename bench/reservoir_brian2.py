"""The reservoir in Brian2 (run by bench/reservoir.py as a subprocess in a separate venv).

Usage: <brian2-venv>/bin/python bench/reservoir_brian2.py IN.npz OUT.json
IN.npz: w_in (C, N), w_rec (N, N) float32, decay, threshold, frames_<i> (T_i, C) float32 input
counts per bin. Same equations as streamlsm (float32, input current summed first, hard reset via
(1 - s)); neuron bin b is Brian2 step b + 1 (input spikes of bin b are emitted at step b and summed
into I in that step's synapse slot; the update of step b + 1 uses them). Input counts > 1 use one
virtual input line per count level, so every synaptic weight is added exactly x times.
Prints nothing; writes {"counts": [[...]], "seconds": [...], "target": ...} to OUT.json.
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
    G = b2.NeuronGroup(N, "v : 1\nI : 1\ns : 1\ncnt : 1", threshold="v > thr", reset="s = 1\ncnt += 1",
                       namespace={"thr": float(thr)})
    G.run_regularly("v = decay * v * (1 - s)", when="groups", order=0, namespace={"decay": float(decay)})
    G.run_regularly("v = v + I\nI = 0\ns = 0", when="groups", order=1)
    inp = b2.SpikeGeneratorGroup(C * levels, [], [] * b2.ms)
    S_in = b2.Synapses(inp, G, "w : 1", on_pre="I_post += w")
    S_in.connect()
    # synapse (i, j) of a full connect is ordered i-major: w_in tiled over count levels
    S_in.w[:] = np.tile(w_in, (levels, 1)).ravel()
    S_rec = b2.Synapses(G, G, "w : 1", on_pre="I_post += w")
    S_rec.connect()
    S_rec.w[:] = w_rec.ravel()
    net = b2.Network(G, inp, S_in, S_rec)
    net.store("init")
    counts, seconds = [], []
    for f in frames:
        T = f.shape[0]
        b_idx, c_idx = np.nonzero(f)
        k = f[b_idx, c_idx].astype(np.int64)
        idx = np.concatenate([c_idx[k > lv] + lv * C for lv in range(levels)])
        tim = np.concatenate([b_idx[k > lv] for lv in range(levels)])
        t = time.perf_counter()
        net.restore("init")
        inp.set_spikes(idx, tim * b2.ms)
        net.run((T + 1) * b2.ms)
        seconds.append(time.perf_counter() - t)
        counts.append(np.asarray(G.cnt[:]).astype(np.int64).tolist())
    with open(dst, "w") as fh:
        json.dump({"counts": counts, "seconds": seconds, "target": target, "brian2": b2.__version__}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
