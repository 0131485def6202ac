"""PrototypeMatcher: cosine nearest prototype against a slow reference, open set, updates, checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from streamlsm.errors import CheckpointError, ModelError
from streamlsm.readout.matcher import UNKNOWN, PrototypeMatcher


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
    from streamlsm.readout import matcher as mod

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
