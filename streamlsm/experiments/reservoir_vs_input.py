"""The reservoir against its own input: LSM feature sets vs input-only feature sets, each family chosen by nested validation.

LSM candidates: reservoirs of several sizes (each calibrated to the same firing rate on training
samples), read out on spike counts or on sampled membrane potentials in 1 / 5 / 10 equal time
windows of each sample. Input-only candidates: the reservoir's own input (same mapping and bins)
counted in 1 ... 40 windows (a feature budget as large as the largest LSM's), and the input low-pass
filtered with the neuron's leak and sampled like the membranes. Within each family the feature set
and the ridge penalty are chosen by exact leave-one-out on the outer training part only
(``selection.select_and_score``; features standardised on the training part); the outer test
part scores the choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..reservoir import ReservoirConfig
from ..reservoir.calibrate import calibrate
from .features import (
    Samples,
    binned_input,
    encode_cached,
    leaky_trace,
    membrane_cached,
    spike_stats,
    window_ends,
)
from .selection import select_and_score

__all__ = ["calibrated_scales", "lsm_features", "input_features", "compare", "summary_rows", "MAX_POINTS",
           "INPUT_WINDOWS", "TRACE_WINDOWS"]

MAX_POINTS = 10
LSM_WINDOWS = (1, 5, 10)
INPUT_WINDOWS = (1, 5, 10, 20, 40)
TRACE_WINDOWS = (1, 5, 10, 20)


def calibrated_scales(base: ReservoirConfig, samples: Samples, neurons: Sequence[int], target: float = 0.06,
                      n_cal: int = 50, log=print) -> dict[int, dict]:
    """{N: calibration report} for reservoirs of N neurons (seed 0 weights) on ``n_cal`` samples
    drawn from ``samples`` (no labels used), weight_scale == rec_scale as in the presets."""
    rng = np.random.default_rng(0)
    idx = np.sort(rng.permutation(len(samples))[:n_cal])
    ev = [samples.events[i] for i in idx]
    dur = samples.durations[idx]
    out = {}
    for n in neurons:
        cfg = dataclasses.replace(base, n_neurons=n, feature_windows=1, seed=0)
        _, rep = calibrate(cfg, ev, dur, target=target)
        rep.pop("trace", None)
        out[n] = rep
        log(f"  calibrated {n} neurons: scale {rep['weight_scale']:.4g}, rate {rep['rate']:.4f}, "
            f"silent {rep['silent']:.3f}")
    return out


def _pool_counts(c10: np.ndarray, n: int, k: int) -> np.ndarray:
    """10-window counts (S, 10 N) -> k-window counts (k divides 10): windows of 10 nest in those of k."""
    c = c10.reshape(len(c10), MAX_POINTS, n)
    return c.reshape(len(c10), k, MAX_POINTS // k, n).sum(2).reshape(len(c10), k * n)


def _pick_points(m10: np.ndarray, n: int, k: int) -> np.ndarray:
    """Membranes at the ends of 10 spans -> at the ends of k spans (the end of span w of k is the end
    of span (w + 1) 10 / k - 1 of 10)."""
    idx = [(w + 1) * MAX_POINTS // k - 1 for w in range(k)]
    return m10.reshape(len(m10), MAX_POINTS, n)[:, idx].reshape(len(m10), k * n)


def lsm_features(make: Callable[[int, int], ReservoirConfig], samples: Samples, neurons: Sequence[int], seed: int,
              stats: dict, cache_dir=None, log=print) -> Iterator[tuple[str, np.ndarray]]:
    """(name, features) of every LSM candidate for one seed, one at a time; firing statistics per
    size go into ``stats``. ``make(seed, N)`` gives the (calibrated) reservoir of N neurons."""
    for n in neurons:
        cfg = dataclasses.replace(make(seed, n), feature_windows=MAX_POINTS)
        c10 = encode_cached(cfg, samples, cache_dir)
        stats[str(n)] = spike_stats(c10, cfg, samples.durations)
        log(f"    seed {seed}: {n} neurons rate {stats[str(n)]['rate']:.4f} silent {stats[str(n)]['silent']:.3f}")
        for k in LSM_WINDOWS:
            yield f"lsm-{n}-counts-{k}w", np.log1p(_pool_counts(c10, n, k))
        del c10
        m10 = membrane_cached(cfg, samples, MAX_POINTS, cache_dir)
        for k in LSM_WINDOWS:
            yield f"lsm-{n}-membrane-{k}w", _pick_points(m10, n, k)


def _sample_windows(binned: np.ndarray, n_bins: np.ndarray, k: int) -> np.ndarray:
    """(S, T, C) counts -> (S, k C): counts in k equal spans of each sample's own bins."""
    s, t, c = binned.shape
    cs = np.concatenate([np.zeros((s, 1, c), np.float32), np.cumsum(binned, axis=1)], axis=1)
    ends = np.minimum(window_ends(n_bins, k), t)
    starts = np.concatenate([np.zeros((s, 1), np.int64), ends[:, :-1]], axis=1)
    rows = np.arange(s)[:, None]
    return (cs[rows, ends] - cs[rows, starts]).reshape(s, k * c)


