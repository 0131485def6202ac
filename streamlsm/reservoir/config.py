"""ReservoirConfig: the frozen parameters of one modality's reservoir (neuron, bins, mapping, device)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from .device import DeviceConfig

__all__ = ["ReservoirConfig"]


@dataclass(frozen=True)
class ReservoirConfig:
    """Parameters of a LIF reservoir (PAPER.md equations) fed by one event layout.

    Time is cut into fixed bins of ``bin_us`` microseconds from each sample's start (or the stream's
    first packet). Features are spike counts per neuron over the sample (``feature_windows`` = K > 1:
    counts in K equal spans of the sample's bins, K * n_neurons features), emitted at the packet
    marked ``sample_end`` (where samples or sliding windows are cut is the segmenter's business:
    ``streamlsm.stream.segment``, configured in ``[pipeline]``). Input counts per channel and bin add up,
    clipped to ``input_max`` (0 = no clip) or to 1 when ``binary``. ``read_noise`` is eta of the
    per-read multiplicative noise w (1 + eta N(0,1)). ``weight_scale`` multiplies the input rows,
    ``rec_scale`` the recurrent rows (unit-variance signed conductances; presets store calibrated
    values, see calibrate.py). ``n_inputs`` = 0 takes the count from the mapping.
    """

    modality: str = "vision"
    layout: Literal["dvs", "cochlea", "spikes"] = "dvs"
    n_inputs: int = 0
    n_neurons: int = 200
    decay: float = 0.9
    threshold: float = 5.0
    bin_us: int = 6000
    weight_scale: float = 1.0
    rec_scale: float = 1.0
    read_noise: float = 0.0
    seed: int = 0
    binary: bool = False
    input_max: int = 0
    feature_windows: int = 1
    max_bins: int = 1024
    # input mapping (see mapping.py)
    sensor: tuple[int, int] = (34, 34)
    crop: tuple[int, int, int, int] = (9, 9, 16, 16)
    pool: int = 1
    polarity: Literal["0", "1", "both", "merge"] = "0"
    stereo: Literal["fold", "split"] = "fold"
    unit_offset: int = 0
    device: DeviceConfig = field(default_factory=DeviceConfig)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        if self.n_neurons < 1:
            raise ConfigError("n_neurons", f"must be >= 1, got {self.n_neurons}")
        if self.n_inputs < 0:
            raise ConfigError("n_inputs", f"must be >= 0, got {self.n_inputs}")
        if not 0.0 <= self.decay <= 1.0:
            raise ConfigError("decay", f"must be in [0, 1], got {self.decay}")
        if not self.threshold > 0:
            raise ConfigError("threshold", f"must be > 0, got {self.threshold}")
        if self.bin_us < 1:
            raise ConfigError("bin_us", f"must be >= 1 microsecond, got {self.bin_us}")
        if self.read_noise < 0:
            raise ConfigError("read_noise", f"must be >= 0, got {self.read_noise}")
        if self.input_max < 0:
            raise ConfigError("input_max", f"must be >= 0, got {self.input_max}")
        if self.feature_windows < 1:
            raise ConfigError("feature_windows", f"must be >= 1, got {self.feature_windows}")
        if self.max_bins < 1:
            raise ConfigError("max_bins", f"must be >= 1, got {self.max_bins}")
        if not 0 <= self.seed < 2 ** 63:
            raise ConfigError("seed", f"must be in [0, 2^63), got {self.seed}")
        try:
            self.device.validate()
        except ConfigError as exc:
            raise ConfigError(f"device.{exc.key}", exc.problem) from None

    @property
    def clip(self) -> float:
        """Per-bin, per-channel input ceiling used by the kernel (inf = none)."""
        if self.binary:
            return 1.0
        return float(self.input_max) if self.input_max else float("inf")
