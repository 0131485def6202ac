"""Evaluation: cross-modal retrieval top-k, prototype classification, confusion matrices, mean +- spread."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ModelError
from ..model.prototypes import class_means, cosine

__all__ = [
    "retrieval_topk",
    "prototypes",
    "prototype_predict",
    "accuracy",
    "confusion_matrix",
    "mean_spread",
]


def _check(query: np.ndarray, gallery: np.ndarray) -> None:
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ModelError(f"query {query.shape} and gallery {gallery.shape} must be (n, D) with one D")
    if len(gallery) == 0:
        raise ModelError("the gallery is empty")


def retrieval_topk(query: np.ndarray, query_labels: Sequence, gallery: np.ndarray,
                   gallery_labels: Sequence, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of queries whose k most similar gallery items (cosine) include one of the query's class.

    Embeddings are compared by dot product (pass L2-normalised rows for cosine). Ties are broken by
    gallery order (stable sort), so the result is deterministic.
    """
    query = np.asarray(query, dtype=np.float64)
    gallery = np.asarray(gallery, dtype=np.float64)
    _check(query, gallery)
    ql = np.asarray(query_labels)
    gl = np.asarray(gallery_labels)
    if len(ql) != len(query) or len(gl) != len(gallery):
        raise ModelError("one label per query and per gallery item is needed")
    if len(query) == 0:
        return {int(k): float("nan") for k in ks}
    order = np.argsort(-(query @ gallery.T), axis=1, kind="stable")
    hits = gl[order] == ql[:, None]
    return {int(k): float(np.mean(np.any(hits[:, :k], axis=1))) for k in ks}


def prototypes(embeddings: np.ndarray, labels: Sequence,
               classes: Sequence | None = None) -> tuple[list, np.ndarray]:
    """(classes, class-mean embeddings); ``classes`` fixes the order and subset (each must occur)."""
    return class_means(embeddings, labels, classes)


def prototype_predict(query: np.ndarray, classes: Sequence, protos: np.ndarray) -> np.ndarray:
    """Label of the most similar prototype (cosine, as the online matcher) for every query row."""
    query = np.asarray(query, dtype=np.float64)
    protos = np.asarray(protos, dtype=np.float64)
    _check(query, protos)
    return np.asarray(classes)[np.argmax(cosine(query, protos), axis=1)]


def accuracy(pred: Sequence, truth: Sequence) -> float:
    """Fraction of equal entries (nan for no samples)."""
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ModelError(f"{len(p)} predictions for {len(t)} labels")
    return float(np.mean(p == t)) if len(t) else float("nan")


def confusion_matrix(truth: Sequence, pred: Sequence, classes: Sequence) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, in the order of ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        if t in index and p in index:
            out[index[t], index[p]] += 1
    return out


def mean_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min, max and count of a list of scores."""
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    if len(v) == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max()), "n": len(v)}
