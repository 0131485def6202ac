"""Numpy inference of a readout head: standardise, (Linear + GELU) layers, optional L2 normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from ..errors import ModelError

__all__ = ["ProjectionHead", "gelu", "l2_normalise"]

_SQRT1_2 = np.float64(1.0 / np.sqrt(2.0))


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Phi(x) (torch.nn.GELU's default, erf form)."""
    return x * 0.5 * (1.0 + erf(x * _SQRT1_2))


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean length (all-zero rows stay zero)."""
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    return x / np.maximum(norm, eps)


@dataclass
class ProjectionHead:
    """One modality's head: ``(x - mean) / scale`` then layers; GELU after each hidden layer.

    ``final_activation`` puts GELU after the last layer too (the paper's one-layer Linear + GELU);
    ``normalise`` L2-normalises the output (an embedding); a classifier head sets it False and its
    output is the logits.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    mean: np.ndarray
    scale: np.ndarray
    final_activation: bool = True
    normalise: bool = True
    activation: str = "gelu"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ModelError("a head needs as many bias vectors as weight matrices (at least one)")
        if self.activation != "gelu":
            raise ModelError(f"unknown activation {self.activation!r}; only 'gelu' is supported")
        d = self.in_features
        if self.mean.shape != (d,) or self.scale.shape != (d,):
            raise ModelError(f"input mean/scale must have shape ({d},), got {self.mean.shape}, {self.scale.shape}")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or w.shape[0] != d or b.shape != (w.shape[1],):
                raise ModelError(f"layer {i}: weight {w.shape} / bias {b.shape} do not chain from {d} inputs")
            d = w.shape[1]

    @property
    def in_features(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def out_features(self) -> int:
        return int(self.weights[-1].shape[1])

    def forward_macs(self) -> int:
        """Multiply-accumulates of one forward pass of one sample."""
        return int(sum(w.shape[0] * w.shape[1] for w in self.weights))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ModelError(f"features must be (n, {self.in_features}), got {np.shape(features)}")
        x = (x - self.mean) / self.scale
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.astype(np.float64) + b
            if i < last or self.final_activation:
                x = gelu(x)
        if self.normalise:
            x = l2_normalise(x)
        return x.astype(np.float32)
