"""Plug-in discovery: sources and sinks are found through entry points, never imported directly."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError

__all__ = ["SOURCE_GROUP", "SINK_GROUP", "available", "load"]

SOURCE_GROUP = "streamlsm.sources"
SINK_GROUP = "streamlsm.sinks"


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
