"""The model bundle: a directory with weights.npz + manifest.json, loadable with numpy alone."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import from_dict, to_dict
from ..errors import ModelError
from .projection import ProjectionHead

__all__ = ["Bundle", "FORMAT", "VERSION", "SIGNATURE", "sign_bundle", "embed", "feature_transform"]

FORMAT = "streamlsm-bundle"
VERSION = 1
_WEIGHTS = "weights.npz"
_MANIFEST = "manifest.json"
_MAX_MANIFEST = 16 * 1024 * 1024
_LEGACY_SEGMENT_KEYS = ("segment", "window_us", "hop_us")  # ReservoirConfig fields until 0.1
SIGNATURE = "signature.json"  # {"alg": "hmac-sha256", "hash": <content hash>, "mac": <hex>}
_MAX_LAYERS = 64


def _mac(key: bytes, content_hash: str) -> str:
    """HMAC-SHA256 of a bundle's content hash (which covers every array and the manifest)."""
    return hmac.new(key, content_hash.encode(), hashlib.sha256).hexdigest()


def sign_bundle(path: str | Path, key: bytes) -> Path:
    """Write ``signature.json`` into a bundle directory: proof that a holder of ``key`` made it.

    The content hash alone proves nothing about who made a bundle (anyone can recompute it); the
    MAC over it can be made only with the key (``streamlsm keys signing FILE``). Returns its path.
    """
    bundle = Bundle.load(path)  # verifies the content hash first
    doc = {"alg": "hmac-sha256", "hash": bundle.hash, "mac": _mac(key, bundle.hash)}
    target = Path(path) / SIGNATURE
    _atomic(target, lambda fh: fh.write(json.dumps(doc, indent=1).encode()))
    return target


