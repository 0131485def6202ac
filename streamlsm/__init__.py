"""streamlsm: real-time zero-shot multimodal event learning with a fixed random (RRAM) liquid state machine."""

from __future__ import annotations

from .errors import (
    CheckpointError,
    ConfigError,
    ControlError,
    DataError,
    ModelError,
    ReservoirError,
    StreamLSMError,
    TransportError,
    WireError,
)
from .events import COCHLEA_DTYPE, DVS_DTYPE, LAYOUTS, SPIKES_DTYPE, EventPacket, LabelEvent

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "StreamLSMError",
    "ConfigError",
    "DataError",
    "WireError",
    "TransportError",
    "ReservoirError",
    "ModelError",
    "ControlError",
    "CheckpointError",
    "EventPacket",
    "LabelEvent",
    "LAYOUTS",
    "DVS_DTYPE",
    "COCHLEA_DTYPE",
    "SPIKES_DTYPE",
]
