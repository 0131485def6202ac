"""default_bundle: trains on what the loader gives, caches by content key, loads without torch code."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from streamlsm.events import COCHLEA_DTYPE, DVS_DTYPE  # noqa: E402
from streamlsm.experiments import default_bundle  # noqa: E402
from streamlsm.experiments.features import Samples  # noqa: E402
from streamlsm.model.bundle import Bundle  # noqa: E402


def _vision(rng, n_per):
    ev, lab = [], []
    for d in range(10):
        for _ in range(n_per):
            k = 150
            e = np.zeros(k, DVS_DTYPE)
            e["t"] = np.sort(rng.integers(0, 300_000, k))
            e["x"] = 9 + 4 * (d % 4) + rng.integers(0, 3, k)  # one 3x3 cell of the 16x16 crop per digit
            e["y"] = 9 + 4 * (d // 4) + rng.integers(0, 3, k)
            e["p"] = rng.integers(0, 2, k)
            ev.append(e)
            lab.append(str(d))
    return Samples(ev, np.full(len(ev), 300_000), np.asarray(lab))


def _audio(rng, n_per):
    ev, lab = [], []
    for d in ["z", *map(str, range(1, 10)), "o"]:
        c = {"z": 0, "o": 10}.get(d, int(d) if d.isdigit() else 0)
        for _ in range(n_per):
            k = 120
            e = np.zeros(k, COCHLEA_DTYPE)
            e["t"] = np.sort(rng.integers(0, 400_000, k))
            e["x"] = 6 * c + rng.integers(0, 4, k)  # four cochlea channels per digit
            ev.append(e)
            lab.append(d)
    return Samples(ev, np.full(len(ev), 400_000), np.asarray(lab))


def test_default_bundle_trains_caches_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    data = {"vision": {"train": _vision(rng, 6), "test": _vision(rng, 3)},
            "audio": {"train": _audio(rng, 6), "test": _audio(rng, 3)}}
    calls = []

    def loader(cache):
        calls.append(cache)
        return data

    path = default_bundle(tmp_path, loader=loader)
    b = Bundle.load(path)
    assert b.classes == [str(d) for d in range(10)] and b.seen_classes == [str(d) for d in range(8)]
    assert b.modalities == ["audio", "vision"]
    assert b.reservoir_config("audio")["layout"] == "cochlea"
    assert "test_unseen_top1" in b.metrics and b.hash.startswith("sha256:")
    mtime = (path / "weights.npz").stat().st_mtime_ns
    assert default_bundle(tmp_path, loader=loader) == path  # found again, not retrained
    assert (path / "weights.npz").stat().st_mtime_ns == mtime
    assert len(calls) == 2
    # "z" is read as digit 0 and "o" dropped: 10 digits x 6 training utterances; 8 seen x 3 test queries
    assert b.extra["data"]["audio"]["train"]["n"] == 60 and b.metrics["test_seen_n_queries"] == 24
    assert b.metrics["test_unseen_n_queries"] == 6
    # the toy classes are linearly tied across modalities: a trained bundle retrieves seen classes well
    assert b.metrics["test_seen_top1"] >= 0.8  # chance 1/8
    cal = b.extra["calibration"]  # calibrated stacking + abstention, fitted with 2 seen digits as pseudo-unseen
    assert len(cal["info"]["pseudo_unseen"].split(",")) == 2
    assert set(cal["info"]["pseudo_unseen"].split(",")) <= set(b.seen_classes)
    assert cal["query_modality"] == "vision" and cal["temperature"] > 0 and len(cal["correct"]) > 0
    # a damaged bundle is retrained in place
    w = path / "weights.npz"
    w.write_bytes(w.read_bytes()[:-30])
    assert default_bundle(tmp_path, loader=loader) == path and len(calls) == 3
    again = Bundle.load(path)  # same data, seed and settings: the same weights (metrics hold timings)
    np.testing.assert_array_equal(again.heads["audio"].weights[0], b.heads["audio"].weights[0])
