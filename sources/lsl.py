"""Lab Streaming Layer inlet as a source: a live LSL stream becomes timed event arrays.

Two kinds of LSL stream are taken:
- **spike markers** (string or integer channel format, irregular rate, e.g. a spike sorter's
  output): every sample is one spike; its unit id is the sample's value (an integer, or a
  string holding one); layout ``spikes`` (x = unit).
- **signals** (float channels at a nominal rate, e.g. EEG/EMG/LFP): encoded as events by
  send-on-delta, the way a silicon cochlea or an event camera encodes its input: channel c emits
  an ON event (p = 1) each time it has risen by ``delta`` since its last event and an OFF event
  (p = 0) each time it has fallen by ``delta``; layout ``cochlea`` (x = channel, p).
Times come from LSL's timestamps (with clock synchronisation to the outlet), in microseconds
from the first sample received. The source is a one-sample Dataset whose ``chunks(0)`` pulls from
the inlet for ``duration_s`` seconds (or until ``max_samples``), so ``streamlsm replay lsl --root
NAME`` forwards a live LSL stream as event packets over ZeroMQ. Needs ``pylsl`` (extra ``lsl``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import COCHLEA_DTYPE, MODALITIES, SPIKES_DTYPE

from ._common import round_duration

__all__ = ["LSLInletSource", "markers_to_events", "delta_events"]


def _pylsl():
    try:
        import pylsl
    except ImportError:
        raise ConfigError("lsl", "the LSL source needs pylsl: pip install 'streamlsm[lsl]'") from None
    return pylsl


def markers_to_events(samples: list, stamps_us: np.ndarray, where: str = "lsl") -> np.ndarray:
    """Spike markers -> SPIKES_DTYPE events (x = the unit id each sample holds)."""
    out = np.zeros(len(samples), SPIKES_DTYPE)
    try:
        units = np.array([int(s[0]) for s in samples], dtype=np.int64)
    except (TypeError, ValueError, IndexError):
        bad = next(s for s in samples if not str(s[0] if s else "").strip().lstrip("-").isdigit())
        raise DataError(where, f"spike marker {bad!r} is not a unit id (an integer)") from None
    if len(units) and (units.min() < 0 or units.max() > np.iinfo(np.int16).max):
        raise DataError(where, f"unit ids must lie in 0..32767, got {units.min()}..{units.max()}")
    out["t"] = stamps_us
    out["x"] = units
    return out


def delta_events(values: np.ndarray, stamps_us: np.ndarray, ref: np.ndarray,
                 delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Send-on-delta events of (n, channels) samples, and the new reference levels.

    ``ref`` holds each channel's level at its last event. A sample that moved k * delta past it
    emits k events of that sign at the sample's time (ON p=1 up, OFF p=0 down); events are
    sorted by time, then channel.
    """
    ts, xs, ps = [], [], []
    ref = ref.copy()
    for i in range(len(values)):
        diff = values[i] - ref
        k = np.trunc(diff / delta).astype(np.int64)
        moved = np.flatnonzero(k)
        if not len(moved):
            continue
        ref[moved] += k[moved] * delta
        reps = np.abs(k[moved])
        xs.append(np.repeat(moved, reps))
        ps.append(np.repeat((k[moved] > 0).astype(np.int8), reps))
        ts.append(np.full(int(reps.sum()), stamps_us[i], np.int64))
    out = np.zeros(sum(len(t) for t in ts), COCHLEA_DTYPE)
    if ts:
        out["t"], out["x"], out["p"] = np.concatenate(ts), np.concatenate(xs), np.concatenate(ps)
    return out, ref


