"""Glyph images and pen trajectories from matplotlib's vector fonts (digits 0-9, letters a-z).

Outlines come from ``matplotlib.textpath.TextPath`` (curves flattened), are distorted by a random
affine map and a smooth elastic field, thickened or thinned, and rasterised with an even-odd scan
fill at 4x supersampling into MNIST-like images (glyph about 20 px high, centred in 28x28).
``letter_trajectory`` turns a glyph's contours into one ordered pen path for the cortex emulator.
"""

from __future__ import annotations

import string
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..errors import ConfigError

__all__ = [
    "DIGITS",
    "LETTERS",
    "FONTS",
    "glyph_polygons",
    "rasterise",
    "render",
    "render_many",
    "letter_trajectory",
]

DIGITS = tuple(string.digits)
LETTERS = tuple(string.ascii_lowercase)
#: (family, weight, style) of the fonts that ship with matplotlib; drawn at random per sample
FONTS = (
    ("DejaVu Sans", "normal", "normal"),
    ("DejaVu Sans", "bold", "normal"),
    ("DejaVu Sans", "normal", "oblique"),
    ("DejaVu Serif", "normal", "normal"),
    ("DejaVu Serif", "bold", "italic"),
    ("DejaVu Sans Mono", "normal", "normal"),
    ("STIXGeneral", "normal", "normal"),
    ("STIXGeneral", "normal", "italic"),
    ("cmr10", "normal", "normal"),
    ("cmss10", "normal", "normal"),
)
_SUPER = 4  # supersampling factor of the scan fill


@lru_cache(maxsize=512)
def glyph_polygons(char: str, font: int = 0) -> tuple[np.ndarray, ...]:
    """Closed contours of ``char`` in font ``FONTS[font]``, curves flattened, height-normalised.

    Coordinates: x to the right, y downwards (image convention), the glyph's bounding box scaled so
    its larger side is 1 and centred on (0, 0). Returned arrays are read-only.
    """
    try:
        from matplotlib.font_manager import FontProperties
        from matplotlib.path import Path
        from matplotlib.textpath import TextPath
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError("glyphs", "the camera emulator draws glyphs from matplotlib's fonts: "
                          "pip install 'streamlsm[train]' (or matplotlib)") from exc

    family, weight, style = FONTS[font % len(FONTS)]
    path = TextPath((0, 0), char, size=1.0,
                    prop=FontProperties(family=family, weight=weight, style=style))
    polys: list[list[np.ndarray]] = []
    for seg, code in path.iter_bezier():
        if code == Path.MOVETO:
            polys.append([seg.control_points[-1:]])
            continue
        if code == Path.CLOSEPOLY or not polys:
            continue
        n = 1 if code == Path.LINETO else 6
        polys[-1].append(seg(np.linspace(0, 1, n + 1)[1:]))
    out = [np.concatenate(p) for p in polys if sum(len(q) for q in p) >= 3]
    allp = np.concatenate(out)
    lo, hi = allp.min(0), allp.max(0)
    scale = float(max(hi - lo))
    centre = (lo + hi) / 2
    result = []
    for p in out:
        q = (p - centre) / scale
        q[:, 1] = -q[:, 1]  # font y points up; images count rows downwards
        q.setflags(write=False)
        result.append(q)
    return tuple(result)


def rasterise(polygons, size: int) -> np.ndarray:
    """Even-odd coverage (0..1) of ``polygons`` (pixel coordinates) on a size x size grid.

    A scan fill at ``_SUPER`` x supersampling, averaged down to pixels (anti-aliased edges).
    """
    s = size * _SUPER
    c = (np.arange(s) + 0.5) / _SUPER
    ys = c[:, None]
    a = np.concatenate(list(polygons))
    b = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    y0, y1 = a[:, 1][None, :], b[:, 1][None, :]
    cross = (y0 <= ys) != (y1 <= ys)  # (S, E): edge spans the scan row
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = a[:, 0] + (ys - y0) * (b[:, 0] - a[:, 0]) / (y1 - y0)
    xs = np.sort(np.where(cross, xs, np.inf), axis=1)
    count = np.empty((s, s), dtype=np.int64)
    for r in range(s):  # crossings left of each sample point (sorted -> searchsorted)
        count[r] = np.searchsorted(xs[r], c)
    inside = (count & 1).astype(np.float32)
    return inside.reshape(size, _SUPER, size, _SUPER).mean(axis=(1, 3))


