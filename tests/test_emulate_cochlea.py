"""Silicon-cochlea emulator: tonotopy, silence, sample-rate adaptation, determinism; eSpeak speech."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.emulate.cochlea import CochleaConfig, channel_frequencies, cochlea_events
from streamlsm.errors import ConfigError
from streamlsm.events import COCHLEA_DTYPE


def _tone(freq: float, fs: int = 16000, seconds: float = 0.5, rms: float = 0.1) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return rms * np.sqrt(2) * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("freq", [200.0, 1000.0, 3000.0])
def test_pure_tone_excites_channels_near_its_frequency(freq):
    fs = 16000
    ev = cochlea_events(_tone(freq, fs), fs, np.random.default_rng(0))
    assert ev.dtype == COCHLEA_DTYPE and len(ev) > 100
    counts = np.bincount(ev["x"], minlength=64)
    fc = channel_frequencies(fs)
    peak = fc[np.argmax(counts)]
    assert abs(np.log2(peak / freq)) < 0.35  # within about a third of an octave
    near = np.abs(np.log2(fc / freq)) < 0.7
    assert counts[near].sum() > 0.6 * counts.sum()


def test_louder_tone_gives_more_events_and_silence_only_noise():
    fs = 16000
    rng = np.random.default_rng(1)
    soft = len(cochlea_events(_tone(500, fs, rms=0.02), fs, rng))
    loud = len(cochlea_events(_tone(500, fs, rms=0.2), fs, rng))
    assert loud > soft
    quiet = cochlea_events(np.zeros(fs), fs, rng, CochleaConfig(noise_hz=0.0))
    assert len(quiet) == 0
    noisy = cochlea_events(np.zeros(fs), fs, rng, CochleaConfig(noise_hz=5.0))
    assert abs(len(noisy) - 5.0 * 64) < 5 * np.sqrt(5.0 * 64)


def test_bank_adapts_to_sample_rate():
    f8 = channel_frequencies(8000)
    f22 = channel_frequencies(22050)
    assert f8[0] == pytest.approx(100.0) and f8[-1] < 4000 and np.all(np.diff(f8) > 0)
    assert 7000 < f22[-1] <= 8000 and len(f22) == 64
    with pytest.raises(ConfigError):
        channel_frequencies(200)


def test_events_sorted_deterministic_and_refractory():
    fs = 8000
    x = _tone(700, fs) + 0.05 * np.random.default_rng(2).normal(size=fs // 2)
    a = cochlea_events(x, fs, np.random.default_rng(5))
    b = cochlea_events(x, fs, np.random.default_rng(5))
    assert a.tobytes() == b.tobytes()
    assert np.all(np.diff(a["t"]) >= 0) and (a["p"] == 1).all()
    assert a["t"].max() < 500_000
    for ch in np.unique(a["x"]):
        t = a["t"][a["x"] == ch]
        assert np.all(np.diff(t) >= CochleaConfig().refractory_us)


def test_espeak_spoken_digits():
    speech = pytest.importorskip("streamlsm.emulate.speech")
    if not speech.available():
        pytest.skip("eSpeak NG (espeakng-loader) not installed")
    rng = np.random.default_rng(0)
    spk = speech.speakers(3, rng)
    assert len({s.code for s in spk}) == 3 and all(s.gender in ("man", "woman") for s in spk)
    jobs = [("seven", spk[0], 11), ("oh", spk[1], 12)]
    (audio, fs), (oh, _) = speech.say_many(jobs)
    again = speech.say_many(jobs)  # a fresh engine each time: the same bytes
    assert fs == 22050 and audio.dtype == np.float32 and 0.2 < len(audio) / fs < 1.5
    assert audio.tobytes() == again[0][0].tobytes() and oh.tobytes() == again[1][0].tobytes()
    ev = cochlea_events(audio, fs, rng)
    rate = len(ev) / (len(audio) / fs)
    assert 200 < rate < 5000  # N-TIDIGITS-like density (real utterance: ~830 events/s)
    assert len(np.unique(ev["x"])) > 20
