"""`streamlsm experiment`: parser, report writing and merging of runs over disjoint seeds."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from streamlsm.cli import main  # noqa: E402
from streamlsm.experiments import nmnist  # noqa: E402


def _res(seed, acc):
    row = {"seed": seed, "fold": 0, "accuracy": acc, "best_epoch": 0, "train_seconds": 1.0, "wall_seconds": 1.0,
           "train_macs": 10.0, "feature_macs": 5.0, "feature_seconds": 0.1}
    return {"classes": ["0", "1"], "n_samples": 10, "n_test": 0, "protocol": "stratified 5-fold CV",
            "runs": {"lsm-sw-5win": [row], "gru": [{**row, "accuracy": acc - 0.1, "train_macs": 1000.0}]}}


def test_write_and_merge(tmp_path, capsys):
    for s, acc in ((0, 0.9), (1, 0.8)):
        nmnist.write(_res(s, acc), tmp_path / f"s{s}")
    assert main(["experiment", "nmnist", "--merge", str(tmp_path / "s0"), str(tmp_path / "s1"),
                 "--out", str(tmp_path / "all")]) == 0
    res = json.loads((tmp_path / "all" / "results.json").read_text())
    assert res["seeds"] == [0, 1]
    assert res["summary"]["lsm-sw-5win"]["mean"] == pytest.approx(0.85)
    assert res["cost"]["gru"]["ratio_macs"] == pytest.approx(100.0)
    report = (tmp_path / "all" / "report.md").read_text()
    assert "85.00 ± 7.07" in report and "Training cost" in report


def test_parser_lists_experiments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["experiment", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("nmnist", "zeroshot-av", "cochlea", "neural", "zeroshot-bmi", "device"):
        assert name in out


def test_cochlea_parts_says_why_a_split_is_not_used(tmp_path):
    from streamlsm.cli._experiment_data import cochlea_parts

    real = tmp_path / "ntidigits" / "n-tidigits.hdf5"
    real.parent.mkdir()
    real.write_bytes(b"not an hdf5 file")
    said = []
    assert cochlea_parts(tmp_path, tmp_path / "cache", log=said.append) == {}
    assert [s.split(":")[0] for s in said] == ["cochlea train split not used", "cochlea test split not used"]
    assert all("HDF5" in s for s in said)
