"""Shared classification protocol: stratified K-fold CV over seeds for LSM readouts and baselines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..reservoir import ReservoirConfig
from ..training.train import TrainConfig, train_classifier
from .baselines import SeqConfig, train_sequence
from .features import Samples, binned_input, encode_cached, window_pool

__all__ = ["Protocol", "run_classification", "lsm_feature_macs"]


@dataclass
class Protocol:
    """What to compare: LSM variants (seed -> ReservoirConfig), input baselines and sequence models."""

    lsm: dict[str, Callable[[int], ReservoirConfig]]
    input_config: ReservoirConfig            # mapping + bin width of the logistic-regression baselines
    input_windows: tuple[int, ...] = (1, 5)
    seq_config: ReservoirConfig | None = None  # mapping + bins of the GRU / SRNN inputs (None: skip)
    seq_models: tuple[str, ...] = ("gru", "srnn")
    seq: SeqConfig = SeqConfig()
    readout: TrainConfig = TrainConfig(epochs=100)  # L-BFGS iterations per fit
    l2_grid: tuple[float, ...] = (3e-3, 3e-2)  # L2 penalties tried on the validation split
    seq_train: TrainConfig = TrainConfig(epochs=40, batch_size=64, lr=3e-3, patience=8)
    folds: int = 5
    extra: dict = field(default_factory=dict)


def lsm_feature_macs(cfg: ReservoirConfig, n_inputs: int, durations: np.ndarray) -> float:
    """Mean MACs of one reservoir forward pass per sample (dense crossbar: inputs + recurrent rows)."""
    bins = np.ceil(durations / cfg.bin_us)
    return float(np.mean(bins) * (n_inputs + cfg.n_neurons) * cfg.n_neurons)


def _folds(labels: np.ndarray, k: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def run_classification(samples: Samples, proto: Protocol, seeds: int | list[int], *, test: Samples | None = None,
                       cache_dir=None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Every model x seed x fold: accuracy, selected epoch, seconds, MACs to the selected epoch.

    With ``test`` every model is instead trained on all of ``samples`` once per seed and scored on it.
    """
    torch.set_num_threads(1)  # small models: one thread each is fastest, and the kernel keeps its own
    classes = sorted(set(samples.labels.tolist()), key=lambda c: (len(c), c))
    rows: dict[str, list[dict]] = {}
    data = samples if test is None else _concat(samples, test)
    n_train = len(samples)
    # input representations do not depend on the seed
    inputs = {}
    if proto.input_windows:
        binned = binned_input(proto.input_config, data)
        for w in proto.input_windows:
            inputs[f"logreg-input-{'pooled' if w == 1 else f'{w}win'}"] = np.log1p(window_pool(binned, w))
        del binned
    seq_x = np.log1p(binned_input(proto.seq_config, data)) if proto.seq_config is not None else None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    work = [(s, name) for s in seed_list for name in [*proto.lsm, *inputs, *(proto.seq_models if seq_x is not None else ())]]
    bar = tqdm(work, desc="models", disable=not progress)
    for seed, name in bar:
        bar.set_postfix(model=name, seed=seed)
        splits = [(np.arange(n_train), np.arange(n_train, len(data)))] if test is not None else _folds(samples.labels, proto.folds, seed)
        if name in proto.lsm:
            cfg = proto.lsm[name](seed)
            t0 = time.perf_counter()
            x = np.log1p(encode_cached(cfg, data, cache_dir))
            feat_s = time.perf_counter() - t0
            from ..reservoir import Reservoir

            n_in = Reservoir(cfg).n_inputs
            feat_macs = lsm_feature_macs(cfg, n_in, data.durations)
        elif name in inputs:
            x, feat_s, feat_macs = inputs[name], 0.0, 0.0
        for fold, (tr, te) in enumerate(splits):
            t0 = time.perf_counter()
            if name in proto.seq_models:
                tc = TrainConfig(**{**proto.seq_train.__dict__, "seed": seed * 100 + fold})
                r = train_sequence(name, seq_x[tr], data.labels[tr], seq_x[te], classes, config=tc, seq=proto.seq)
                pred, macs, best, sec_best = r["pred"], r["train_macs_to_best"], r["best_epoch"], r["seconds_to_best"]
                extra_macs = 0.0
                extra = {"val_accuracy": r["val"], "val_history": r["val_history"], "macs_per_epoch": r["macs_per_epoch"]}
            else:
                tc = TrainConfig(**{**proto.readout.__dict__, "seed": seed * 100 + fold})
                b = train_classifier(x[tr], data.labels[tr], classes, config=tc, refit=True, l2_grid=proto.l2_grid)
                pred = b.classify("features", x[te])
                macs, best = b.metrics["train_macs_to_best"], b.metrics["best_epoch"]
                sec_best = b.metrics["train_seconds"]
                extra_macs = feat_macs * len(tr)
                extra = {"val_accuracy": b.metrics["val_accuracy"]}
            acc = float(np.mean(pred == data.labels[te]))
            rows.setdefault(name, []).append({
                "seed": seed, "fold": fold, "accuracy": acc, "best_epoch": best, "train_seconds": sec_best,
                "wall_seconds": time.perf_counter() - t0, "train_macs": float(macs),
                "feature_macs": float(extra_macs), "feature_seconds": feat_s * len(tr) / len(data), **extra})
        accs = [r["accuracy"] for r in rows[name] if r["seed"] == seed]
        log(f"  {name:24s} seed {seed}: accuracy {np.mean(accs):.4f}")
    bar.close()
    return {"classes": classes, "runs": rows, "n_samples": len(samples), "n_test": 0 if test is None else len(test),
            "protocol": "train/test" if test is not None else f"stratified {proto.folds}-fold CV"}


def _concat(a: Samples, b: Samples) -> Samples:
    groups = None if a.groups is None or b.groups is None else np.concatenate([a.groups, b.groups])
    return Samples(a.events + b.events, np.concatenate([a.durations, b.durations]),
                   np.concatenate([a.labels, b.labels]), groups, a.name)
