"""Bundle: save/load round trip, content hash, tamper detection, torch vs numpy inference (1e-5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamlsm.errors import ModelError
from streamlsm.model.bundle import Bundle
from streamlsm.model.projection import ProjectionHead, gelu


def _head(rng, dims=(12, 8, 4), normalise=True, final_activation=True):
    ws = [rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    bs = [rng.normal(size=b).astype(np.float32) for b in dims[1:]]
    return ProjectionHead(ws, bs, mean=rng.normal(size=dims[0]), scale=rng.uniform(0.5, 2, dims[0]),
                          final_activation=final_activation, normalise=normalise)


def _bundle(rng):
    return Bundle(heads={"vision": _head(rng), "audio": _head(rng, dims=(6, 4))},
                  classes=list("123456789"), seen_classes=list("1234567"),
                  reservoirs={"vision": {"n_neurons": 200}, "audio": None}, seed=3,
                  metrics={"unseen_top1": 0.9})


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    b = _bundle(rng)
    b.save(tmp_path / "b")
    c = Bundle.load(tmp_path / "b")
    assert c.hash == b.hash and c.hash.startswith("sha256:")
    assert c.classes == b.classes and c.seen_classes == b.seen_classes and c.seed == 3
    assert c.metrics == {"unseen_top1": 0.9}
    x = rng.normal(size=(5, 12))
    np.testing.assert_array_equal(c.embed("vision", x), b.embed("vision", x))
    np.testing.assert_allclose(np.linalg.norm(c.embed("audio", rng.normal(size=(3, 6))), axis=1), 1, atol=1e-6)


def test_tamper_detected(tmp_path):
    rng = np.random.default_rng(0)
    p = _bundle(rng).save(tmp_path / "b")
    m = json.loads((p / "manifest.json").read_text())
    m["classes"][0] = "X"
    (p / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="hash"):
        Bundle.load(p)
    with pytest.raises(ModelError, match="missing"):
        Bundle.load(tmp_path / "nothing")
    q = _bundle(rng).save(tmp_path / "t")
    w = q / "weights.npz"
    w.write_bytes(w.read_bytes()[:-30])  # truncated npz (a zip without its directory)
    with pytest.raises(ModelError, match="unreadable weights"):
        Bundle.load(q)


def test_unknown_modality_and_bad_shapes():
    rng = np.random.default_rng(0)
    b = _bundle(rng)
    with pytest.raises(ModelError):
        b.embed("neural", np.zeros((1, 12)))
    with pytest.raises(ModelError):
        b.embed("vision", np.zeros((1, 11)))
    with pytest.raises(ModelError):
        Bundle(heads={}, classes=["a"])


def test_gelu_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.linspace(-6, 6, 101)
    np.testing.assert_allclose(gelu(x), torch.nn.functional.gelu(torch.from_numpy(x)).numpy(), atol=1e-12)


def test_numpy_head_equals_torch_forward(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    for normalise, final in ((True, True), (False, False), (True, False)):
        h = _head(rng, dims=(20, 16, 8), normalise=normalise, final_activation=final)
        b = Bundle(heads={"vision": h}, classes=["a", "b"])
        b2 = Bundle.load(b.save(tmp_path / f"b{normalise}{final}"))
        x = rng.normal(size=(7, 20)).astype(np.float32)
        t = (torch.from_numpy(x) - torch.from_numpy(h.mean).float()) / torch.from_numpy(h.scale).float()
        for i, (w, bias) in enumerate(zip(h.weights, h.biases, strict=True)):
            t = t @ torch.from_numpy(w) + torch.from_numpy(bias)
            if i < len(h.weights) - 1 or final:
                t = torch.nn.functional.gelu(t)
        if normalise:
            t = torch.nn.functional.normalize(t, dim=1)
        np.testing.assert_allclose(b2.embed("vision", x), t.numpy(), atol=1e-5)


def test_reservoir_config_record():
    b = _bundle(np.random.default_rng(0))
    assert b.reservoir_config("vision") == {"n_neurons": 200}
    with pytest.raises(ModelError):
        b.reservoir_config("audio")


def test_signed_bundles_load_only_with_their_key_and_unaltered(tmp_path):
    """Issue 11, item 5: the content hash is recomputable by anyone; the HMAC signature is not."""
    import os

    from streamlsm.model.bundle import SIGNATURE, _content_hash, sign_bundle

    b = _bundle(np.random.default_rng(0))
    b.save(tmp_path / "b")
    key, other = os.urandom(32), os.urandom(32)
    with pytest.raises(ModelError, match="unsigned"):
        Bundle.load(tmp_path / "b", key)
    sign_bundle(tmp_path / "b", key)
    assert Bundle.load(tmp_path / "b", key).hash == b.hash
    with pytest.raises(ModelError, match="bad signature"):
        Bundle.load(tmp_path / "b", other)
    # altered after signing, with the content hash recomputed: the hash check passes, the MAC not
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    m["classes"] = list(reversed(m["classes"]))
    m["seen_classes"] = m["classes"]
    m["hash"] = _content_hash(dict(np.load(tmp_path / "b" / "weights.npz")), m)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    Bundle.load(tmp_path / "b")  # without a key: still a valid bundle
    with pytest.raises(ModelError, match="bad signature"):
        Bundle.load(tmp_path / "b", key)
    (tmp_path / "b" / SIGNATURE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable signature"):
        Bundle.load(tmp_path / "b", key)


@pytest.mark.parametrize("edit,says", [
    (lambda m, a: m.update(heads=[]), "heads"),
    (lambda m, a: m["heads"][next(iter(m["heads"]))].update(layers=float("inf")), "layers"),
    (lambda m, a: m.update(reservoirs=["x"]), "reservoirs"),
    (lambda m, a: a.__setitem__(next(k for k in a if k.endswith("/w0")), np.full((12, 8), np.nan, np.float32)),
     "non-finite"),
])
def test_malformed_or_non_finite_bundles_are_one_model_error(tmp_path, edit, says):
    """Items 10 and 12: these loaded with a traceback, or loaded and sent NaN scores."""
    from streamlsm.model.bundle import _content_hash

    _bundle(np.random.default_rng(0)).save(tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    arrays = dict(np.load(tmp_path / "b" / "weights.npz"))
    edit(m, arrays)
    np.savez(tmp_path / "b" / "weights.npz", **arrays)
    m["hash"] = _content_hash(arrays, m)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match=says):
        Bundle.load(tmp_path / "b")
