"""Nested model selection with a closed-form ridge readout: features and penalty chosen on training data only.

The readout is ridge regression on one-hot targets (a least-squares classifier) in its kernel form:
one Gram matrix G = X X^T per feature set and split serves every penalty and the exact
leave-one-out (LOO) predictions of the training part, so choosing among many feature sets costs
little more than computing them. ``select_and_score`` standardises each feature on the training
part; ``fit_score`` (the device study) centres on it in Gram space and does not scale. Inner validation is the exact LOO of the outer training part; the outer test part is never
seen by the choice of feature set or penalty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ModelError

__all__ = ["gram", "standardised_gram", "one_hot", "loo_accuracy", "ridge_scores", "fit_score", "select_and_score", "LAMBDAS"]

#: penalties, relative to the mean squared norm of the centred training features
LAMBDAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)


def gram(x: np.ndarray) -> np.ndarray:
    """float64 Gram matrix X X^T of (n, F) features (float32 products, float64 result)."""
    x = np.ascontiguousarray(x, np.float32)
    return (x @ x.T).astype(np.float64)


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y), n_classes))
    out[np.arange(len(y)), y] = 1.0
    return out


def _centre(g: np.ndarray, tr: np.ndarray, te: np.ndarray | None = None):
    """Centre the Gram blocks on the training rows' feature mean: (G_tr,tr centred, G_te,tr centred)."""
    k = g[np.ix_(tr, tr)]
    col = k.mean(0)
    tot = col.mean()
    kc = k - col[None, :] - col[:, None] + tot
    if te is None:
        return kc, None
    kt = g[np.ix_(te, tr)]
    ktc = kt - kt.mean(1)[:, None] - col[None, :] + tot
    return kc, ktc


def loo_accuracy(g: np.ndarray, y: np.ndarray, tr: np.ndarray, n_classes: int,
                 lambdas: Sequence[float] = LAMBDAS) -> np.ndarray:
    """Exact leave-one-out accuracy on the rows ``tr`` for each relative penalty (intercept included:
    leverage h_ii = 1/n + [K (K + lam I)^-1]_ii on the centred Gram)."""
    kc, _ = _centre(g, tr)
    n = len(tr)
    yt = one_hot(y[tr], n_classes)
    ybar = yt.mean(0)
    s, u = np.linalg.eigh(kc)
    s = np.clip(s, 0.0, None)
    scale = max(float(np.trace(kc)) / n, 1e-12)
    uy = u.T @ (yt - ybar)
    accs = []
    for lam in lambdas:
        f = s / (s + lam * scale)
        fit = u @ (f[:, None] * uy) + ybar
        h = (u * u) @ f + 1.0 / n
        loo = yt - (yt - fit) / np.maximum(1.0 - h, 1e-9)[:, None]
        accs.append(float(np.mean(loo.argmax(1) == y[tr])))
    return np.asarray(accs)


def ridge_scores(g: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, n_classes: int,
                 lam: float) -> np.ndarray:
    """(len(te), n_classes) ridge outputs for rows ``te`` after fitting rows ``tr`` with relative penalty lam."""
    kc, ktc = _centre(g, tr, te)
    yt = one_hot(y[tr], n_classes)
    ybar = yt.mean(0)
    scale = max(float(np.trace(kc)) / len(tr), 1e-12)
    alpha = np.linalg.solve(kc + lam * scale * np.eye(len(tr)), yt - ybar)
    return ktc @ alpha + ybar


def fit_score(g: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, n_classes: int,
              lambdas: Sequence[float] = LAMBDAS, test_gram: np.ndarray | None = None) -> dict:
    """Choose the penalty by LOO on ``tr``, fit on ``tr``, score on ``te``. ``test_gram`` (optional)
    is a Gram matrix over the same rows whose test rows come from other features (e.g. the same chip
    read later: the cross block X_te' X_tr^T); the training block is always taken from ``g``."""
    loo = loo_accuracy(g, y, tr, n_classes, lambdas)
    i = int(np.argmax(loo))
    gg = g if test_gram is None else test_gram
    if test_gram is not None:
        # centre the test rows with the training statistics of g: the cross block comes from gg
        k = g[np.ix_(tr, tr)]
        col = k.mean(0)
        tot = col.mean()
        kt = gg[np.ix_(te, tr)]
        ktc = kt - kt.mean(1)[:, None] - col[None, :] + tot
        kc = k - col[None, :] - col[:, None] + tot
        yt = one_hot(y[tr], n_classes)
        ybar = yt.mean(0)
        scale = max(float(np.trace(kc)) / len(tr), 1e-12)
        out = ktc @ np.linalg.solve(kc + lambdas[i] * scale * np.eye(len(tr)), yt - ybar) + ybar
    else:
        out = ridge_scores(g, y, tr, te, n_classes, lambdas[i])
    return {"accuracy": float(np.mean(out.argmax(1) == y[te])), "loo": float(loo[i]), "lam": float(lambdas[i])}


def standardised_gram(x: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """Gram matrix of the features standardised with the mean and std of the rows ``tr`` only."""
    m = x[tr].mean(0, dtype=np.float64)
    sd = x[tr].std(0, dtype=np.float64)
    z = (x - m.astype(np.float32)) / np.where(sd > 1e-6, sd, 1.0).astype(np.float32)
    return gram(z)


def select_and_score(features: Iterable[tuple[str, np.ndarray]], y: np.ndarray, splits, n_classes: int,
                     lambdas: Sequence[float] = LAMBDAS) -> list[dict]:
    """Nested selection: for each outer split (tr, te), every candidate feature set (given as
    (name, X) pairs, consumed one at a time; standardised on ``tr``) is scored by LOO on ``tr``
    only; the best candidate (at its best penalty) is fit on ``tr`` and scored on ``te``. Returns per
    split: chosen name, its LOO, penalty and test accuracy, and the LOO and test accuracy of every
    candidate (for reporting; the test accuracies play no part in the choice)."""
    splits = list(splits)
    per: list[dict] = [{} for _ in splits]
    for name, x in features:
        for j, (tr, te) in enumerate(splits):
            g = standardised_gram(x, tr)
            loo = loo_accuracy(g, y, tr, n_classes, lambdas)
            i = int(np.argmax(loo))
            acc = float(np.mean(ridge_scores(g, y, tr, te, n_classes, lambdas[i]).argmax(1) == y[te]))
            per[j][name] = {"loo": float(loo[i]), "lam": float(lambdas[i]), "accuracy": acc}
    if not splits or not per[0]:
        raise ModelError("select_and_score needs at least one split and one candidate")
    out = []
    for cands in per:
        best = max(cands, key=lambda k: cands[k]["loo"])  # ties: the first candidate
        out.append({"chosen": best, "loo": cands[best]["loo"], "lam": cands[best]["lam"],
                    "accuracy": cands[best]["accuracy"], "candidates": cands})
    return out
