"""Torch training of readouts: linear/MLP classifiers and contrastive projection heads -> numpy Bundle."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..model.bundle import Bundle
from .heads import TorchHead, seeded, standardiser, to_numpy_head
from .lbfgs import train_lbfgs
from .losses import clip_loss, proto_loss, soft_clip_loss, supcon_loss
from .metrics import retrieval_topk

__all__ = ["TrainConfig", "TorchHead", "train_classifier", "train_projections", "stratified_split",
           "pair_loss", "contrastive_epoch", "classification_epoch",
           "to_numpy_head", "fit_epochs", "LOSSES"]

LOSSES = ("clip", "soft_clip", "supcon", "proto")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and model selection of one training run (seed included)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 15          # epochs without validation improvement before stopping
    val_fraction: float = 0.2   # stratified hold-out of the training data for model selection
    seed: int = 0
    progress: bool = False      # tqdm bar with loss and validation score

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.val_fraction < 1:
            raise ModelError(f"bad training config {self}")


def stratified_split(labels: Sequence, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): ``fraction`` of every class held out (at least one where a class has 2+)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = int(round(fraction * len(idx)))
        n = max(n, 1) if fraction > 0 and len(idx) > 1 else n
        val.extend(rng.permutation(idx)[:n].tolist())
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx


def _bar(cfg: TrainConfig, desc: str):
    from tqdm.auto import tqdm

    return tqdm(range(cfg.epochs), desc=desc, disable=not cfg.progress, leave=False)


def fit_epochs(step: Callable[[np.random.Generator], float], validate: Callable[[], float],
         snapshot: Callable[[], dict], cfg: TrainConfig, desc: str) -> dict:
    """Epoch loop: ``step(rng) -> loss``, ``validate() -> score`` (higher is better), early stopping
    after ``patience`` epochs without improvement; returns the best epoch's ``snapshot()`` as "state"."""
    best, best_epoch, best_state, history = -np.inf, -1, None, []
    rng = np.random.default_rng(cfg.seed)
    bar = _bar(cfg, desc)
    t0 = time.perf_counter()
    for epoch in bar:
        loss = step(rng)
        score = validate()
        history.append({"epoch": epoch, "loss": loss, "val": score})
        if score > best + 1e-9:
            best, best_epoch, best_state = score, epoch, snapshot()
        bar.set_postfix(loss=f"{loss:.4f}", val=f"{score:.4f}")
        if epoch - best_epoch >= cfg.patience:
            break
    bar.close()
    if best_state is None:
        raise ModelError(f"{desc}: the validation score was never a number ({history[-1]['val']!r})")
    return {"best_val": float(best), "best_epoch": best_epoch, "epochs_run": len(history),
            "seconds": time.perf_counter() - t0, "history": history, "state": best_state}


def _margin(q: np.ndarray, ql: np.ndarray, g: np.ndarray, gl: np.ndarray) -> float:
    """Mean of (cosine to own-class prototype - best other prototype) in [-2, 2], for tie-breaking."""
    classes = np.unique(gl)
    protos = np.stack([g[gl == c].mean(0) for c in classes])
    protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
    sims = q @ protos.T
    own = np.searchsorted(classes, ql)
    ok = (own < len(classes)) & (classes[np.minimum(own, len(classes) - 1)] == ql)
    if not ok.any() or len(classes) < 2:
        return 0.0
    sims, own = sims[ok], own[ok]
    mine = sims[np.arange(len(own)), own]
    sims[np.arange(len(own)), own] = -np.inf
    return float(np.mean(mine - sims.max(1)))


