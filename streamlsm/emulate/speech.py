"""Spoken digits synthesised with eSpeak NG (``espeakng-loader``: library and voices from pip).

``speakers(n, rng)`` draws synthetic talkers (accent, voice variant, pitch, pitch range, speed,
loudness, room noise); ``say(word, speaker, rng)`` returns float audio at eSpeak's 22,050 Hz with
per-utterance jitter of speed and pitch, leading/trailing silence and additive noise, normalised so
that 0.1 RMS is normal speech (the cochlea's reference level).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import string
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["WORDS", "DIGIT_CLASSES", "Speaker", "speakers", "say", "say_many", "say_chunks",
           "sample_rate",
           "available"]

#: N-TIDIGITS class codes -> words ("z" zero, "o" oh)
WORDS = {"z": "zero", "o": "oh", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
         "6": "six", "7": "seven", "8": "eight", "9": "nine"}
DIGIT_CLASSES = tuple(WORDS)
_ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-029", "en-gb-x-gbcwmd")
_MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "Alex", "Andy", "Mike", "boris", "david", "ed",
         "iven", "john", "max", "michel", "norbert", "rob", "steph")
_FEMALE = ("f1", "f2", "f3", "f4", "f5", "Annie", "Alicia", "belinda", "linda", "anika",
           "aunty", "grandma", "kaukovalta")
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4  # espeak_PARAMETER
_SYNCHRONOUS, _DONT_EXIT, _POS_CHARACTER, _CHARS_UTF8 = 2, 0x8000, 1, 1


@dataclass(frozen=True)
class Speaker:
    """One synthetic talker: ``code`` two letters, ``gender`` "man" or "woman"."""

    code: str
    gender: str
    voice: str  # eSpeak voice name, "<accent>+<variant>"
    pitch: int  # 0..99
    pitch_range: int  # 0..99
    rate: int  # words per minute
    level: float  # RMS of the speech (0.1 normal)
    snr_db: float  # room noise


def _c_library():
    """The C runtime (for srand), or None where it cannot be found."""
    try:
        return ctypes.CDLL(None) if sys.platform != "win32" else ctypes.cdll.msvcrt
    except (OSError, TypeError, AttributeError):
        return None


class _Engine:
    """The eSpeak NG library, initialised once per process (its state is global)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ConfigError("speech", "needs the `espeakng-loader` package "
                              "(pip install 'streamlsm[train]')") from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._libc = _c_library()  # the C rand() that parts of eSpeak NG use
        self.fs = lib.espeak_Initialize(_SYNCHRONOUS, 0,
                                        espeakng_loader.get_data_path().encode(), _DONT_EXIT)
        if self.fs <= 0:
            raise ConfigError("speech", "eSpeak NG failed to initialise")
        self._chunks: list[np.ndarray] = []
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.c_void_p)
        self._callback = proto(self._collect)  # keep a reference: the library calls it
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        self.lock = threading.Lock()

    def _collect(self, wav, n, _events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int,
              seed: int = 0) -> np.ndarray:
        with self.lock:
            self.lib.espeak_ng_SetRandSeed(int(seed))  # its noise sources: own generator, rand()
            if self._libc is not None:
                self._libc.srand(int(seed) & 0x7FFFFFFF)
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ConfigError("voice", f"eSpeak NG has no voice {voice!r}")
            for par, val in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100)):
                self.lib.espeak_SetParameter(par, int(val), 0)
            self._chunks = []
            data = text.encode() + b"\0"
            self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0


_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def available() -> bool:
    """True if eSpeak NG can be loaded (the `espeakng-loader` package is installed)."""
    try:
        _engine()
    except (ConfigError, OSError):
        return False
    return True


def sample_rate() -> int:
    """eSpeak NG's output sample rate (22,050 Hz)."""
    return int(_engine().fs)


