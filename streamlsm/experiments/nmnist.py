"""N-MNIST classification: LSM (software / RRAM, whole-sample / 5-window counts) vs trained baselines."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..readout.train import TrainConfig
from ..reservoir import DeviceConfig, preset
from .baselines import SeqConfig
from .classify import Protocol, run_classification
from .cost import cost_table
from .features import Samples
from .report import bar_png, fmt, summarise, write_report

__all__ = ["protocol", "run", "merge", "write", "PAPER"]

PAPER = {"LSM on RRAM": 0.8966, "LSM software": 0.8911, "SRNN-ANN": 0.9696, "SRNN-SNN": 0.9393, "RNN": 0.9623}
RRAM = DeviceConfig(mode="rram")
READ_NOISE = 0.02


def _lsm(device: str, windows: int, polarity: str) -> Callable[[int], object]:
    def make(seed: int):
        kw = {"feature_windows": windows, "polarity": polarity, "seed": seed}
        if device == "rram":
            kw.update(device=RRAM, read_noise=READ_NOISE)
        return preset("nmnist", **kw)
    return make


def protocol(quick: bool = False) -> Protocol:
    lsm = {
        "lsm-sw-whole-p0": _lsm("sw", 1, "0"),      # the paper's feature: polarity 0, whole-sample counts
        "lsm-sw-5win-p0": _lsm("sw", 5, "0"),
        "lsm-sw-whole": _lsm("sw", 1, "both"),      # both polarities (their own input channels)
        "lsm-sw-5win": _lsm("sw", 5, "both"),
        "lsm-rram-whole": _lsm("rram", 1, "both"),
        "lsm-rram-5win": _lsm("rram", 5, "both"),
    }
    inp = preset("nmnist", polarity="both")                     # 2 x 16 x 16 inputs, 6 ms bins
    seq = preset("nmnist", polarity="both", pool=2, bin_us=12000)  # 2 x 8 x 8 inputs, 12 ms bins
    p = Protocol(lsm=lsm, input_config=inp, seq_config=seq, seq=SeqConfig(hidden=64),
                 readout=TrainConfig(epochs=100),
                 seq_train=TrainConfig(epochs=25, batch_size=64, lr=3e-3, patience=5))
    if quick:
        p = dataclasses.replace(p, lsm={k: lsm[k] for k in ("lsm-sw-whole", "lsm-sw-5win", "lsm-rram-5win")},
                                folds=2, seq_train=TrainConfig(epochs=3, batch_size=64, lr=3e-3, patience=3),
                                readout=TrainConfig(epochs=50))
    return p


def run(samples: Samples, out: str | Path, *, seeds: int = 3, quick: bool = False, test: Samples | None = None,
        cache_dir=None, progress: bool = True, log=print, first_seed: int = 0) -> dict:
    """Run the protocol for seeds first_seed..first_seed+seeds-1, write results.json / report.md /
    accuracy.png under ``out``; returns results. ``merge`` combines runs of disjoint seeds."""
    if quick and len(samples) > 300:
        rng = np.random.default_rng(0)
        samples = samples.subset(np.sort(rng.permutation(len(samples))[:300]))
    proto = protocol(quick)
    res = run_classification(samples, proto, list(range(first_seed, first_seed + seeds)), test=test,
                             cache_dir=cache_dir, progress=progress, log=log)
    res["quick"] = quick
    return write(res, out)


def merge(results: list[dict], out: str | Path) -> dict:
    """Combine results.json contents of runs over disjoint seeds into one report."""
    runs: dict[str, list] = {}
    for r in results:
        for name, rows in r["runs"].items():
            runs.setdefault(name, []).extend(rows)
    first = dict(results[0])
    first["runs"] = runs
    return write(first, out)


def write(res: dict, out: str | Path) -> dict:
    seeds = sorted({r["seed"] for rows in res["runs"].values() for r in rows})
    per_seed = {name: [float(np.mean([r["accuracy"] for r in runs if r["seed"] == s])) for s in seeds]
                for name, runs in res["runs"].items()}
    summary = summarise(per_seed)
    lsm_names = [n for n in summary if n.startswith("lsm")]
    best_lsm = max(lsm_names, key=lambda n: summary[n]["mean"])
    baselines = [n for n in summary if not n.startswith("lsm")]
    costs = cost_table(res["runs"], reference=best_lsm)
    res.update(summary=summary, per_seed=per_seed, best_lsm=best_lsm, cost=costs, paper=PAPER, seeds=seeds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = bar_png(out / "accuracy.png", summary, "accuracy", f"N-MNIST ({res['protocol']}, {len(seeds)} seeds)",
                  reference={"paper LSM sw 89.11": 0.8911})
    rows = [[n, fmt(summary[n]), f"{summary[n]['min'] * 100:.2f}-{summary[n]['max'] * 100:.2f}"] for n in summary]
    cost_rows = [[n, f"{c['train_seconds']:.2f}", f"{c['train_macs']:.3g}", f"{c['feature_macs']:.3g}",
                  f"{c['ratio_seconds']:.1f}x", f"{c['ratio_macs']:.1f}x"] for n, c in costs.items()]
    best_base = max(baselines, key=lambda n: summary[n]["mean"]) if baselines else None
    notes = [f"{res['n_samples']} samples, {res['protocol']}, seeds {seeds} (reservoir weights, folds and "
             "initialisation change with the seed); mean ± sample std over seeds of the fold-mean accuracy.",
             f"Best LSM: {best_lsm} {fmt(summary[best_lsm])}; target >= 91%."
             + (f" Best baseline: {best_base} {fmt(summary[best_base])}." if best_base else ""),
             "Readouts (LSM and input baselines): softmax regression on standardised log(1 + counts), full-batch "
             "L-BFGS; the L2 penalty is chosen on 20% of each training fold, then the model is refit on the whole "
             "training fold. GRU / SRNN: Adam, epoch chosen on the same 20% split.",
             "RRAM: DeviceConfig(mode='rram') conductances (breakdown 0.5, N(14.25, 2.46) uS, differential pairs) "
             f"and read noise eta = {READ_NOISE} fresh at every read.",
             "Cost: mean per training run, to the selected epoch; ratio = model / best LSM readout "
             "(train MACs exclude the one-off reservoir forward pass, listed separately per run).",
             "Paper (60k training samples): " + ", ".join(f"{k} {v * 100:.2f}" for k, v in PAPER.items())]
    write_report(out, "N-MNIST classification", res,
                 [("Accuracy", ["model", "accuracy % (mean ± std)", "range"], rows),
                  ("Training cost", ["model", "seconds", "train MACs", "reservoir MACs", "time ratio", "MAC ratio"],
                   cost_rows)],
                 notes, [f for f in (fig,) if f])
    return res
