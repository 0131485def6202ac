"""Trustworthy labels: calibrated stacking (generalised zero-shot), temperature scaling, risk-controlled abstention.

Pure numpy/scipy, shared by the experiments (fitting) and the edge matcher (applying).

- Generalised zero-shot (GZSL): every class's prototype competes; seen accuracy, unseen accuracy and their
  harmonic mean H (Xian et al., "Zero-shot learning - the good, the bad and the ugly", 2018), with
  accuracies averaged per class.
- Calibrated stacking (Chao et al., 2016): ``score - offset`` for the classes the projections were trained
  on; the offset is chosen on validation data where some training classes play the unseen ones. Sweeping
  the offset traces the seen-unseen curve; its area is AUSUC.
- Confidence: softmax of the calibrated scores at a temperature fitted by negative log-likelihood.
- Abstention: a label is emitted only when its confidence reaches a threshold chosen by Learn-then-Test
  (Angelopoulos et al., 2021): an exact binomial test per candidate threshold with Bonferroni over the
  candidates, which are chosen on a disjoint half of the calibration queries. With probability
  at least ``1 - delta`` over the calibration draw, the error rate of emitted labels is at most ``target``
  for queries exchangeable with the calibration queries.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from ..errors import ModelError

__all__ = ["Calibration", "stacked", "gzsl_accuracy", "harmonic_mean", "seen_unseen_curve", "choose_offset",
           "fit_temperature", "confidence", "risk_threshold", "risk_coverage", "THRESHOLD_GRID", "fit_calibration",
           "bundle_calibration"]

#: the fixed thresholds Learn-then-Test considers (data-independent)
THRESHOLD_GRID = tuple(float(x) for x in np.round(np.linspace(0.05, 0.99, 48), 4))


def stacked(scores: np.ndarray, seen_mask: np.ndarray, offset: float) -> np.ndarray:
    """Calibrated stacking: ``offset`` subtracted from the scores of the seen classes (columns)."""
    return np.asarray(scores, np.float64) - float(offset) * np.asarray(seen_mask, np.float64)[None, :]


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b); 0 when both are 0."""
    return 0.0 if a + b <= 0 else 2.0 * a * b / (a + b)


def _per_class(pred: np.ndarray, y: np.ndarray, classes: np.ndarray) -> float:
    accs = [float(np.mean(pred[y == c] == c)) for c in classes if np.any(y == c)]
    return float(np.mean(accs)) if accs else float("nan")


def gzsl_accuracy(scores: np.ndarray, y: np.ndarray, seen_mask: np.ndarray, offset: float = 0.0) -> dict:
    """Seen / unseen accuracy (mean over classes) when all columns compete, and H; ``y`` are column indices."""
    s = stacked(scores, seen_mask, offset)
    y = np.asarray(y, np.int64)
    seen_mask = np.asarray(seen_mask, bool)
    pred = np.argmax(s, axis=1)
    cols = np.arange(s.shape[1])
    seen = _per_class(pred, y, cols[seen_mask])
    unseen = _per_class(pred, y, cols[~seen_mask])
    return {"seen": seen, "unseen": unseen, "H": harmonic_mean(seen, unseen)}


def seen_unseen_curve(scores: np.ndarray, y: np.ndarray, seen_mask: np.ndarray, points: int = 101) -> dict:
    """Seen and unseen accuracy over offsets from 'every query labelled seen' (lowest) to 'every query unseen'.

    Returns offsets, seen, unseen, H (arrays, offsets ascending) and ``auc`` (area under unseen-vs-seen,
    AUSUC, with the end points (0, max unseen) and (max seen, 0) closing the curve).
    """
    s = np.asarray(scores, np.float64)
    seen_mask = np.asarray(seen_mask, bool)
    if s.ndim != 2 or seen_mask.shape != (s.shape[1],) or not seen_mask.any() or seen_mask.all():
        raise ModelError("scores must be (n, classes) with both seen and unseen classes")
    gap = s[:, seen_mask].max(1) - s[:, ~seen_mask].max(1)
    qs = np.quantile(gap, np.linspace(0.0, 1.0, points))
    offsets = np.unique(np.concatenate([[gap.min() - 1e-6, gap.max() + 1e-6, 0.0], qs]))
    rows = [gzsl_accuracy(s, y, seen_mask, o) for o in offsets]
    seen = np.array([r["seen"] for r in rows])
    unseen = np.array([r["unseen"] for r in rows])
    order = np.argsort(seen, kind="stable")
    xs = np.concatenate([[0.0], seen[order], [seen.max()]])
    ys = np.concatenate([[unseen.max()], unseen[order], [0.0]])
    auc = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))
    return {"offsets": offsets, "seen": seen, "unseen": unseen,
            "H": np.array([r["H"] for r in rows]), "auc": auc}


