"""Auditory-cortex classification (18 sounds): LSM readouts vs input readouts and a GRU, per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..reservoir import preset
from ..training.train import TrainConfig
from .baselines import SeqConfig
from .classify import Protocol, _concat, run_classification
from .features import Samples
from .report import bar_png, fmt, summarise, write_report
from .reservoir_vs_input import calibrated_scales, compare, summary_rows

__all__ = ["protocol", "run", "base_config", "NEURONS"]

NEURONS = (200, 500, 1000, 2048)


def _n_units(samples: Samples) -> int:
    return int(max((int(e["x"].max()) for e in samples.events if len(e)), default=0)) + 1


def base_config(n_units: int, neurons: int = 2048):
    """The neural preset (2048 neurons, 10 ms bins) on a session's units, before calibration."""
    return preset("neural", n_inputs=n_units, sensor=(n_units, 1), n_neurons=neurons)


def protocol(n_units: int, scale: float, quick: bool = False) -> Protocol:
    """LSM rows: the neural preset's 2048 neurons with weight_scale = rec_scale = ``scale`` (calibrated
    on the session's training trials to 0.06 spikes/neuron/bin, as the other presets)."""
    def lsm(windows: int):
        return lambda seed: dataclasses.replace(base_config(n_units), weight_scale=scale, rec_scale=scale,
                                                feature_windows=windows, seed=seed)

    inp = preset("neural", n_inputs=n_units, sensor=(n_units, 1), n_neurons=8)
    # one LSM row at the preset's size (the 5-window and other sizes are in the reservoir-vs-input study)
    p = Protocol(lsm={"lsm-whole": lsm(1)}, input_config=inp,
                 input_windows=(1, 5, 10), seq_config=dataclasses.replace(inp, bin_us=20000), seq_models=("gru",),
                 seq=SeqConfig(hidden=64, pool="mean"), readout=TrainConfig(epochs=100),
                 seq_train=TrainConfig(epochs=30, batch_size=64, lr=3e-3, patience=6))
    if quick:
        p = dataclasses.replace(p, seq_train=TrainConfig(epochs=2, batch_size=64, lr=3e-3, patience=2),
                                readout=TrainConfig(epochs=30))
    return p


def run(sessions: dict[str, tuple[Samples, Samples]], out: str | Path, *, seeds: int = 3, quick: bool = False,
        cache_dir=None, progress: bool = True, log=print, neurons=NEURONS, sequence_models: bool = True) -> dict:
    """``sessions``: {name: (train+val trials, test trials)} by the authors' roles."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results, rows, figs, vs_rows, vs_head = {}, [], [], [], []
    neurons = (200, 500) if quick else tuple(neurons)
    headline = {}
    for name, (train, test) in sessions.items():
        log(f"session {name}: {len(train)} train+val trials, {len(test)} test trials")
        n_units = max(_n_units(train), _n_units(test))
        cal = calibrated_scales(base_config(n_units), train, sorted({*neurons, 2048}), log=log)
        proto = protocol(n_units, cal[2048]["weight_scale"], quick)
        if not sequence_models:
            proto = dataclasses.replace(proto, seq_config=None)
        res = run_classification(train, proto, seeds, test=test,
                                 cache_dir=cache_dir, progress=progress, log=log)
        per_seed = {m: [float(np.mean([r["accuracy"] for r in rs if r["seed"] == s])) for s in range(seeds)]
                    for m, rs in res["runs"].items()}
        summary = summarise(per_seed)

        def make(seed: int, n: int, n_units=n_units, cal=cal):
            return dataclasses.replace(base_config(n_units, n), seed=seed, weight_scale=cal[n]["weight_scale"],
                                       rec_scale=cal[n]["rec_scale"])

        data = _concat(train, test)
        split = [(np.arange(len(train)), np.arange(len(train), len(data)))]
        vs = compare(data, make, preset("neural", n_inputs=n_units, sensor=(n_units, 1), n_neurons=8), neurons,
                     list(range(seeds)), lambda seed, split=split: split, cache_dir=cache_dir, log=log,
                     softmax=True)
        vs["calibration"] = {str(k): v for k, v in cal.items()}
        vs["neurons"] = list(neurons)
        headline[name] = {k: vs[k] for k in ("best_lsm", "best_lsm_name", "best_input", "best_input_name")}
        results[name] = {"summary": summary, "per_seed": per_seed, "n_units": n_units, "runs": res["runs"],
                         "versus_input": vs, "headline": headline[name]}
        for m, s in summary.items():
            rows.append([name, m, fmt(s)])
        for r in summary_rows(vs):
            vs_rows.append([name, *r])
        vs_head.append([name, f"{vs['best_lsm'] * 100:.2f} ± {vs['best_lsm_std'] * 100:.2f}", vs["best_lsm_name"],
                        f"{vs['best_input'] * 100:.2f} ± {vs['best_input_std'] * 100:.2f}", vs["best_input_name"],
                        f"{cal[2048]['weight_scale']:.4g}", f"{cal[2048]['rate']:.4f}", f"{cal[2048]['silent']:.3f}"])
        f = bar_png(out / f"neural_{name}.png", summary, "accuracy", f"auditory cortex {name} (18 classes)",
                    reference={"chance 1/18": 1 / 18})
        if f:
            figs.append(f)
    notes = ["Authors' role split: train+val trials for training (20% of them held out, stratified, to choose the "
             "L2 penalty / GRU epoch), test trials scored once per seed. Chance 1/18 = 5.6%.",
             "LSM rows: the neural preset (2048 LIF neurons, decay 0.95, threshold 0.1, 10 ms bins: 50 per 500 ms "
             "trial) on the session's units, weight scale calibrated per session to 0.06 spikes/neuron/bin on 50 "
             "training trials (the column 'scale' below), as the other presets.",
             "Reservoir against input: within each family the feature set and ridge penalty are chosen by exact "
             "leave-one-out on the training trials only, the chosen set is read out by ridge or softmax regression "
             "(whichever validates better on the training trials), then scored once on the test trials per seed; reservoir "
             f"sizes {list(neurons)}, each calibrated."]
    write_report(out, "Auditory cortex classification",
                 {"sessions": results, "seeds": seeds, "quick": quick, "headline": headline},
                 [("Test accuracy % (mean ± std over seeds)", ["session", "model", "accuracy"], rows),
                  ("Reservoir against input, per session", ["session", "best LSM %", "most chosen", "best input %",
                                                            "most chosen", "scale (2048)", "rate", "silent"], vs_head),
                  ("All candidates", ["session", "family", "candidate", "test accuracy %", "LOO %", "chosen"],
                   vs_rows)], notes, figs)
    return {"sessions": results, "headline": headline}
