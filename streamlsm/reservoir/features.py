"""Features (the reservoir's output record) and the small pure helpers the reservoir shares."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Features", "normal_table"]

_U64 = (1 << 64) - 1


@dataclass(slots=True)
class Features:
    """Spike-count features of one sample (or window) of one stream."""

    stream_id: str
    sample_id: int
    t_start: int
    t_end: int
    counts: np.ndarray  # float32 (n_features,)
    label: str | None = None
    modality: str = ""
    seq: int = -1  # seq of the packet that closed the sample
    sent_ns: int = 0  # that packet's sent_ns
    received_ns: int = 0  # when it was fed (as given to feed), 0 if not given


@lru_cache(maxsize=1)
def normal_table(size: int = 4096) -> np.ndarray:
    """Inverse normal CDF at i/size (ends at 0.25/size), rescaled so that linear interpolation
    between entries (as the kernel draws) has exactly unit variance. float32, len size + 1."""
    nd = statistics.NormalDist()
    u = np.arange(size + 1) / size
    u[0], u[-1] = 0.25 / size, 1 - 0.25 / size
    tab = np.array([nd.inv_cdf(float(x)) for x in u])
    a, b = tab[:-1], tab[1:]
    var = float(np.mean((a * a + a * b + b * b) / 3.0))
    return (tab / np.sqrt(var)).astype(np.float32)
