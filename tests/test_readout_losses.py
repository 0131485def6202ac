"""Contrastive losses against hand-computed values on tiny inputs and a slow loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamlsm.training.losses import clip_loss, proto_loss, soft_clip_loss, supcon_loss  # noqa: E402

E = math.e
P = E / (E + 1.0)  # softmax([1, 0])[0]
Q = 1.0 / (E + 1.0)


def _eye():
    return torch.eye(2, dtype=torch.float64)


def test_clip_identity_pairs_hand_value():
    # logits = I: every row's CE = -log(e / (e + 1)) = log(1 + 1/e)
    assert clip_loss(_eye(), _eye()).item() == pytest.approx(math.log(1 + 1 / E), abs=1e-12)


def test_clip_temperature_scales_logits():
    # logits = I / 0.5 -> CE = -log(e^2 / (e^2 + 1))
    assert clip_loss(_eye(), _eye(), temperature=0.5).item() == pytest.approx(math.log(1 + E**-2), abs=1e-12)


def test_clip_is_symmetric_in_direction():
    za = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    zb = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    # logits = [[0, 1], [0.8, 0.6]]; rows: -log softmax(row)[i]; cols likewise
    rows = [-(0 - math.log(1 + E)), -(0.6 - math.log(math.exp(0.8) + math.exp(0.6)))]
    cols = [-(0 - math.log(1 + math.exp(0.8))), -(0.6 - math.log(E + math.exp(0.6)))]
    want = 0.5 * (sum(rows) / 2 + sum(cols) / 2)
    assert clip_loss(za, zb).item() == pytest.approx(want, abs=1e-12)
    assert clip_loss(zb, za).item() == pytest.approx(want, abs=1e-12)


def test_soft_clip_identity_hand_value():
    # sim = I -> targets = softmax(I) = [[P, Q], [Q, P]]; logits = I -> loss = entropy(P, Q)
    want = -(P * math.log(P) + Q * math.log(Q))
    assert soft_clip_loss(_eye(), _eye()).item() == pytest.approx(want, abs=1e-12)


def test_soft_clip_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    za = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=1)
    zb = torch.nn.functional.normalize(torch.randn(5, 3, generator=g, dtype=torch.float64), dim=1)
    t = 0.7
    a, b = za.numpy(), zb.numpy()
    logits = a @ b.T / t
    sim = (a @ a.T + b @ b.T) / 2 * t
    tgt = np.exp(sim) / np.exp(sim).sum(1, keepdims=True)

    def lsm(x):
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    la = -(tgt * lsm(logits)).sum(1).mean()
    lb = -(tgt.T * lsm(logits.T)).sum(1).mean()
    assert soft_clip_loss(za, zb, temperature=t).item() == pytest.approx(0.5 * (la + lb), abs=1e-10)


def test_supcon_hand_values():
    same = torch.tensor([0, 0])
    # both pairs positive for each anchor: -(log P + log Q) / 2
    want = -(math.log(P) + math.log(Q)) / 2
    assert supcon_loss(_eye(), _eye(), same, temperature=1.0).item() == pytest.approx(want, abs=1e-12)
    # distinct labels: reduces to CLIP
    diff = torch.tensor([0, 1])
    assert supcon_loss(_eye(), _eye(), diff, temperature=1.0).item() == pytest.approx(
        clip_loss(_eye(), _eye()).item(), abs=1e-12)


def test_losses_have_gradients():
    za = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    zb = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    lab = torch.tensor([0, 1, 0, 2])
    for loss in (clip_loss(za, zb), soft_clip_loss(za, zb), supcon_loss(za, zb, lab)):
        g = torch.autograd.grad(loss, (za, zb))
        assert all(torch.isfinite(x).all() for x in g)


def test_proto_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(1)
    za = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    zb = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    lab = torch.tensor([3, 1, 3, 1, 7, 3])
    t = 0.5
    classes = [1, 3, 7]

    def direction(q, s):
        protos = []
        for c in classes:
            m = s[lab == c].mean(0)
            protos.append(m / m.norm())
        protos = torch.stack(protos)
        total = 0.0
        for i in range(6):
            logits = (q[i] @ protos.T / t).tolist()
            lse = math.log(sum(math.exp(v) for v in logits))
            total += lse - logits[classes.index(int(lab[i]))]
        return total / 6

    want = 0.5 * (direction(za, zb) + direction(zb, za))
    assert proto_loss(za, zb, lab, temperature=t).item() == pytest.approx(want, abs=1e-10)
