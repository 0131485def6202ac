"""Pipeline configuration and counters, the bundle's feature transform, and the offline (batch) labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, ModelError

__all__ = ["PipelineConfig", "PipelineStats", "ReservoirFactory", "default_reservoir_factory",
           "offline_labels", "embed", "feature_transform"]

ReservoirFactory = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """How packets become labels.

    ``segment="sample"`` labels each sample whose boundaries the packets carry; ``"window"`` labels
    sliding windows of ``window_us`` every ``hop_us`` of a continuous stream (a fresh reservoir run per
    window, so a window's label depends only on its own events). ``streams`` maps a stream id to a
    modality (overrides the packet's); ``modality`` is the default for packets that name none.
    ``update="truth"`` folds samples whose ground truth is known into that class's prototype.
    """

    segment: Literal["sample", "window"] = "sample"
    window_us: int = 100_000
    hop_us: int = 50_000
    topk: int = 5
    max_streams: int = 4096
    modality: str = ""
    streams: dict[str, str] = field(default_factory=dict)
    update: Literal["none", "truth"] = "none"
    # hostile or careless input: bounds on what one packet may cost (each refusal is counted)
    max_advance_us: int = 10_000_000   # a packet may move its stream's time forward by at most this
    max_seq_jump: int = 1 << 16        # a seq this far from the expected one restarts the stream
    stream_idle_s: float = 30.0        # at max_streams, only a stream idle this long makes room
    state_mb: float = 512.0            # reservoir state of all streams together (MiB)

    def validate(self) -> None:
        if self.window_us < 1:
            raise ConfigError("window_us", f"must be >= 1, got {self.window_us}")
        if not 1 <= self.hop_us <= self.window_us:
            raise ConfigError("hop_us", f"must lie in [1, window_us={self.window_us}], got {self.hop_us}")
        if self.window_us // self.hop_us > 64:
            raise ConfigError("hop_us", "window_us / hop_us must be <= 64 (concurrent windows per stream)")
        if not 1 <= self.topk <= 64:
            raise ConfigError("topk", f"must lie in [1, 64], got {self.topk}")
        if self.max_streams < 1:
            raise ConfigError("max_streams", f"must be >= 1, got {self.max_streams}")
        if self.max_advance_us < 1:
            raise ConfigError("max_advance_us", f"must be >= 1, got {self.max_advance_us}")
        if self.max_seq_jump < 1:
            raise ConfigError("max_seq_jump", f"must be >= 1, got {self.max_seq_jump}")
        if not 0 <= self.stream_idle_s < float("inf"):
            raise ConfigError("stream_idle_s", f"must be a finite number >= 0, got {self.stream_idle_s}")
        if not 0 < self.state_mb < float("inf"):
            raise ConfigError("state_mb", f"must be a finite number > 0, got {self.state_mb}")


@dataclass(slots=True)
class PipelineStats:
    """Counters of everything the pipeline saw, skipped or evicted."""

    packets: int = 0
    events: int = 0
    labels: int = 0
    stream_us: int = 0            # stream time covered by the packets (sum of spans)
    seq_gaps: int = 0             # packets missing inside a stream (dropped upstream)
    incomplete_samples: int = 0   # samples discarded because packets were missing
    skipped_packets: int = 0      # packets outside any sample (joined mid-sample, or broken)
    evicted_streams: int = 0
    reservoir_errors: int = 0
    rejected_packets: int = 0     # streams the model cannot embed (no modality / no head for it)
    duplicate_packets: int = 0    # seq already seen: dropped, the sample goes on
    updates: int = 0
    refused_spans: int = 0        # packets moving their stream > max_advance_us forward, or back in time
    seq_resets: int = 0           # seq jumps beyond max_seq_jump (a restart, or a spoof): stream restarted
    refused_streams: int = 0      # new streams refused: max_streams or state_mb full of active streams
    nonfinite_labels: int = 0     # embeddings or scores not finite: no label sent

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


_TRANSFORMS = {"none": None, "log1p": np.log1p}


def feature_transform(bundle, modality: str) -> str:
    """How the bundle's head for ``modality`` wants reservoir counts: "none" or "log1p".

    Read from the head's ``meta["feature_transform"]``, else ``bundle.extra["feature_transform"]``
    (a name, or a {modality: name} table); default "none".
    """
    name = bundle.head(modality).meta.get("feature_transform")
    if name is None:
        spec = bundle.extra.get("feature_transform", "none")
        name = spec.get(modality, "none") if isinstance(spec, dict) else spec
    if name not in _TRANSFORMS:
        raise ModelError(f"unknown feature_transform {name!r} for {modality!r}; known: {sorted(_TRANSFORMS)}")
    return name


def embed(bundle, modality: str, counts: np.ndarray) -> np.ndarray:
    """Reservoir counts (n, F) -> embeddings: the bundle's feature transform, then its head."""
    x = np.asarray(counts, dtype=np.float32)
    fn = _TRANSFORMS[feature_transform(bundle, modality)]
    return bundle.embed(modality, x if fn is None else fn(x))


def default_reservoir_factory(bundle) -> ReservoirFactory:
    """modality -> a ``Reservoir`` (one per modality, all streams share it) from the bundle's config."""
    from .reservoir import (  # late: the numba kernel compiles on first use
        Reservoir,
        ReservoirConfig,
    )

    def make(modality: str):
        return Reservoir(bundle.reservoir_config(modality, ReservoirConfig))

    return make


def offline_labels(bundle, matcher, modality: str, samples: Sequence[np.ndarray],
                   durations_us: Sequence[int] | None = None, k: int = 5,
                   reservoir_factory: ReservoirFactory | None = None,
                   sample_ids: Sequence[int] | None = None) -> list[str]:
    """The offline evaluation: batch ``Reservoir.encode`` + ``Bundle.embed`` + matcher, one label per sample.

    ``sample_ids`` are the ids the streamed samples carry (they key the reservoir's read noise).
    """
    make = reservoir_factory or default_reservoir_factory(bundle)
    res = make(modality)
    samples = list(samples)
    if sample_ids is not None:
        feats = res.encode(samples, durations_us, sample_ids=sample_ids)
    else:
        feats = res.encode(samples, durations_us)
    emb = embed(bundle, modality, feats)
    return [m.label for m in matcher.match_many(emb, k)]