def input_features(config: ReservoirConfig, samples: Samples) -> Iterator[tuple[str, np.ndarray]]:
    """(name, features) of the input-only candidates, one at a time (they do not depend on the seed)."""
    binned = binned_input(config, samples)
    nb = -(-samples.durations // config.bin_us)
    for k in INPUT_WINDOWS:
        yield f"input-counts-{k}w", np.log1p(_sample_windows(binned, nb, k))
    for k in TRACE_WINDOWS:
        yield f"input-leaky-{k}w", np.log1p(leaky_trace(binned, nb, config.decay, k))


def _softmax(x: np.ndarray, labels: np.ndarray, classes: list[str], tr: np.ndarray, te: np.ndarray, seed: int) -> dict:
    """The repo's softmax-regression readout (L-BFGS, L2 chosen on 20% of ``tr``, refit on ``tr``)."""
    from ..training.train import TrainConfig, train_classifier

    b = train_classifier(x[tr], labels[tr], classes, config=TrainConfig(epochs=100, seed=seed), refit=True,
                         l2_grid=(3e-3, 3e-2))
    return {"val": float(b.metrics["val_accuracy"]),
            "accuracy": float(np.mean(b.classify("features", x[te]) == labels[te]))}


def compare(samples: Samples, make: Callable[[int, int], ReservoirConfig], input_config: ReservoirConfig,
            neurons: Sequence[int], seeds: Sequence[int], splits: Callable[[int], list], *, cache_dir=None,
            log=print, softmax: bool = False) -> dict:
    """Nested selection within each family, per seed; ``splits(seed)`` gives the outer (train, test)
    index pairs over ``samples``. Returns per family and seed the outer accuracy of the chosen
    candidate, the choices, and every candidate's outer accuracy (reported, never used to choose).

    ``softmax``: the chosen feature set is also read out by softmax regression (ridge on one-hot
    targets suffers from masking when there are few features for many classes, as on the neural
    units), and per fold the readout with the better inner validation score (ridge LOO or the
    softmax's 20% split) gives the outer accuracy."""
    classes = sorted(set(samples.labels.tolist()), key=lambda c: (len(c), c))
    y = np.asarray([classes.index(c) for c in samples.labels])
    out = {"lsm": [], "input": [], "rates": {}, "classes": classes, "softmax": softmax}
    for seed in seeds:
        stats: dict = {}
        out["rates"][str(seed)] = stats
        for fam in ("lsm", "input"):
            def feats(fam=fam, stats=stats, seed=seed):
                return (lsm_features(make, samples, neurons, seed, stats, cache_dir, log) if fam == "lsm"
                        else input_features(input_config, samples))

            sp = splits(seed)
            per = select_and_score(feats(), y, sp, len(classes))
            if softmax:
                wanted = {p["chosen"] for p in per}
                for name, x in feats():
                    if name not in wanted:
                        continue
                    for j, (tr, te) in enumerate(sp):
                        if per[j]["chosen"] != name:
                            continue
                        sm = _softmax(x, samples.labels, classes, tr, te, seed * 100 + j)
                        p = per[j]
                        p["ridge_accuracy"], p["softmax"] = p["accuracy"], sm
                        p["readout"] = "softmax" if sm["val"] > p["loo"] else "ridge"
                        p["accuracy"] = sm["accuracy"] if p["readout"] == "softmax" else p["ridge_accuracy"]
            out[fam].append({"seed": seed, "accuracy": float(np.mean([p["accuracy"] for p in per])),
                             "chosen": [p["chosen"] for p in per], "folds": per,
                             "readouts": [p.get("readout", "ridge") for p in per]})
            log(f"    seed {seed} {fam:5s}: {out[fam][-1]['accuracy']:.4f} chosen {out[fam][-1]['chosen']} "
                f"readout {out[fam][-1]['readouts']}")
    for fam in ("lsm", "input"):
        accs = [r["accuracy"] for r in out[fam]]
        chosen = [c for r in out[fam] for c in r["chosen"]]
        names, counts = np.unique(chosen, return_counts=True)
        out[f"best_{fam}"] = float(np.mean(accs))
        out[f"best_{fam}_std"] = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        out[f"best_{fam}_name"] = str(names[int(np.argmax(counts))])
        if softmax:
            ridge = [np.mean([p["ridge_accuracy"] for p in r["folds"]]) for r in out[fam]]
            soft = [np.mean([p["softmax"]["accuracy"] for p in r["folds"]]) for r in out[fam]]
            out[f"best_{fam}_ridge"], out[f"best_{fam}_softmax"] = float(np.mean(ridge)), float(np.mean(soft))
    return out


def summary_rows(res: dict) -> list[list]:
    """Report rows: each candidate's outer accuracy (mean over seeds and folds) and how often chosen."""
    rows = []
    for fam in ("lsm", "input"):
        cands: dict[str, list] = {}
        chosen: dict[str, int] = {}
        for r in res[fam]:
            for f in r["folds"]:
                chosen[f["chosen"]] = chosen.get(f["chosen"], 0) + 1
                for name, c in f["candidates"].items():
                    cands.setdefault(name, []).append((c["accuracy"], c["loo"]))
        total = sum(chosen.values())
        for name, v in cands.items():
            a = np.asarray(v)
            rows.append([fam, name, f"{a[:, 0].mean() * 100:.2f}", f"{a[:, 1].mean() * 100:.2f}",
                         f"{chosen.get(name, 0)}/{total}"])
    return rows
