"""Zero-shot metrics: retrieval top-k, prototypes, accuracy, confusion matrix, mean and spread."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.errors import ModelError
from streamlsm.training.metrics import (
    accuracy,
    confusion_matrix,
    mean_spread,
    prototype_predict,
    prototypes,
    retrieval_topk,
)


def test_retrieval_topk_hand_example():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])
    gl = ["a", "b", "c"]
    query = np.array([[0.9, 0.1], [0.1, 0.9], [1.0, 0.0]])
    ql = ["a", "c", "b"]
    # q0 -> a (hit@1); q1 -> b, c, a (hit@2); q2 -> a, c, b (hit@3)
    r = retrieval_topk(query, ql, gallery, gl, ks=(1, 2, 3))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(1.0)}


def test_retrieval_matches_slow_reference():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    ql, gl = rng.integers(0, 4, 30), rng.integers(0, 4, 12)
    got = retrieval_topk(q, ql, g, gl, ks=(1, 5))
    for k in (1, 5):
        hits = 0
        for i in range(30):
            sims = [float(q[i] @ g[j]) for j in range(12)]
            top = sorted(range(12), key=lambda j: -sims[j])[:k]
            hits += any(gl[j] == ql[i] for j in top)
        assert got[k] == pytest.approx(hits / 30)


def test_retrieval_errors_and_empty():
    with pytest.raises(ModelError):
        retrieval_topk(np.zeros((2, 3)), [0, 1], np.zeros((2, 4)), [0, 1])
    with pytest.raises(ModelError):
        retrieval_topk(np.zeros((2, 3)), [0, 1], np.zeros((0, 3)), [])
    r = retrieval_topk(np.zeros((0, 3)), [], np.ones((2, 3)), [0, 1])
    assert np.isnan(r[1])


def test_prototypes_and_predict():
    emb = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    classes, protos = prototypes(emb, ["x", "x", "y"])
    assert classes == ["x", "y"]
    np.testing.assert_allclose(protos, [[2.0, 0.0], [0.0, 2.0]])
    pred = prototype_predict(np.array([[0.9, 0.2], [0.1, 0.5]]), classes, protos)
    assert pred.tolist() == ["x", "y"]
    with pytest.raises(ModelError):
        prototypes(emb, ["x", "x", "y"], classes=["x", "z"])


def test_accuracy_confusion_spread():
    assert accuracy([1, 2, 3], [1, 2, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ModelError):
        accuracy([1], [1, 2])
    cm = confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], classes=[0, 1])
    assert cm.tolist() == [[1, 1], [0, 2]]
    s = mean_spread([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert mean_spread([0.5])["std"] == 0.0
    assert mean_spread([])["n"] == 0
