"""Emulated data sets: written through the readers' writers, read back unchanged, deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from streamlsm.errors import ConfigError

pytest.importorskip("matplotlib")
pytest.importorskip("h5py")
emulated = pytest.importorskip("streamlsm_sources.emulated")


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_camera_digits_roundtrip_and_determinism(tmp_path):
    from streamlsm_sources.nmnist import NMNISTDataset

    a = emulated.make("camera-digits", tmp_path / "a", n_per_class=3, seed=4)
    b = emulated.make("camera-digits", tmp_path / "b", n_per_class=3, seed=4)
    c = emulated.make("camera-digits", tmp_path / "c", n_per_class=3, seed=5)
    assert _digest(a) == _digest(b) != _digest(c)
    train, test = NMNISTDataset(a, "train"), NMNISTDataset(a, "test")
    assert len(train) == 20 and len(test) == 10
    assert sorted(set(train.labels)) == [str(d) for d in range(10)]
    ev = train.events(0)
    assert 1000 < len(ev) < 10000 and ev["x"].max() <= 33
    info = emulated.read_manifest(a)
    assert info["kind"] == "camera-digits" and info["samples"] == {"train": 20, "test": 10}


def test_camera_letters_tree_dataset(tmp_path):
    out = emulated.make("camera-letters", tmp_path / "l", n_per_class=1, seed=0)
    ds = emulated.CameraTreeDataset(out, "train")
    assert len(ds) == 26 and ds.classes[:3] == ("a", "b", "c") and ds.label(25) == "z"
    assert len(ds.events(3)) > 500


def test_emulator_events_survive_the_writers_exactly(tmp_path):
    from streamlsm_sources.nmnist import read_bin, write_bin
    from streamlsm_sources.ntidigits import NTidigitsDataset, write_hdf5

    from streamlsm.emulate.camera import record
    from streamlsm.emulate.cochlea import cochlea_events
    from streamlsm.emulate.glyphs import render

    rng = np.random.default_rng(0)
    ev = record(render("5", rng)[None], [rng])[0]
    write_bin(tmp_path / "x.bin", ev)
    assert read_bin(tmp_path / "x.bin").tobytes() == ev.tobytes()
    t = np.arange(8000) / 8000
    coch = cochlea_events(0.1 * np.sin(2 * np.pi * 440 * t), 8000, rng)
    write_hdf5(tmp_path / "n.hdf5", "train", {"man-aa-a-5": coch})
    back = NTidigitsDataset(tmp_path / "n.hdf5", "train").events(0)
    assert np.array_equal(back["t"], coch["t"]) and np.array_equal(back["x"], coch["x"])


def test_cortex_letters_spike_tables(tmp_path):
    from streamlsm_sources.neural import SpikeTableDataset

    a = emulated.make("cortex-letters", tmp_path / "a", n_per_class=2, seed=1, counts=True)
    b = emulated.make("cortex-letters", tmp_path / "b", n_per_class=2, seed=1, counts=True)
    assert _digest(a) == _digest(b)
    train, test = SpikeTableDataset(a / "train.npz"), SpikeTableDataset(a / "test.npz")
    assert len(train) == 26 and len(test) == 26
    assert train.classes == tuple("abcdefghijklmnopqrstuvwxyz")
    assert train.duration_us(0) == 2_000_000 and train.sensor_size == (192,)
    ev = train.events(5)
    assert ev["t"].max() < 2_000_000 and len(ev) > 1000
    with np.load(a / "train_counts10ms.npz") as z:
        counts = z["counts"]
        assert counts.shape == (26 * 200, 192) and int(z["bin_us"]) == 10_000
        # the 10 ms export holds the same spikes as the table
        assert counts[1000:1200].sum() == len(train.events(5))
    # ... and reads back as a (binned) spike table with the same trials and spike counts
    binned = SpikeTableDataset(a / "train_counts10ms.npz")
    assert binned.labels == train.labels and len(binned.events(5)) == len(train.events(5))


def test_cochlea_digits_and_wavs(tmp_path, real_data):
    speech = pytest.importorskip("streamlsm.emulate.speech")
    if not speech.available():
        pytest.skip("eSpeak NG (espeakng-loader) not installed")
    from streamlsm_sources.ntidigits import NTidigitsDataset

    a = emulated.make("cochlea-digits", tmp_path / "a", n_per_class=2, seed=3)
    b = emulated.make("cochlea-digits", tmp_path / "b", n_per_class=2, seed=3)
    assert _digest(a) == _digest(b)
    ds = NTidigitsDataset(a, "train")
    assert len(ds) == 22 and set(ds.labels) == set("z123456789o")
    assert all(ds.gender(i) in ("man", "woman") for i in range(len(ds)))
    ev = ds.events(0)
    assert 50 < len(ev) and ev["x"].max() < 64

    wavs = tmp_path / "wavs"
    wavs.mkdir()
    src = real_data / "fsdd" / "recordings"
    if not src.is_dir():
        pytest.skip("FSDD recordings absent")
    for name in ("3_george_0.wav", "3_george_7.wav", "0_jackson_12.wav"):
        (wavs / name).write_bytes((src / name).read_bytes())
    out = emulated.cochlea_from_wavs(wavs, tmp_path / "fsdd")
    tr, te = NTidigitsDataset(out, "train"), NTidigitsDataset(out, "test")
    assert sorted(tr.labels) == ["3", "z"] and te.labels == ["3"]
    assert len(te.events(0)) > 50


def test_make_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        emulated.make("camera-cats", tmp_path / "x")
    with pytest.raises(ConfigError):
        emulated.make("camera-digits", tmp_path / "y", n_per_class=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ConfigError):
        emulated.make("camera-digits", tmp_path / "full", n_per_class=1)


def test_ensure_default_data_makes_once(tmp_path, monkeypatch):
    calls = []
    real = emulated._MAKERS["cortex-letters"]

    def counting(out, **kw):
        calls.append(out)
        return real(out, **kw)

    monkeypatch.setitem(emulated._MAKERS, "cortex-letters", counting)
    first = emulated.ensure_default_data(tmp_path, kinds=("cortex-letters",), n_per_class=1)
    again = emulated.ensure_default_data(tmp_path, kinds=("cortex-letters",), n_per_class=1)
    assert first == again and len(calls) == 1
    assert (first["cortex-letters"] / "train.npz").is_file()
    monkeypatch.setenv("STREAMLSM_CACHE", str(tmp_path / "env"))
    got = emulated.ensure_default_data(kinds=("cortex-letters",), n_per_class=1)
    assert str(got["cortex-letters"]).startswith(str(tmp_path / "env"))


def test_ensure_default_data_in_worker_processes(tmp_path):
    kinds = ("cortex-letters", "camera-digits")
    got = emulated.ensure_default_data(tmp_path, kinds=kinds, n_per_class=1, jobs=2)
    assert set(got) == set(kinds)
    assert emulated.read_manifest(got["camera-digits"])["samples"] == {"train": 10, "test": 0}
    assert (got["cortex-letters"] / "train.npz").is_file()


def test_ensure_default_data_kills_the_other_makers_when_one_step_fails(tmp_path, monkeypatch):
    import subprocess
    import sys

    started, done = {}, set()

    def child(kind, folder, n_per_class, seed):
        code = "pass" if kind == "a" else "import time; time.sleep(60)"
        started[kind] = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
        return started[kind]

    def progress(kind):
        raise KeyboardInterrupt  # Ctrl-C while the other maker is still running

    monkeypatch.setattr(emulated, "_make_in_child", child)
    monkeypatch.setattr(emulated, "_matches", lambda folder, kind, n, seed: kind in done or (
        kind == "a" and "a" in started and started["a"].poll() is not None))
    with pytest.raises(KeyboardInterrupt):
        emulated.ensure_default_data(tmp_path, kinds=("a", "b"), n_per_class=1, jobs=2, progress=progress)
    assert started["b"].poll() is not None, "the other maker process was left running"


def test_camera_digits_from_sklearn_handwriting(tmp_path):
    pytest.importorskip("sklearn")
    from streamlsm_sources.nmnist import NMNISTDataset

    out = emulated.make("camera-digits", tmp_path / "s", n_per_class=1, seed=0, images="sklearn")
    ds = NMNISTDataset(out, "train")
    assert len(ds) == 10 and emulated.read_manifest(out)["images"] == "sklearn"
    assert len(ds.events(0)) > 500
    with pytest.raises(ConfigError):
        emulated.make("camera-letters", tmp_path / "t", n_per_class=1, images="sklearn")
