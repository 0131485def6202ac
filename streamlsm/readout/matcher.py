"""Online nearest-prototype matcher in the shared embedding space (cosine, top-k, open set, atomic save)."""

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

__all__ = ["Match", "PrototypeMatcher", "UNKNOWN", "FORMAT"]

UNKNOWN = "unknown"
FORMAT = "streamlsm.prototypes"
_FORMAT_VERSION = 1
_LABEL_MAX = 256


@dataclass(frozen=True, slots=True)
class Match:
    """The answer to one query: best label (or ``unknown``), its cosine score, top-k and margin.

    ``margin`` is the best score minus the second best (minus -1, the lowest cosine, when only one
    class is registered); ``topk`` lists (label, score) best first and always names real classes.
    """

    label: str
    score: float
    topk: list[tuple[str, float]] = field(default_factory=list)
    margin: float = 0.0


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


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
        self._set_row(i)
        if source:
            self.sources[label] = source
        self.version += 1

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
        self.version += 1

    def update(self, label: str, embedding: np.ndarray) -> bool:
        """Fold one confirmed sample into its class's prototype; False when the rule is ``none``."""
        if self.update_rule == "none":
            return False
        i = self._row(label)
        x = self._check(embedding)[0]
        if self.update_rule == "mean":
            self._sums[i] += x
        else:  # ema on the unit prototype; the sum tracks it so later `add` calls stay consistent
            p = (1.0 - self.ema) * self._protos[i].astype(np.float64) + self.ema * x
            self._sums[i] = p / max(np.linalg.norm(p), 1e-12) * (self._counts[i] + 1)
        self._counts[i] += 1
        self._set_row(i)
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
        return _unit_rows(q) @ self._protos.T

    def match_many(self, embeddings: np.ndarray, k: int = 5) -> list[Match]:
        """One Match per query row; all rows scored in one matrix product."""
        s = self.scores(embeddings)
        n, c = s.shape
        if c == 0:
            return [Match(UNKNOWN, 0.0, [], 0.0) for _ in range(n)]
        kk = max(1, min(int(k), c))
        order = np.argsort(-s, axis=1, kind="stable")[:, : max(kk, 2)]
        out = []
        for row, idx in zip(s, order, strict=True):
            best = float(row[idx[0]])
            second = float(row[idx[1]]) if c > 1 else -1.0
            topk = [(self._labels[j], float(row[j])) for j in idx[:kk]]
            label = self._labels[idx[0]]
            if self.threshold is not None and not best >= self.threshold:  # a NaN query is unknown too
                label = UNKNOWN
            out.append(Match(label, best, topk, best - second))
        return out

    def match(self, embedding: np.ndarray, k: int = 5) -> Match:
        """Nearest prototype of one query (``unknown`` below the threshold or with no classes)."""
        q = np.asarray(embedding)
        if q.ndim != 1:
            raise ModelError(f"match takes one embedding of shape ({self.dim},), got {q.shape}")
        return self.match_many(q[None, :], k)[0]

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """JSON-ready description of the matcher (no arrays)."""
        return {"format": FORMAT, "format_version": _FORMAT_VERSION, "dim": self.dim,
                "threshold": self.threshold, "update": self.update_rule, "ema": self.ema,
                "version": self.version, "labels": list(self._labels),
                "counts": [int(c) for c in self._counts], "sources": dict(self.sources)}

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
