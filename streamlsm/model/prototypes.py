"""Online nearest-prototype matcher in the shared embedding space (cosine, top-k, open set, atomic save).

With a ``Calibration`` (``calibrate``) it applies calibrated stacking (an offset off the scores of the classes
the projections were trained on), a calibrated probability per label, and abstention (``unknown``) below the
probability threshold certified for the error target (see ``readout.calibration``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import CheckpointError, ModelError
from .calibration import Calibration

__all__ = ["Match", "PrototypeMatcher", "UNKNOWN", "FORMAT", "cosine", "class_means"]

UNKNOWN = "unknown"
FORMAT = "streamlsm.prototypes"
_FORMAT_VERSION = 1
_LABEL_MAX = 256


@dataclass(frozen=True, slots=True)
class Match:
    """The answer to one query: best label (or ``unknown``), its score, top-k and margin.

    Scores are cosines, minus the calibrated-stacking offset for the trained (seen) classes when the
    matcher is calibrated. ``margin`` is the best score minus the second best (minus -1, the lowest
    cosine, when only one class is registered); ``topk`` lists (label, score) best first and always
    names real classes (``topk[0]`` is the best class even when ``label`` is ``unknown``).
    ``probability`` is the calibrated probability that the best class is right (None uncalibrated).
    """

    label: str
    score: float
    topk: list[tuple[str, float]] = field(default_factory=list)
    margin: float = 0.0
    probability: float | None = None


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def cosine(query: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Cosine similarity (n, classes) of query rows to prototype rows: the one scoring rule, used
    by the online matcher and by the offline experiments alike."""
    q, p = np.asarray(query, np.float64), np.asarray(protos, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    return q @ p.T


def class_means(embeddings: np.ndarray, labels, classes=None, *, unit: bool = False) -> tuple[list, np.ndarray]:
    """(classes, one mean embedding per class); ``classes`` fixes the order and subset (each must
    occur). ``unit`` averages unit-length rows (the online matcher's rule for support samples)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if unit:
        emb = _unit_rows(emb).astype(np.float64)
    lab = np.asarray(labels)
    classes = list(dict.fromkeys(lab.tolist())) if classes is None else list(classes)
    means = []
    for c in classes:
        mask = lab == c
        if not np.any(mask):
            raise ModelError(f"class {c!r} has no support sample to build its prototype")
        means.append(emb[mask].mean(axis=0))
    return classes, np.stack(means) if means else np.zeros((0, emb.shape[1]))


class PrototypeMatcher:
    """Class prototypes (unit vectors, one row per class) matched by cosine similarity.

    Prototypes come from support embeddings of any modality: the matcher only sees vectors of the
    shared space. ``add`` creates a class or folds more support samples into its mean, ``replace``
    starts it afresh, ``remove`` drops it, ``update`` folds in one confirmed query by the configured
    rule (``mean``: running mean over all samples seen; ``ema``: p <- (1-a) p + a x; ``none``: off).
    Every change bumps ``version``. Matching is one (classes x dim) matrix-vector product.
    """

    def __init__(self, dim: int, threshold: float | None = None,
                 update: Literal["none", "mean", "ema"] = "none", ema: float = 0.1) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ModelError(f"matcher dim must be a positive integer, got {dim!r}")
        if update not in ("none", "mean", "ema"):
            raise ModelError(f"matcher update must be 'none', 'mean' or 'ema', got {update!r}")
        if not 0.0 < float(ema) <= 1.0:
            raise ModelError(f"matcher ema must lie in (0, 1], got {ema!r}")
        if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
            raise ModelError(f"matcher threshold must lie in [-1, 1], got {threshold!r}")
        self.dim = dim
        self.threshold = None if threshold is None else float(threshold)
        self.update_rule = update
        self.ema = float(ema)
        self.version = 0
        self._labels: list[str] = []
        self._index: dict[str, int] = {}
        self._sums = np.zeros((0, dim), np.float64)    # sum of unit support vectors (mean rule)
        self._counts = np.zeros(0, np.int64)           # samples folded into each prototype
        self._protos = np.zeros((0, dim), np.float32)  # unit prototypes, the matrix matched against
        self.sources: dict[str, str] = {}             # label -> where its support came from
        self._cal: Calibration | None = None          # calibrated stacking + probability + abstention
        self._seen: frozenset[str] = frozenset()      # classes the projections were trained on
        self._target: float | None = None
        self._p_min = -np.inf                         # emit a label only at this probability or more
        self._offset = 0.0
        self._mask = np.zeros(0, np.float64)          # 1.0 for seen classes (row order)

    # ------------------------------------------------------------ calibration
    def calibrate(self, calibration: Calibration | None, seen: list[str] | tuple[str, ...] = (),
                  target: float | None = None) -> None:
        """Use ``calibration`` (None: plain cosine, no probability, no abstention); ``seen`` are the classes
        the projections were trained on (they get the offset), ``target`` the error target of emitted labels
        (default: the calibration's own, 5%)."""
        self._cal = calibration
        self._seen = frozenset(str(c) for c in seen)
        self._target = None if target is None else float(target)
        self._p_min = -np.inf if calibration is None else calibration.threshold(self._target)
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the seen-class mask and the offset for the registered classes (after any change)."""
        self._mask = np.asarray([lab in self._seen for lab in self._labels], np.float64)
        n_unseen = int(len(self._labels) - self._mask.sum())
        self._offset = 0.0 if self._cal is None or not self._mask.any() else self._cal.offset_for(n_unseen)

    @property
    def calibration(self) -> dict | None:
        """The calibration in use: offset, temperature, probability threshold, error target (None if off)."""
        if self._cal is None:
            return None
        return {"offset": self._offset, "temperature": self._cal.temperature, "probability_threshold": self._p_min,
                "error_target": self._target if self._target is not None else self._cal.target,
                "delta": self._cal.delta, "seen": sorted(self._seen & set(self._labels))}

    # ------------------------------------------------------------ inspection
    @property
    def labels(self) -> list[str]:
        """Registered class labels in row order."""
        return list(self._labels)

    @property
    def prototypes(self) -> np.ndarray:
        """(classes, dim) unit prototypes (a copy)."""
        return self._protos.copy()

    def count(self, label: str) -> int:
        """How many samples are folded into a class's prototype."""
        return int(self._counts[self._row(label)])

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    # ------------------------------------------------------------ changes
    def _check(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ModelError(f"embeddings must have shape (n, {self.dim}), got {np.shape(embeddings)}")
        if len(x) == 0:
            raise ModelError("no support embeddings given")
        if not np.isfinite(x).all():
            raise ModelError("support embeddings contain NaN or infinity")
        return _unit_rows(x).astype(np.float64)

    def _row(self, label: str) -> int:
        try:
            return self._index[label]
        except KeyError:
            raise ModelError(f"no class {label!r}; registered: {self._labels}") from None

    @staticmethod
    def _check_label(label: object) -> str:
        if not isinstance(label, str) or not label or len(label) > _LABEL_MAX or label == UNKNOWN:
            raise ModelError(f"class label must be a non-empty string other than {UNKNOWN!r} "
                             f"of at most {_LABEL_MAX} chars, got {label!r}")
        # no control or format characters (newline, NUL, U+202E bidi override...): a label is
        # printed by subscribers and written to logs and sinks as it is
        if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") for c in label):
            raise ModelError(f"class label {label!r} holds a control or format character")
        return label

    def _set_row(self, i: int) -> None:
        self._protos[i] = _unit_rows(self._sums[i])

    def add(self, label: str, embeddings: np.ndarray, source: str = "") -> None:
        """Create class ``label`` from support embeddings (n, dim), or fold them into its mean."""
        label = self._check_label(label)
        x = self._check(embeddings)
        if label in self._index:
            i = self._index[label]
            self._sums[i] += x.sum(0)
            self._counts[i] += len(x)
        else:
            self._index[label] = len(self._labels)
            self._labels.append(label)
            self._sums = np.vstack([self._sums, x.sum(0, keepdims=True)])
            self._counts = np.append(self._counts, len(x))
            self._protos = np.vstack([self._protos, np.zeros((1, self.dim), np.float32)])
            i = len(self._labels) - 1
            self._refresh()
        self._set_row(i)
        if source:
            self.sources[label] = source
        self.version += 1

    def enrol(self, label: str, embeddings: np.ndarray, rule: Literal["mean", "ema", "replace"] = "mean",
              source: str = "") -> None:
        """Few-shot enrolment: create ``label`` from k support embeddings, or refine it with more samples.

        ``mean``: the prototype is the running mean of every sample enrolled so far; ``ema``: each new sample
        moves it by p <- (1 - ema) p + ema x (follows drift); ``replace``: start afresh from these samples.
        """
        if rule not in ("mean", "ema", "replace"):
            raise ModelError(f"enrolment rule must be 'mean', 'ema' or 'replace', got {rule!r}")
        if rule == "replace":
            self.replace(label, embeddings, source)
        elif rule == "mean" or label not in self._index:
            self.add(label, embeddings, source)
        else:
            i = self._row(self._check_label(label))
            for x in self._check(embeddings):
                self._fold_ema(i, x)
            if source:
                self.sources[label] = source
            self.version += 1

    def _fold_ema(self, i: int, x: np.ndarray) -> None:
        p = (1.0 - self.ema) * self._protos[i].astype(np.float64) + self.ema * x
        self._counts[i] += 1
        self._sums[i] = p / max(np.linalg.norm(p), 1e-12) * self._counts[i]
        self._set_row(i)

    def replace(self, label: str, embeddings: np.ndarray, source: str = "") -> None:
        """Set class ``label`` afresh from these support embeddings (creates it if absent)."""
        if label in self._index:
            self.remove(label)
        self.add(label, embeddings, source)

    def remove(self, label: str) -> None:
        """Drop class ``label``; ModelError if it is not registered."""
        i = self._row(label)
        keep = np.arange(len(self._labels)) != i
        self._labels.pop(i)
        self._index = {lab: j for j, lab in enumerate(self._labels)}
        self._sums, self._counts, self._protos = self._sums[keep], self._counts[keep], self._protos[keep]
        self.sources.pop(label, None)
        self._refresh()
        self.version += 1

    def update(self, label: str, embedding: np.ndarray) -> bool:
        """Fold one confirmed sample into its class's prototype; False when the rule is ``none``."""
        if self.update_rule == "none":
            return False
        i = self._row(label)
        x = self._check(embedding)[0]
        if self.update_rule == "mean":
            self._sums[i] += x
            self._counts[i] += 1
            self._set_row(i)
        else:  # ema on the unit prototype; the sum tracks it so later `add` calls stay consistent
            self._fold_ema(i, x)
        self.version += 1
        return True

    # ------------------------------------------------------------ matching
    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine similarity (n, classes) of queries (n, dim) or (dim,) to every prototype."""
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ModelError(f"queries must have shape (n, {self.dim}), got {np.shape(embeddings)}")
        return _unit_rows(q) @ self._protos.T  # = cosine(q, protos): the rows are unit already

    def match_many(self, embeddings: np.ndarray, k: int = 5) -> list[Match]:
        """One Match per query row; all rows scored in one matrix product.

        Calibrated: seen-class scores minus the offset, probability = softmax(scores / T) of the best class,
        ``unknown`` below the certified probability threshold (``topk`` still ranks the real classes)."""
        cos = self.scores(embeddings)
        n, c = cos.shape
        if c == 0:
            return [Match(UNKNOWN, 0.0, [], 0.0) for _ in range(n)]
        cal = self._cal
        s = cos - (self._offset * self._mask)[None, :].astype(np.float32) if cal is not None and self._offset else cos
        probs = None
        if cal is not None:
            z = s.astype(np.float64) / cal.temperature
            z -= np.max(z, axis=1, keepdims=True)
            e = np.exp(z)
            probs = 1.0 / e.sum(axis=1)  # the best class has z = 0: its probability is 1 / sum
        kk = max(1, min(int(k), c))
        order = np.argsort(-s, axis=1, kind="stable")[:, : max(kk, 2)]
        out = []
        for r, (row, idx) in enumerate(zip(s, order, strict=True)):
            best = float(row[idx[0]])
            second = float(row[idx[1]]) if c > 1 else -1.0
            topk = [(self._labels[j], float(row[j])) for j in idx[:kk]]
            label = self._labels[idx[0]]
            if self.threshold is not None and not float(cos[r, idx[0]]) >= self.threshold:  # a NaN query too
                label = UNKNOWN
            p = None
            if probs is not None:
                p = float(probs[r])
                if not p >= self._p_min:
                    label = UNKNOWN
                p = p if p == p else 0.0
            out.append(Match(label, best, topk, best - second, p))
        return out

    def match(self, embedding: np.ndarray, k: int = 5) -> Match:
        """Nearest prototype of one query (``unknown`` below the threshold or with no classes)."""
        q = np.asarray(embedding)
        if q.ndim != 1:
            raise ModelError(f"match takes one embedding of shape ({self.dim},), got {q.shape}")
        return self.match_many(q[None, :], k)[0]

    # ------------------------------------------------------------ class table as data
    def classes_state(self) -> dict:
        """The registered classes as plain data (copies): labels, sums, counts, prototypes, sources,
        version. ``set_classes_state`` puts it back: a rollback, or another process's copy."""
        return {"labels": list(self._labels), "sums": self._sums.copy(), "counts": self._counts.copy(),
                "prototypes": self._protos.copy(), "sources": dict(self.sources), "version": int(self.version)}

    def set_classes_state(self, state: dict) -> None:
        """Replace the class table by ``state`` (from ``classes_state``); ModelError if it does not fit."""
        labels = [self._check_label(lab) for lab in state["labels"]]
        sums = np.asarray(state["sums"], np.float64)
        counts = np.asarray(state["counts"], np.int64)
        protos = np.asarray(state["prototypes"], np.float32)
        c = len(labels)
        if len(set(labels)) != c or sums.shape != (c, self.dim) or counts.shape != (c,) \
                or protos.shape != (c, self.dim):
            raise ModelError(f"a class table of {c} classes of dim {self.dim} does not fit these arrays")
        self._labels, self._index = labels, {lab: i for i, lab in enumerate(labels)}
        self._sums, self._counts, self._protos = sums.copy(), counts.copy(), protos.copy()
        self.sources = {str(k): str(v) for k, v in dict(state.get("sources", {})).items()}
        self.version = int(state["version"])
        self._refresh()

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """JSON-ready description of the matcher (no arrays; the calibration comes from the bundle)."""
        return {"format": FORMAT, "format_version": _FORMAT_VERSION, "dim": self.dim,
                "threshold": self.threshold, "update": self.update_rule, "ema": self.ema,
                "version": self.version, "labels": list(self._labels),
                "counts": [int(c) for c in self._counts], "sources": dict(self.sources),
                "calibration": self.calibration}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (JSON manifest) and a sibling npz atomically; returns the manifest path.

        The arrays go to a fresh ``<stem>.<token>.npz``, then the manifest naming it and its sha256
        replaces the old one with ``os.replace`` (the commit point; both fsynced first). Any failure
        raises CheckpointError and leaves the previous checkpoint loadable.
        """
        path = Path(path)
        folder = path.parent
        arrays = f"{path.stem}.{secrets.token_hex(6)}.npz"
        tmp_npz = folder / (arrays + ".tmp")
        tmp_json = folder / (path.name + f".{secrets.token_hex(4)}.tmp")
        try:
            old = _read_manifest(path).get("arrays") if path.is_file() else None
        except CheckpointError:
            old = None
        try:
            with open(tmp_npz, "wb") as fh:
                np.savez(fh, sums=self._sums, counts=self._counts, prototypes=self._protos)
                fh.flush()
                os.fsync(fh.fileno())
            digest = _sha256(tmp_npz)
            os.replace(tmp_npz, folder / arrays)
            doc = self.state() | {"arrays": arrays, "sha256": digest}
            with open(tmp_json, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_json, path)
            _fsync_dir(folder)
        except OSError as exc:
            for p in (tmp_npz, tmp_json):
                _unlink(p)
            if _manifest_arrays(path) != arrays:
                _unlink(folder / arrays)
            raise CheckpointError(f"cannot write prototype checkpoint {path}: {exc}") from exc
        if isinstance(old, str) and old != arrays and "/" not in old:
            _unlink(folder / old)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PrototypeMatcher:
        """Read a checkpoint written by ``save``; CheckpointError if missing, corrupt or mismatched."""
        path = Path(path)
        doc = _read_manifest(path)
        try:
            arrays = doc["arrays"]
            if not isinstance(arrays, str) or "/" in arrays or "\\" in arrays or arrays.startswith("."):
                raise CheckpointError(f"{path}: bad arrays file name {arrays!r}")
            npz = path.parent / arrays
            if _sha256(npz) != doc["sha256"]:
                raise CheckpointError(f"{path}: {arrays} does not match the manifest's sha256")
            m = cls(int(doc["dim"]), doc["threshold"], doc["update"], float(doc["ema"]))
            with np.load(npz) as z:
                sums, counts, protos = z["sums"], z["counts"], z["prototypes"]
            labels = [cls._check_label(lab) for lab in doc["labels"]]
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: corrupt prototype checkpoint: {exc!r}") from exc
        c = len(labels)
        if len(set(labels)) != c:
            raise CheckpointError(f"{path}: class labels repeat: {labels}")
        if sums.shape != (c, m.dim) or counts.shape != (c,) or protos.shape != (c, m.dim):
            raise CheckpointError(f"{path}: array shapes do not match {c} classes of dim {m.dim}")
        m._labels = labels
        m._index = {lab: i for i, lab in enumerate(labels)}
        m._sums = sums.astype(np.float64)
        m._counts = counts.astype(np.int64)
        m._protos = protos.astype(np.float32)
        m.sources = {str(k): str(v) for k, v in dict(doc.get("sources", {})).items()}
        m.version = int(doc["version"])
        m._refresh()
        return m


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read prototype checkpoint {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint")
    if doc.get("format_version") != _FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {doc.get('format_version')!r}")
    return doc


def _manifest_arrays(path: Path) -> str | None:
    try:
        return _read_manifest(path).get("arrays")
    except CheckpointError:
        return None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
