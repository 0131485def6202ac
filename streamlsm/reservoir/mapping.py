"""Input mapping: event address (x, y, p) -> reservoir input channel, as a lookup table per modality.

The kernel computes ``addr = (y * xm + x) * pm + p`` for an event and reads ``lut[addr]``: a channel
in 0..n_inputs-1, or -1 when the event lies outside the mapping (counted and dropped). Events with x,
y or p outside the address ranges are counted and dropped as well.

- ``dvs``: a sensor of width x height pixels and 2 polarities (N-MNIST 34x34). ``crop`` =
  (x0, y0, w, h) selects a window (the paper's 16x16 centre crop is (9, 9, 16, 16)), ``pool``
  sums pool x pool pixel blocks into one channel, ``polarity`` "0" or "1" keeps one polarity,
  "both" gives each polarity its own channels, "merge" adds them.
- ``cochlea``: ``sensor[0]`` channels per ear; addresses x >= channels are the second ear of a stereo
  sensor, folded onto the same channels (``stereo="fold"``) or given channels of their own
  (``"split"``); polarity as for dvs ("merge" by default: ON and OFF spikes both count).
- ``spikes``: one channel per unit/electrode; unit id ``x`` maps to channel ``x - unit_offset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["InputMap", "build_map"]


@dataclass(frozen=True)
class InputMap:
    """A lookup table and its address ranges (see module docstring)."""

    lut: np.ndarray  # int32, len ym * xm * pm
    xm: int
    ym: int
    pm: int
    n_inputs: int


def _polarity_planes(polarity: str) -> list[tuple[int, int]]:
    """(p, plane) pairs kept; plane indexes the channel block of that polarity."""
    if polarity == "0":
        return [(0, 0)]
    if polarity == "1":
        return [(1, 0)]
    if polarity == "both":
        return [(0, 0), (1, 1)]
    if polarity == "merge":
        return [(0, 0), (1, 0)]
    raise ConfigError("polarity", f"must be one of '0', '1', 'both', 'merge', got {polarity!r}")


def _dvs(sensor: tuple[int, int], crop: tuple[int, int, int, int], pool: int,
         polarity: str) -> InputMap:
    width, height = sensor
    x0, y0, w, h = crop
    if w == 0 and h == 0:
        x0, y0, w, h = 0, 0, width, height
    if pool < 1:
        raise ConfigError("pool", f"must be >= 1, got {pool}")
    if x0 < 0 or y0 < 0 or w < 1 or h < 1 or x0 + w > width or y0 + h > height:
        raise ConfigError("crop", f"{crop} does not fit a {width}x{height} sensor")
    pw, ph = -(-w // pool), -(-h // pool)
    planes = _polarity_planes(polarity)
    n_planes = max(pl for _, pl in planes) + 1
    lut = np.full(height * width * 2, -1, np.int32)
    ys, xs = np.mgrid[0:h, 0:w]
    ch_xy = ((ys // pool) * pw + xs // pool).ravel()
    for p, plane in planes:
        addr = (((ys + y0) * width + (xs + x0)) * 2 + p).ravel()
        lut[addr] = ch_xy + plane * pw * ph
    return InputMap(lut, width, height, 2, pw * ph * n_planes)


def _cochlea(channels: int, stereo: str, polarity: str) -> InputMap:
    addresses = 2 * channels
    if channels < 1:
        raise ConfigError("channels", f"must be >= 1, got {channels}")
    if stereo not in ("fold", "split"):
        raise ConfigError("stereo", f"must be 'fold' or 'split', got {stereo!r}")
    planes = _polarity_planes(polarity)
    n_planes = max(pl for _, pl in planes) + 1
    ears = 2 if stereo == "split" else 1
    lut = np.full(addresses * 2, -1, np.int32)
    for x in range(addresses):
        ear, ch = divmod(x, channels)
        if ear > 1:
            continue
        if stereo == "fold":
            ear = 0
        for p, plane in planes:
            lut[x * 2 + p] = (plane * ears + ear) * channels + ch
    return InputMap(lut, addresses, 1, 2, channels * ears * n_planes)


def _spikes(n_inputs: int, unit_offset: int) -> InputMap:
    if n_inputs < 1 or unit_offset < 0:
        raise ConfigError("n_inputs", f"must be >= 1 (unit_offset >= 0), got {n_inputs}, {unit_offset}")
    lut = np.full(n_inputs + unit_offset, -1, np.int32)
    lut[unit_offset:] = np.arange(n_inputs, dtype=np.int32)
    return InputMap(lut, n_inputs + unit_offset, 1, 1, n_inputs)


def build_map(layout: str, *, sensor: tuple[int, int], crop: tuple[int, int, int, int] = (0, 0, 0, 0),
              pool: int = 1, polarity: str = "0", stereo: str = "fold", n_inputs: int = 0,
              unit_offset: int = 0) -> InputMap:
    """The input map of a layout ("dvs", "cochlea" or "spikes"); raises ConfigError naming the key."""
    if layout == "dvs":
        return _dvs(sensor, crop, pool, polarity)
    if layout == "cochlea":
        return _cochlea(sensor[0], stereo, polarity)
    if layout == "spikes":
        return _spikes(n_inputs or sensor[0], unit_offset)
    raise ConfigError("layout", f"must be 'dvs', 'cochlea' or 'spikes', got {layout!r}")
