"""Few-shot enrolment in the same modality: train on 8 N-MNIST digits, enrol the other 2 from k camera samples.

Scored as the live matcher labels: generalised 10-way (all prototypes compete), per-class mean accuracy on
the trained and on the enrolled classes and their harmonic mean H, without and with calibrated stacking
(the seen-class offset chosen on the training split with two trained digits enrolled few-shot instead).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import torch

from ..model.calibration import choose_offset, gzsl_accuracy, seen_unseen_curve
from ..reservoir import preset
from ..training.train import TrainConfig, stratified_split, train_projections
from .features import Samples, encode_cached
from .report import fmt, seen_unseen_png, summarise, write_report
from .zeroshot import cosine_scores

__all__ = ["run", "score_fewshot", "train_embedder", "KS", "CLASSES"]

KS = (1, 5, 10)
CLASSES = [str(d) for d in range(10)]
DRAWS = 5  # support draws per (split, seed, k): the enrolled samples are a random pick


def reservoir_cfg(seed: int):
    return preset("nmnist", feature_windows=5, seed=seed)


def train_embedder(x: np.ndarray, y: np.ndarray, classes: list[str], seed: int, quick: bool = False):
    """A 64-d projection of reservoir features trained with SupCon on the given classes (same modality)."""
    tc = TrainConfig(epochs=4 if quick else 40, batch_size=64, lr=3e-3, patience=4 if quick else 8, seed=seed)
    b = train_projections(x, x, y, labels_b=y, modalities=("vision", "vision_pair"), dim=64, loss="supcon",
                          temperature=0.1, config=tc, classes=classes)
    return lambda f: b.embed("vision", f), b


def score_fewshot(emb_seen: np.ndarray, lab_seen: np.ndarray, emb_pool: np.ndarray, lab_pool: np.ndarray,
                  emb_q: np.ndarray, lab_q: np.ndarray, seen: list[str], novel: list[str], k: int,
                  rng: np.random.Generator, offset: float = 0.0) -> tuple[dict, np.ndarray, np.ndarray]:
    """Seen prototypes = mean of the seen classes' embeddings; each novel class enrolled from k samples of
    its pool (running mean); every query scored against all prototypes. Returns (accuracies, scores, y)."""
    classes = seen + novel
    protos = [emb_seen[lab_seen == c].mean(0) for c in seen]
    for c in novel:
        pool = np.flatnonzero(lab_pool == c)
        protos.append(emb_pool[rng.choice(pool, size=min(k, len(pool)), replace=False)].mean(0))
    keep = np.isin(lab_q, classes)
    s = cosine_scores(emb_q[keep], np.stack(protos))
    y = np.asarray([classes.index(c) for c in lab_q[keep]], np.int64)
    mask = np.isin(classes, seen)
    return gzsl_accuracy(s, y, mask, offset), s, y


def _calibrate_offsets(x, lab, tr, seen, seed, quick) -> dict[int, float]:
    """Per k: the seen-class offset maximising H on the training split, with 2 trained digits enrolled from
    k samples instead (a model trained without them; 30% of the others held out as queries)."""
    rng = np.random.default_rng(seed + 99)
    pseudo = sorted(rng.choice(seen, 2, replace=False).tolist())
    rest = [c for c in seen if c not in pseudo]
    fit, val = stratified_split(lab[tr], 0.3, seed + 5)
    fit_i = tr[fit][np.isin(lab[tr[fit]], rest)]
    val_i = tr[val][np.isin(lab[tr[val]], rest)]
    ps = tr[np.isin(lab[tr], pseudo)]
    half = np.zeros(len(ps), bool)
    for c in pseudo:
        idx = rng.permutation(np.flatnonzero(lab[ps] == c))
        half[idx[: len(idx) // 2]] = True
    embed, _ = train_embedder(x[fit_i], lab[fit_i], rest, seed, quick)
    e_fit, e_pool = embed(x[fit_i]), embed(x[ps[half]])
    q = np.concatenate([val_i, ps[~half]])
    e_q = embed(x[q])
    out = {}
    for k in KS:
        offs = []
        for _ in range(DRAWS):
            _, s, y = score_fewshot(e_fit, lab[fit_i], e_pool, lab[ps[half]], e_q, lab[q], rest, pseudo, k, rng)
            offs.append(choose_offset(s, y, np.isin(rest + pseudo, rest)))
        out[k] = float(np.mean(offs))
    return out


def run(train: Samples, out: str | Path, *, test: Samples | None = None, seeds: int = 3, splits: int = 10,
        quick: bool = False, cache_dir=None, progress: bool = True, log=print) -> dict:
    """``splits`` held-out pairs of digits (a fixed sample of the 45) x ``seeds``; k = 1, 5, 10 shots."""
    torch.set_num_threads(1)
    pairs = list(itertools.combinations(CLASSES, 2))
    pick = sorted(np.random.default_rng(7).choice(len(pairs), size=min(splits, len(pairs)), replace=False).tolist())
    runs: list[dict] = []
    curves = {}
    t_all = time.perf_counter()
    for seed in range(seeds):
        cfg = reservoir_cfg(seed)
        x = np.log1p(encode_cached(cfg, train, cache_dir))
        lab = np.asarray(train.labels)
        if test is not None:
            xt, labt = np.log1p(encode_cached(cfg, test, cache_dir)), np.asarray(test.labels)
            tr_all = np.arange(len(lab))
        else:
            tr_all, te = stratified_split(lab, 0.5, seed + 3)
            xt, labt = x[te], lab[te]
        for j in pick:
            novel = list(pairs[j])
            seen = [c for c in CLASSES if c not in novel]
            t0 = time.perf_counter()
            tr_seen = tr_all[np.isin(lab[tr_all], seen)]
            pool = tr_all[np.isin(lab[tr_all], novel)]  # the enrolment pool: never trained on
            embed, b = train_embedder(x[tr_seen], lab[tr_seen], seen, seed, quick)
            offsets = _calibrate_offsets(x, lab, tr_seen, seen, seed, quick)
            e_seen, e_pool, e_q = embed(x[tr_seen]), embed(x[pool]), embed(xt)
            row = {"seed": seed, "novel": novel, "val_top1": b.metrics["val_top1"], "offsets": offsets}
            rng = np.random.default_rng(seed * 1000 + j)
            for k in KS:
                acc_u, acc_c = [], []
                for _ in range(DRAWS):
                    draw = np.random.default_rng(rng.integers(1 << 31))
                    u, s, y = score_fewshot(e_seen, lab[tr_seen], e_pool, lab[pool], e_q, labt, seen, novel, k, draw)
                    acc_u.append(u)
                    acc_c.append(gzsl_accuracy(s, y, np.isin(seen + novel, seen), offsets[k]))
                    if seed == 0 and j == pick[0] and len(acc_u) == 1:
                        curves[f"k={k}"] = seen_unseen_curve(s, y, np.isin(seen + novel, seen))
                for tag, accs in (("uncal", acc_u), ("cal", acc_c)):
                    for key in ("seen", "unseen", "H"):
                        row[f"k{k}_{key}_{tag}"] = float(np.mean([a[key] for a in accs]))
            row["seconds"] = time.perf_counter() - t0
            runs.append(row)
            log(f"  seed {seed} novel {''.join(novel)}: " + "  ".join(
                f"k={k} H {row[f'k{k}_H_uncal']:.3f} -> {row[f'k{k}_H_cal']:.3f}" for k in KS)
                + f"  ({row['seconds']:.0f} s)")
    head = {"units": "percent", "splits": len(pick), "seeds": seeds, "queries": "nmnist Test" if test else
            "held-out half of nmnist Train"}
    for k in KS:
        for tag, suffix in (("cal", ""), ("uncal", "_uncalibrated")):
            for key in ("H", "seen", "unseen"):
                v = [r[f"k{k}_{key}_{tag}"] for r in runs]
                head[f"k{k}_{key}{suffix}" if key != "H" else f"k{k}_H{suffix}"] = round(100 * float(np.mean(v)), 2)
        head[f"k{k}_H_std"] = round(100 * float(np.std([r[f"k{k}_H_cal"] for r in runs], ddof=1)), 2) \
            if len(runs) > 1 else None
    rows = []
    for k in KS:
        s = {key: summarise({key: [r[key] for r in runs]})[key]
             for key in (f"k{k}_seen_uncal", f"k{k}_unseen_uncal", f"k{k}_H_uncal", f"k{k}_seen_cal",
                         f"k{k}_unseen_cal", f"k{k}_H_cal")}
        rows.append([f"{k}-shot"] + [fmt(v) for v in s.values()])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = [seen_unseen_png(out / "seen_unseen.png", curves,
                            f"few-shot, seed 0, novel {''.join(pairs[pick[0]])}: seen-unseen curve")]
    notes = [f"Data: real N-MNIST, {len(train)} training samples"
             + (f"; queries from the {len(test)} test samples" if test is not None else
                "; per seed a stratified half is the query set (never trained on, never enrolled)") + ".",
             f"Per seed and held-out pair ({len(pick)} fixed pairs of the 45): a 64-d SupCon projection (T = 0.1) "
             "of 5-window reservoir counts (log1p) is trained on the other 8 digits; the 2 held-out digits are "
             "enrolled from k samples of their own (camera) modality, drawn from the training half and never "
             f"trained on (running mean of the k embeddings); {DRAWS} random draws of the k samples are averaged.",
             "Generalised 10-way: every query is scored by cosine against all ten prototypes; accuracy is averaged "
             "per class; H = harmonic mean of the trained-class and the enrolled-class accuracy.",
             "Calibrated: the seen-class offset of calibrated stacking for each k, chosen on the training split "
             "(a second model trained without 2 of the 8 trained digits, which are enrolled from k samples; "
             "30% of the other digits' training samples as queries), never on the queries scored here.",
             f"Wall time {time.perf_counter() - t_all:.0f} s on a shared 2-core machine."]
    write_report(out, "Few-shot enrolment (N-MNIST, same modality)",
                 {"headline": head, "runs": runs, "seeds": seeds, "splits": len(pick), "quick": quick,
                  "curve_seed0": curves},
                 [("Headline (percent; kN_H = calibrated, as the daemon labels)", ["key", "value"],
                   [[k, v] for k, v in head.items()]),
                  ("Generalised 10-way (mean ± std over splits x seeds)",
                   ["enrolment", "seen", "enrolled", "H", "seen calibrated", "enrolled calibrated", "H calibrated"],
                   rows)], notes, [f for f in figs if f])
    return {"headline": head, "runs": runs}
