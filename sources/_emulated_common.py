"""Shared parts of the emulated-data makers: kinds, seeds, train/test counts, manifests."""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError

from ._common import atomic_write

__all__ = ["VERSION", "KINDS", "MANIFEST", "TEST_FRACTION", "KIND_CODE", "Progress", "split_counts",
           "seeded", "clock", "write_manifest", "write_npz", "read_manifest"]

#: bump when an emulator changes its output, so cached default data is remade
VERSION = 2
KINDS = ("camera-digits", "camera-letters", "cochlea-digits", "cortex-letters")
MANIFEST = "manifest.json"
TEST_FRACTION = 0.2
KIND_CODE = {k: i + 1 for i, k in enumerate(KINDS)}
Progress = Callable[[int], None] | None


def split_counts(n: int) -> tuple[int, int]:
    """(train, test) samples per class for ``n`` in all: about 20% test, at least 1 if n > 1."""
    if n < 1:
        raise ConfigError("n_per_class", f"must be >= 1, got {n}")
    n_test = max(1, int(round(n * TEST_FRACTION))) if n > 1 else 0
    return n - n_test, n_test


def seeded(seed: int, *key: int) -> np.random.Generator:
    """A generator for one sample: depends only on the seed and the sample's key, not on order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *key])


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the eSpeak worker)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def clock() -> tuple[float, float]:
    """(wall, CPU) clock readings for ``write_manifest``."""
    return time.perf_counter(), _cpu()


def write_manifest(out: Path, kind: str, n_per_class: int, seed: int, t0: tuple[float, float],
                   **extra) -> None:
    """``out/manifest.json``: what was made, how (kind, version, seed) and in what time."""
    info = {"kind": kind, "version": VERSION, "n_per_class": n_per_class, "seed": seed,
            "seconds": round(time.perf_counter() - t0[0], 2),
            "cpu_seconds": round(_cpu() - t0[1], 2), **extra}
    (out / MANIFEST).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def write_npz(path: Path, arrays: dict[str, np.ndarray], level: int = 1) -> None:
    """An ``.npz`` (zip of ``.npy``; no pickled objects) deflated at a fast ``level``; atomic.

    ``np.savez_compressed`` uses a slow default level; sorted spike times compress as well at 1.
    """
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
            for key, value in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)

    atomic_write(path, write)


def read_manifest(path: str | Path) -> dict | None:
    """The manifest of a made data set (folder), or None if absent or unreadable."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


