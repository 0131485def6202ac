"""Presets on real data: the recorded calibration reproduces (rate within 15 %, silent neurons), the figures
presets.py quotes are those of results/, and one row of results/nmnist reproduces exactly for seed 0."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from streamlsm.reservoir import preset
from streamlsm.reservoir.calibrate import firing_rate
from streamlsm.reservoir.presets import CALIBRATION

REPO = Path(__file__).resolve().parent.parent
PRESETS_PY = REPO / "streamlsm" / "reservoir" / "presets.py"
NMNIST_RESULTS = REPO / "results" / "nmnist" / "results.json"


def _calibration_samples(name: str):
    """The samples bench/reservoir_calibrate.py calibrated each preset on (same loaders)."""
    spec = importlib.util.spec_from_file_location("_bench_calibrate", REPO / "bench" / "reservoir_calibrate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from streamlsm.config import data_root

    root = data_root()
    loaders = {"nmnist": lambda: mod.nmnist(root), "ntidigits": lambda: mod.ntidigits(root),
               "cochlea": lambda: mod.cochlea(root), "neural": lambda: mod.neural(root), "letters": mod.letters}
    return loaders[name]()


_NEEDS = {"nmnist": ("nmnist", "Train"), "ntidigits": ("ntidigits", "NTIDIGITS_1.bs1"),
          "cochlea": ("fsdd", "recordings"), "neural": ("neural", "auditory_cortex"), "letters": ()}


@pytest.fixture(scope="module")
def measured(real_data):
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            need = _NEEDS[name]
            if need and not real_data.joinpath(*need).exists():
                pytest.skip(f"real data {real_data.joinpath(*need)} is absent")
            samples, durs = _calibration_samples(name)
            cache[name] = firing_rate(preset(name), samples, durs)
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CALIBRATION))
def test_preset_rate_within_15_percent_of_its_calibration(name, measured):
    rec = CALIBRATION[name]
    got = measured(name)
    assert preset(name).weight_scale == rec["scale"]
    assert abs(got["rate"] - rec["rate"]) <= 0.15 * rec["rate"], (name, got, rec)
    assert got["silent"] == pytest.approx(rec["silent"], abs=0.02), (name, got, rec)


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="calibrated on the one real N-TIDIGITS utterance "
                                                               "here: 30% of the neurons stay silent on it"))
    if n == "ntidigits" else n for n in sorted(CALIBRATION)])
def test_preset_silent_fraction_below_20_percent(name, measured):
    assert measured(name)["silent"] < 0.20


def test_presets_py_quotes_results_nmnist():
    res = json.loads(NMNIST_RESULTS.read_text())
    quoted = re.findall(r"(lsm-[\w.-]+?)\s+(?:#\s+)?(\d+\.\d\d) %", PRESETS_PY.read_text())
    assert len(quoted) >= 4
    for name, value in quoted:
        assert f"{res['summary'][name]['mean'] * 100:.2f}" == value, name
    silent = re.search(r"paper constant 0\.07: (\d+)% of the neurons never fire", PRESETS_PY.read_text())
    assert silent and int(silent.group(1)) == round(res["headline"]["paper_const_silent"] * 100)


@pytest.mark.slow
def test_results_nmnist_row_reproduces_for_seed_0(real_data, tmp_path):
    """lsm-sw-whole-p0 (the paper's feature on the calibrated preset), seed 0: every fold's accuracy."""
    pytest.importorskip("torch")
    if not (real_data / "nmnist" / "Train").is_dir():
        pytest.skip("real N-MNIST is absent")
    from streamlsm.cli._experiment_data import nmnist_samples
    from streamlsm.experiments import nmnist
    from streamlsm.experiments.classify import Protocol, run_classification

    name = "lsm-sw-whole-p0"
    full = nmnist.protocol()
    proto = Protocol(lsm={name: full.lsm[name]}, input_config=full.input_config, input_windows=(),
                     seq_config=None, readout=full.readout, l2_grid=full.l2_grid, folds=full.folds)
    res = run_classification(nmnist_samples(real_data, "train"), proto, [0], cache_dir=tmp_path, progress=False,
                             log=lambda m: None)
    want = sorted((r["fold"], r["accuracy"]) for r in json.loads(NMNIST_RESULTS.read_text())["runs"][name]
                  if r["seed"] == 0)
    got = sorted((r["fold"], r["accuracy"]) for r in res["runs"][name])
    assert len(want) == 5 and got == want
    assert np.mean([a for _, a in got]) > 0.8
