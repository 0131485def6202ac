"""Emulated datasets: the sensor emulators' events written in the real datasets' file formats.

``make(kind, out, n_per_class, seed)`` writes one data set (deterministic: same arguments, same
bytes) and a ``manifest.json``; ``ensure_default_data()`` makes-or-finds the default sets in the
cache directory. Kinds and what ``out`` then holds:

- ``camera-digits`` / ``camera-letters``: N-MNIST tree ``Train|Test/<class>/<id>.bin``
  (``NMNISTDataset`` for digits, ``CameraTreeDataset`` for any class folders);
- ``cochlea-digits``: ``n-tidigits.hdf5`` (11 classes z, 1..9, o; eSpeak NG talkers, train and
  test talkers disjoint), read by ``NTidigitsDataset``;
- ``cortex-letters``: spike tables ``train.npz`` / ``test.npz`` (192 units, 2 s trials, labels
  a..z), read by ``SpikeTableDataset``; optionally 10 ms binned ``*_counts10ms.npz``.

``cochlea_from_wavs(wav_dir, out)`` turns recordings (e.g. FSDD ``<digit>_<speaker>_<index>.wav``,
index 0-4 = test) into the same ``n-tidigits.hdf5`` layout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamlsm.errors import ConfigError, DataError

from ._common import natural_key
from ._emulated_camera import CameraTreeDataset, make_camera
from ._emulated_common import (
    KIND_CODE,
    KINDS,
    TEST_FRACTION,
    VERSION,
    Progress,
    clock,
    read_manifest,
    seeded,
    split_counts,
    write_manifest,
    write_npz,
)

__all__ = [
    "KINDS",
    "DEFAULT_KINDS",
    "VERSION",
    "make",
    "make_camera_digits",
    "make_camera_letters",
    "make_cochlea_digits",
    "make_cortex_letters",
    "cochlea_from_wavs",
    "ensure_default_data",
    "read_manifest",
    "CameraTreeDataset",
]

#: what ensure_default_data() makes: one set per kind (the demo uses camera-digits, cochlea-digits)
DEFAULT_KINDS = KINDS


def make_camera_digits(out, n_per_class: int = 100, seed: int = 0, progress: Progress = None,
                       images: str = "fonts") -> Path:
    """N-MNIST-like digits 0-9 (see module doc); ``images`` "fonts" (rendered, distorted glyphs)
    or "sklearn" (scikit-learn's real 8x8 handwritten digits, upsampled); returns ``out``."""
    from streamlsm.emulate.glyphs import DIGITS

    return make_camera("camera-digits", Path(out), DIGITS, n_per_class, seed, progress,
                       images=images)


def make_camera_letters(out, n_per_class: int = 100, seed: int = 0, progress: Progress = None,
                        images: str = "fonts") -> Path:
    """N-MNIST-like lowercase letters a-z (font glyphs only); returns ``out``."""
    from streamlsm.emulate.glyphs import LETTERS

    return make_camera("camera-letters", Path(out), LETTERS, n_per_class, seed, progress,
                       images=images)


# -- cochlea ------------------------------------------------------------------------------------
def _write_cochlea(out: Path, utterances: dict[str, dict[str, np.ndarray]]) -> Path:
    from .ntidigits import HDF5_NAME, write_hdf5

    path = out / HDF5_NAME
    for split, utts in utterances.items():
        write_hdf5(path, split, utts)
    return path


def make_cochlea_digits(out, n_per_class: int = 100, seed: int = 0, progress: Progress = None) -> Path:
    """N-TIDIGITS-like spoken digits from eSpeak NG talkers (each says each digit twice, takes a
    and b; about 20% of talkers are test talkers); returns ``out``."""
    from streamlsm.emulate import speech
    from streamlsm.emulate.cochlea import cochlea_events

    t0 = clock()
    out = Path(out)
    if not speech.available():
        raise ConfigError("cochlea-digits", "needs eSpeak NG: pip install espeakng-loader")
    code = KIND_CODE["cochlea-digits"]
    n_spk = -(-n_per_class // 2)
    talkers = speech.speakers(n_spk, seeded(seed, code, 0))
    n_test_spk = int(round(n_spk * TEST_FRACTION)) if n_spk > 1 else 0
    jobs, keys = [], []
    for si, spk in enumerate(talkers):
        for take in ("a", "b")[: min(2, n_per_class - 2 * si)]:
            for ci, digit in enumerate(speech.DIGIT_CLASSES):
                split = "test" if si >= n_spk - n_test_spk else "train"
                jobs.append((speech.WORDS[digit], spk, int(seeded(seed, code, 1, si, ci, ord(take))
                                                            .integers(2**31 - 1))))
                keys.append((split, f"{spk.gender}-{spk.code}-{take}-{digit}", si, ci, take))
    utterances: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    chunk, b = 110, 0
    for audio in speech.say_chunks(jobs, chunk):
        for (split, key, si, ci, take), (x, fs) in zip(keys[b:b + chunk], audio, strict=True):
            utterances[split][key] = cochlea_events(x, fs, seeded(seed, code, 2, si, ci, ord(take)))
        b += chunk
        if progress:
            progress(len(audio))
    out.mkdir(parents=True, exist_ok=True)
    _write_cochlea(out, {k: v for k, v in utterances.items() if v})
    write_manifest(out, "cochlea-digits", n_per_class, seed, t0, format="ntidigits-hdf5",
                   reader="ntidigits", samples={k: len(v) for k, v in utterances.items()},
                   speakers=[s.__dict__ for s in talkers], classes=list(speech.DIGIT_CLASSES))
    return out


_WAV = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)\.wav$")


def cochlea_from_wavs(wav_dir, out, *, seed: int = 0, test_index_below: int = 5,
                      progress: Progress = None) -> Path:
    """Recordings ``<digit>_<speaker>_<index>.wav`` (FSDD naming; index < 5 = test) through the
    cochlea into ``out/n-tidigits.hdf5`` (label ``man-<speaker>-<index>-<digit>``, 0 -> z)."""
    from scipy.io import wavfile

    from streamlsm.emulate.cochlea import cochlea_events, normalise

    t0 = clock()
    wav_dir, out = Path(wav_dir), Path(out)
    files = sorted((p for p in wav_dir.glob("*.wav") if _WAV.match(p.name)),
                   key=lambda p: natural_key(p.name)) if wav_dir.is_dir() else []
    if not files:
        raise DataError(wav_dir, "no <digit>_<speaker>_<index>.wav files found")
    utterances: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    for n, p in enumerate(files):
        digit, spk, idx = _WAV.match(p.name).groups()
        try:
            fs, x = wavfile.read(p)
        except (ValueError, OSError) as exc:
            raise DataError(p, f"cannot read WAV: {exc}") from None
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1)
        if np.issubdtype(np.asarray(x).dtype, np.floating) and np.abs(x).max() > 2:
            x = x / 32768.0
        split = "test" if int(idx) < test_index_below else "train"
        label = f"man-{spk.lower()}-{idx}-{'z' if digit == '0' else digit}"
        utterances[split][label] = cochlea_events(normalise(x), fs, seeded(seed, 9, n))
        if progress:
            progress(1)
    out.mkdir(parents=True, exist_ok=True)
    _write_cochlea(out, {k: v for k, v in utterances.items() if v})
    write_manifest(out, "cochlea-wavs", 0, seed, t0, source=str(wav_dir), format="ntidigits-hdf5",
                   reader="ntidigits", samples={k: len(v) for k, v in utterances.items()})
    return out


