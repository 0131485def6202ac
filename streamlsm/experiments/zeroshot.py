"""Shared zero-shot protocol: train projections on seen classes, retrieve across modalities on held-out data."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..readout import Bundle, prototype_predict, prototypes, retrieval_topk
from ..readout.metrics import confusion_matrix
from ..readout.train import TrainConfig, train_projections
from ..reservoir import ReservoirConfig
from .features import Samples, encode_cached

__all__ = ["ZeroShotSetup", "Variant", "evaluate_zero_shot", "evaluate_embeddings", "run_zero_shot",
           "srnn_baselines"]


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


def run_zero_shot(setup: ZeroShotSetup, variants: dict[str, Variant], seeds: int, *, cache_dir=None,
                  log: Callable[[str], None] = print, keep_bundle: str | None = None) -> dict:
    """Every variant x seed: train on seen classes of the training split, evaluate on the test split."""
    torch.set_num_threads(1)
    runs: dict[str, list[dict]] = {}
    bundles = {}
    mq, mg = setup.modalities
    for seed in range(seeds):
        q_tr, q_te, g_tr, g_te = setup.split(seed)
        for name, v in variants.items():
            qc, gc = v.query_cfg(seed), v.gallery_cfg(seed)
            t0 = time.perf_counter()
            xq = np.log1p(encode_cached(qc, setup.query, cache_dir))
            xg = np.log1p(encode_cached(gc, setup.gallery, cache_dir))
            feat_s = time.perf_counter() - t0
            lq, lg = setup.query.labels, setup.gallery.labels
            tq = q_tr[np.isin(lq[q_tr], setup.seen)]
            tg = g_tr[np.isin(lg[g_tr], setup.seen)]
            cfg = TrainConfig(**{**v.train.__dict__, "seed": seed})
            b = train_projections(xq[tq], xg[tg], lq[tq], labels_b=lg[tg], modalities=(mq, mg), dim=v.dim,
                                  hidden=v.hidden, loss=v.loss, temperature=v.temperature, config=cfg,
                                  classes=setup.seen, reservoirs={mq: qc, mg: gc})
            m = evaluate_zero_shot(b, xq[q_te], lq[q_te], xg[g_te], lg[g_te], setup.seen, setup.unseen,
                                   (mq, mg), setup.ks)
            m.update(seed=seed, val_top1=b.metrics["val_top1"], best_epoch=b.metrics["best_epoch"],
                     train_seconds=b.metrics["train_seconds"] * (b.metrics["best_epoch"] + 1) / b.metrics["epochs_run"],
                     train_macs=float(b.metrics["train_macs_to_best"]), feature_seconds=feat_s,
                     n_train_query=len(tq), n_train_gallery=len(tg))
            runs.setdefault(name, []).append(m)
            if keep_bundle == name and seed == 0:
                bundles[name] = {"bundle": b, "query": (b.embed(mq, xq[q_te]), lq[q_te]),
                                 "gallery": (b.embed(mg, xg[g_te]), lg[g_te]), "confusion": m.get("confusion_all")}
            log(f"  {name:28s} seed {seed}: seen top1 {m.get('seen_top1', float('nan')):.3f}  "
                f"unseen top1 {m.get('unseen_top1', float('nan')):.3f}  (val {b.metrics['val_top1']:.3f}, "
                f"epoch {b.metrics['best_epoch']})")
    return {"runs": runs, "bundles": bundles}


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
