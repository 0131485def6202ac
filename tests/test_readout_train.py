"""Torch training: classifier and contrastive projections on synthetic features; export == torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamlsm.model.bundle import Bundle  # noqa: E402
from streamlsm.training.metrics import retrieval_topk  # noqa: E402
from streamlsm.training.train import (  # noqa: E402
    TrainConfig,
    stratified_split,
    train_classifier,
    train_projections,
)


def _blobs(rng, n_per, classes, dim, spread=0.6, centres=None):
    centres = rng.normal(size=(len(classes), dim)) * 2 if centres is None else centres
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres])
    y = np.repeat(np.asarray(classes), n_per)
    return x.astype(np.float32), y


def test_stratified_split():
    y = np.repeat(["a", "b", "c"], [10, 20, 2])
    tr, va = stratified_split(y, 0.2, 0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 32
    assert sorted(y[va].tolist()) == ["a", "a", "b", "b", "b", "b", "c"]
    np.testing.assert_array_equal(stratified_split(y, 0.2, 0)[1], va)


def test_classifier_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _blobs(rng, 40, ["0", "1", "2"], 10)
    cfg = TrainConfig(epochs=40, batch_size=16, lr=1e-2, patience=10, seed=1)
    b = train_classifier(x, y, config=cfg, modality="vision")
    assert b.metrics["val_accuracy"] > 0.9
    assert (b.classify("vision", x) == y).mean() > 0.9
    b2 = Bundle.load(b.save(tmp_path / "clf"))
    np.testing.assert_array_equal(b2.classify("vision", x), b.classify("vision", x))
    again = train_classifier(x, y, config=cfg, modality="vision")
    np.testing.assert_array_equal(again.heads["vision"].weights[0], b.heads["vision"].weights[0])


def _latent_pairs(rng):
    classes = [str(i) for i in range(10)]
    latent = rng.normal(size=(10, 3)) * 2  # 8 seen classes span the 3-d latent: the map generalises
    mix_a, mix_b = rng.normal(size=(3, 20)), rng.normal(size=(3, 12))
    xa, ya = _blobs(rng, 20, classes, 3, spread=0.3, centres=latent)
    xb, yb = _blobs(rng, 20, classes, 3, spread=0.3, centres=latent)
    return classes, latent, mix_a, mix_b, xa @ mix_a, ya, xb @ mix_b, yb


@pytest.mark.parametrize("loss", ["clip", "supcon"])
def test_projections_zero_shot_on_blobs(loss, tmp_path):
    """The losses the deployed recipes use must transfer to the two classes they never trained on (chance
    0.5). The paper's soft-target CLIP at T = 1 on raw outputs reaches only ~0.4 validation top-1 on this toy
    (measured; its loss still falls, see the next test), as it stays at chance on the real data."""
    rng = np.random.default_rng(3)
    classes, latent, mix_a, mix_b, xa, ya, xb, yb = _latent_pairs(rng)
    seen = np.isin(ya, classes[:8])
    seen_b = np.isin(yb, classes[:8])
    cfg = TrainConfig(epochs=40, batch_size=16, lr=3e-3, patience=40, seed=0)
    b = train_projections(xa[seen], xb[seen_b], ya[seen], labels_b=yb[seen_b], modalities=("audio", "vision"),
                          dim=16, loss=loss, temperature=0.5, config=cfg)
    assert b.metrics["val_top1"] > 0.7
    b2 = Bundle.load(b.save(tmp_path / loss))
    # fresh samples of the seen classes are retrieved across modalities
    xa2, ya2 = _blobs(rng, 10, classes[:8], 3, spread=0.3, centres=latent[:8])
    xb2, yb2 = _blobs(rng, 10, classes[:8], 3, spread=0.3, centres=latent[:8])
    fresh = retrieval_topk(b2.embed("audio", xa2 @ mix_a), ya2, b2.embed("vision", xb2 @ mix_b), yb2, ks=(1,))[1]
    assert fresh > 0.6  # chance 1/8
    qa, gb = b2.embed("audio", xa[~seen]), b2.embed("vision", xb[~seen_b])
    assert retrieval_topk(qa, ya[~seen], gb, yb[~seen_b], ks=(1,))[1] > 0.6


def test_paper_loss_trains_at_temperature_one():
    """The paper's recipe (soft-target CLIP, T = 1, raw Linear + GELU outputs, batch 8, fixed pairs): the
    training loss falls by at least 30% on toy data (on L2-normalised outputs it hardly moves at T = 1)."""
    rng = np.random.default_rng(4)
    classes, _, _, _, xa, ya, xb, yb = _latent_pairs(rng)
    cfg = TrainConfig(epochs=30, batch_size=8, lr=1e-3, patience=30, seed=0)
    hist = {}
    for normalise in (False, True):
        b = train_projections(xa, xb, ya, labels_b=yb, dim=16, loss="soft_clip", temperature=1.0, config=cfg,
                              standardise=False, normalise=normalise, pairing="fixed")
        hist[normalise] = [h["loss"] for h in b.metrics["history"]]
    raw, unit = hist[False], hist[True]
    assert raw[-1] <= 0.7 * raw[0], raw
    assert raw[-1] / raw[0] < unit[-1] / unit[0]  # on unit vectors (earlier reports) it moves less


def test_paired_rows_and_deeper_head():
    rng = np.random.default_rng(5)
    xa, y = _blobs(rng, 20, ["a", "b", "c"], 6)
    xb = xa[:, ::-1] + 0.1 * rng.normal(size=xa.shape).astype(np.float32)
    b = train_projections(xa, xb, y, dim=8, hidden=(16,), loss="clip",
                          config=TrainConfig(epochs=5, batch_size=8, seed=2))
    assert len(b.heads["audio"].weights) == 2
    assert b.embed("vision", xb).shape == (60, 8)


def test_torch_head_export_agrees_with_numpy(tmp_path):
    from streamlsm.training.train import TorchHead, to_numpy_head

    rng = np.random.default_rng(9)
    torch.manual_seed(0)
    for dims, final, norm in (([30, 64], True, True), ([30, 48, 16], True, True), ([30, 10], False, False)):
        th = TorchHead(rng.normal(size=30), rng.uniform(0.5, 2, 30), dims, final_activation=final, normalise=norm)
        x = rng.normal(size=(9, 30)).astype(np.float32)
        with torch.no_grad():
            want = th(torch.from_numpy(x)).numpy()
        b = Bundle(heads={"m": to_numpy_head(th)}, classes=["a"])
        got = Bundle.load(b.save(tmp_path / f"h{len(dims)}{final}")).embed("m", x)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_lbfgs_classifier_selects_l2_and_refits():
    rng = np.random.default_rng(4)
    x, y = _blobs(rng, 30, ["a", "b", "c"], 8)
    b = train_classifier(x, y, config=TrainConfig(epochs=50, seed=0), refit=True, l2_grid=(1e-3, 1e-1))
    assert b.metrics["best_l2"] in (1e-3, 1e-1) and b.metrics["refit"] and b.metrics["n_train"] == 90
    assert (b.classify("features", x) == y).mean() > 0.9


def test_classifier_without_validation_samples_and_nan_scores():
    from streamlsm.errors import ModelError
    from streamlsm.training.train import fit_epochs

    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    b = train_classifier(x, ["a", "b", "c"], config=TrainConfig(epochs=3, seed=0))  # no class has 2 samples
    assert b.metrics["val_accuracy"] == b.metrics["val_accuracy"] and b.metrics["best_epoch"] >= 0
    with pytest.raises(ModelError, match="never a number"):
        fit_epochs(lambda rng: 0.0, lambda: float("nan"), dict, TrainConfig(epochs=3), "nan")
