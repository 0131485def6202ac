"""N-TIDIGITS: the real .bs1 utterance, the n-tidigits.hdf5 layout (written here), corrupt inputs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from streamlsm_sources.ntidigits import (
    DIGITS,
    NTidigitsDataset,
    parse_label,
    read_bs1,
    write_bs1,
    write_hdf5,
)

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import COCHLEA_DTYPE
from streamlsm.plugins import SOURCE_GROUP, Dataset, load


@pytest.fixture(scope="module")
def bs1(real_file) -> Path:
    return real_file("ntidigits", "NTIDIGITS_1.bs1")


def _utt(n: int, seed: int, span_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 64, n), np.sort(rng.integers(0, int(span_s * 1e6), n)) / 1e6


@pytest.fixture
def hdf5(tmp_path: Path, bs1: Path) -> Path:
    path = tmp_path / "n-tidigits.hdf5"
    real = read_bs1(bs1)
    write_hdf5(path, "train", {
        "man-ae-a-1": real,                 # the real utterance (cochlea events)
        "woman-bf-b-z": _utt(300, 1),
        "man-ae-b-o": _utt(200, 2),
        "woman-cg-a-1z9": _utt(500, 3),     # a digit sequence (not in the single-digit set)
        "man-dh-a-7": _utt(100, 4),
    })
    write_hdf5(path, "test", {"woman-bf-a-5": _utt(50, 5), "man-ae-a-o1": _utt(60, 6)})
    return path


def test_real_bs1_parses(bs1: Path) -> None:
    ev = read_bs1(bs1)
    assert ev.dtype == COCHLEA_DTYPE and len(ev) == 898
    assert ev["t"][0] == 0 and ev["t"][-1] == 1_079_040  # 1.08 s
    assert np.all(np.diff(ev["t"]) >= 0)
    assert 0 <= ev["x"].min() and ev["x"].max() <= 63
    assert set(np.unique(ev["p"])) == {1}


def test_bs1_round_trip_is_byte_exact(bs1: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.bs1"
    write_bs1(out, read_bs1(bs1))
    assert out.read_bytes() == bs1.read_bytes()


def test_bs1_writer_limits(tmp_path: Path) -> None:
    ev = np.zeros(2, COCHLEA_DTYPE)
    ev["t"] = [0, 1 << 23]
    with pytest.raises(DataError, match="t must lie"):
        write_bs1(tmp_path / "a.bs1", ev)
    with pytest.raises(DataError, match="t, x, p"):
        write_bs1(tmp_path / "a.bs1", np.zeros(2))


@pytest.mark.parametrize(("content", "offset", "match"), [
    (b"", 0, "empty"),
    (bytes(5) + b"\x00", 5, "truncated"),
    (bytes([0, 1, 0, 0, 9, 0, 1, 0, 0, 3]), 5, "backwards"),
])
def test_bs1_corrupt(tmp_path: Path, content: bytes, offset: int, match: str) -> None:
    f = tmp_path / "bad.bs1"
    f.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_bs1(f)
    assert info.value.offset == offset and str(f) in str(info.value)


def test_hdf5_layout_is_the_documented_one(hdf5: Path) -> None:
    with h5py.File(hdf5, "r") as f:
        assert sorted(f) == ["test_addresses", "test_labels", "test_timestamps",
                             "train_addresses", "train_labels", "train_timestamps"]
        labels = f["train_labels"][()]
        assert labels.dtype.kind == "S" and labels[0] == b"man-ae-a-1"
        assert f["train_timestamps"]["man-ae-a-1"].dtype == np.float64
        assert f["train_addresses"]["man-ae-a-1"].shape == (898,)


def test_dataset_single_digits(hdf5: Path, bs1: Path) -> None:
    ds = NTidigitsDataset(hdf5)
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.modality, ds.layout, ds.sensor_size) == ("ntidigits", "audio", "cochlea", (64,))
    assert ds.classes == DIGITS and len(ds.classes) == 11
    assert ds.labels == ["1", "z", "o", "7"]
    assert [ds.speaker(i) for i in range(4)] == ["ae", "bf", "ae", "dh"]
    assert [ds.gender(i) for i in range(4)] == ["man", "woman", "man", "man"]
    assert ds.utterance(0) == "man-ae-a-1"
    real = read_bs1(bs1)
    ev = ds.events(0)
    assert len(ev) == 898
    np.testing.assert_array_equal(ev["t"], real["t"])
    np.testing.assert_array_equal(ev["x"], real["x"])
    assert ds.duration_us(0) == 1_080_000
    assert ds.path(0).endswith(":train/man-ae-a-1")


def test_dataset_all_utterances_and_test_split(hdf5: Path) -> None:
    ds = NTidigitsDataset(hdf5, single_digits=False)
    assert len(ds) == 5 and ds.label(3) == "1z9"
    test = NTidigitsDataset(hdf5.parent, split="test")  # a folder holding n-tidigits.hdf5
    assert test.labels == ["5"] and len(test.events(0)) == 50
    assert len(NTidigitsDataset(hdf5, split="test", single_digits=False)) == 2


def test_entry_point_and_limit(hdf5: Path) -> None:
    cls = load(SOURCE_GROUP, "ntidigits")
    assert cls is NTidigitsDataset
    ds = cls(hdf5, limit=2)
    assert len(ds) == 2 and ds.labels == ["1", "z"]


def test_rewriting_a_split_keeps_the_other(hdf5: Path) -> None:
    write_hdf5(hdf5, {"man-xx-a-9": _utt(10, 7)}, "test")  # the other argument order works too
    assert NTidigitsDataset(hdf5, split="test").labels == ["9"]
    assert len(NTidigitsDataset(hdf5)) == 4


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not <gender>"):
        write_hdf5(tmp_path / "x.hdf5", "train", {"man-ae-1": _utt(5, 0)})
    with pytest.raises(DataError, match="channels"):
        write_hdf5(tmp_path / "x.hdf5", "train", {"man-ae-a-1": (np.array([64]), np.array([0.0]))})
    with pytest.raises(ConfigError, match="split"):
        write_hdf5(tmp_path / "x.hdf5", "val", {})
    assert not (tmp_path / "x.hdf5").exists()


def _corrupt(path: Path, key: str, addr, ts) -> None:
    with h5py.File(path, "a") as f:
        del f["train_addresses"][key], f["train_timestamps"][key]
        f["train_addresses"][key] = np.asarray(addr)
        f["train_timestamps"][key] = np.asarray(ts, dtype=np.float64)


@pytest.mark.parametrize(("addr", "ts", "row", "match"), [
    ([], [], 0, "empty"),
    ([1, 2, 99], [0.0, 0.1, 0.2], 2, "channel"),
    ([1, 2, 3], [0.0, 0.2, 0.1], 2, "backwards"),
    ([1, 2, 3], [0.0, np.nan, 0.1], 1, "not a time"),
])
def test_corrupt_utterance_names_file_and_row(hdf5: Path, addr, ts, row: int, match: str) -> None:
    _corrupt(hdf5, "man-ae-b-o", addr, ts)
    ds = NTidigitsDataset(hdf5)
    with pytest.raises(DataError, match=match) as info:
        ds.events(2)
    assert info.value.row == row and "man-ae-b-o" in str(info.value) and str(hdf5) in str(info.value)
    skipping = NTidigitsDataset(hdf5, on_error="skip")
    assert skipping.labels == ["1", "z", "7"]
    assert len(skipping.skipped) == 1 and "man-ae-b-o" in skipping.skipped[0][0]


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot open"):
        NTidigitsDataset(tmp_path / "missing.hdf5")
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="cannot open"):
        NTidigitsDataset(junk)
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f["x"] = [1]
    with pytest.raises(DataError, match="train_labels"):
        NTidigitsDataset(other)
    with h5py.File(other, "w") as f:
        f["train_labels"] = np.array([b"man-ae-a-1", b"garbage"])
        f.create_group("train_addresses")
        f.create_group("train_timestamps")
    with pytest.raises(DataError, match="garbage") as info:
        NTidigitsDataset(other)
    assert info.value.row == 1
    ds = NTidigitsDataset(other, on_error="skip")  # garbage label and the missing utterance
    assert len(ds) == 0 and len(ds.skipped) == 2


def test_parse_label() -> None:
    assert parse_label("woman-ab-b-zo") == {"gender": "woman", "speaker": "ab", "take": "b",
                                            "digits": "zo"}
    with pytest.raises(ValueError):
        parse_label("woman-ab-b-0")


def test_bs1_channel_beyond_int16(tmp_path: Path) -> None:
    f = tmp_path / "wide.bs1"
    f.write_bytes(bytes([0, 1, 0, 0, 1, 0x80, 0, 0, 0, 2]))
    with pytest.raises(DataError, match="32767") as info:
        read_bs1(f)
    assert info.value.offset == 5


def test_corrupt_hdf5_bytes_give_data_errors(hdf5: Path) -> None:
    data = bytearray(hdf5.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(data), 200):
        data[i] ^= 0xFF
    hdf5.write_bytes(bytes(data))
    try:
        ds = NTidigitsDataset(hdf5, on_error="skip")
    except DataError as exc:
        assert str(hdf5) in str(exc)
        return
    for i in range(len(ds)):
        try:
            ds.events(i)
        except DataError as exc:
            assert str(hdf5) in str(exc)
