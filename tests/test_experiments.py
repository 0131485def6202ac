"""Experiments: feature cache (keyed by data + config, invalidated), input binning, tiny end-to-end runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from streamlsm.events import DVS_DTYPE  # noqa: E402
from streamlsm.experiments.features import (
    Samples,
    binned_input,
    encode_cached,
    features_key,
    window_pool,
)
from streamlsm.reservoir import Reservoir, preset  # noqa: E402


def _toy(n_per=12, seed=0, classes=("0", "1", "2")):
    """DVS samples whose events sit in a class-specific quadrant of the 16x16 crop."""
    rng = np.random.default_rng(seed)
    ev, dur, lab = [], [], []
    for ci, c in enumerate(classes):
        for _ in range(n_per):
            k = int(rng.integers(200, 400))
            e = np.zeros(k, DVS_DTYPE)
            e["t"] = np.sort(rng.integers(0, 300_000, k))
            e["x"] = 9 + 5 * ci + rng.integers(0, 5, k)
            e["y"] = 9 + rng.integers(0, 16, k)
            e["p"] = rng.integers(0, 2, k)
            ev.append(e)
            dur.append(300_000)
            lab.append(c)
    return Samples(ev, np.asarray(dur), np.asarray(lab), name="toy")


def test_cache_hit_and_invalidation(tmp_path):
    s = _toy()
    cfg = preset("nmnist", polarity="both")
    x1 = encode_cached(cfg, s, tmp_path)
    files = list((tmp_path / "features").glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(x1, Reservoir(cfg).encode(s.events, s.durations))
    # a hit reads the file: make the cached copy recognisable
    marked = x1.copy()
    marked[0, 0] = -1
    np.save(files[0], marked)
    assert encode_cached(cfg, s, tmp_path)[0, 0] == -1
    # other config (seed), other data -> other key, recomputed
    cfg2 = dataclasses.replace(cfg, seed=5)
    assert features_key(s, cfg2) != features_key(s, cfg)
    encode_cached(cfg2, s, tmp_path)
    s2 = _toy(seed=1)
    assert features_key(s2, cfg) != features_key(s, cfg)
    assert features_key(_toy(), cfg) == features_key(s, cfg)
    # a damaged cache file is recomputed
    files[0].write_bytes(b"garbage")
    np.testing.assert_array_equal(encode_cached(cfg, s, tmp_path), x1)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2


def test_binned_input_counts_every_mapped_event():
    s = _toy(n_per=2)
    cfg = preset("nmnist", polarity="both")
    b = binned_input(cfg, s)
    assert b.shape == (6, 50, 512)
    assert b.sum() == sum(len(e) for e in s.events)  # all toy events are inside the crop
    w = window_pool(b, 5)
    assert w.shape == (6, 5 * 512)
    np.testing.assert_allclose(w.reshape(6, 5, 512).sum(1), b.sum(1))


def test_classification_protocol_runs(tmp_path):
    from streamlsm.experiments.classify import Protocol, run_classification
    from streamlsm.training.train import TrainConfig

    s = _toy(n_per=10)
    cfg = preset("nmnist", polarity="both")
    proto = Protocol(lsm={"lsm": lambda seed: dataclasses.replace(cfg, seed=seed)}, input_config=cfg,
                     input_windows=(1,), seq_config=dataclasses.replace(cfg, pool=4, bin_us=30000),
                     readout=TrainConfig(epochs=20, batch_size=16, lr=1e-2, patience=5),
                     seq_train=TrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=2), folds=2)
    res = run_classification(s, proto, 1, cache_dir=tmp_path, progress=False, log=lambda m: None)
    assert set(res["runs"]) == {"lsm", "logreg-input-pooled", "gru", "srnn"}
    assert np.mean([r["accuracy"] for r in res["runs"]["lsm"]]) > 0.8
    assert all(r["train_macs"] > 0 for rs in res["runs"].values() for r in rs)


@pytest.mark.parametrize("loss", ["supcon", "proto"])
def test_srnn_clip_baseline_trains_and_embeds(loss):
    from streamlsm.experiments.baselines import SeqConfig, train_srnn_clip
    from streamlsm.training.train import TrainConfig

    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    cls = np.repeat(np.arange(3), 20)
    # each class drives its own input channel (plus noise) in both modalities: a learnable cross-modal link
    xa = 0.3 * rng.random((60, 5, 4), dtype=np.float32)
    xb = 0.3 * rng.random((60, 5, 3), dtype=np.float32)
    xa[np.arange(60), :, cls] += 1.0
    xb[np.arange(60), :, cls] += 1.0
    r = train_srnn_clip(xa, labels, xb, labels.copy(), loss=loss,
                        config=TrainConfig(epochs=12, batch_size=8, lr=1e-2, patience=12), seq=SeqConfig(hidden=8))
    za, zb = r["embed"]("a", xa[:7]), r["embed"]("b", xb[:5])
    assert za.shape == (7, 64) and zb.shape == (5, 64)
    assert np.allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
    assert r["train_macs"] > 0 and r["val_top1"] >= 0.9  # chance 1/3: a broken encoder or loss misses this
