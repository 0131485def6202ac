"""The torch side of a readout head: TorchHead (standardise, Linear + GELU layers), its numpy export, seeding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..model.projection import ProjectionHead

__all__ = ["TorchHead", "to_numpy_head", "standardiser", "seeded"]


class TorchHead(nn.Module):
    """Standardise, then Linear (+GELU) layers; L2-normalised output for embeddings."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, dims: Sequence[int],
                 final_activation: bool, normalise: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.final_activation, self.normalise = final_activation, normalise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.scale
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1 or self.final_activation:
                x = nn.functional.gelu(x)
        return nn.functional.normalize(x, dim=1) if self.normalise else x

    def macs(self) -> int:
        return int(sum(layer.in_features * layer.out_features for layer in self.layers))


def to_numpy_head(head: TorchHead, meta: dict | None = None) -> ProjectionHead:
    """Export the torch head's weights to the torch-free numpy head (same outputs to float32 rounding)."""
    return ProjectionHead(
        weights=[layer.weight.detach().cpu().numpy().T.astype(np.float32).copy() for layer in head.layers],
        biases=[layer.bias.detach().cpu().numpy().astype(np.float32).copy() for layer in head.layers],
        mean=head.mean.cpu().numpy().astype(np.float64), scale=head.scale.cpu().numpy().astype(np.float64),
        final_activation=head.final_activation, normalise=head.normalise, meta=dict(meta or {}))


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def seeded(seed: int) -> None:
    torch.manual_seed(seed)