def _check_signature(path: Path, content_hash: str, key: bytes) -> None:
    spath = path / SIGNATURE
    if not spath.is_file():
        raise ModelError(f"{path}: unsigned bundle ({SIGNATURE} missing) and model.signing_key asks for "
                         "a signature: sign it with `streamlsm keys sign BUNDLE --key FILE`")
    try:
        if spath.stat().st_size > 4096:
            raise ValueError("larger than 4096 bytes")
        doc = json.loads(spath.read_text())
        mac, alg = str(doc["mac"]), doc["alg"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ModelError(f"{spath}: unreadable signature: {exc}") from None
    if alg != "hmac-sha256":
        raise ModelError(f"{spath}: unknown signature algorithm {alg!r} (this code checks hmac-sha256)")
    if not hmac.compare_digest(mac, _mac(key, content_hash)):
        raise ModelError(f"{path}: bad signature: the bundle was not signed with this key, or was altered")


def _check_manifest(manifest: dict, path: Path) -> None:
    """Types and ranges of the manifest fields a load trusts (one line naming the first bad one)."""
    heads = manifest.get("heads")
    if not isinstance(heads, dict) or not heads:
        raise ModelError(f"{path}: manifest 'heads' must be a non-empty map of modality -> head")
    for m, spec in heads.items():
        if not isinstance(spec, dict):
            raise ModelError(f"{path}: manifest heads.{m} must be a map")
        n = spec.get("layers")
        if type(n) is not int or not 1 <= n <= _MAX_LAYERS:
            raise ModelError(f"{path}: manifest heads.{m}.layers must be an integer in [1, {_MAX_LAYERS}], got {n!r}")
        if not isinstance(spec.get("meta", {}) or {}, dict):
            raise ModelError(f"{path}: manifest heads.{m}.meta must be a map")
    for key, kind in (("classes", list), ("seen_classes", list), ("reservoirs", dict),
                      ("metrics", dict), ("extra", dict)):
        v = manifest.get(key)
        if v is not None and not isinstance(v, kind):
            raise ModelError(f"{path}: manifest '{key}' must be a {kind.__name__}, got {type(v).__name__}")
    for m, cfg in (manifest.get("reservoirs") or {}).items():
        if cfg is not None and not isinstance(cfg, dict):
            raise ModelError(f"{path}: manifest reservoirs.{m} must be a map or null")
    if type(manifest.get("seed")) is not int:
        raise ModelError(f"{path}: manifest 'seed' must be an integer")


def _content_hash(arrays: Mapping[str, np.ndarray], manifest: Mapping[str, Any]) -> str:
    """sha256 over every array (name, dtype, shape, bytes, sorted by name) and the manifest sans hash."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    body = {k: v for k, v in manifest.items() if k != "hash"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + h.hexdigest()


@dataclass
class Bundle:
    """Heads per modality (projection into one shared space, or a classifier), configs and metrics.

    ``reservoirs[modality]`` is the ReservoirConfig (or its dict) that turns that modality's events
    into the head's input features (None for heads fed something else).
    """

    heads: dict[str, ProjectionHead]
    classes: list[str]
    seen_classes: list[str] | None = None
    reservoirs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.heads:
            raise ModelError("a bundle needs at least one head")
        self.classes = [str(c) for c in self.classes]
        self.seen_classes = [str(c) for c in (self.seen_classes if self.seen_classes is not None else self.classes)]
        unknown = sorted(set(self.seen_classes) - set(self.classes))
        if unknown:
            raise ModelError(f"seen classes {unknown} are not among the classes")
        self.reservoirs = {m: (None if c is None else c if isinstance(c, dict) else to_dict(c))
                           for m, c in self.reservoirs.items()}
        self._hash: str | None = None

    @property
    def modalities(self) -> list[str]:
        return sorted(self.heads)

    def head(self, modality: str) -> ProjectionHead:
        try:
            return self.heads[modality]
        except KeyError:
            raise ModelError(f"the bundle has no head for modality {modality!r}; it has {self.modalities}") from None

    def reservoir_config(self, modality: str, cls: type | None = None):
        """The recorded reservoir config of a modality: its dict, or ``cls`` built from it.

        Pass ``cls=ReservoirConfig`` to get the frozen config (readout may not import reservoir);
        ModelError when the bundle records none.
        """
        cfg = self.reservoirs.get(modality)
        if cfg is None:
            raise ModelError(f"the bundle records no reservoir config for modality {modality!r}")
        cfg = dict(cfg)
        # bundles written before the segmenter left the reservoir record its (sample-mode) keys
        legacy = {k: cfg.pop(k) for k in _LEGACY_SEGMENT_KEYS if k in cfg}
        if legacy.get("segment", "sample") != "sample":
            raise ModelError(f"reservoirs.{modality}: window mode is set in [pipeline] now (segment, "
                             f"window_us, hop_us), not in the bundle's reservoir config")
        return cfg if cls is None else from_dict(cls, cfg, f"reservoirs.{modality}")

    def embed(self, modality: str, features: np.ndarray) -> np.ndarray:
        """(n, F) features -> (n, D) float32 (L2-normalised rows for projection heads)."""
        return self.head(modality)(features)

    def classify(self, modality: str, features: np.ndarray) -> np.ndarray:
        """Class labels of a classifier head (argmax of its logits), as strings."""
        head = self.head(modality)
        if head.normalise:
            raise ModelError(f"the {modality!r} head is a projection, not a classifier")
        return np.asarray(self.classes)[np.argmax(head(features), axis=1)]

    # ---- serialisation -------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for m, head in self.heads.items():
            out[f"{m}/mean"] = np.asarray(head.mean, dtype=np.float64)
            out[f"{m}/scale"] = np.asarray(head.scale, dtype=np.float64)
            for i, (w, b) in enumerate(zip(head.weights, head.biases, strict=True)):
                out[f"{m}/w{i}"] = np.asarray(w, dtype=np.float32)
                out[f"{m}/b{i}"] = np.asarray(b, dtype=np.float32)
        return out

    def _manifest(self) -> dict[str, Any]:
        heads = {m: {"layers": len(h.weights), "in_features": h.in_features, "out_features": h.out_features,
                     "activation": h.activation, "final_activation": h.final_activation,
                     "normalise": h.normalise, "kind": "projection" if h.normalise else "classifier",
                     "meta": h.meta}
                 for m, h in self.heads.items()}
        return {"format": FORMAT, "version": VERSION, "seed": self.seed, "classes": self.classes,
                "seen_classes": self.seen_classes, "heads": heads,
                "reservoirs": {m: self.reservoirs.get(m) for m in self.heads},
                "metrics": self.metrics, "extra": self.extra}

    @property
    def manifest(self) -> dict[str, Any]:
        m = self._manifest()
        m["hash"] = self.hash
        return m

    @property
    def hash(self) -> str:
        if self._hash is None:
            self._hash = _content_hash(self._arrays(), self._manifest())
        return self._hash

    def save(self, path: str | Path) -> Path:
        """Write the directory (files replaced atomically); returns its path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._hash = None
        arrays = self._arrays()
        manifest = self._manifest()
        manifest["hash"] = _content_hash(arrays, manifest)
        self._hash = manifest["hash"]
        _atomic(path / _WEIGHTS, lambda fh: np.savez(fh, **arrays))
        text = json.dumps(manifest, indent=2, sort_keys=True, default=_json_default)
        _atomic(path / _MANIFEST, lambda fh: fh.write(text.encode()))
        return path

    @classmethod
    def load(cls, path: str | Path, key: bytes | None = None) -> Bundle:
        """Read and verify a bundle directory; ModelError naming what is missing, corrupt or altered.

        With ``key`` the bundle must also carry a valid signature made with it (``sign_bundle``).
        Every weight must be finite.
        """
        path = Path(path)
        mpath, wpath = path / _MANIFEST, path / _WEIGHTS
        for p in (mpath, wpath):
            if not p.is_file():
                raise ModelError(f"{path} is not a bundle: {p.name} is missing")
        if mpath.stat().st_size > _MAX_MANIFEST:
            raise ModelError(f"{mpath}: manifest larger than {_MAX_MANIFEST} bytes")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{mpath}: invalid JSON: {exc}") from None
        except RecursionError:
            raise ModelError(f"{mpath}: invalid JSON: nested too deeply") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ModelError(f"{mpath}: not a {FORMAT} manifest")
        if manifest.get("version") != VERSION:
            raise ModelError(f"{mpath}: bundle version {manifest.get('version')!r}, this code reads {VERSION}")
        try:
            with np.load(wpath) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{wpath}: unreadable weights: {exc}") from None
        try:
            got = _content_hash(arrays, manifest)
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. Infinity/NaN in the manifest
            raise ModelError(f"{mpath}: manifest cannot be hashed: {exc}") from None
        if got != manifest.get("hash"):
            raise ModelError(f"{path}: content hash mismatch (manifest {manifest.get('hash')}, files {got})")
        if key is not None:
            _check_signature(path, got, key)
        _check_manifest(manifest, path)
        for name, a in arrays.items():
            if a.dtype.kind not in "fiub":
                raise ModelError(f"{wpath}: array {name!r} has dtype {a.dtype}, not numeric")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ModelError(f"{wpath}: array {name!r} holds non-finite values (NaN or inf)")
        heads = {}
        try:
            for m, spec in manifest["heads"].items():
                n = int(spec["layers"])
                heads[m] = ProjectionHead(
                    weights=[arrays[f"{m}/w{i}"] for i in range(n)],
                    biases=[arrays[f"{m}/b{i}"] for i in range(n)],
                    mean=arrays[f"{m}/mean"], scale=arrays[f"{m}/scale"],
                    final_activation=bool(spec["final_activation"]), normalise=bool(spec["normalise"]),
                    activation=str(spec["activation"]), meta=dict(spec.get("meta") or {}))
            bundle = cls(heads=heads, classes=manifest["classes"], seen_classes=manifest["seen_classes"],
                         reservoirs={k: v for k, v in (manifest.get("reservoirs") or {}).items()},
                         seed=int(manifest["seed"]), metrics=dict(manifest.get("metrics") or {}),
                         extra=dict(manifest.get("extra") or {}))
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ModelError(f"{path}: manifest and weights disagree: missing or bad {exc}") from None
        bundle._hash = manifest["hash"]
        return bundle


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to a manifest")


def _atomic(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TRANSFORMS = {"none": None, "log1p": np.log1p}


def feature_transform(bundle, modality: str) -> str:
    """How the bundle's head for ``modality`` wants reservoir counts: "none" or "log1p".

    Read from the head's ``meta["feature_transform"]``, else ``bundle.extra["feature_transform"]``
    (a name, or a {modality: name} table); default "none".
    """
    name = bundle.head(modality).meta.get("feature_transform")
    if name is None:
        spec = bundle.extra.get("feature_transform", "none")
        name = spec.get(modality, "none") if isinstance(spec, dict) else spec
    if name not in _TRANSFORMS:
        raise ModelError(f"unknown feature_transform {name!r} for {modality!r}; known: {sorted(_TRANSFORMS)}")
    return name


def embed(bundle, modality: str, counts: np.ndarray) -> np.ndarray:
    """Reservoir counts (n, F) -> embeddings: the bundle's feature transform, then its head."""
    x = np.asarray(counts, dtype=np.float32)
    fn = _TRANSFORMS[feature_transform(bundle, modality)]
    return bundle.embed(modality, x if fn is None else fn(x))
