"""The liquid state machine: incremental numba LIF reservoir and RRAM device model."""

from .config import ReservoirConfig
from .device import DeviceConfig
from .presets import PRESETS, preset
from .reservoir import Features, Reservoir

__all__ = ["ReservoirConfig", "DeviceConfig", "Reservoir", "Features", "preset", "PRESETS"]
