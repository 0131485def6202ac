"""Training cost: wall time and counted multiply-accumulates to the selected epoch, ratios vs the LSM."""

from __future__ import annotations

import numpy as np

__all__ = ["cost_table", "ratio"]


def ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def cost_table(runs: dict[str, list[dict]], reference: str) -> dict[str, dict[str, float]]:
    """Mean per-run seconds and MACs of every model, and its ratio to ``reference`` (an LSM readout).

    ``train_macs`` count forward + backward (3x forward) of every trained parameter over the training
    samples up to the selected epoch (plus the refit where one is made); ``feature_macs`` the one-off
    reservoir forward pass over the training samples (nothing is trained there).
    """
    out = {}
    for name, rs in runs.items():
        out[name] = {"train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
                     "train_macs": float(np.mean([r["train_macs"] for r in rs])),
                     "feature_macs": float(np.mean([r.get("feature_macs", 0.0) for r in rs])),
                     "feature_seconds": float(np.mean([r.get("feature_seconds", 0.0) for r in rs]))}
    ref = out[reference]
    for c in out.values():
        c["ratio_seconds"] = ratio(c["train_seconds"], ref["train_seconds"])
        c["ratio_macs"] = ratio(c["train_macs"], ref["train_macs"])
        c["ratio_macs_incl_reservoir"] = ratio(c["train_macs"] + c["feature_macs"],
                                               ref["train_macs"] + ref["feature_macs"])
    return out
