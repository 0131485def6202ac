"""Readout: numpy inference of projection heads, the model bundle, zero-shot metrics (no torch here)."""

from __future__ import annotations

from .bundle import Bundle
from .metrics import (
    accuracy,
    confusion_matrix,
    mean_spread,
    prototype_predict,
    prototypes,
    retrieval_topk,
)
from .projection import ProjectionHead, gelu, l2_normalise

__all__ = [
    "Bundle",
    "ProjectionHead",
    "gelu",
    "l2_normalise",
    "retrieval_topk",
    "prototypes",
    "prototype_predict",
    "accuracy",
    "confusion_matrix",
    "mean_spread",
]
