"""Trained-end-to-end baselines: GRU and spiking RNN (surrogate gradient, BPTT) sequence classifiers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..training.train import (
    TrainConfig,
    classification_epoch,
    contrastive_epoch,
    fit_epochs,
    stratified_split,
)

__all__ = ["SeqConfig", "GRUClassifier", "SRNNClassifier", "SRNNEncoder", "train_sequence", "train_srnn_clip",
           "spike_fn"]


@dataclass(frozen=True)
class SeqConfig:
    hidden: int = 128
    decay: float = 0.9       # SRNN membrane decay per bin
    threshold: float = 1.0   # SRNN threshold
    slope: float = 5.0       # fast-sigmoid surrogate slope
    pool: str = "last"       # GRU readout: last hidden state, or "mean" over time (robust to end padding)


class _Spike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid derivative backward (Zenke & Ganguli's SuperSpike)."""

    @staticmethod
    def forward(ctx, v, slope):
        ctx.save_for_backward(v)
        ctx.slope = slope
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad / (ctx.slope * v.abs() + 1.0) ** 2, None


def spike_fn(v: torch.Tensor, slope: float = 5.0) -> torch.Tensor:
    return _Spike.apply(v, slope)


class GRUClassifier(nn.Module):
    def __init__(self, n_in: int, n_classes: int, cfg: SeqConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, cfg.hidden, batch_first=True)
        self.out = nn.Linear(cfg.hidden, n_classes)
        self.n_in, self.h, self.pool = n_in, cfg.hidden, cfg.pool

    def forward(self, x):
        seq, h = self.gru(x)
        return self.out(seq.mean(1) if self.pool == "mean" else h[-1])

    def macs(self, t: int) -> int:
        return t * 3 * (self.n_in * self.h + self.h * self.h) + self.h * self.out.out_features


class SRNNClassifier(nn.Module):
    """Recurrent LIF layer (the paper's neuron: hard reset, no refractory period), linear readout on
    the mean spike count per bin (the "SRNN-ANN" variant: non-spiking readout; no membrane term)."""

    def __init__(self, n_in: int, n_classes: int, cfg: SeqConfig) -> None:
        super().__init__()
        self.w_in = nn.Linear(n_in, cfg.hidden)
        self.w_rec = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.out = nn.Linear(cfg.hidden, n_classes)
        self.cfg, self.n_in = cfg, n_in
        nn.init.orthogonal_(self.w_rec.weight, gain=0.5)

    def forward(self, x):
        b, t, _ = x.shape
        v = x.new_zeros(b, self.cfg.hidden)
        s = x.new_zeros(b, self.cfg.hidden)
        drive = self.w_in(x)
        count = x.new_zeros(b, self.cfg.hidden)
        for k in range(t):
            v = self.cfg.decay * v * (1 - s) + drive[:, k] + self.w_rec(s)
            s = spike_fn(v - self.cfg.threshold, self.cfg.slope)
            count = count + s
        return self.out(count / t)

    def macs(self, t: int) -> int:
        h = self.cfg.hidden
        return t * (self.n_in * h + h * h) + h * self.out.out_features


