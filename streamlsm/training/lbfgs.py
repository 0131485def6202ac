"""Full-batch L-BFGS softmax regression with the L2 penalty chosen on a validation split."""

from __future__ import annotations

import time

import torch
from torch import nn

from ..model.bundle import Bundle
from .heads import TorchHead, seeded, standardiser, to_numpy_head

__all__ = ["train_lbfgs"]


def _lbfgs_fit(x, y, n_classes, l2, seed, max_iter):
    """Full-batch L-BFGS (strong Wolfe) on cross-entropy + l2/2 |W|^2; returns (head, evaluations)."""
    seeded(seed)
    mean, scale = standardiser(x)
    head = TorchHead(mean, scale, [x.shape[1], n_classes], final_activation=False, normalise=False)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                            tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        opt.zero_grad()
        w = head.layers[0].weight
        loss = nn.functional.cross_entropy(head(xt), yt) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        evals[0] += 1
        return loss

    opt.step(closure)
    return head, evals[0]


def train_lbfgs(*, train: tuple, val: tuple, classes: list[str], grid: list[float], config, modality: str,
                reservoir: object | None = None, refit_on: tuple | None = None) -> Bundle:
    """Fit one L2-penalised softmax regression per penalty in ``grid`` on ``train`` (x, y), keep the
    best validation accuracy on ``val`` (x, y), and refit on ``refit_on`` (x, y) when given; returns
    a Bundle (see ``train_classifier``). ``config`` is a TrainConfig (seed, epochs = L-BFGS iterations)."""
    (xt_, yt_), (xv, yv) = train, val
    refit = refit_on is not None
    t0 = time.perf_counter()
    scores, evals, history = [], 0, []
    iters = max(50, config.epochs)
    for l2 in grid:
        head, n = _lbfgs_fit(xt_, yt_, len(classes), l2, config.seed, iters)
        evals += n * len(xt_)
        with torch.no_grad():
            logits = head(torch.from_numpy(xv))
            ce = float(nn.functional.cross_entropy(logits, torch.from_numpy(yv)))
            acc = float((logits.argmax(1).numpy() == yv).mean())
        scores.append((acc - 1e-4 * min(ce, 10.0), acc, l2, head))
        history.append({"l2": l2, "val": acc, "val_loss": ce, "evaluations": n})
    _, acc, l2, head = max(scores, key=lambda r: r[0])
    if refit:
        x, y = refit_on
        head, n = _lbfgs_fit(x, y, len(classes), l2, config.seed, iters)
        evals += n * len(x)
    metrics = {"val_accuracy": acc, "best_l2": l2, "best_epoch": 0, "epochs_run": 1,
               "train_seconds": time.perf_counter() - t0, "train_macs_to_best": 3 * head.macs() * evals,
               "n_train": len(refit_on[0]) if refit else len(xt_), "refit": bool(refit), "history": history,
               "solver": "lbfgs"}
    return Bundle(heads={modality: to_numpy_head(head, {"kind": "classifier"})}, classes=classes,
                  reservoirs={modality: reservoir} if reservoir is not None else {}, seed=config.seed,
                  metrics=metrics)
