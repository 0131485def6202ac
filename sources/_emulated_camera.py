"""Emulated event-camera data sets: glyph (or scikit-learn digit) images seen by the saccading
sensor, written as an N-MNIST ``.bin`` tree; ``CameraTreeDataset`` reads any class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError

from ._common import natural_key
from ._emulated_common import KIND_CODE, Progress, clock, seeded, split_counts, write_manifest
from .nmnist import SPLITS as NMNIST_SPLITS
from .nmnist import NMNISTDataset, write_bin

__all__ = ["make_camera", "CameraTreeDataset"]


def _sklearn_digit(char: str, i: int, rng: np.random.Generator) -> np.ndarray:
    """A real handwritten digit from scikit-learn's bundled 8x8 set (no download), upsampled to
    an MNIST-like 28x28 image with a small random rotation and shift."""
    from scipy import ndimage
    from sklearn.datasets import load_digits

    data = _SKLEARN.setdefault("digits", load_digits())
    pool = np.flatnonzero(data.target == int(char))
    img = data.images[pool[i % len(pool)]] / 16.0
    big = np.clip(ndimage.zoom(img, 20 / 8, order=3), 0.0, 1.0)
    big = np.clip(ndimage.rotate(big, rng.normal(0, 6), reshape=False, order=1), 0.0, 1.0)
    canvas = np.zeros((28, 28), dtype=np.float32)
    dy, dx = rng.integers(-1, 2, 2)
    canvas[4 + dy:24 + dy, 4 + dx:24 + dx] = big
    return canvas


_SKLEARN: dict = {}


def make_camera(kind: str, out: Path, classes: tuple[str, ...], n_per_class: int, seed: int,
                 progress: Progress, batch: int = 100, images: str = "fonts") -> Path:
    from streamlsm.emulate.camera import record
    from streamlsm.emulate.glyphs import render

    if images not in ("fonts", "sklearn") or (images == "sklearn" and kind != "camera-digits"):
        raise ConfigError("images", f"must be 'fonts' (or 'sklearn' for digits), got {images!r}")

    t0 = clock()
    n_train, n_test = split_counts(n_per_class)
    code = KIND_CODE[kind]
    counts = {}
    for split, n_split, off in (("train", n_train, 0), ("test", n_test, n_train)):
        jobs = [(ci, c, i) for ci, c in enumerate(classes) for i in range(off, off + n_split)]
        for b in range(0, len(jobs), batch):
            part = jobs[b:b + batch]
            rngs = [seeded(seed, code, ci, i) for ci, _, i in part]
            if images == "sklearn":
                pics = np.stack([_sklearn_digit(c, i, r) for (_, c, i), r in zip(part, rngs, strict=True)])
            else:
                pics = np.stack([render(c, r) for (_, c, _), r in zip(part, rngs, strict=True)])
            for (_, c, i), ev in zip(part, record(pics, rngs), strict=True):
                folder = out / NMNIST_SPLITS[split] / c
                folder.mkdir(parents=True, exist_ok=True)
                write_bin(folder / f"{i:05d}.bin", ev)
            if progress:
                progress(len(part))
        counts[split] = len(jobs)
    write_manifest(out, kind, n_per_class, seed, t0, samples=counts, classes=list(classes),
                   images=images, format="nmnist",
                   reader="nmnist" if kind == "camera-digits" else "emulated-camera")
    return out



class CameraTreeDataset(NMNISTDataset):
    """An N-MNIST ``.bin`` tree whose classes are its folder names (e.g. emulated letters a-z)."""

    name = "emulated-camera"

    def __init__(self, root, split: str = "train", *, on_error: str = "raise",
                 limit: int | None = None, sort: bool = False, transform=None) -> None:
        folder = Path(root) / NMNIST_SPLITS.get(split, "")
        names = sorted((p.name for p in folder.iterdir() if p.is_dir()), key=natural_key) \
            if folder.is_dir() else []
        self._class_names = tuple(names)
        super().__init__(root, split, on_error=on_error, limit=limit, sort=sort, transform=transform)

    def _finish(self) -> None:  # NMNISTDataset lists digit folders; take every class folder here
        self.classes = self._class_names
        self._keys, self._labels = [], []
        folder = self.root / NMNIST_SPLITS[self.split]
        for c in self.classes:
            files = sorted((folder / c).glob("*.bin"), key=lambda q: natural_key(q.name))
            self._keys += files
            self._labels += [c] * len(files)
        super()._finish()
