"""A live source that plays a data set back as a sensor would: buffers of events, in real time.

It stands in for a camera or cochlea board where there is none (``streamlsm live playback -o
dataset=nmnist -o root=DATA/nmnist``): the samples of a source plug-in follow each other on one
sensor clock, and every ``buffer_us`` of sensor time the events of that span are handed to
``emit``, as an SDK callback would hand them. Registered in the ``streamlsm.live`` group.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from streamlsm.errors import ConfigError
from streamlsm.plugins import SOURCE_GROUP, load

__all__ = ["PlaybackSource"]


class PlaybackSource:
    """Samples of ``dataset`` (a source plug-in name) under ``root`` as one live event stream."""

    name = "playback"

    def __init__(self, dataset: str = "nmnist", root: str = "", *, buffer_us: int = 1000,
                 speed: float = 1.0, limit: int | None = None, gap_us: int = 0) -> None:
        if not root:
            raise ConfigError("root", "say where the data set is: -o root=PATH")
        if type(buffer_us) is not int or buffer_us < 1:
            raise ConfigError("buffer_us", f"must be an integer >= 1, got {buffer_us!r}")
        if not (isinstance(speed, (int, float)) and speed > 0):
            raise ConfigError("speed", f"must be a number > 0, got {speed!r}")
        self.ds = load(SOURCE_GROUP, dataset)(root)
        self.modality, self.layout = self.ds.modality, self.ds.layout
        self.sensor_size = tuple(getattr(self.ds, "sensor_size", ()))
        self.buffer_us, self.speed, self.gap_us = buffer_us, float(speed), int(gap_us)
        self.limit = len(self.ds) if limit is None else min(int(limit), len(self.ds))

    def run(self, emit: Callable[[np.ndarray], object], stop: threading.Event) -> None:
        t0 = time.perf_counter()
        offset = 0  # sensor time at which the current sample starts
        for i in range(self.limit):
            ev = self.ds.events(i)
            dur = max(int(self.ds.duration_us(i)), int(ev["t"][-1]) + 1 if len(ev) else 1)
            edges = np.arange(0, dur + self.buffer_us, self.buffer_us)
            idx = np.searchsorted(ev["t"], edges, side="left")
            for k in range(len(edges) - 1):
                due = t0 + (offset + int(edges[k + 1])) / 1e6 / self.speed
                if stop.wait(max(0.0, due - time.perf_counter())):
                    return
                if idx[k] == idx[k + 1]:
                    continue  # nothing in this span: a sensor sends no empty buffer
                chunk = ev[idx[k]: idx[k + 1]].copy()
                chunk["t"] += offset
                emit(chunk)
            offset += dur + self.gap_us
