"""Event-camera emulator: contrast physics, noise-only static scenes, determinism, glyphs."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.emulate.camera import CameraConfig, dvs_from_frames, record
from streamlsm.emulate.glyphs import DIGITS, LETTERS, glyph_polygons, letter_trajectory, render
from streamlsm.events import DVS_DTYPE

pytest.importorskip("matplotlib")


def _edge_frames(level_after: float) -> tuple[np.ndarray, np.ndarray]:
    frames = np.full((11, 8, 8), 0.3)
    frames[1:, :, 4:] = level_after  # the right half changes brightness at t = 1 ms
    return frames, np.arange(11) * 1000.0


def test_brighter_edge_gives_on_events_only_where_it_brightens():
    frames, times = _edge_frames(0.9)
    ev = dvs_from_frames(frames, times, CameraConfig(width=8, height=8), noise=False)
    assert ev.dtype == DVS_DTYPE and len(ev) > 0
    assert (ev["p"] == 1).all()
    assert (ev["x"] >= 4).all()
    # log(0.9/0.3) ~ 1.1 log units -> a few events per pixel at threshold 0.3
    per_pixel = len(ev) / 32
    assert 2 <= per_pixel <= 5


def test_darker_edge_gives_off_events():
    frames, times = _edge_frames(0.05)
    ev = dvs_from_frames(frames, times, CameraConfig(width=8, height=8), noise=False)
    assert len(ev) > 0 and (ev["p"] == 0).all() and (ev["x"] >= 4).all()


def test_static_scene_gives_only_noise_events():
    frames = np.repeat(render("3", np.random.default_rng(0))[None], 301, axis=0)
    frames = np.pad(frames, ((0, 0), (3, 3), (3, 3)))
    times = np.arange(301) * 1000.0
    cfg = CameraConfig(noise_hz=0.0)
    assert len(dvs_from_frames(frames, times, cfg)) == 0
    cfg = CameraConfig(noise_hz=2.0)
    ev = dvs_from_frames(frames, times, cfg, np.random.default_rng(1))
    expected = 2.0 * 34 * 34 * 0.3  # Poisson mean of background events
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    # noise is uniform: not concentrated on the digit's pixels
    ink = frames[0] > 0.5
    on_ink = ink[ev["y"], ev["x"]].mean()
    assert on_ink < ink.mean() + 0.15


def test_record_saccades_look_like_nmnist():
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(3).spawn(4)]
    imgs = np.stack([render(c, r) for c, r in zip("0179", rngs, strict=True)])
    out = record(imgs, rngs)
    for ev in out:
        assert ev.dtype == DVS_DTYPE
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].max() <= 33 and ev["y"].max() <= 33 and ev["x"].min() >= 0
        assert 1000 < len(ev) < 10000
        assert 270_000 < ev["t"].max() < 340_000
        assert 0.3 < ev["p"].mean() < 0.7
        # three saccades: events in each third of the recording
        thirds = np.bincount(np.minimum(ev["t"] // 110_000, 2), minlength=3)
        assert (thirds > 0.1 * len(ev)).all()


def test_record_is_deterministic_and_batch_independent():
    def make(n):
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(7).spawn(n)]
        imgs = np.stack([render(str(i % 10), r) for i, r in enumerate(rngs)])
        return record(imgs, rngs)

    a, b = make(5), make(3)
    for x, y in zip(a[:3], b, strict=True):
        assert x.tobytes() == y.tobytes()


def test_glyphs_cover_all_classes_and_are_distinct():
    rng = np.random.default_rng(0)
    for c in DIGITS + LETTERS:
        img = render(c, rng, distort=False)
        assert img.shape == (28, 28) and 0.03 < img.mean() < 0.6, c
        assert glyph_polygons(c)
    a, b = render("1", rng, distort=False), render("8", rng, distort=False)
    assert np.abs(a - b).sum() > 20
    # holes are holes (even-odd fill): the centre of an "o" is background
    o = render("o", rng, distort=False)
    assert o[14, 14] < 0.2 and o.max() > 0.9
    path = letter_trajectory("a")
    assert path.shape == (240, 2) and np.isfinite(path).all()
