"""Silicon cochlea emulator: band-pass filter bank, hair-cell rectification, integrate-and-fire.

64 band-pass channels log-spaced from ``f_low`` (~100 Hz) to ``f_high`` (~8 kHz, capped at 0.45 of
the sample rate so a bank at 8 kHz still works), channel 0 the lowest frequency. Each channel's
output is half-wave rectified and averaged (inner hair cell: the band's envelope / pi, kept at
~4-6 kHz), log-compressed, passed
through a dead zone (the leak of the neuron) and integrated; every ``threshold`` of integrated
drive (per-channel mismatch) is one event. Events are (t us, channel, p=1) like N-TIDIGITS; sparse
background events are added. Input audio is taken as sound pressure, 0.1 RMS = normal speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from ..errors import ConfigError
from ..events import COCHLEA_DTYPE

__all__ = ["CochleaConfig", "channel_frequencies", "filterbank", "decimation", "cochleagram",
           "cochlea_events", "normalise"]


@dataclass(frozen=True)
class CochleaConfig:
    """Filter bank and neuron parameters (frequencies in Hz, times in microseconds)."""

    n_channels: int = 64
    f_low: float = 100.0
    f_high: float = 8000.0
    nyquist_fraction: float = 0.45  # highest centre frequency as a fraction of the sample rate
    bandwidth: float = 0.25  # relative half bandwidth of each band-pass (~ 1/Q / 2)
    order: int = 2  # Butterworth order of each band-pass (2 -> 4 poles)
    compression_knee: float = 0.002  # rectified amplitude where log compression sets in
    leak: float = 0.5  # dead zone subtracted from the compressed drive
    threshold: float = 0.035  # integrated drive (drive x seconds) for one event
    threshold_sigma: float = 0.15  # relative per-channel mismatch
    refractory_us: int = 200
    noise_hz: float = 0.2  # background events per channel per second

    def validate(self) -> None:
        if self.n_channels < 1:
            raise ConfigError("n_channels", "must be >= 1")
        if not 0 < self.f_low < self.f_high:
            raise ConfigError("f_low", "must satisfy 0 < f_low < f_high")
        if self.threshold <= 0:
            raise ConfigError("threshold", "must be > 0")


def channel_frequencies(fs: float, cfg: CochleaConfig | None = None) -> np.ndarray:
    """Centre frequencies (Hz, ascending) of the bank at sample rate ``fs``."""
    cfg = cfg or CochleaConfig()
    top = min(cfg.f_high, cfg.nyquist_fraction * fs / (1 + cfg.bandwidth))
    if top <= cfg.f_low:
        raise ConfigError("fs", f"sample rate {fs} Hz too low for f_low={cfg.f_low} Hz")
    return np.geomspace(cfg.f_low, top, cfg.n_channels)


def _bands(f: float, cfg: CochleaConfig) -> list[float]:
    return [f / (1 + cfg.bandwidth), f * (1 + cfg.bandwidth)]


def decimation(fs: float) -> int:
    """Samples per drive sample: a power of two keeping the hair-cell drive at about 4-6 kHz."""
    return 1 << max(0, int(np.floor(np.log2(fs / 4000.0))))


@lru_cache(maxsize=8)
def filterbank(fs: float, nfft: int, cfg: CochleaConfig | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(bins (C, M), responses (C, M) complex64): for each channel, the ``M = nfft // decimation``
    rfft bins around its centre (in FFT order around 0, -1 where outside 0..nfft/2) and the
    band-pass IIR filter's frequency response at those bins (0 outside).

    Each channel is a Butterworth band-pass (``order``) centred (geometrically) on its frequency.
    """
    cfg = cfg or CochleaConfig()
    m = nfft // decimation(fs)
    offsets = sp_fft.fftfreq(m, 1.0 / m).astype(np.int64)  # 0, 1, .., m/2-1, -m/2, .., -1
    fc = channel_frequencies(fs, cfg)
    centre = np.rint(fc * nfft / fs).astype(np.int64)
    bins = centre[:, None] + offsets[None, :]
    valid = (bins > 0) & (bins <= nfft // 2)
    resp = np.zeros(bins.shape, dtype=np.complex64)
    for c, f in enumerate(fc):
        sos = signal.butter(cfg.order, _bands(f, cfg), btype="bandpass", fs=fs, output="sos")
        resp[c, valid[c]] = signal.sosfreqz(sos, worN=bins[c, valid[c]] * fs / nfft, fs=fs)[1]
    return np.where(valid, bins, -1), resp


def cochleagram(audio: np.ndarray, fs: float, cfg: CochleaConfig | None = None) -> np.ndarray:
    """(C, N // decimation(fs)) compressed hair-cell drive of each channel (before the dead zone).

    Each band-pass output is half-wave rectified and averaged over the hair cell's time constant;
    for a band-limited signal that average is its envelope / pi, computed here as the magnitude of
    the band's analytic signal, demodulated to baseband at ``fs / decimation(fs)`` (filtering in
    the frequency domain of a zero-padded block equals the causal IIR filter up to the tail of its
    impulse response beyond the padding). Then compressed: ``log1p(drive / compression_knee)``.
    """
    cfg = cfg or CochleaConfig()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ConfigError("audio", f"must be mono (1-D), got shape {x.shape}")
    n = len(x)
    dec = decimation(fs)
    tail = int(0.06 * fs)
    nfft = max(1 << int(np.ceil(np.log2(max(n + tail, 64)))), 4 * dec)
    spec = sp_fft.rfft(x, nfft)
    bins, resp = filterbank(float(fs), nfft, cfg)
    spec = np.append(spec, np.zeros(1, spec.dtype))  # bins == -1 read this zero
    sub = spec[bins] * resp
    analytic = sp_fft.ifft(sub, axis=1)  # band c shifted down by its centre, every dec-th sample
    m = n // dec
    drive = np.abs(analytic[:, :m]) * (2.0 / dec / np.pi)  # envelope / pi
    return np.log1p(drive / cfg.compression_knee).astype(np.float32)


def normalise(audio: np.ndarray, rms: float = 0.1) -> np.ndarray:
    """``audio`` scaled so its active part (above 2% of the peak) has the given RMS (0.1 = the
    cochlea's normal speech level): recordings come at arbitrary levels, like a preamp's AGC."""
    x = np.asarray(audio, dtype=np.float32)
    if not len(x) or not np.abs(x).max() > 0:
        return x
    active = np.abs(x) > 0.02 * np.abs(x).max()
    level = float(np.sqrt(np.mean(x[active].astype(np.float64) ** 2)))
    return (x * (rms / level)).astype(np.float32)


def cochlea_events(audio: np.ndarray, fs: float, rng: np.random.Generator,
                   cfg: CochleaConfig | None = None) -> np.ndarray:
    """COCHLEA_DTYPE events (t us from the start, x = channel, p = 1) of mono ``audio``."""
    cfg = cfg or CochleaConfig()
    drive = np.maximum(cochleagram(audio, fs, cfg) - cfg.leak, 0.0)
    c, n = drive.shape
    fs = fs / decimation(fs)  # the drive's rate
    thr = cfg.threshold * np.exp(rng.normal(0.0, cfg.threshold_sigma, c))
    # integrate-and-fire with subtractive reset: the k-th event fires where the running integral
    # of drive first reaches k thresholds (exact for a non-leaky integrator)
    level = np.cumsum(drive, axis=1) / (fs * thr[:, None])
    phase = rng.uniform(0.0, 1.0, c)  # initial membrane state
    k = np.floor(level + phase[:, None]).astype(np.int64)
    steps = np.diff(k, axis=1, prepend=np.floor(phase).astype(np.int64)[:, None])
    ch, idx = np.nonzero(steps)
    cnt = steps[ch, idx]
    ch, idx = np.repeat(ch, cnt), np.repeat(idx, cnt)
    dt_us = 1e6 / fs
    t = (idx + rng.uniform(0.0, 1.0, len(idx))) * dt_us
    duration = n * dt_us
    n_noise = rng.poisson(cfg.noise_hz * c * duration * 1e-6)
    t = np.concatenate([t, rng.uniform(0, duration, n_noise)])
    ch = np.concatenate([ch, rng.integers(0, c, n_noise)])
    ti = np.clip(np.rint(t), 0, max(0, int(duration) - 1)).astype(np.int64)
    order = np.lexsort((ti, ch))
    ti, ch = ti[order], ch[order]
    if cfg.refractory_us > 0 and len(ti):  # drop events too soon after the previous one
        keep = np.ones(len(ti), dtype=bool)
        keep[1:] = (ch[1:] != ch[:-1]) | (np.diff(ti) >= cfg.refractory_us)
        ti, ch = ti[keep], ch[keep]
    order = np.lexsort((ch, ti))
    ev = np.empty(len(ti), dtype=COCHLEA_DTYPE)
    ev["t"], ev["x"], ev["p"] = ti[order], ch[order], 1
    return ev
