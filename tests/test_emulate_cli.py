"""`streamlsm data make|cochlea|info` on small emulated sets."""

from __future__ import annotations

import pytest

from streamlsm.cli import main

pytest.importorskip("matplotlib")


def test_data_make_and_info(tmp_path, capsys):
    out = tmp_path / "cortex"
    assert main(["data", "make", "cortex-letters", "--out", str(out), "--n-per-class", "1",
                 "--seed", "2"]) == 0
    assert (out / "train.npz").is_file() and (out / "manifest.json").is_file()
    png = tmp_path / "raster.png"
    assert main(["data", "info", str(out), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "26 samples" in text and "a=1" in text and "events/s" in text
    assert png.stat().st_size > 1000

    cam = tmp_path / "cam"
    assert main(["data", "make", "camera-digits", "--out", str(cam), "--n-per-class", "1"]) == 0
    assert main(["data", "info", str(cam), "--png", str(tmp_path / "cam.png")]) == 0
    assert "active pixels" in capsys.readouterr().out
    # a second make into the same (non-empty) folder is refused with a clear message
    assert main(["data", "make", "camera-digits", "--out", str(cam), "--n-per-class", "1"]) == 1


def test_data_cochlea_from_wavs(tmp_path, real_data, capsys):
    src = real_data / "fsdd" / "recordings"
    if not src.is_dir():
        pytest.skip("FSDD recordings absent")
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for name in ("1_lucas_3.wav", "1_lucas_30.wav"):
        (wavs / name).write_bytes((src / name).read_bytes())
    out = tmp_path / "coch"
    assert main(["data", "cochlea", str(wavs), "--out", str(out)]) == 0
    assert (out / "n-tidigits.hdf5").is_file()
    assert main(["data", "info", str(out), "--split", "test"]) == 0
    assert "1=1" in capsys.readouterr().out


def test_data_info_unknown_path(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path)]) == 1
    assert "not a data set" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path), "--limit", "0"]) == 1
    assert "config limit:" in capsys.readouterr().err