# -- cortex -------------------------------------------------------------------------------------
def make_cortex_letters(out, n_per_class: int = 100, seed: int = 0, progress: Progress = None,
                        counts: bool = False) -> Path:
    """Intracortical handwriting of a-z (192 units, 2 s trials): ``train.npz`` then ``test.npz``
    (the test trials recorded after the training ones, baselines drifting throughout); with
    ``counts`` also 10 ms binned ``<split>_counts10ms.npz``. Returns ``out``."""
    from streamlsm.emulate.cortex import Array, bin_counts
    from streamlsm.emulate.glyphs import LETTERS

    from .neural import TABLE_TRIALS

    t0 = clock()  # (wall, cpu)
    out = Path(out)
    code = KIND_CODE["cortex-letters"]
    n_train, n_test = split_counts(n_per_class)
    array = Array(seed=seed)
    session = seeded(seed, code, 0)
    out.mkdir(parents=True, exist_ok=True)
    trial_us = array.cfg.trial_us
    now_us = 0
    samples = {}
    for split, n_split in (("train", n_train), ("test", n_test)):
        if not n_split:
            continue
        order = np.concatenate([session.permutation(len(LETTERS)) for _ in range(n_split)])
        t_parts, u_parts, starts, labels, binned = [], [], [], [], []
        for k, ci in enumerate(order):
            array.advance(session)
            ev = array.trial(LETTERS[ci], seeded(seed, code, 1, now_us // trial_us))
            t_parts.append(ev["t"] + now_us)
            u_parts.append(ev["x"])
            starts.append(now_us)
            labels.append(LETTERS[ci])
            if counts:
                binned.append(bin_counts(ev, array.cfg.n_units, trial_us).astype(np.uint8))
            now_us += trial_us
            if progress and (k + 1) % 26 == 0:
                progress(26)
        starts_a = np.asarray(starts, dtype=np.int64)
        small = np.uint8 if array.cfg.n_units <= 256 else np.uint16
        table = {"t_us": np.concatenate(t_parts).astype(np.int64),
                 "unit": np.concatenate(u_parts).astype(small),
                 "trial": np.arange(len(starts_a)), "t_start_us": starts_a,
                 "t_end_us": starts_a + trial_us, "label": np.asarray(labels, dtype=str)}
        write_npz(out / f"{split}.npz", table)  # neural.write_spike_table's layout, compressed
        if counts:
            write_npz(out / f"{split}_counts10ms.npz", {
                "counts": np.concatenate(binned), "bin_us": np.int64(10_000),
                "t0_us": np.int64(starts[0]), **{k: table[k] for k in TABLE_TRIALS}})
        samples[split] = len(order)
    write_manifest(out, "cortex-letters", n_per_class, seed, t0, format="spike-table",
                   reader="spike-table", samples=samples, n_units=array.cfg.n_units,
                   trial_us=trial_us, classes=list(LETTERS))
    return out


# -- dispatch and cache ---------------------------------------------------------------------------
_MAKERS = {"camera-digits": make_camera_digits, "camera-letters": make_camera_letters,
           "cochlea-digits": make_cochlea_digits, "cortex-letters": make_cortex_letters}


def make(kind: str, out, n_per_class: int = 100, seed: int = 0, progress: Progress = None,
         **options) -> Path:
    """Write data set ``kind`` (one of KINDS) into folder ``out`` (made; must be empty or absent).

    Written into a temporary sibling folder first and renamed, so a half-made set never appears.
    """
    if kind not in _MAKERS:
        raise ConfigError("kind", f"unknown emulated data set {kind!r}; known: {list(KINDS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError("out", f"{out} exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _MAKERS[kind](tmp, n_per_class=n_per_class, seed=seed, progress=progress, **options)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _matches(folder: Path, kind: str, n_per_class: int, seed: int) -> bool:
    info = read_manifest(folder)
    return info is not None and all(info.get(k) == v for k, v in (
        ("kind", kind), ("version", VERSION), ("n_per_class", n_per_class), ("seed", seed)))


def _make_in_child(kind: str, folder: Path, n_per_class: int, seed: int) -> subprocess.Popen:
    code = ("import sys; from streamlsm_sources.emulated import make; "
            "make(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))")
    return subprocess.Popen([sys.executable, "-c", code, kind, str(folder), str(n_per_class),
                             str(seed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ensure_default_data(cache=None, *, kinds=DEFAULT_KINDS, n_per_class: int = 100, seed: int = 0,
                        jobs: int | None = None,
                        progress: Callable[[str], Progress] | None = None) -> dict[str, Path]:
    """Find, else make, the default emulated sets under ``cache`` (default: default_cache_dir()).

    A set is reused when its ``manifest.json`` matches (kind, version, n_per_class, seed). Missing
    sets are made by up to ``jobs`` worker processes at once (default: 2 or the CPU count if
    smaller; 1 makes them here, one after the other). ``progress(kind)`` may return a callback
    told the number of samples made. Returns {kind: folder}.
    """
    from streamlsm.config import default_cache_dir

    root = Path(cache) if cache is not None else default_cache_dir()
    folders = {k: root / "data" / f"{k}-n{n_per_class}-s{seed}-v{VERSION}" for k in kinds}
    todo = [k for k in kinds if not _matches(folders[k], k, n_per_class, seed)]
    for k in todo:
        if folders[k].exists():
            shutil.rmtree(folders[k])
    jobs = min(2, os.cpu_count() or 1) if jobs is None else max(1, int(jobs))
    if jobs == 1 or len(todo) <= 1:
        for k in todo:
            try:
                make(k, folders[k], n_per_class, seed, progress(k) if progress else None)
            except (OSError, ConfigError):
                if not _matches(folders[k], k, n_per_class, seed):
                    raise  # else another process made the same (deterministic) set first
    else:
        queue, running = list(todo), []
        try:
            while queue or running:
                while queue and len(running) < jobs:
                    k = queue.pop(0)
                    running.append((k, _make_in_child(k, folders[k], n_per_class, seed)))
                k, proc = running.pop(0)
                _, err = proc.communicate()
                if not _matches(folders[k], k, n_per_class, seed):  # made here or by another process
                    tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
                    raise DataError(folders[k], f"making {k} failed: {tail[0]}")
                if progress and (cb := progress(k)):
                    cb(len(read_manifest(folders[k]).get("classes", [])) * n_per_class)
        finally:  # a failure or Ctrl-C here must not leave the other makers running
            for _, other in running:
                other.kill()
                other.wait()
    return folders