def _train_linear(x, y, xv, yv, n_classes, hidden, config, modality, fixed_epochs):
    seeded(config.seed)
    mean, scale = standardiser(x)
    head = TorchHead(mean, scale, [x.shape[1], *hidden, n_classes], final_activation=False, normalise=False)
    opt = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xv)

    def step(rng):
        return classification_epoch(head, xt, yt, rng.permutation(len(xt)), config.batch_size, opt)

    def validate():
        with torch.no_grad():
            logits = head(xvt)
            ce = float(nn.functional.cross_entropy(logits, torch.from_numpy(yv)))
            return float((logits.argmax(1).numpy() == yv).mean()) - 1e-4 * min(ce, 10.0)  # CE breaks ties

    def snapshot():
        return {k: v.clone() for k, v in head.state_dict().items()}

    if fixed_epochs is not None:  # refit: a fixed number of epochs, no selection
        cfg = TrainConfig(epochs=fixed_epochs, batch_size=config.batch_size, lr=config.lr,
                          weight_decay=config.weight_decay, patience=fixed_epochs + 1, seed=config.seed,
                          progress=config.progress)
        fit = fit_epochs(step, lambda: 0.0, snapshot, cfg, f"refit {modality}")
        fit["state"] = snapshot()
    else:
        fit = fit_epochs(step, validate, snapshot, config, f"classifier {modality}")
    head.load_state_dict(fit.pop("state"))
    with torch.no_grad():
        fit["best_val"] = float((head(xvt).argmax(1).numpy() == yv).mean()) if len(yv) else float("nan")
    return head, fit


def train_classifier(features: np.ndarray, labels: Sequence, classes: Sequence | None = None, *,
                     hidden: Sequence[int] = (), config: TrainConfig = TrainConfig(),
                     val: tuple[np.ndarray, Sequence] | None = None, modality: str = "features",
                     reservoir: object | None = None, refit: bool = False,
                     l2_grid: Sequence[float] | None = None) -> Bundle:
    """Softmax-regression (``hidden=()``) or MLP readout; returns a Bundle with one classifier head.

    Model selection uses ``val`` (features, labels) when given, else a stratified ``val_fraction``
    of the training data. ``refit`` then retrains from scratch on training + validation data for the
    selected number of epochs. ``bundle.metrics`` records best_epoch, val accuracy, seconds and MACs.
    ``l2_grid`` (linear heads only) switches to full-batch L-BFGS on the L2-penalised cross-entropy:
    the penalty with the best validation accuracy is chosen (then refit when ``refit``).
    """
    x = np.asarray(features, dtype=np.float32)
    y_raw = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y_raw) or len(x) == 0:
        raise ModelError(f"features {x.shape} and {len(y_raw)} labels do not match")
    classes = [str(c) for c in (classes if classes is not None else sorted(set(y_raw.tolist()), key=str))]
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[str(v)] for v in y_raw], dtype=np.int64)
    if val is None and config.val_fraction > 0:
        tr, va = stratified_split(y, config.val_fraction, config.seed)
        xv, yv, xt_, yt_ = x[va], y[va], x[tr], y[tr]
        if len(va) == 0:  # every class a singleton: select on the training data (as train_projections)
            xv, yv = xt_, yt_
    elif val is not None:
        xv = np.asarray(val[0], dtype=np.float32)
        yv = np.asarray([index[str(v)] for v in val[1]], dtype=np.int64)
        xt_, yt_ = x, y
    else:
        xv, yv, xt_, yt_ = x, y, x, y
    if l2_grid:
        return train_lbfgs(train=(xt_, yt_), val=(xv, yv), classes=classes, grid=list(l2_grid), config=config,
                           modality=modality, reservoir=reservoir,
                           refit_on=(x, y) if refit and val is None and len(xv) > 0 else None)
    head, fit = _train_linear(xt_, yt_, xv, yv, len(classes), hidden, config, modality, None)
    macs = 3 * head.macs() * len(xt_) * (fit["best_epoch"] + 1)
    seconds = fit["seconds"]
    if refit and len(xv) and val is None:
        head, refit_info = _train_linear(x, y, xv, yv, len(classes), hidden, config, modality, fit["best_epoch"] + 1)
        macs += 3 * head.macs() * len(x) * (fit["best_epoch"] + 1)
        seconds += refit_info["seconds"]
    metrics = {"val_accuracy": fit["best_val"], "best_epoch": fit["best_epoch"], "epochs_run": fit["epochs_run"],
               "train_seconds": seconds, "train_macs_to_best": macs, "n_train": len(x) if refit else len(xt_), "refit": bool(refit),
               "history": fit["history"]}
    return Bundle(heads={modality: to_numpy_head(head, {"kind": "classifier"})}, classes=classes,
                  reservoirs={modality: reservoir} if reservoir is not None else {}, seed=config.seed,
                  metrics=metrics)


