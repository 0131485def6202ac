"""Label sinks from configuration: plug-ins by entry-point name, built with their options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, StreamLSMError
from ..plugins import SINK_GROUP, load
from .config import SinkConfig

__all__ = ["make_sinks"]


def make_sinks(specs: Sequence[SinkConfig]) -> list[Any]:
    """Sink objects from their entry-point names and options (ConfigError naming the bad one)."""
    out = []
    for i, spec in enumerate(specs):
        cls = load(SINK_GROUP, spec.name)
        try:
            out.append(cls(**spec.options))
        except (TypeError, ValueError, OSError, StreamLSMError) as exc:  # bad option, port in use,
            # unwritable path, a sink's own check (the relay's bind rule, its endpoint in use)
            for made in out:  # e.g. a metrics server already listening
                made.close()
            raise ConfigError(f"outputs.sinks[{i}].options", f"{spec.name}: {exc}") from None
    return out
