"""Contrastive losses for cross-modal projection training (torch): CLIP, soft-target CLIP, SupCon."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["clip_loss", "soft_clip_loss", "supcon_loss", "proto_loss"]


def clip_loss(za: torch.Tensor, zb: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``za`` and row i of ``zb`` are the only positive pair.

    ``za``, ``zb``: (B, D) embeddings (normalised by the caller); logits = za zb^T / temperature;
    the mean of cross-entropy over rows (a -> b) and over columns (b -> a).
    """
    logits = za @ zb.T / temperature
    target = torch.arange(len(za), device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def soft_clip_loss(za: torch.Tensor, zb: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The paper's soft-target CLIP variant (its public code follows the "simple CLIP" recipe).

    Targets are softmax((za za^T + zb zb^T) / 2 * temperature) row-wise, so pairs of similar samples
    (in practice: of one class) share the target mass instead of being pushed apart; the loss is the
    mean of the soft cross-entropy of logits (a -> b) and of logits^T (b -> a) against the targets
    and their transpose. Reconstruction: the authors' core model file is unpublished.
    """
    logits = za @ zb.T / temperature
    sim = (za @ za.T + zb @ zb.T) / 2.0
    targets = F.softmax(sim * temperature, dim=-1)
    loss_a = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=1)
    loss_b = -(targets.T * F.log_softmax(logits.T, dim=-1)).sum(dim=1)
    return 0.5 * (loss_a.mean() + loss_b.mean())


def supcon_loss(za: torch.Tensor, zb: torch.Tensor, labels: torch.Tensor,
                temperature: float = 0.1) -> torch.Tensor:
    """Cross-modal supervised contrastive loss: every same-class (a_i, b_j) pair is positive.

    For anchor a_i the loss is minus the mean over its positives j of log softmax_j(za_i zb^T / T);
    symmetric over the two directions. ``labels``: (B,) integer class of pair i (shared by a_i, b_i).
    """
    logits = za @ zb.T / temperature
    pos = (labels[:, None] == labels[None, :]).to(logits.dtype)
    n_pos = pos.sum(dim=1)
    loss_a = -(pos * F.log_softmax(logits, dim=1)).sum(dim=1) / n_pos
    loss_b = -(pos.T * F.log_softmax(logits.T, dim=1)).sum(dim=1) / n_pos
    return 0.5 * (loss_a.mean() + loss_b.mean())


def proto_loss(za: torch.Tensor, zb: torch.Tensor, labels: torch.Tensor,
               temperature: float = 0.1) -> torch.Tensor:
    """Cross-modal prototypical-network loss: each ``a`` sample is classified among the batch's classes
    by cosine to the class prototypes of ``b`` (normalised class means), and vice versa.
    """
    classes, inv = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(inv, len(classes)).to(za.dtype)  # (B, C)
    pa = F.normalize(onehot.T @ za, dim=1)
    pb = F.normalize(onehot.T @ zb, dim=1)
    return 0.5 * (F.cross_entropy(za @ pb.T / temperature, inv) + F.cross_entropy(zb @ pa.T / temperature, inv))