def choose_offset(scores: np.ndarray, y: np.ndarray, seen_mask: np.ndarray) -> float:
    """The offset with the highest H on these (validation) scores; the smallest |offset| among ties."""
    c = seen_unseen_curve(scores, y, seen_mask)
    best = np.flatnonzero(c["H"] >= c["H"].max() - 1e-12)
    return float(c["offsets"][best[np.argmin(np.abs(c["offsets"][best]))]])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(scores / T) (grid, then refined)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(y, np.int64)
    if len(s) == 0:
        raise ModelError("no calibration samples to fit a temperature on")

    def nll(t: float) -> float:
        return float(-np.mean(_log_softmax(s / t)[np.arange(len(y)), y]))

    grid = np.exp(np.linspace(np.log(1e-3), np.log(10.0), 121))
    t = float(grid[int(np.argmin([nll(g) for g in grid]))])
    fine = np.exp(np.linspace(np.log(t) - 0.08, np.log(t) + 0.08, 41))
    return float(fine[int(np.argmin([nll(g) for g in fine]))])


def confidence(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Max softmax probability of each row at this temperature (the calibrated probability of the label)."""
    s = np.asarray(scores, np.float64)
    if s.shape[1] == 0:
        return np.zeros(len(s))
    return np.exp(_log_softmax(s / float(temperature)).max(axis=1))


def _certified(conf: np.ndarray, wrong: np.ndarray, lam: float, target: float, level: float) -> bool:
    """Binomial test of H0 "error of labels with confidence >= lam exceeds target", rejected at ``level``."""
    emit = conf >= lam
    n = int(emit.sum())
    return bool(n) and binom.cdf(int(wrong[emit].sum()), n, target) <= level


def risk_threshold(conf: np.ndarray, correct: np.ndarray, target: float = 0.05, delta: float = 0.1,
                   order_conf: np.ndarray | None = None, order_correct: np.ndarray | None = None,
                   grid: Sequence[float] = THRESHOLD_GRID, candidates: int = 4) -> float:
    """The lowest confidence threshold whose emitted-label error is certified <= ``target`` (Learn-then-Test).

    Each candidate threshold's null "the error of labels with confidence >= it exceeds target" is rejected
    when the binomial probability of at most the observed errors among the n emitted (on ``conf``,
    ``correct``) is <= delta / (number of candidates) (Bonferroni). The candidates come from an independent
    set (``order_conf``, ``order_correct``: other calibration queries): the lowest grid threshold it
    certifies itself and the ``candidates - 1`` grid steps above; without one, the whole grid. Since the
    candidates do not depend on (``conf``, ``correct``), with probability >= 1 - delta over them the chosen
    threshold's error is <= target (for queries exchangeable with them). ``inf`` (emit nothing) when no
    candidate is certified.
    """
    conf = np.asarray(conf, np.float64)
    wrong = ~np.asarray(correct, bool)
    if not 0.0 < target < 1.0 or not 0.0 < delta < 1.0:
        raise ModelError(f"target and delta must lie in (0, 1), got {target}, {delta}")
    grid = sorted(grid, reverse=True)
    cands = grid
    if order_conf is not None and order_correct is not None:
        oc, ow = np.asarray(order_conf, np.float64), ~np.asarray(order_correct, bool)
        ok = [i for i, lam in enumerate(grid) if _certified(oc, ow, lam, target, delta)]
        if ok:
            j = max(ok)
        else:  # none certified there: the highest thresholds that still emit some labels
            emits = [i for i, lam in enumerate(grid) if (oc >= lam).sum() > 0]
            j = min(emits) + candidates - 1 if emits else len(grid) - 1
        cands = grid[max(0, j - candidates + 1): j + 1]
    level = delta / len(cands)
    passed = [lam for lam in cands if _certified(conf, wrong, lam, target, level)]
    return float(min(passed)) if passed else float("inf")


def risk_coverage(conf: np.ndarray, correct: np.ndarray, points: int = 50) -> dict:
    """Error of emitted labels and the fraction emitted, over thresholds from 0 to the highest confidence."""
    conf = np.asarray(conf, np.float64)
    correct = np.asarray(correct, bool)
    lams = np.unique(np.quantile(conf, np.linspace(0.0, 0.98, points))) if len(conf) else np.zeros(0)
    cov, err = [], []
    for lam in lams:
        emit = conf >= lam
        cov.append(float(emit.mean()))
        err.append(float(1.0 - correct[emit].mean()) if emit.any() else 0.0)
    return {"threshold": lams, "coverage": np.array(cov), "error": np.array(err)}


@dataclass(frozen=True)
class Calibration:
    """What a bundle carries so the matcher can calibrate: seen-class offsets per number of unseen classes,
    the softmax temperature, and the held-out calibration set's (confidence, correct) pairs from which the
    abstention threshold for any error target is certified."""

    offsets: tuple[tuple[int, float], ...]
    temperature: float
    confidence: tuple[float, ...]
    correct: tuple[bool, ...]
    target: float = 0.05
    delta: float = 0.1
    info: tuple[tuple[str, str], ...] = ()
    order_confidence: tuple[float, ...] = ()   # the other half's (confidence, correct): orders the test sequence
    order_correct: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if not self.offsets or any(u < 1 or not np.isfinite(o) for u, o in self.offsets):
            raise ModelError(f"calibration offsets must be (n_unseen >= 1, finite) pairs, got {self.offsets}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ModelError(f"calibration temperature must be positive, got {self.temperature}")
        for conf, corr in ((self.confidence, self.correct), (self.order_confidence, self.order_correct)):
            if len(conf) != len(corr) or not all(0.0 <= c <= 1.0 for c in conf):
                raise ModelError("calibration confidence must be values in [0, 1], one per correct flag")
        if not 0.0 < self.target < 1.0 or not 0.0 < self.delta < 1.0:
            raise ModelError(f"calibration target / delta must lie in (0, 1), got {self.target} / {self.delta}")

    def offset_for(self, n_unseen: int) -> float:
        """The seen-class offset for this many registered unseen classes (0 with none; the nearest fitted)."""
        if n_unseen < 1:
            return 0.0
        table = dict(self.offsets)
        return float(table[min(table, key=lambda u: (abs(u - n_unseen), -u))])

    def threshold(self, target: float | None = None) -> float:
        """The abstention threshold on the calibrated probability for an error target (default ``target``)."""
        return risk_threshold(np.asarray(self.confidence), np.asarray(self.correct, bool),
                              self.target if target is None else float(target), self.delta,
                              np.asarray(self.order_confidence) if self.order_confidence else None,
                              np.asarray(self.order_correct, bool) if self.order_correct else None)

    def to_dict(self) -> dict:
        return {"offsets": [[int(u), float(o)] for u, o in self.offsets], "temperature": float(self.temperature),
                "confidence": [float(c) for c in self.confidence],
                "correct": [bool(c) for c in self.correct], "target": float(self.target),
                "delta": float(self.delta), "info": {k: v for k, v in self.info},
                "order_confidence": [float(c) for c in self.order_confidence],
                "order_correct": [bool(c) for c in self.order_correct]}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        try:
            return cls(offsets=tuple((int(u), float(o)) for u, o in d["offsets"]),
                       temperature=float(d["temperature"]), confidence=tuple(float(c) for c in d["confidence"]),
                       correct=tuple(bool(c) for c in d["correct"]), target=float(d.get("target", 0.05)),
                       delta=float(d.get("delta", 0.1)),
                       info=tuple((str(k), str(v)) for k, v in dict(d.get("info") or {}).items()),
                       order_confidence=tuple(float(c) for c in d.get("order_confidence", ())),
                       order_correct=tuple(bool(c) for c in d.get("order_correct", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad calibration record: {exc!r}") from None


def fit_calibration(scores: np.ndarray, y: np.ndarray, seen_mask: np.ndarray, *, seed: int = 0,
                    target: float = 0.05, delta: float = 0.1, info: dict | None = None) -> Calibration:
    """Fit a Calibration on validation scores (n, classes) where the unseen columns are classes held out of
    that model's training (pseudo-unseen). Half of the queries (stratified by class) choose the offsets and
    the temperature; the other half, never used for those, is the set the abstention threshold is certified on.
    """
    s = np.asarray(scores, np.float64)
    y = np.asarray(y, np.int64)
    seen_mask = np.asarray(seen_mask, bool)
    rng = np.random.default_rng(seed)
    a = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a[idx[: (len(idx) + 1) // 2]] = True
    unseen_cols = np.flatnonzero(~seen_mask)
    offsets = []
    for u in range(1, len(unseen_cols) + 1):
        picks = []
        for sub in itertools.combinations(unseen_cols.tolist(), u):
            keep = seen_mask.copy()
            keep[list(sub)] = True
            rows = a & np.isin(y, np.flatnonzero(keep))
            cols = np.flatnonzero(keep)
            remap = -np.ones(s.shape[1], np.int64)
            remap[cols] = np.arange(len(cols))
            picks.append(choose_offset(s[rows][:, cols], remap[y[rows]], seen_mask[cols]))
        offsets.append((u, float(np.mean(picks))))
    off = dict(offsets)[len(unseen_cols)]
    sa = stacked(s[a], seen_mask, off)
    t = fit_temperature(sa, y[a])
    sb = stacked(s[~a], seen_mask, off)
    conf = confidence(sb, t)
    correct = np.argmax(sb, axis=1) == y[~a]
    conf_a = confidence(sa, t)
    correct_a = np.argmax(sa, axis=1) == y[a]
    return Calibration(tuple(offsets), t, tuple(float(c) for c in conf), tuple(bool(c) for c in correct),
                       target, delta, tuple((str(k), str(v)) for k, v in (info or {}).items()),
                       tuple(float(c) for c in conf_a), tuple(bool(c) for c in correct_a))


def bundle_calibration(bundle) -> Calibration | None:
    """The Calibration a bundle carries in ``extra["calibration"]`` (None when it has none)."""
    d = getattr(bundle, "extra", {}).get("calibration")
    return None if d is None else Calibration.from_dict(d)
