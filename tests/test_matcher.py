"""PrototypeMatcher: cosine nearest prototype against a slow reference, open set, updates, checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from streamlsm.errors import CheckpointError, ModelError
from streamlsm.model.prototypes import UNKNOWN, PrototypeMatcher


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _filled(rng, classes=6, dim=16, n=5):
    m = PrototypeMatcher(dim)
    support = {f"c{i}": rng.normal(size=(n, dim)) for i in range(classes)}
    for lab, x in support.items():
        m.add(lab, x)
    return m, support


def test_match_equals_slow_reference():
    rng = np.random.default_rng(0)
    m, support = _filled(rng)
    protos = {lab: _unit(_unit(x).mean(0)) for lab, x in support.items()}
    for q in rng.normal(size=(50, 16)):
        ref = sorted(((float(_unit(q) @ p), lab) for lab, p in protos.items()), reverse=True)
        got = m.match(q, k=3)
        assert got.label == ref[0][1]
        assert got.score == pytest.approx(ref[0][0], abs=1e-5)
        assert [lab for lab, _ in got.topk] == [lab for _, lab in ref[:3]]
        assert got.margin == pytest.approx(ref[0][0] - ref[1][0], abs=1e-5)
    many = m.match_many(rng.normal(size=(7, 16)), k=2)
    assert len(many) == 7 and all(len(x.topk) == 2 for x in many)


def test_open_set_threshold_and_empty():
    assert PrototypeMatcher(4).match(np.ones(4)).label == UNKNOWN
    m = PrototypeMatcher(4, threshold=0.9)
    m.add("a", np.array([1.0, 0, 0, 0]))
    m.add("b", np.array([0, 1.0, 0, 0]))
    assert m.match(np.array([1.0, 0.1, 0, 0])).label == "a"
    far = m.match(np.array([0, 0, 1.0, 0]))
    assert far.label == UNKNOWN and far.topk[0][0] in ("a", "b")
    assert m.match(np.array([np.nan, 0, 0, 0])).label == UNKNOWN  # NaN < threshold is False
    single = PrototypeMatcher(2)
    single.add("x", np.array([1.0, 0.0]))
    assert single.match(np.array([1.0, 0.0])).margin == pytest.approx(2.0)


def test_add_replace_remove_and_version():
    m = PrototypeMatcher(2)
    m.add("a", np.array([[1.0, 0.0]]))
    v = m.version
    m.add("a", np.array([[0.0, 1.0]]))  # folds into the mean
    assert m.count("a") == 2 and m.version == v + 1
    np.testing.assert_allclose(m.prototypes[0], _unit(np.array([1.0, 1.0])), atol=1e-6)
    m.replace("a", np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(m.prototypes[0], [0.0, 1.0], atol=1e-6)
    m.add("b", np.array([[1.0, 0.0]]))
    m.remove("a")
    assert m.labels == ["b"] and m.match(np.array([0.0, 1.0])).label == "b"
    with pytest.raises(ModelError):
        m.remove("a")
    with pytest.raises(ModelError):
        m.add("c", np.ones((2, 3)))
    with pytest.raises(ModelError):
        m.add(UNKNOWN, np.ones(2))
    with pytest.raises(ModelError):
        m.add("d", np.array([np.nan, 1.0]))


def test_online_updates():
    mean = PrototypeMatcher(2, update="mean")
    mean.add("a", np.array([1.0, 0.0]))
    assert mean.update("a", np.array([0.0, 1.0]))
    np.testing.assert_allclose(mean.prototypes[0], _unit(np.array([1.0, 1.0])), atol=1e-6)
    ema = PrototypeMatcher(2, update="ema", ema=0.5)
    ema.add("a", np.array([1.0, 0.0]))
    ema.update("a", np.array([0.0, 1.0]))
    np.testing.assert_allclose(ema.prototypes[0], _unit(np.array([0.5, 0.5])), atol=1e-6)
    ema.update("a", np.array([0.0, 1.0]))
    assert ema.prototypes[0][1] > ema.prototypes[0][0]
    off = PrototypeMatcher(2)
    off.add("a", np.array([1.0, 0.0]))
    v = off.version
    assert not off.update("a", np.array([0.0, 1.0])) and off.version == v


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    m, _ = _filled(rng)
    m.sources["c0"] = "audio:support.npz"
    path = m.save(tmp_path / "protos.json")
    back = PrototypeMatcher.load(path)
    assert back.labels == m.labels and back.version == m.version
    np.testing.assert_array_equal(back.prototypes, m.prototypes)
    assert back.sources == m.sources
    q = rng.normal(size=16)
    assert back.match(q) == m.match(q)
    m.add("new", rng.normal(size=16))
    m.save(path)
    assert len(list(tmp_path.glob("protos.*.npz"))) == 1  # the old arrays file was removed
    assert "new" in PrototypeMatcher.load(path)


def test_failed_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    from streamlsm.model import prototypes as mod

    m = PrototypeMatcher(3)
    m.add("a", np.ones(3))
    path = m.save(tmp_path / "p.json")
    before = sorted(p.name for p in tmp_path.iterdir())
    m.add("b", np.array([1.0, -1.0, 0.0]))
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(mod.os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="No space"):
        m.save(path)
    monkeypatch.undo()
    assert PrototypeMatcher.load(path).labels == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no debris left behind
    (tmp_path / "plainfile").write_text("x")
    with pytest.raises(CheckpointError):
        m.save(tmp_path / "plainfile" / "p.json")  # parent is not a directory: unwritable


def test_corrupt_checkpoints_raise(tmp_path):
    m = PrototypeMatcher(3)
    m.add("a", np.ones(3))
    path = m.save(tmp_path / "p.json")
    npz = next(tmp_path.glob("p.*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="sha256"):
        PrototypeMatcher.load(path)
    doc = json.loads(path.read_text())
    doc["arrays"] = "../evil.npz"
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError):
        PrototypeMatcher.load(path)
    m.add("b", np.array([1.0, 0.0, 0.0]))
    good = m.save(tmp_path / "q.json")
    doc = json.loads(good.read_text())
    doc["labels"] = ["a", "a"]  # arrays still match 2 classes: the repeat alone must be refused
    good.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="repeat"):
        PrototypeMatcher.load(good)
    path.write_text("{not json")
    with pytest.raises(CheckpointError):
        PrototypeMatcher.load(path)
    with pytest.raises(CheckpointError):
        PrototypeMatcher.load(tmp_path / "absent.json")


@pytest.mark.parametrize("label", ["a\nb", "a\x00", "evil\u202etxt", "tab\there"])
def test_class_labels_with_control_or_format_characters_are_refused(label):
    """Issue 11, minor list: newline, NUL and U+202E were accepted as class labels."""
    m = PrototypeMatcher(4)
    with pytest.raises(ModelError, match="control or format"):
        m.add(label, np.ones(4))
    m.add("ok label-1", np.ones(4))
    assert m.labels == ["ok label-1"]


def _calibration(offset=0.3, temperature=0.1):
    from streamlsm.model.calibration import Calibration

    # 200 confident right answers and 200 coin flips at probability 0.5: only thresholds above 0.5 certify
    conf = (0.95,) * 200 + (0.5,) * 200
    correct = (True,) * 200 + (True, False) * 100
    return Calibration(((1, offset), (2, offset / 2)), temperature, conf, correct, order_confidence=conf,
                       order_correct=correct)


def test_calibrated_stacking_probability_and_abstention():
    m = PrototypeMatcher(2)
    m.add("seen", np.array([[1.0, 0.0]]))
    m.add("new", np.array([[0.0, 1.0]]))
    q = _unit(np.array([1.0, 0.8]))  # cosine 0.78 to "seen", 0.62 to "new"
    assert m.match(q).label == "seen" and m.match(q).probability is None  # uncalibrated: plain cosine
    m.calibrate(_calibration(0.3), seen=["seen"])  # "new" is the only unseen class: offset for 1 = 0.3
    got = m.match(q, k=2)
    assert got.topk[0][0] == "new" and got.score == pytest.approx(float(q[1]), abs=1e-5)
    assert dict(got.topk)["seen"] == pytest.approx(float(q[0]) - 0.3, abs=1e-5)
    z = np.array([got.topk[0][1], got.topk[1][1]]) / 0.1
    assert got.probability == pytest.approx(1.0 / np.exp(z - z.max()).sum(), abs=1e-6)
    assert m.calibration["offset"] == 0.3 and np.isfinite(m.calibration["probability_threshold"])
    # a near tie (probability ~0.5) lies below the certified threshold: published as unknown, topk still ranks
    tie = _unit(np.array([1.5545, 1.0]))  # cosine to "seen" minus 0.3 equals cosine to "new"
    t = m.match(tie)
    assert t.label == UNKNOWN and t.probability < m.calibration["probability_threshold"]
    assert t.topk[0][0] in ("seen", "new")
    # the offset follows the registered classes: a second unseen class -> the 2-class offset; none -> 0
    m.add("newer", np.array([[-1.0, 0.0]]))
    assert m.calibration["offset"] == pytest.approx(0.15)
    m.remove("new")
    m.remove("newer")
    assert m.calibration["offset"] == 0.0
    with pytest.raises(ModelError):
        m.calibrate(_calibration(), seen=["seen"], target=1.5)


def test_enrol_running_mean_ema_and_replace():
    rng = np.random.default_rng(1)
    m = PrototypeMatcher(8, ema=0.5)
    first, more = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    m.enrol("a", first)  # k-shot: the mean of 5 samples
    np.testing.assert_allclose(m.prototypes[0], _unit(_unit(first).mean(0)), atol=1e-6)
    m.enrol("a", more)  # refined: the running mean of all 10
    np.testing.assert_allclose(m.prototypes[0], _unit(_unit(np.vstack([first, more])).mean(0)), atol=1e-6)
    assert m.count("a") == 10
    p = m.prototypes[0].astype(np.float64)
    x = _unit(rng.normal(size=8))
    m.enrol("a", x[None, :], rule="ema")  # drift: half way towards the newest sample
    np.testing.assert_allclose(m.prototypes[0], _unit(0.5 * p + 0.5 * x), atol=1e-6)
    m.enrol("a", first[:1], rule="replace")
    np.testing.assert_allclose(m.prototypes[0], _unit(first[0]), atol=1e-6)
    assert m.count("a") == 1
    with pytest.raises(ModelError):
        m.enrol("a", first, rule="median")


def test_k_shot_enrolment_on_separable_blobs():
    """Few-shot: 2 new classes enrolled from 5 samples each among 8 known ones; generalised 10-way >= 95%."""
    rng = np.random.default_rng(2)
    centres = _unit(rng.normal(size=(10, 32)))
    m = PrototypeMatcher(32)
    for c in range(10):
        m.enrol(f"c{c}", centres[c] + 0.15 * rng.normal(size=(50 if c < 8 else 5, 32)))
    y = rng.integers(0, 10, 2000)
    q = centres[y] + 0.15 * rng.normal(size=(2000, 32))
    pred = np.array([x.label for x in m.match_many(q)])
    truth = np.array([f"c{c}" for c in y])
    assert (pred == truth)[y >= 8].mean() >= 0.95 and (pred == truth)[y < 8].mean() >= 0.95


def test_offline_nearest_prototype_is_the_online_matcher():
    """One implementation: the experiments' class means and predictions equal the live matcher's."""
    from streamlsm.model.prototypes import class_means, cosine
    from streamlsm.training.metrics import prototype_predict

    rng = np.random.default_rng(5)
    support = rng.normal(size=(30, 8)) + np.repeat(np.eye(8)[:3] * 3, 10, axis=0)
    labels = np.repeat(["a", "b", "c"], 10)
    m = PrototypeMatcher(8)
    for c in "abc":
        m.add(c, support[labels == c])
    classes, means = class_means(support, labels, unit=True)
    np.testing.assert_allclose(cosine(means, means), cosine(m.prototypes, m.prototypes), atol=1e-6)
    queries = rng.normal(size=(200, 8))
    np.testing.assert_allclose(cosine(queries, m.prototypes), m.scores(queries), atol=1e-5)
    assert prototype_predict(queries, classes, means).tolist() == [x.label for x in m.match_many(queries, 1)]