def _bumps(u: np.ndarray, knots: int = 4) -> np.ndarray:
    """(n, knots) normalised Gaussian bumps at ``u`` in [0, 1]: smooth interpolation weights."""
    b = np.exp(-0.5 * ((u[:, None] - np.linspace(0, 1, knots)[None, :]) * (knots - 1)) ** 2)
    return b / b.sum(1, keepdims=True)


def _elastic(rng: np.random.Generator, polygons, size: int, alpha: float) -> list[np.ndarray]:
    """``polygons`` moved by a smooth random displacement field of RMS ``alpha`` pixels (a coarse
    4x4 random grid interpolated by Gaussian bumps; applied to the outline's vertices)."""
    coarse = rng.normal(0.0, 1.0, size=(2, 4, 4))
    grid = np.linspace(0, 1, 12)
    g = _bumps(grid)
    scale = alpha / max(float(np.einsum("ik,ckl,jl->cij", g, coarse, g).std()), 1e-9)
    out = []
    for p in polygons:
        bx, by = _bumps(np.clip(p[:, 0] / size, 0, 1)), _bumps(np.clip(p[:, 1] / size, 0, 1))
        disp = ((by[:, None, :, None] * coarse[None]).sum(2) * bx[:, None, :]).sum(2)  # (n, 2)
        out.append(p + scale * disp)
    return out


def render(char: str, rng: np.random.Generator, *, size: int = 28, height: float = 20.0,
           distort: bool = True) -> np.ndarray:
    """One MNIST-like float32 image (size x size, 0 background, 1 ink) of ``char``.

    With ``distort`` a random font, affine map (rotation, shear, scale, aspect, shift), elastic
    field and stroke width are drawn from ``rng``; without it the first font, upright and centred.
    """
    font = int(rng.integers(len(FONTS))) if distort else 0
    polys = glyph_polygons(char, font)
    m = np.eye(2) * height
    shift = np.zeros(2)
    if distort:
        rot = np.deg2rad(rng.normal(0, 8))
        shear = rng.normal(0, 0.15)
        sc = height * rng.uniform(0.85, 1.08)
        aspect = np.exp(rng.normal(0, 0.08))
        r = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
        m = r @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sc * aspect, sc / aspect])
        shift = rng.normal(0, 0.8, size=2)
    centre = np.array([size / 2, size / 2]) + shift
    pix = [p @ m.T + centre for p in polys]
    if distort:
        pix = _elastic(rng, pix, size, rng.uniform(0.4, 1.1))
    img = rasterise(pix, size)
    if distort:
        width = rng.uniform(-0.1, 1.5)  # pixels of thickening (negative thins)
        blurred = ndimage.gaussian_filter(img, 0.7 + 0.25 * abs(width))
        level = float(np.clip(0.5 - 0.25 * width, 0.15, 0.6))  # lower level = thicker stroke
        img = np.clip((blurred - level) * 2.5 + 0.5, 0.0, 1.0) * (blurred > 0.03)
    return img.astype(np.float32)


def render_many(chars, rngs, **kw) -> np.ndarray:
    """Stack of ``render(c, rng)`` images, one per (char, rng) pair, as (n, size, size) float32."""
    return np.stack([render(c, r, **kw) for c, r in zip(chars, rngs, strict=True)])


@lru_cache(maxsize=64)
def letter_trajectory(char: str, n: int = 240) -> np.ndarray:
    """An ordered pen path through ``char`` (DejaVu Sans contours joined in font order).

    ``n`` points equally spaced in arc length, (n, 2) float64, x right and y down, unit height.
    Contours are joined by straight pen moves; the path is smoothed so velocity is continuous.
    """
    polys = glyph_polygons(char, 0)
    pts = np.concatenate([np.vstack([p, p[:1]]) for p in polys])
    seg = np.sqrt((np.diff(pts, axis=0) ** 2).sum(1))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    u = np.linspace(0, s[-1], n)
    path = np.stack([np.interp(u, s, pts[:, 0]), np.interp(u, s, pts[:, 1])], axis=1)
    path = ndimage.gaussian_filter1d(path, sigma=n / 120, axis=0, mode="nearest")
    path.setflags(write=False)
    return path