def speakers(n: int, rng: np.random.Generator) -> list[Speaker]:
    """``n`` distinct synthetic talkers (codes "aa", "ab", ...), about half of them women."""
    if not 1 <= n <= 26 * 26:
        raise ConfigError("n_speakers", f"must lie in 1..{26 * 26}, got {n}")
    letters = string.ascii_lowercase
    out = []
    for i in range(n):
        woman = bool(rng.random() < 0.5)
        variant = str(rng.choice(_FEMALE if woman else _MALE))
        accent = str(rng.choice(_ACCENTS))
        pitch = int(np.clip(rng.normal(62 if woman else 40, 9), 5, 95))
        out.append(Speaker(
            code=letters[i // 26] + letters[i % 26], gender="woman" if woman else "man",
            voice=f"{accent}+{variant}", pitch=pitch, pitch_range=int(rng.integers(25, 85)),
            rate=int(rng.integers(125, 195)), level=float(0.1 * np.exp(rng.normal(0, 0.25))),
            snr_db=float(rng.uniform(18, 40))))
    return out


def say(word: str, speaker: Speaker, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(audio float32, sample rate) of ``speaker`` saying ``word`` once, with jitter and noise.

    eSpeak NG carries hidden state from one utterance to the next (e.g. its pitch flutter phase),
    so repeated calls in one process differ slightly; ``say_many`` gives reproducible bytes.
    """
    eng = _engine()
    rate = int(np.clip(speaker.rate * np.exp(rng.normal(0, 0.08)), 80, 400))
    pitch = int(np.clip(speaker.pitch + rng.normal(0, 4), 0, 99))
    seed = int(rng.integers(0, 2**31 - 1))
    voice = eng.synth(word, speaker.voice, rate, pitch, speaker.pitch_range, seed)
    if not len(voice):
        raise ConfigError("word", f"eSpeak NG produced no audio for {word!r}")
    fs = eng.fs
    lead, tail = (int(fs * rng.uniform(0.04, 0.15)) for _ in range(2))
    x = np.concatenate([np.zeros(lead, np.float32), voice, np.zeros(tail, np.float32)])
    active = np.abs(voice) > 0.02 * np.abs(voice).max()
    rms = float(np.sqrt(np.mean(voice[active] ** 2))) if active.any() else 1.0
    level = speaker.level * np.exp(rng.normal(0, 0.1))
    x *= level / max(rms, 1e-9)
    noise_rms = level / 10 ** (speaker.snr_db / 20)
    x += rng.normal(0.0, noise_rms, len(x)).astype(np.float32)
    return x.astype(np.float32), int(fs)


def _serve() -> None:
    """Child side of ``say_chunks``: JSON jobs on stdin, (n, fs, float32 samples) on stdout."""
    out = sys.stdout.buffer
    for line in sys.stdin:
        job = json.loads(line)
        audio, fs = say(job["word"], Speaker(**job["speaker"]), np.random.default_rng(job["seed"]))
        out.write(struct.pack("<II", len(audio), fs))
        out.write(audio.astype("<f4").tobytes())
        out.flush()


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ConfigError("speech", "the eSpeak NG worker process stopped unexpectedly")
    return data


def say_chunks(jobs: list[tuple[str, Speaker, int]], chunk: int = 100
               ) -> Iterator[list[tuple[np.ndarray, int]]]:
    """``say(word, speaker, default_rng(seed))`` for each job, yielded ``chunk`` jobs at a time,
    all computed in one fresh worker process (plain JSON in, raw samples out).

    A freshly loaded eSpeak NG given the same jobs in the same order produces the same bytes, so
    the makers' output is deterministic (within one process it is not: see ``say``).
    """
    if not jobs:
        return
    code = "from streamlsm.emulate.speech import _serve; _serve()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)

    def feed() -> None:  # a thread, so the worker synthesises while this process runs on
        try:
            for word, spk, seed in jobs:
                msg = {"word": word, "speaker": dataclasses.asdict(spk), "seed": int(seed)}
                proc.stdin.write(json.dumps(msg).encode() + b"\n")
                proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # the worker died or the reader stopped early
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        part: list[tuple[np.ndarray, int]] = []
        for _ in jobs:
            n, fs = struct.unpack("<II", _read_exact(proc.stdout, 8))
            audio = np.frombuffer(_read_exact(proc.stdout, 4 * n), dtype="<f4").astype(np.float32)
            part.append((audio, fs))
            if len(part) == chunk:
                yield part
                part = []
        if part:
            yield part
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        writer.join(timeout=5)


def say_many(jobs: list[tuple[str, Speaker, int]]) -> list[tuple[np.ndarray, int]]:
    """All of ``say_chunks(jobs)`` as one list (reproducible bytes, see ``say_chunks``)."""
    return [item for part in say_chunks(jobs, max(1, len(jobs))) for item in part]