def train_sequence(kind: str, x: np.ndarray, labels, x_test: np.ndarray, classes, *,
                   config: TrainConfig, seq: SeqConfig = SeqConfig()) -> dict:
    """Train a GRU or SRNN on (n, T, C) inputs with a stratified validation split and early stopping;
    returns test predictions, the selected epoch, seconds and MACs to the selected epoch."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[str(v)] for v in labels], np.int64)
    tr, va = stratified_split(y, config.val_fraction, config.seed)
    torch.manual_seed(config.seed)
    cls = GRUClassifier if kind == "gru" else SRNNClassifier
    model = cls(x.shape[2], len(classes), seq)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    yt = torch.from_numpy(y)

    def step(rng):
        return classification_epoch(model, xt, yt, rng.permutation(tr), config.batch_size, opt, clip_norm=5.0)

    def predict(xx):
        model.train(False)
        with torch.no_grad():
            return torch.cat([model(xx[i:i + 256]).argmax(1) for i in range(0, len(xx), 256)]).numpy()

    def validate():
        return float((predict(xt[va]) == y[va]).mean())

    fit = fit_epochs(step, validate, lambda: {k: v.clone() for k, v in model.state_dict().items()},
                     config, kind)
    model.load_state_dict(fit.pop("state"))
    pred = np.asarray(classes)[predict(torch.from_numpy(np.ascontiguousarray(x_test, np.float32)))]
    macs = 3 * model.macs(x.shape[1]) * len(tr) * (fit["best_epoch"] + 1)
    return {"pred": pred, "val": fit["best_val"], "best_epoch": fit["best_epoch"], "epochs_run": fit["epochs_run"],
            "seconds": fit["seconds"], "train_macs_to_best": macs,
            "seconds_to_best": fit["seconds"] * (fit["best_epoch"] + 1) / max(1, fit["epochs_run"]),
            "val_history": [h["val"] for h in fit["history"]], "macs_per_epoch": 3 * model.macs(x.shape[1]) * len(tr)}


class SRNNEncoder(nn.Module):
    """SRNN body (LIF recurrent layer, surrogate gradient) + Linear + GELU -> L2-normalised embedding."""

    def __init__(self, n_in: int, dim: int, cfg: SeqConfig) -> None:
        super().__init__()
        self.body = SRNNClassifier(n_in, dim, cfg)

    def forward(self, x):
        return nn.functional.normalize(nn.functional.gelu(self.body(x)), dim=1)

    def macs(self, t: int) -> int:
        return self.body.macs(t)


def train_srnn_clip(xa: np.ndarray, la, xb: np.ndarray, lb, *, dim: int = 64, loss: str = "supcon",
                    temperature: float = 0.1, config: TrainConfig, seq: SeqConfig = SeqConfig(hidden=64)) -> dict:
    """CLIP-style zero-shot baseline with two trainable SRNN encoders (BPTT, surrogate gradient) on
    (n, T, C) input sequences; pools paired by class each epoch as for the LSM projections. Returns
    the encoders (an ``embed(which, x)`` callable), the selected epoch, seconds and MACs."""
    from ..training.metrics import retrieval_topk

    la, lb = np.asarray([str(v) for v in la]), np.asarray([str(v) for v in lb])
    tra, vaa = stratified_split(la, config.val_fraction, config.seed)
    trb, vab = stratified_split(lb, config.val_fraction, config.seed + 1)
    torch.manual_seed(config.seed)
    ea, eb = SRNNEncoder(xa.shape[2], dim, seq), SRNNEncoder(xb.shape[2], dim, seq)
    opt = torch.optim.Adam([*ea.parameters(), *eb.parameters()], lr=config.lr, weight_decay=config.weight_decay)
    ta, tb = torch.from_numpy(np.ascontiguousarray(xa, np.float32)), torch.from_numpy(np.ascontiguousarray(xb, np.float32))
    index = {c: i for i, c in enumerate(sorted(set(la.tolist())))}
    ya = torch.as_tensor([index.get(v, -1) for v in la])
    by_class = {c: trb[lb[trb] == c] for c in set(la[tra].tolist())}

    def step(rng):
        order = rng.permutation(tra)
        partner = np.asarray([rng.choice(by_class[c]) for c in la[order]])
        return contrastive_epoch(ea, eb, ta, tb, ya, order, partner, config.batch_size, loss, temperature,
                                 opt, clip_norm=5.0)

    def embed(which: str, x) -> np.ndarray:
        enc = ea if which == "a" else eb
        enc.train(False)
        xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.no_grad():
            return torch.cat([enc(xt[i:i + 256]) for i in range(0, len(xt), 256)]).numpy()

    def validate():
        return retrieval_topk(embed("a", ta[vaa]), la[vaa], embed("b", tb[vab]), lb[vab], ks=(1,))[1]

    def snapshot():
        return ({k: v.clone() for k, v in ea.state_dict().items()}, {k: v.clone() for k, v in eb.state_dict().items()})

    fit = fit_epochs(step, validate, snapshot, config, "srnn-clip")
    sa, sb = fit.pop("state")
    ea.load_state_dict(sa)
    eb.load_state_dict(sb)
    macs = 3 * (ea.macs(xa.shape[1]) + eb.macs(xb.shape[1])) * len(tra) * (fit["best_epoch"] + 1)
    return {"embed": embed, "val_top1": fit["best_val"], "best_epoch": fit["best_epoch"],
            "epochs_run": fit["epochs_run"], "train_macs": float(macs),
            "train_seconds": fit["seconds"] * (fit["best_epoch"] + 1) / max(1, fit["epochs_run"])}
