"""Experiment output: results.json, report.md (tables of mean +- spread) and PNG bar charts."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..readout.metrics import mean_spread

__all__ = ["summarise", "fmt", "write_report", "bar_png"]


def summarise(per_seed: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """{name: [score per seed]} -> {name: mean_spread}."""
    return {k: mean_spread(list(v)) for k, v in per_seed.items()}


def fmt(s: dict[str, float], pct: bool = True) -> str:
    if not s or s.get("n", 0) == 0:
        return "-"
    f = 100.0 if pct else 1.0
    return f"{s['mean'] * f:.2f} ± {s['std'] * f:.2f}" + ("" if s["n"] > 1 else " (1 run)")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path).name
