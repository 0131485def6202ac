"""Experiment output: results.json, report.md (tables of mean +- spread) and PNG bar charts."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..training.metrics import mean_spread

__all__ = ["summarise", "fmt", "write_report", "json_numpy", "bar_png", "tsne_png", "confusion_png", "seen_unseen_png",
           "risk_coverage_png"]


def summarise(per_seed: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """{name: [score per seed]} -> {name: mean_spread}."""
    return {k: mean_spread(list(v)) for k, v in per_seed.items()}


def fmt(s: dict[str, float], pct: bool = True) -> str:
    if not s or s.get("n", 0) == 0:
        return "-"
    f = 100.0 if pct else 1.0
    return f"{s['mean'] * f:.2f} ± {s['std'] * f:.2f}" + ("" if s["n"] > 1 else " (1 run)")


def json_numpy(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays; TypeError for anything else."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON: {type(obj).__name__}")


def _default(obj: Any) -> Any:
    """Reports: numpy as numbers, anything else (paths, configs) as its text."""
    try:
        return json_numpy(obj)
    except TypeError:
        return str(obj)


def write_report(out: str | Path, title: str, results: dict, tables: Sequence[tuple[str, list[str], list[list]]],
                 notes: Sequence[str] = (), figures: Sequence[str] = ()) -> Path:
    """Write ``out/results.json`` and ``out/report.md``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    results.setdefault("written_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    results.setdefault("platform", platform.platform())
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=_default))
    lines = [f"# {title}", ""]
    for caption, header, rows in tables:
        lines += [f"## {caption}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for fig in figures:
        lines += [f"![{fig}]({fig})", ""]
    (out / "report.md").write_text("\n".join(lines))
    return out


def bar_png(path: str | Path, summary: dict[str, dict[str, float]], ylabel: str, title: str,
            reference: dict[str, float] | None = None) -> str | None:
    """A bar chart of mean +- std per name (matplotlib Agg); None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = list(summary)
    means = [summary[n]["mean"] for n in names]
    stds = [summary[n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue")
    for label, value in (reference or {}).items():
        ax.axhline(value, ls="--", lw=1, color="tab:red")
        ax.text(len(names) - 0.5, value, label, ha="right", va="bottom", fontsize=7, color="tab:red")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    lo = min([m - s for m, s in zip(means, stds, strict=True)] + [1.0])
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    return _save(plt, fig, path)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def tsne_png(path: str | Path, embeddings: dict[str, tuple[np.ndarray, np.ndarray]], title: str,
             unseen: Sequence[str] = (), seed: int = 0, max_points: int = 1500) -> str | None:
    """t-SNE map of the shared space: {modality: (embeddings, labels)}; marker per modality, colour per
    class, unseen classes outlined. None when matplotlib or scikit-learn is missing."""
    plt = _plt()
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        return None
    if plt is None:
        return None
    rng = np.random.default_rng(seed)
    xs, labs, mods = [], [], []
    for m, (e, lab) in embeddings.items():
        idx = rng.permutation(len(e))[: max_points // max(1, len(embeddings))]
        xs.append(e[idx])
        labs += [str(v) for v in np.asarray(lab)[idx]]
        mods += [m] * len(idx)
    x = np.concatenate(xs)
    y = TSNE(2, init="pca", random_state=seed, perplexity=min(30, max(5, len(x) // 10))).fit_transform(x)
    labs, mods = np.asarray(labs), np.asarray(mods)
    classes = sorted(set(labs.tolist()))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(6, 5))
    for mi, m in enumerate(embeddings):
        for ci, c in enumerate(classes):
            sel = (mods == m) & (labs == c)
            ax.scatter(y[sel, 0], y[sel, 1], s=10, marker="o^sD"[mi % 4], color=cmap(ci % 20),
                       edgecolors="k" if c in unseen else "none", linewidths=0.4,
                       label=f"{c}" if mi == 0 else None)
    ax.set_title(title + f" (markers: {', '.join(embeddings)}; outlined: unseen)", fontsize=8)
    ax.legend(fontsize=6, ncol=2, markerscale=1.5, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(plt, fig, path)



def _save(plt, fig, path: str | Path, ax=None, title: str | None = None) -> str:
    """Finish a figure (title and legend of ``ax`` when given), write it as PNG, close it; its file name."""
    if ax is not None:
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path).name

def confusion_png(path: str | Path, matrix, classes: Sequence[str], title: str) -> str | None:
    plt = _plt()
    if plt is None:
        return None
    m = np.asarray(matrix, dtype=float)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted (nearest prototype)")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    return _save(plt, fig, path)


def seen_unseen_png(path: str | Path, curves: dict[str, dict], title: str,
                    points: dict[str, tuple[float, float]] | None = None) -> str | None:
    """Seen-unseen accuracy curves (calibrated stacking swept over the offset), one line per model;
    ``points`` marks the offsets actually chosen (e.g. calibrated on validation data)."""
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for name, c in curves.items():
        order = np.argsort(c["seen"], kind="stable")
        ax.plot(np.asarray(c["seen"])[order], np.asarray(c["unseen"])[order], label=name, lw=1.2)
    for name, (xs, ys) in (points or {}).items():
        ax.plot([xs], [ys], "o", ms=5, label=name)
    ax.set_xlabel("seen-class accuracy (all classes compete)")
    ax.set_ylabel("unseen-class accuracy (all classes compete)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    return _save(plt, fig, path, ax, title)


def risk_coverage_png(path: str | Path, curves: dict[str, dict], title: str, target: float | None = None,
                      points: dict[str, tuple[float, float]] | None = None) -> str | None:
    """Error of emitted labels against the fraction emitted, one line per model; ``points`` marks
    (coverage, error) of the certified threshold; ``target`` a dashed line."""
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    for name, c in curves.items():
        ax.plot(c["coverage"], c["error"], label=name, lw=1.2)
    for name, (cov, err) in (points or {}).items():
        ax.plot([cov], [err], "o", ms=5, label=name)
    if target is not None:
        ax.axhline(target, ls="--", lw=1, color="tab:red")
        ax.text(0.02, target, f"target {100 * target:.0f}%", va="bottom", fontsize=7, color="tab:red")
    ax.set_xlabel("coverage (fraction of queries labelled)")
    ax.set_ylabel("error of emitted labels")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(0.1, max((float(np.max(c["error"])) for c in curves.values() if len(c["error"])),
                                default=0.1) + 0.05))
    return _save(plt, fig, path, ax, title)
