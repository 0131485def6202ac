"""Spoken-digit classification on cochlea events (FSDD recordings through the emulator, or N-TIDIGITS)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..reservoir import DeviceConfig, preset
from ..training.train import TrainConfig
from .baselines import SeqConfig
from .classify import Protocol, run_classification
from .features import Samples
from .report import bar_png, fmt, summarise, write_report
from .reservoir_vs_input import summary_rows

__all__ = ["protocol", "run", "versus_input", "PAPER", "NEURONS"]

NEURONS = (200, 500, 1000, 2048)

PAPER = {"LSM on RRAM (N-TIDIGITS)": 0.7011, "LSM software (N-TIDIGITS)": 0.7079, "SRNN-ANN": 0.8262,
         "SRNN-SNN": 0.6375, "RNN": 0.7554}


def protocol(quick: bool = False) -> Protocol:
    def lsm(windows: int, device: str = "sw"):
        def make(seed: int):
            kw = {"feature_windows": windows, "seed": seed}
            if device == "rram":
                kw.update(device=DeviceConfig(mode="rram"), read_noise=0.02)
            return preset("cochlea", **kw)
        return make

    inp = preset("cochlea")
    p = Protocol(lsm={"lsm-whole": lsm(1), "lsm-5win": lsm(5), "lsm-rram-5win": lsm(5, "rram")},
                 input_config=inp, input_windows=(1, 5),
                 seq_config=dataclasses.replace(inp, bin_us=16000), seq_models=("gru", "srnn"),
                 seq=SeqConfig(hidden=64, pool="mean"), readout=TrainConfig(epochs=100),
                 seq_train=TrainConfig(epochs=30, batch_size=64, lr=3e-3, patience=6))
    if quick:
        p = dataclasses.replace(p, seq_train=TrainConfig(epochs=2, batch_size=64, lr=3e-3, patience=2),
                                readout=TrainConfig(epochs=30), seq_models=("gru",))
    return p


def run(train: Samples, test: Samples, out: str | Path, *, seeds: int = 3, quick: bool = False, cache_dir=None,
        progress: bool = True, log=print, neurons=NEURONS, sequence_models: bool = True) -> dict:
    """Train on ``train``, score on ``test`` once per seed (reservoir weights and initialisation vary)."""
    if quick:
        rng = np.random.default_rng(0)
        train = train.subset(np.sort(rng.permutation(len(train))[:400]))
        test = test.subset(np.sort(rng.permutation(len(test))[:200]))
    proto = protocol(quick)
    if not sequence_models:
        proto = dataclasses.replace(proto, seq_config=None)
    res = run_classification(train, proto, seeds, test=test, cache_dir=cache_dir, progress=progress,
                             log=log)
    vs = versus_input(train, test, list(range(seeds)), (200, 500) if quick else neurons, cache_dir, log)
    per_seed = {m: [float(np.mean([r["accuracy"] for r in rs if r["seed"] == s])) for s in range(seeds)]
                for m, rs in res["runs"].items()}
    summary = summarise(per_seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_cls = len(set(train.labels.tolist()))
    fig = bar_png(out / "cochlea.png", summary, "accuracy", f"spoken digits, {train.name}",
                  reference={f"chance 1/{n_cls}": 1 / n_cls})
    notes = [f"Data: {train.name}; {len(train)} training / {len(test)} test utterances, {n_cls} classes "
             "(FSDD convention: recordings 0-4 of each speaker and digit are the test set).",
             "Readouts: L-BFGS softmax regression, L2 chosen on a stratified 20% of the training set, then refit.",
             "Paper (real N-TIDIGITS, 11 classes): " + ", ".join(f"{k} {v * 100:.2f}" for k, v in PAPER.items())]
    headline = {k: vs[k] for k in ("best_lsm", "best_lsm_name", "best_input", "best_input_name")}
    gap = vs["best_lsm"] - vs["best_input"]
    notes.append(f"Reservoir against input (nested selection within each family on the training set: feature set "
                 f"and ridge penalty by exact leave-one-out, then ridge or softmax regression on the chosen set, "
                 f"whichever validates better on the training set; scored once on the test set per seed): best LSM "
                 f"{vs['best_lsm'] * 100:.2f} ± {vs['best_lsm_std'] * 100:.2f} % (most chosen {vs['best_lsm_name']}) vs "
                 f"best input-only {vs['best_input'] * 100:.2f} ± {vs['best_input_std'] * 100:.2f} % (most chosen "
                 f"{vs['best_input_name']}): the LSM is {abs(gap) * 100:.2f} points "
                 + ("above" if gap > 0 else "below") + f" its input. Reservoir sizes {vs['neurons']}, each calibrated "
                 "to 0.06 spikes/neuron/bin on 50 training utterances.")
    tables = [("Test accuracy % (mean ± std over seeds)", ["model", "accuracy"],
               [[m, fmt(s)] for m, s in summary.items()]),
              ("Reservoir against input: nested selection (ridge readout, LOO on the training set)",
               ["family", "candidate", "test accuracy %", "LOO %", "chosen (seeds)"], summary_rows(vs)),
              ("Reservoir sizes, calibrated to 0.06 spikes/neuron/bin", ["neurons", "weight scale", "rate", "silent"],
               [[n, f"{c['weight_scale']:.4g}", f"{c['rate']:.4f}", f"{c['silent']:.3f}"]
                for n, c in vs["calibration"].items()])]
    write_report(out, "Spoken-digit classification (cochlea events)",
                 {"headline": headline, "summary": summary, "per_seed": per_seed, "runs": res["runs"], "paper": PAPER,
                  "seeds": seeds, "versus_input": vs}, tables, notes, [f for f in (fig,) if f])
    return {"summary": summary, "per_seed": per_seed, "headline": headline}


def versus_input(train: Samples, test: Samples, seeds: list[int], neurons, cache_dir=None, log=print) -> dict:
    """reservoir_vs_input.compare on the given train/test split (inner: LOO on the training set)."""
    from .classify import _concat
    from .reservoir_vs_input import calibrated_scales, compare

    base = preset("cochlea")
    log("reservoir vs input: calibrating the reservoir sizes ...")
    cal = calibrated_scales(base, train, neurons, log=log)

    def make(seed: int, n: int):
        return dataclasses.replace(base, n_neurons=n, seed=seed, weight_scale=cal[n]["weight_scale"],
                                   rec_scale=cal[n]["rec_scale"])

    data = _concat(train, test)
    split = [(np.arange(len(train)), np.arange(len(train), len(data)))]
    res = compare(data, make, base, neurons, seeds, lambda seed: split, cache_dir=cache_dir, log=log, softmax=True)
    res["calibration"] = {str(k): v for k, v in cal.items()}
    res["neurons"] = list(neurons)
    return res
