"""Synthetic event streams: random class-dependent samples, and whole samples cut into stream packets.

For load generators (benchmarks, ``streamlsm cluster`` load) and tests: no data set needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..events import EventPacket, slice_time

__all__ = ["random_samples", "packets_from_samples"]


def random_samples(n: int, layout_dtype: np.dtype, duration_us: int = 50_000, events: int = 200,
                   classes: int = 3, seed: int = 0, width: int = 34) -> list[tuple[np.ndarray, str]]:
    """``n`` (events, label) samples of random events whose channel distribution depends on the class."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = i % classes
        ev = np.zeros(events, dtype=layout_dtype)
        ev["t"] = np.sort(rng.integers(0, duration_us, events))
        ev["x"] = (rng.integers(0, 8, events) + c * 10) % width
        if "y" in layout_dtype.names:
            ev["y"] = rng.integers(0, width, events)
        if "p" in layout_dtype.names:
            ev["p"] = rng.integers(0, 2, events)
        out.append((ev, str(c)))
    return out


def packets_from_samples(samples: Sequence[tuple[np.ndarray, str | None]], stream_id: str = "s0",
                         packet_us: int = 10_000, modality: str = "vision", duration_us: int | None = None,
                         gap_us: int = 0, t0: int = 0, seq0: int = 0, first_sample: int = 0) -> list[EventPacket]:
    """Cut samples (events with t from the sample's start) into contiguous packets in stream time.

    Each sample lasts ``duration_us`` (default: to its last event); sample ids count from ``first_sample``.
    """
    out, seq, t = [], seq0, t0
    for sid, (ev, label) in enumerate(samples):
        dur = duration_us or (int(ev["t"][-1]) + 1 if len(ev) else packet_us)
        shifted = ev.copy()
        shifted["t"] += t
        edges = list(range(t, t + dur, packet_us)) + [t + dur]
        for j in range(len(edges) - 1):
            a, b = edges[j], edges[j + 1]
            out.append(EventPacket(stream_id, seq, a, b, slice_time(shifted, a, b).copy(), modality,
                                   first_sample + sid, label, sample_begin=j == 0, sample_end=j == len(edges) - 2))
            seq += 1
        t += dur + gap_us
    return out