def train_projections(features_a: np.ndarray, features_b: np.ndarray, labels: Sequence, *,
                      labels_b: Sequence | None = None, modalities: tuple[str, str] = ("audio", "vision"),
                      dim: int = 64, hidden: Sequence[int] = (), loss: str = "soft_clip",
                      temperature: float = 1.0, config: TrainConfig = TrainConfig(batch_size=8),
                      classes: Sequence | None = None, reservoirs: dict | None = None,
                      standardise: bool = True, normalise: bool = True, pairing: str = "random") -> Bundle:
    """Two projection heads into one ``dim``-dimensional space, trained contrastively on class pairs.

    With ``labels_b=None`` row i of ``features_a`` and of ``features_b`` form a pair. Otherwise the
    two modalities are pools and every epoch pairs each ``a`` sample with a random ``b`` sample of
    its class (``pairing="random"``), or once and for all in order (``pairing="fixed"``: the i-th
    ``a`` sample of a class with the i-th ``b`` sample of that class, cycling; the paper's pairs).
    A stratified ``val_fraction`` of each pool selects the epoch by a -> b top-1 retrieval (dot
    product of the outputs). ``classes`` (default: the labels seen) become the bundle's seen
    classes. ``standardise=False`` feeds the features as they are; ``normalise=False`` leaves the
    outputs unnormalised (the paper's Linear + GELU head).
    """
    if pairing not in ("random", "fixed"):
        raise ModelError(f"pairing must be 'random' or 'fixed', got {pairing!r}")
    if loss not in LOSSES:
        raise ModelError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    xa, xb = np.asarray(features_a, np.float32), np.asarray(features_b, np.float32)
    la = np.asarray([str(v) for v in labels])
    lb = la if labels_b is None else np.asarray([str(v) for v in labels_b])
    paired = labels_b is None
    if len(xa) != len(la) or len(xb) != len(lb) or (paired and len(xa) != len(xb)):
        raise ModelError("features and labels of the two modalities do not line up")
    seen = [str(c) for c in (classes if classes is not None else sorted(set(la.tolist())))]
    cfg = config
    tra, vaa = stratified_split(la, cfg.val_fraction, cfg.seed)
    trb, vab = (tra, vaa) if paired else stratified_split(lb, cfg.val_fraction, cfg.seed + 1)
    if len(vaa) == 0:
        vaa, vab = tra, trb
    seeded(cfg.seed)
    heads = []
    for x, tr in ((xa, tra), (xb, trb)):
        mean, scale = standardiser(x[tr]) if standardise else (np.zeros(x.shape[1]), np.ones(x.shape[1]))
        heads.append(TorchHead(mean, scale, [x.shape[1], *hidden, dim], final_activation=True,
                               normalise=normalise))
    ha, hb = heads
    params = [*ha.parameters(), *hb.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ta, tb = torch.from_numpy(xa), torch.from_numpy(xb)
    cls_index = {c: i for i, c in enumerate(sorted(set(la.tolist()) | set(lb.tolist())))}
    ya = torch.as_tensor([cls_index[v] for v in la])
    by_class = {c: trb[lb[trb] == c] for c in set(la[tra].tolist())}
    fixed = np.zeros(len(xa), np.int64)
    if pairing == "fixed" and not paired:
        for c, pool in by_class.items():
            mine = tra[la[tra] == c]
            fixed[mine] = pool[np.arange(len(mine)) % len(pool)]

    def step(rng):
        order = rng.permutation(tra)
        partner = order if paired else fixed[order] if pairing == "fixed" else \
            np.asarray([rng.choice(by_class[c]) for c in la[order]])
        return contrastive_epoch(ha, hb, ta, tb, ya, order, partner, cfg.batch_size, loss, temperature, opt)

    def validate():
        ha.train(False)
        hb.train(False)
        with torch.no_grad():
            qa, gb = ha(ta[vaa]).numpy(), hb(tb[vab]).numpy()
        # ties (a saturated top-1) are broken by the mean prototype margin, a small continuous term
        return retrieval_topk(qa, la[vaa], gb, lb[vab], ks=(1,))[1] + 1e-3 * _margin(qa, la[vaa], gb, lb[vab])

    def snapshot():
        return {"a": {k: v.clone() for k, v in ha.state_dict().items()},
                "b": {k: v.clone() for k, v in hb.state_dict().items()}}

    fit = fit_epochs(step, validate, snapshot, cfg, f"projection {modalities[0]}-{modalities[1]}")
    state = fit.pop("state")
    ha.load_state_dict(state["a"])
    hb.load_state_dict(state["b"])
    with torch.no_grad():
        qa, gb = ha(ta[vaa]).numpy(), hb(tb[vab]).numpy()
    fit["best_val"] = retrieval_topk(qa, la[vaa], gb, lb[vab], ks=(1,))[1]
    macs = 3 * (ha.macs() + hb.macs()) * len(tra) * (fit["best_epoch"] + 1)
    metrics = {"val_top1": fit["best_val"], "best_epoch": fit["best_epoch"], "epochs_run": fit["epochs_run"],
               "train_seconds": fit["seconds"], "train_macs_to_best": macs, "n_train_pairs": len(tra),
               "loss": loss, "temperature": temperature, "dim": dim, "history": fit["history"]}
    ma, mb = modalities
    reservoirs = reservoirs or {}
    return Bundle(heads={ma: to_numpy_head(ha, {"kind": "projection"}), mb: to_numpy_head(hb, {"kind": "projection"})},
                  classes=seen, seen_classes=seen, reservoirs={m: reservoirs.get(m) for m in modalities},
                  seed=cfg.seed, metrics=metrics)


def classification_epoch(model: nn.Module, xt: torch.Tensor, yt: torch.Tensor, order: np.ndarray,
                         batch_size: int, opt: torch.optim.Optimizer,
                         clip_norm: float | None = None) -> float:
    """One epoch of cross-entropy over the samples in ``order``; the mean loss per sample."""
    model.train()
    total = 0.0
    for s in range(0, len(order), batch_size):
        b = torch.from_numpy(order[s:s + batch_size])
        loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
        opt.zero_grad()
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        total += float(loss.detach()) * len(b)
    return total / len(order)


def pair_loss(loss: str, za: torch.Tensor, zb: torch.Tensor, y: torch.Tensor,
              temperature: float) -> torch.Tensor:
    """The contrastive loss named ``loss`` (clip, soft_clip, supcon, proto) of a batch of pairs."""
    if loss == "clip":
        return clip_loss(za, zb, temperature)
    if loss == "soft_clip":
        return soft_clip_loss(za, zb, temperature)
    if loss == "supcon":
        return supcon_loss(za, zb, y, temperature)
    if loss == "proto":
        return proto_loss(za, zb, y, temperature)
    raise ModelError(f"unknown contrastive loss {loss!r}; known: clip, soft_clip, supcon, proto")


def contrastive_epoch(ea: nn.Module, eb: nn.Module, ta: torch.Tensor, tb: torch.Tensor, ya: torch.Tensor,
                      order: np.ndarray, partner: np.ndarray, batch_size: int, loss: str,
                      temperature: float, opt: torch.optim.Optimizer,
                      clip_norm: float | None = None) -> float:
    """One epoch over pairs (order[i] of side a, partner[i] of side b); the mean loss per pair."""
    ea.train()
    eb.train()
    total = 0.0
    for s in range(0, len(order), batch_size):
        ia = torch.from_numpy(order[s:s + batch_size])
        ib = torch.from_numpy(partner[s:s + batch_size])
        if len(ia) < 2:
            continue
        value = pair_loss(loss, ea(ta[ia]), eb(tb[ib]), ya[ia], temperature)
        opt.zero_grad()
        value.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_([*ea.parameters(), *eb.parameters()], clip_norm)
        opt.step()
        total += float(value.detach()) * len(ia)
    return total / len(order)
