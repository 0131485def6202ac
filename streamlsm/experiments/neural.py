"""Auditory-cortex classification (18 sounds): LSM readouts vs input readouts and a GRU, per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..readout.train import TrainConfig
from ..reservoir import preset
from .baselines import SeqConfig
from .classify import Protocol, run_classification
from .features import Samples
from .report import bar_png, fmt, summarise, write_report

__all__ = ["protocol", "run"]

SCALE = 0.01  # input and recurrent weight scale for these sparse recordings (the BMI preset's 5e-4 is silent)


def _n_units(samples: Samples) -> int:
    return int(max((int(e["x"].max()) for e in samples.events if len(e)), default=0)) + 1


def protocol(n_units: int, quick: bool = False) -> Protocol:
    def lsm(windows: int, neurons: int):
        return lambda seed: preset("neural", n_inputs=n_units, sensor=(n_units, 1), n_neurons=neurons,
                                   weight_scale=SCALE, rec_scale=SCALE, feature_windows=windows, seed=seed)

    inp = preset("neural", n_inputs=n_units, sensor=(n_units, 1), n_neurons=8)
    p = Protocol(lsm={"lsm-whole": lsm(1, 500), "lsm-5win": lsm(5, 500)}, input_config=inp,
                 input_windows=(1, 5, 10), seq_config=dataclasses.replace(inp, bin_us=20000), seq_models=("gru",),
                 seq=SeqConfig(hidden=64, pool="mean"), readout=TrainConfig(epochs=100),
                 seq_train=TrainConfig(epochs=30, batch_size=64, lr=3e-3, patience=6))
    if quick:
        p = dataclasses.replace(p, seq_train=TrainConfig(epochs=2, batch_size=64, lr=3e-3, patience=2),
                                readout=TrainConfig(epochs=30))
    return p


def run(sessions: dict[str, tuple[Samples, Samples]], out: str | Path, *, seeds: int = 3, quick: bool = False,
        cache_dir=None, progress: bool = True, log=print) -> dict:
    """``sessions``: {name: (train+val trials, test trials)} by the authors' roles."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results, rows, figs = {}, [], []
    for name, (train, test) in sessions.items():
        log(f"session {name}: {len(train)} train+val trials, {len(test)} test trials")
        n_units = max(_n_units(train), _n_units(test))
        res = run_classification(train, protocol(n_units, quick), seeds, test=test, cache_dir=cache_dir,
                                 progress=progress, log=log)
        per_seed = {m: [float(np.mean([r["accuracy"] for r in rs if r["seed"] == s])) for s in range(seeds)]
                    for m, rs in res["runs"].items()}
        summary = summarise(per_seed)
        results[name] = {"summary": summary, "per_seed": per_seed, "n_units": n_units, "runs": res["runs"]}
        for m, s in summary.items():
            rows.append([name, m, fmt(s)])
        f = bar_png(out / f"neural_{name}.png", summary, "accuracy", f"auditory cortex {name} (18 classes)",
                    reference={"chance 1/18": 1 / 18})
        if f:
            figs.append(f)
    notes = ["Authors' role split: train+val trials for training (20% of them held out, stratified, to choose the "
             "L2 penalty / GRU epoch), test trials scored once per seed. Chance 1/18 = 5.6%.",
             f"LSM: 500 LIF neurons, 10 ms bins (50 per 500 ms trial), weight scale {SCALE}; inputs = units."]
    write_report(out, "Auditory cortex classification", {"sessions": results, "seeds": seeds, "quick": quick},
                 [("Test accuracy % (mean ± std over seeds)", ["session", "model", "accuracy"], rows)], notes, figs)
    return {"sessions": results}
