"""The edge daemon's configuration: one frozen section per part (inputs, model, outputs, control, limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..net.security import SecurityConfig
from ..pipeline import PipelineConfig

__all__ = ["InputConfig", "ModelConfig", "SinkConfig", "OutputConfig", "ControlConfig", "LimitsConfig",
           "DaemonConfig"]


@dataclass(frozen=True, slots=True)
class InputConfig:
    """One event input socket (PULL or SUB; bound or connected)."""

    endpoint: str
    kind: Literal["pull", "sub"] = "pull"
    bind: bool = True
    hwm: int = 10_000
    topics: list[str] = field(default_factory=lambda: ["ev/"])


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The model bundle and the prototype checkpoint (created on the first change, restored on start)."""

    bundle: Path
    prototypes: Path
    threshold: float | None = None
    update: Literal["none", "mean", "ema"] = "none"
    ema: float = 0.1
    signing_key: Path | None = None  # set: load (and reload) only bundles signed with this key
    error_target: float = 0.05  # error of emitted labels the abstention is certified for (calibrated bundles)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Where labels go: a PUB socket (topic lb/<stream>) and sink plug-ins by entry-point name."""

    labels: str = "tcp://127.0.0.1:5601"
    hwm: int = 10_000
    linger_ms: int = 1000  # on a clean stop, labels still queued for subscribers may leave this long
    sinks: list[SinkConfig] = field(default_factory=list)

    def validate(self) -> None:
        if not 0 <= self.linger_ms <= 60_000:
            raise ConfigError("linger_ms", f"must lie in [0, 60000] milliseconds, got {self.linger_ms}")


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """The REQ/REP control socket ('' = off); support files and bundles only from ``allowed_dirs``."""

    endpoint: str = ""
    allowed_dirs: list[Path] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    queue: int = 10_000
    overflow: Literal["block", "drop_oldest"] = "block"
    batch: int = 256
    max_events: int = 1 << 16     # per packet (a frame above it disconnects its peer): 0.85 MB of DVS
    queue_mb: float = 256.0      # events waiting in the queue, in MiB (block: wait; drop_oldest: drop)
    stats_every_s: float = 1.0
    # where the pipeline runs: "thread" (a worker thread: the loop keeps receiving meanwhile),
    # "inline" (in the event loop: no hand-off cost, but nothing is received while it computes), or
    # "auto": inline for a call of at most inline_max packets while calls take under inline_ms
    # (a real-time trickle: the hand-off would cost more than the call), in the thread otherwise (a
    # burst, a slow pipeline, an overload: the loop keeps receiving, so drop_oldest can drop)
    compute: Literal["auto", "thread", "inline"] = "auto"
    inline_max: int = 16
    inline_ms: float = 1.0
    coalesce_us: int = 0         # after the first queued packet, wait this long for more (bigger batches)
    warm_up: bool = True         # run one tiny sample per modality before reading input
    gil_switch_ms: float = 0.0   # the interpreter's thread switch interval while serving (0 = leave it)
    max_call_us: int = 60_000_000  # stream time (sum of packet spans) per pipeline call: a batch
    #                                covering more is split, so control and stop get the lock between
    max_neurons: int = 8192      # `ctl reload`: a bundle's reservoir larger than this is refused
    model_mb: float = 1024.0     # `ctl reload`: weights a bundle may need (reservoirs + heads, MiB)

    def validate(self) -> None:
        if self.queue < 1:
            raise ConfigError("queue", f"must be >= 1, got {self.queue}")
        if self.batch < 1:
            raise ConfigError("batch", f"must be >= 1, got {self.batch}")
        if not 0 <= self.coalesce_us <= 1_000_000:
            raise ConfigError("coalesce_us", f"must lie in [0, 1000000], got {self.coalesce_us}")
        if self.max_events < 1:
            raise ConfigError("max_events", f"must be >= 1, got {self.max_events}")
        if not 0 < self.queue_mb < float("inf"):
            raise ConfigError("queue_mb", f"must be a finite number > 0, got {self.queue_mb}")
        if not 0.05 <= self.stats_every_s <= 3600:  # 0 spun an idle daemon at 100 % CPU
            raise ConfigError("stats_every_s", f"must lie in [0.05, 3600] seconds, got {self.stats_every_s}")
        if not 0 <= self.inline_max <= 4096:
            raise ConfigError("inline_max", f"must lie in [0, 4096] packets, got {self.inline_max}")
        if not 0 <= self.inline_ms <= 1000:
            raise ConfigError("inline_ms", f"must lie in [0, 1000] milliseconds, got {self.inline_ms}")
        if self.max_call_us < 1:
            raise ConfigError("max_call_us", f"must be >= 1, got {self.max_call_us}")
        if self.max_neurons < 1:
            raise ConfigError("max_neurons", f"must be >= 1, got {self.max_neurons}")
        if not 0 < self.model_mb < float("inf"):
            raise ConfigError("model_mb", f"must be a finite number > 0, got {self.model_mb}")
        if not 0 <= self.gil_switch_ms <= 100:
            raise ConfigError("gil_switch_ms", f"must lie in [0, 100], got {self.gil_switch_ms}")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    model: ModelConfig
    inputs: list[InputConfig] = field(default_factory=list)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
