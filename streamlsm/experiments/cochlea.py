"""Spoken-digit classification on cochlea events (FSDD recordings through the emulator, or N-TIDIGITS)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..readout.train import TrainConfig
from ..reservoir import DeviceConfig, preset
from .baselines import SeqConfig
from .classify import Protocol, run_classification
from .features import Samples
from .report import bar_png, fmt, summarise, write_report

__all__ = ["protocol", "run", "PAPER"]

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
        progress: bool = True, log=print) -> dict:
    """Train on ``train``, score on ``test`` once per seed (reservoir weights and initialisation vary)."""
    if quick:
        rng = np.random.default_rng(0)
        train = train.subset(np.sort(rng.permutation(len(train))[:400]))
        test = test.subset(np.sort(rng.permutation(len(test))[:200]))
    res = run_classification(train, protocol(quick), seeds, test=test, cache_dir=cache_dir, progress=progress,
                             log=log)
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
    write_report(out, "Spoken-digit classification (cochlea events)",
                 {"summary": summary, "per_seed": per_seed, "runs": res["runs"], "paper": PAPER, "seeds": seeds},
                 [("Test accuracy % (mean ± std over seeds)", ["model", "accuracy"],
                   [[m, fmt(s)] for m, s in summary.items()])], notes, [f for f in (fig,) if f])
    return {"summary": summary, "per_seed": per_seed}
