"""Shared zero-shot protocol: train projections on seen classes, retrieve across modalities on held-out data.

Besides the paper's within-split metrics it measures generalised zero-shot (all prototypes compete, as in
the live matcher), calibrated stacking and risk-controlled abstention (``readout.calibration``), and the
class-fold protocol (rotating which classes are unseen).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.bundle import Bundle
from ..model.calibration import (
    Calibration,
    confidence,
    fit_calibration,
    gzsl_accuracy,
    risk_coverage,
    seen_unseen_curve,
    stacked,
)
from ..model.prototypes import cosine
from ..reservoir import ReservoirConfig
from ..training.metrics import confusion_matrix, prototype_predict, prototypes, retrieval_topk
from ..training.train import TrainConfig, stratified_split, train_projections
from .features import Samples, encode_cached

__all__ = ["ZeroShotSetup", "Variant", "evaluate_zero_shot", "evaluate_embeddings", "run_zero_shot",
           "srnn_baselines", "features_for", "cosine_scores", "gzsl_evaluate", "calibrate_pseudo_unseen",
           "class_fold", "PAPER_EXACT"]


@dataclass
class Variant:
    """One model: reservoir configs per modality (seed -> config) and projection training settings."""

    query_cfg: Callable[[int], ReservoirConfig]
    gallery_cfg: Callable[[int], ReservoirConfig]
    loss: str = "soft_clip"
    temperature: float = 1.0
    dim: int = 64
    hidden: tuple[int, ...] = ()
    train: TrainConfig = TrainConfig(epochs=60, batch_size=32, lr=1e-3, patience=10)
    transform: str = "log1p"      # "log1p": log(1 + counts); "rate": counts / T (T = the sample's bins)
    standardise: bool = True      # inputs standardised on the training data
    normalise: bool = True        # L2-normalised outputs (False: the paper's raw Linear + GELU output)
    pairing: str = "random"       # "random" partner per epoch, or "fixed" in-order pairs (the paper)
    calibrate: bool = False       # fit calibrated stacking + abstention on pseudo-unseen classes


#: the paper's image-audio recipe exactly (PAPER.md): one Linear 200 -> 64 + GELU per modality, no input
#: standardisation, no output normalisation, soft-target CLIP at T = 1, batch 8, Adam 1e-3, 100 epochs
#: (no early stop; the epoch is picked on a validation split, not on the test set), counts / T input,
#: fixed in-order pairs, dot-product retrieval.
PAPER_EXACT = dict(loss="soft_clip", temperature=1.0, dim=64, hidden=(), transform="rate", standardise=False,
                   normalise=False, pairing="fixed",
                   train=TrainConfig(epochs=100, batch_size=8, lr=1e-3, patience=100))


def features_for(v: Variant, cfg: ReservoirConfig, samples: Samples, cache_dir=None) -> np.ndarray:
    """Reservoir features of every sample (cached on disk) in the variant's input transform."""
    counts = encode_cached(cfg, samples, cache_dir)
    if v.transform == "log1p":
        return np.log1p(counts)
    if v.transform == "rate":
        bins = np.maximum(1, -(-np.asarray(samples.durations, np.int64) // int(cfg.bin_us)))
        return (counts / bins[:, None]).astype(np.float32)
    raise ValueError(f"unknown feature transform {v.transform!r}")


def cosine_scores(eq: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Cosine similarity (n, classes) of query embeddings to prototypes (the live matcher's rule)."""
    return cosine(eq, protos)


def _train(v: Variant, xq, xg, lq, lg, iq, ig, classes, seed, modalities, reservoirs=None) -> Bundle:
    cfg = TrainConfig(**{**v.train.__dict__, "seed": seed})
    return train_projections(xq[iq], xg[ig], lq[iq], labels_b=lg[ig], modalities=modalities, dim=v.dim,
                             hidden=v.hidden, loss=v.loss, temperature=v.temperature, config=cfg,
                             classes=classes, reservoirs=reservoirs, standardise=v.standardise,
                             normalise=v.normalise, pairing=v.pairing)


def _class_scores(eq, lq, eg, lg, classes):
    """Cosine scores of queries to the gallery prototypes of ``classes`` (those with gallery samples)."""
    present = [c for c in classes if np.any(lg == c)]
    _, protos = prototypes(eg, lg, present)
    rows = np.flatnonzero(np.isin(lq, present))
    index = {c: i for i, c in enumerate(present)}
    return present, cosine_scores(eq[rows], protos), np.asarray([index[c] for c in lq[rows]], np.int64)


def calibrate_pseudo_unseen(v: Variant, xq, xg, lq, lg, tq, tg, seen: list[str], seed: int,
                            modalities: tuple[str, str], n_pseudo: int = 2,
                            target: float = 0.05) -> Calibration:
    """Calibration from training data only: ``n_pseudo`` seen classes play the unseen ones.

    A model of the same recipe is trained on the other seen classes (70% of their training samples);
    the held-out 30% of those and every sample of the pseudo-unseen classes score against prototypes of
    all the seen classes (validation gallery); ``fit_calibration`` picks the offset and temperature on one
    half of these queries and certifies the abstention threshold on the other. The test data is never used.
    """
    rng = np.random.default_rng(seed + 4242)
    pseudo = sorted(rng.choice(seen, size=n_pseudo, replace=False).tolist())
    rest = [c for c in seen if c not in pseudo]
    fq, vq = stratified_split(lq[tq], 0.3, seed + 17)
    fg, vg = stratified_split(lg[tg], 0.3, seed + 18)
    fit_q = tq[fq][np.isin(lq[tq[fq]], rest)]
    fit_g = tg[fg][np.isin(lg[tg[fg]], rest)]
    val_q = np.concatenate([tq[vq][np.isin(lq[tq[vq]], rest)], tq[np.isin(lq[tq], pseudo)]])
    val_g = np.concatenate([tg[vg][np.isin(lg[tg[vg]], rest)], tg[np.isin(lg[tg], pseudo)]])
    b = _train(v, xq, xg, lq, lg, fit_q, fit_g, rest, seed, modalities)
    mq, mg = modalities
    present, s, y = _class_scores(b.embed(mq, xq[val_q]), lq[val_q], b.embed(mg, xg[val_g]), lg[val_g],
                                  rest + pseudo)
    mask = np.isin(present, rest)
    return fit_calibration(s, y, mask, seed=seed, target=target,
                           info={"pseudo_unseen": ",".join(pseudo), "n_val_queries": len(y),
                                 "protocol": "pseudo-unseen classes from the training split"})


def gzsl_evaluate(eq, lq, eg, lg, seen: list[str], unseen: list[str], cal: Calibration | None = None) -> dict:
    """Generalised zero-shot on test embeddings: every class's gallery prototype competes (cosine).

    Uncalibrated seen / unseen / H (per-class mean accuracy), the seen-unseen curve's area, and with a
    calibration: calibrated H, and the error and coverage of labels emitted by the abstention rule.
    """
    present, s, y = _class_scores(eq, lq, eg, lg, seen + unseen)
    mask = np.isin(present, seen)
    out: dict = {}
    if mask.all() or not mask.any():
        return out
    u = gzsl_accuracy(s, y, mask, 0.0)
    curve = seen_unseen_curve(s, y, mask)
    out.update(gzsl_seen_uncal=u["seen"], gzsl_unseen_uncal=u["unseen"], gzsl_H_uncal=u["H"],
               ausuc=curve["auc"], _curve={k: curve[k] for k in ("seen", "unseen")})
    if cal is not None:
        off = cal.offset_for(int((~mask).sum()))
        c = gzsl_accuracy(s, y, mask, off)
        st = stacked(s, mask, off)
        conf = confidence(st, cal.temperature)
        correct = np.argmax(st, axis=1) == y
        thr = cal.threshold()
        emit = conf >= thr
        out.update(gzsl_seen_cal=c["seen"], gzsl_unseen_cal=c["unseen"], gzsl_H_cal=c["H"], offset=off,
                   temperature=cal.temperature, threshold=thr, coverage=float(emit.mean()),
                   emitted_error=float(1.0 - correct[emit].mean()) if emit.any() else float("nan"),
                   error_all=float(1.0 - correct.mean()), _calibrated_point=(c["seen"], c["unseen"]),
                   _risk=risk_coverage(conf, correct))
    return out


@dataclass
class ZeroShotSetup:
    """Query modality (e.g. audio) retrieves from the gallery modality (e.g. images)."""

    query: Samples
    gallery: Samples
    modalities: tuple[str, str]
    seen: list[str]
    unseen: list[str]
    split: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # seed -> q_tr, q_te, g_tr, g_te
    ks: tuple[int, ...] = (1, 5)
    extra: dict = field(default_factory=dict)


def evaluate_zero_shot(bundle: Bundle, xq: np.ndarray, lq: np.ndarray, xg: np.ndarray, lg: np.ndarray,
                       seen: list[str], unseen: list[str], modalities: tuple[str, str],
                       ks=(1, 5)) -> dict:
    """Retrieval top-k query -> gallery and gallery -> query on seen and unseen classes separately,
    and prototype classification (prototype = mean gallery embedding of a class)."""
    mq, mg = modalities
    return evaluate_embeddings(bundle.embed(mq, xq), lq, bundle.embed(mg, xg), lg, seen, unseen, ks)


def evaluate_embeddings(eq: np.ndarray, lq: np.ndarray, eg: np.ndarray, lg: np.ndarray,
                        seen: list[str], unseen: list[str], ks=(1, 5)) -> dict:
    """``evaluate_zero_shot`` on embeddings already computed (any encoder)."""
    out = {}
    for part, classes in (("seen", seen), ("unseen", unseen), ("all", seen + unseen)):
        iq, ig = np.isin(lq, classes), np.isin(lg, classes)
        if not iq.any() or not ig.any():
            continue
        fwd = retrieval_topk(eq[iq], lq[iq], eg[ig], lg[ig], ks=ks)
        rev = retrieval_topk(eg[ig], lg[ig], eq[iq], lq[iq], ks=ks)
        cls, protos = prototypes(eg[ig], lg[ig], [c for c in classes if c in set(lg[ig].tolist())])
        pred = prototype_predict(eq[iq], cls, protos)
        for k in ks:
            out[f"{part}_top{k}"] = fwd[k]
            out[f"{part}_reverse_top{k}"] = rev[k]
        out[f"{part}_prototype"] = float(np.mean(pred == lq[iq]))
        if part == "all":
            out["confusion_all"] = confusion_matrix(lq[iq], pred, classes).tolist()
        out[f"{part}_n_queries"] = int(iq.sum())
        out[f"{part}_n_gallery"] = int(ig.sum())
    return out


def _one_run(setup: ZeroShotSetup, v: Variant, seed: int, cache_dir=None) -> tuple[dict, Bundle, tuple]:
    """Train one variant on the seen classes of one split and evaluate it (paper metrics + generalised)."""
    mq, mg = setup.modalities
    q_tr, q_te, g_tr, g_te = setup.split(seed)
    qc, gc = v.query_cfg(seed), v.gallery_cfg(seed)
    t0 = time.perf_counter()
    xq = features_for(v, qc, setup.query, cache_dir)
    xg = features_for(v, gc, setup.gallery, cache_dir)
    feat_s = time.perf_counter() - t0
    lq, lg = setup.query.labels, setup.gallery.labels
    tq = q_tr[np.isin(lq[q_tr], setup.seen)]
    tg = g_tr[np.isin(lg[g_tr], setup.seen)]
    b = _train(v, xq, xg, lq, lg, tq, tg, setup.seen, seed, (mq, mg), reservoirs={mq: qc, mg: gc})
    eq, eg = b.embed(mq, xq[q_te]), b.embed(mg, xg[g_te])
    m = evaluate_embeddings(eq, lq[q_te], eg, lg[g_te], setup.seen, setup.unseen, setup.ks)
    cal = calibrate_pseudo_unseen(v, xq, xg, lq, lg, tq, tg, setup.seen, seed, (mq, mg)) if v.calibrate else None
    m.update(gzsl_evaluate(eq, lq[q_te], eg, lg[g_te], setup.seen, setup.unseen, cal))
    m.update(seed=seed, val_top1=b.metrics["val_top1"], best_epoch=b.metrics["best_epoch"],
             train_seconds=b.metrics["train_seconds"] * (b.metrics["best_epoch"] + 1) / b.metrics["epochs_run"],
             train_macs=float(b.metrics["train_macs_to_best"]), feature_seconds=feat_s,
             n_train_query=len(tq), n_train_gallery=len(tg),
             loss_first_epoch=b.metrics["history"][0]["loss"], loss_last_epoch=b.metrics["history"][-1]["loss"])
    return m, b, ((eq, lq[q_te]), (eg, lg[g_te]))


def run_zero_shot(setup: ZeroShotSetup, variants: dict[str, Variant], seeds: int, *, cache_dir=None,
                  log: Callable[[str], None] = print, keep_bundle: str | None = None, first_seed: int = 0) -> dict:
    """Every variant x seed: train on seen classes of the training split, evaluate on the test split.

    Per-run entries starting with "_" (curves) are moved to ``res["curves"][variant]`` (lists per seed)."""
    torch.set_num_threads(1)
    runs: dict[str, list[dict]] = {}
    curves: dict[str, list[dict]] = {}
    bundles = {}
    for seed in range(first_seed, seeds):
        for name, v in variants.items():
            m, b, (q, g) = _one_run(setup, v, seed, cache_dir)
            curves.setdefault(name, []).append({k: m.pop(k) for k in [k for k in m if k.startswith("_")]})
            runs.setdefault(name, []).append(m)
            if keep_bundle == name and seed == 0:
                bundles[name] = {"bundle": b, "query": q, "gallery": g, "confusion": m.get("confusion_all")}
            log(f"  {name:28s} seed {seed}: seen top1 {m.get('seen_top1', float('nan')):.3f}  "
                f"unseen top1 {m.get('unseen_top1', float('nan')):.3f}  GZSL H {m.get('gzsl_H_uncal', float('nan')):.3f}"
                + (f" -> calibrated {m['gzsl_H_cal']:.3f}, emitted error {m['emitted_error']:.3f} at coverage "
                   f"{m['coverage']:.3f}" if "gzsl_H_cal" in m else "")
                + f"  (val {b.metrics['val_top1']:.3f}, epoch {b.metrics['best_epoch']})")
    return {"runs": runs, "bundles": bundles, "curves": curves}


def class_fold(setup: ZeroShotSetup, v: Variant, *, splits: int = 12, seeds: int = 1, unseen_size: int | None = None,
               cache_dir=None, log: Callable[[str], None] = print, only: range | None = None) -> list[dict]:
    """The class-fold protocol: ``splits`` different sets of unseen classes (a fixed sample of all
    combinations of ``unseen_size`` of the classes), each trained on the rest and scored on its unseen classes
    (the paper's within-unseen retrieval top-1; chance 1 / unseen_size). Split j uses seed j % seeds;
    ``only``: run just these split indices (several processes may share the splits)."""
    torch.set_num_threads(1)
    classes = list(setup.seen) + list(setup.unseen)
    k = unseen_size or len(setup.unseen)
    combos = list(itertools.combinations(classes, k))
    rng = np.random.default_rng(2024)
    pick = sorted(rng.choice(len(combos), size=min(splits, len(combos)), replace=False).tolist())
    out = []
    for j, ci in enumerate(pick):
        if only is not None and j not in only:
            continue
        unseen = list(combos[ci])
        st = dataclasses.replace(setup, seen=[c for c in classes if c not in unseen], unseen=unseen)
        m, _, _ = _one_run(st, dataclasses.replace(v, calibrate=False), j % seeds, cache_dir)
        row = {"split": j, "unseen": unseen, "seed": j % seeds, "unseen_top1": m.get("unseen_top1"),
               "seen_top1": m.get("seen_top1"), "gzsl_H_uncal": m.get("gzsl_H_uncal")}
        out.append(row)
        log(f"  class-fold {j + 1}/{len(pick)} unseen {unseen}: unseen top1 {row['unseen_top1']:.3f} "
            f"seen top1 {row['seen_top1']:.3f}")
    return out


def srnn_baselines(st: ZeroShotSetup, seeds: int, quick: bool, log, query_cfg: ReservoirConfig, query_bins: int,
                   gallery_cfg: ReservoirConfig, gallery_bins: int | None = None, *, epochs: int = 25,
                   patience: int = 6, prototypical: bool = True) -> dict[str, list[dict]]:
    """SRNN-CLIP (SupCon) and an SRNN prototypical net: both encoders trained end to end (BPTT) on the
    binned inputs (the configs give the input mapping and bin width), same splits as the LSM variants."""
    from .baselines import SeqConfig, train_srnn_clip
    from .features import binned_input

    xa = np.log1p(binned_input(query_cfg, st.query, n_bins=query_bins))
    xi = np.log1p(binned_input(gallery_cfg, st.gallery, n_bins=gallery_bins))
    lq, lg = st.query.labels, st.gallery.labels
    tc = TrainConfig(epochs=3 if quick else epochs, batch_size=32, lr=2e-3, patience=3 if quick else patience)
    out: dict[str, list[dict]] = {}
    for seed in range(seeds):
        q_tr, q_te, g_tr, g_te = st.split(seed)
        tq, tg = q_tr[np.isin(lq[q_tr], st.seen)], g_tr[np.isin(lg[g_tr], st.seen)]
        models = (("srnn-CLIP SupCon T=0.1", "supcon"), ("prototypical net on SRNN", "proto"))
        for name, loss in models if prototypical else models[:1]:
            t0 = time.perf_counter()
            r = train_srnn_clip(xa[tq], lq[tq], xi[tg], lg[tg], loss=loss, temperature=0.1,
                                config=TrainConfig(**{**tc.__dict__, "seed": seed}), seq=SeqConfig(hidden=64))
            m = evaluate_embeddings(r["embed"]("a", xa[q_te]), lq[q_te], r["embed"]("b", xi[g_te]), lg[g_te],
                                    st.seen, st.unseen, st.ks)
            m.update(seed=seed, val_top1=r["val_top1"], best_epoch=r["best_epoch"], train_seconds=r["train_seconds"],
                     train_macs=r["train_macs"], n_train_query=len(tq), n_train_gallery=len(tg),
                     wall_seconds=time.perf_counter() - t0)
            out.setdefault(name, []).append(m)
            log(f"  {name:28s} seed {seed}: seen top1 {m['seen_top1']:.3f}  unseen top1 {m['unseen_top1']:.3f}  "
                f"(val {r['val_top1']:.3f}, epoch {r['best_epoch']}, {r['train_seconds']:.0f} s)")
    return out