class LSLInletSource:
    """A live LSL stream, resolved by ``name`` (``root``) or by ``stream_type`` within
    ``resolve_timeout_s``; pulled for ``duration_s`` seconds (at most ``max_samples`` samples).

    ``delta`` is the send-on-delta step for signal streams (in the signal's units); ``modality``
    what the events are (default "neural"). ``stats``: samples and events received.
    """

    name = "lsl"

    def __init__(self, root: str | None = None, *, stream_type: str | None = None,
                 duration_s: float = 10.0, max_samples: int | None = None, delta: float = 1.0,
                 modality: str = "neural", resolve_timeout_s: float = 5.0,
                 pull_timeout_s: float = 0.2) -> None:
        if not root and not stream_type:
            raise ConfigError("root", "name the LSL stream (--root NAME) or give -o stream_type=...")
        for key, v in (("duration_s", duration_s), ("resolve_timeout_s", resolve_timeout_s),
                       ("pull_timeout_s", pull_timeout_s), ("delta", delta)):
            if type(v) not in (int, float) or not 0 < v < float("inf"):
                raise ConfigError(key, f"must be a positive number, got {v!r}")
        if max_samples is not None and (type(max_samples) is not int or max_samples < 1):
            raise ConfigError("max_samples", f"must be an integer >= 1 or None, got {max_samples!r}")
        if modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {list(MODALITIES)}, got {modality!r}")
        lsl = _pylsl()
        self._lsl = lsl
        prop, value = ("name", root) if root else ("type", stream_type)
        found = lsl.resolve_byprop(prop, value, 1, resolve_timeout_s)
        if not found:
            raise DataError(f"lsl:{value}", f"no LSL stream with {prop} {value!r} found within "
                            f"{resolve_timeout_s} s")
        self.stream_info = found[0]
        self._inlet = lsl.StreamInlet(self.stream_info, max_buflen=60,
                                      processing_flags=lsl.proc_clocksync | lsl.proc_monotonize)
        fmt = self.stream_info.channel_format()
        self.markers = fmt in (lsl.cf_string, lsl.cf_int8, lsl.cf_int16, lsl.cf_int32, lsl.cf_int64) \
            and self.stream_info.channel_count() == 1
        self.layout = "spikes" if self.markers else "cochlea"
        self.modality = modality
        self.sensor_size = (self.stream_info.channel_count(),) if not self.markers else ()
        self.classes: tuple[str, ...] = ()
        self.duration_s, self.max_samples, self.delta = duration_s, max_samples, float(delta)
        self.pull_timeout_s = pull_timeout_s
        self.stats = {"samples": 0, "events": 0}
        self._last_t: int | None = None

    # -- the Dataset protocol: one live "sample" ------------------------------------------------
    def __len__(self) -> int:
        return 1

    def label(self, i: int) -> str | None:
        return None

    @property
    def labels(self) -> list[str | None]:
        return [None]

    def chunks(self, i: int = 0) -> Iterator[np.ndarray]:
        """Event arrays as samples arrive, t in us from the first sample, for ``duration_s``."""
        if i != 0:
            raise IndexError(f"sample {i} out of range: a live LSL source has 1")
        where = f"lsl:{self.stream_info.name()}"
        t_first = None
        ref = None
        n = 0
        deadline = time.monotonic() + self.duration_s
        while time.monotonic() < deadline and (self.max_samples is None or n < self.max_samples):
            room = 1024 if self.max_samples is None else min(1024, self.max_samples - n)
            samples, stamps = self._inlet.pull_chunk(timeout=self.pull_timeout_s, max_samples=room)
            if not stamps:
                continue
            n += len(stamps)
            stamps = np.asarray(stamps, dtype=np.float64)
            if t_first is None:
                t_first = stamps[0]
            t_us = np.maximum(0, np.rint((stamps - t_first) * 1e6)).astype(np.int64)
            if self.markers:
                ev = markers_to_events(samples, t_us, where)
            else:
                values = np.asarray(samples, dtype=np.float64)
                if ref is None:
                    ref = values[0].copy()
                ev, ref = delta_events(values, t_us, ref, self.delta)
            self.stats["samples"] += len(stamps)
            self.stats["events"] += len(ev)
            if len(ev):
                self._last_t = int(ev["t"][-1])
                yield ev

    def events(self, i: int = 0) -> np.ndarray:
        parts = list(self.chunks(i))
        empty = np.zeros(0, SPIKES_DTYPE if self.markers else COCHLEA_DTYPE)
        return np.concatenate(parts) if parts else empty

    def duration_us(self, i: int = 0) -> int:
        return round_duration(self._last_t)

    def close(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            inlet.close_stream()

    def __enter__(self) -> LSLInletSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
