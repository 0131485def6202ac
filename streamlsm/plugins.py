"""Plug-in discovery: sources and sinks are found through entry points, never imported directly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError
from .events import LabelEvent

__all__ = ["SOURCE_GROUP", "SINK_GROUP", "EMULATOR_GROUP", "LIVE_GROUP", "DATA_GROUP", "PLUGIN_GROUPS", "Dataset",
           "Sink", "LiveSource", "available", "load"]

SOURCE_GROUP = "streamlsm.sources"      # name -> Dataset class, constructed as cls(root, **options)
SINK_GROUP = "streamlsm.sinks"          # name -> Sink class, constructed as cls(**options)
EMULATOR_GROUP = "streamlsm.emulators"  # name -> function making a data set on disk
DATA_GROUP = "streamlsm.data"            # name -> a data plug-in module (emulated: ensure_default_data, make, ...)
LIVE_GROUP = "streamlsm.live"          # name -> LiveSource class, constructed as cls(**options)
PLUGIN_GROUPS = (SOURCE_GROUP, SINK_GROUP, EMULATOR_GROUP, LIVE_GROUP)


@runtime_checkable
class Dataset(Protocol):
    """A labelled set of event samples on disk (what `streamlsm replay <name>` and experiments read).

    ``events(i)`` returns sample i as a sorted array of the dataset's layout, t in microseconds from
    the sample's start; ``duration_us(i)`` is the sample's length (> its last event's t). Corrupt
    files raise DataError naming the file and the byte or row (or are skipped and counted, by option).
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    layout: ClassVar[str]
    sensor_size: tuple[int, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int: ...
    def label(self, i: int) -> str | None: ...
    def events(self, i: int) -> np.ndarray: ...
    def duration_us(self, i: int) -> int: ...


@runtime_checkable
class Sink(Protocol):
    """Where labels go (a JSON-lines file, the console, a relay, a metrics endpoint)."""

    def write(self, label: LabelEvent) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class LiveSource(Protocol):
    """A sensor producing events now (a camera SDK, a cochlea board): what `streamlsm live <name>` runs.

    ``run(emit, stop)`` reads the sensor until ``stop`` (a ``threading.Event``) is set or the sensor
    ends, calling ``emit(events)`` with each buffer of new events: a structured array with the
    layout's field names (``t`` in microseconds of the sensor's clock, sorted; the dtype may be the
    SDK's own, e.g. unsigned ``x``/``y``), in the order they happened. ``emit`` is
    ``live.LiveSender.send_events``: it cuts nothing, rebases time, converts fields by name and
    never blocks the sensor (a full queue drops the buffer and counts it).
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    layout: ClassVar[str]
    sensor_size: tuple[int, ...]

    def run(self, emit: Callable[[np.ndarray], object], stop: threading.Event) -> None: ...


def available(group: str) -> dict[str, str]:
    """name -> 'module:attr' of every plug-in installed in an entry-point group."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def load(group: str, name: str) -> Any:
    """The object registered as ``name`` in ``group``; ConfigError listing the known names if absent."""
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    known = sorted(available(group))
    raise ConfigError(group, f"no plug-in named {name!r}; installed: {known}")
