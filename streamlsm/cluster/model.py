"""What the gateway, the registry and the shards share: the daemon config, the bundle and the
prototypes, each carried across Ray calls as plain values (dicts of scalars, bytes), never as
arbitrary Python objects.

* the daemon config: ``to_dict(DaemonConfig)`` -> ``from_dict`` (the same validation as the file)
* the bundle: the bytes of its files (``manifest.json``, ``weights.npz``); the receiver writes them
  to a private folder and loads them with ``Bundle.load``, then checks the content hash the
  gateway verified (and, where ``model.signing_key`` is set, checked the signature of)
* the prototypes: the matcher's JSON state and an npz of its arrays (``np.load`` without pickle)
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np

from ..config import from_dict, to_dict
from ..daemon.config import DaemonConfig
from ..errors import CheckpointError, ConfigError, ModelError
from ..model.bundle import Bundle
from ..model.calibration import bundle_calibration
from ..model.prototypes import PrototypeMatcher

__all__ = ["config_to_plain", "config_from_plain", "bundle_files", "bundle_from_files",
           "matcher_to_parts", "matcher_from_parts", "check_cluster_config"]

_BUNDLE_FILES = ("manifest.json", "weights.npz")
_MAX_BUNDLE_BYTES = 4 << 30


def config_to_plain(cfg: DaemonConfig) -> dict:
    return to_dict(cfg)


def config_from_plain(raw: dict) -> DaemonConfig:
    return from_dict(DaemonConfig, raw)


def check_cluster_config(cfg: DaemonConfig) -> None:
    """ConfigError for what a sharded pipeline cannot do the way the daemon does: online prototype
    updates (each shard would drift on its own) and sliding windows (a stream has no sample
    boundary at which it could move or resume)."""
    if cfg.model.update != "none":
        raise ConfigError("model.update", "online prototype updates are not shared between shards; "
                          "set model.update = \"none\" (register classes with `streamlsm ctl register`)")
    if cfg.pipeline.update != "none":
        raise ConfigError("pipeline.update", "online prototype updates are not shared between shards; "
                          "set pipeline.update = \"none\"")
    if cfg.pipeline.segment != "sample":
        raise ConfigError("pipeline.segment", "the cluster moves and resumes streams at sample "
                          "boundaries: it runs segment = \"sample\" only")


def bundle_files(folder: str | Path) -> dict[str, bytes]:
    """The bytes of a bundle folder's files (what ``Bundle.load`` reads)."""
    folder = Path(folder)
    out = {}
    for name in _BUNDLE_FILES:
        p = folder / name
        if p.stat().st_size > _MAX_BUNDLE_BYTES:
            raise ModelError(f"{p} is larger than {_MAX_BUNDLE_BYTES >> 30} GiB")
        out[name] = p.read_bytes()
    return out


def bundle_from_files(files: dict, expected_hash: str) -> Bundle:
    """Load a bundle from ``bundle_files`` bytes; ModelError unless its hash is ``expected_hash``."""
    if not isinstance(files, dict) or set(files) != set(_BUNDLE_FILES):
        raise ModelError(f"bundle files must be exactly {list(_BUNDLE_FILES)}")
    with tempfile.TemporaryDirectory(prefix="streamlsm-bundle-") as tmp:
        for name, data in files.items():
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ModelError(f"bundle file {name} must be bytes")
            (Path(tmp) / name).write_bytes(data)
        bundle = Bundle.load(tmp)
    if bundle.hash != expected_hash:
        raise ModelError(f"bundle hash {bundle.hash} is not the gateway's {expected_hash}")
    return bundle


def matcher_to_parts(m: PrototypeMatcher) -> tuple[str, bytes]:
    """(JSON state, npz bytes of the class table) of a matcher."""
    table = m.classes_state()
    buf = io.BytesIO()
    np.savez(buf, sums=table["sums"], counts=table["counts"], prototypes=table["prototypes"])
    return json.dumps(m.state()), buf.getvalue()


def matcher_from_parts(state: str, arrays: bytes, bundle: Bundle, error_target: float) -> PrototypeMatcher:
    """The matcher of ``matcher_to_parts``, calibrated from ``bundle`` as the daemon does."""
    try:
        doc = json.loads(state)
        m = PrototypeMatcher(int(doc["dim"]), doc["threshold"], doc["update"], float(doc["ema"]))
        with np.load(io.BytesIO(arrays), allow_pickle=False) as z:
            table = {"sums": z["sums"], "counts": z["counts"], "prototypes": z["prototypes"]}
        m.set_classes_state(table | {"labels": doc["labels"], "sources": doc.get("sources", {}),
                                     "version": doc["version"]})
    except (KeyError, TypeError, ValueError, OSError, ModelError) as exc:
        raise CheckpointError(f"bad prototype state from the registry: {exc!r}") from None
    m.calibrate(bundle_calibration(bundle), bundle.seen_classes, error_target)
    return m
