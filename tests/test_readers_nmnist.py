"""N-MNIST reader: the 1,000 real files, the overflow-marker rule, exact writer, corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlsm_sources._common import balanced_limit, natural_key, round_duration
from streamlsm_sources.nmnist import OVERFLOW_US, NMNISTDataset, read_bin, write_bin

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import DVS_DTYPE
from streamlsm.plugins import SOURCE_GROUP, Dataset, load


def _rec(x: int, y: int, p: int, t: int) -> bytes:
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def _events(ts, xs=None, ys=None, ps=None) -> np.ndarray:
    ev = np.zeros(len(ts), dtype=DVS_DTYPE)
    ev["t"] = ts
    ev["x"] = xs if xs is not None else np.arange(len(ts)) % 34
    ev["y"] = ys if ys is not None else (np.arange(len(ts)) * 7) % 34
    ev["p"] = ps if ps is not None else np.arange(len(ts)) % 2
    return ev


@pytest.fixture(scope="module")
def nmnist_root(real_file) -> Path:
    real_file("nmnist", "Train")  # skips unless the training split is there
    return real_file("nmnist")


@pytest.fixture(scope="module")
def train(nmnist_root: Path) -> NMNISTDataset:
    return NMNISTDataset(nmnist_root)


def test_real_files_parse_with_documented_counts(train: NMNISTDataset) -> None:
    assert len(train) == 1000 and train.skipped == []
    counts, per_class = [], {}
    for i in range(len(train)):
        ev = train.events(i)
        assert ev.dtype == DVS_DTYPE
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].max() <= 33 and ev["y"].max() <= 33 and set(np.unique(ev["p"])) <= {0, 1}
        assert 290_000 <= train.duration_us(i) <= 340_000 and train.duration_us(i) > ev["t"][-1]
        counts.append(len(ev))
        per_class[train.label(i)] = per_class.get(train.label(i), 0) + 1
    counts = np.array(counts)
    assert 1_100 <= counts.min() and counts.max() <= 7_200
    assert 3_800 <= np.median(counts) <= 4_600
    assert sorted(per_class) == list(train.classes)
    assert all(87 <= n <= 117 for n in per_class.values())


def test_labels_come_from_the_folder(train: NMNISTDataset) -> None:
    for i in (0, 250, 999):
        assert Path(train.path(i)).parent.name == train.label(i)
    assert train.labels == sorted(train.labels)  # digit-major order


def test_protocol_and_entry_point(train: NMNISTDataset, real_data: Path) -> None:
    assert isinstance(train, Dataset)
    assert (train.name, train.modality, train.layout) == ("nmnist", "vision", "dvs")
    assert train.sensor_size == (34, 34, 2) and len(train.classes) == 10
    cls = load(SOURCE_GROUP, "nmnist")
    assert cls is NMNISTDataset
    assert len(cls(real_data / "nmnist", limit=20)) == 20


def test_limit_is_class_balanced_and_ordered(nmnist_root: Path) -> None:
    ds = NMNISTDataset(nmnist_root, limit=30)
    assert len(ds) == 30 and sorted(ds.labels) == ds.labels
    assert {ds.labels.count(c) for c in ds.classes} == {3}
    ds2 = NMNISTDataset(nmnist_root, limit=30, on_error="skip")
    assert ds2.labels == ds.labels and [ds2.path(i) for i in range(30)] == [ds.path(i) for i in range(30)]


def test_write_read_round_trip_is_byte_exact(train: NMNISTDataset, tmp_path: Path) -> None:
    for i in (0, 500, 999):
        src = Path(train.path(i))
        ev = read_bin(src)
        out = tmp_path / f"{i}.bin"
        write_bin(out, ev)
        assert out.read_bytes() == src.read_bytes()
        np.testing.assert_array_equal(read_bin(out), ev)


def test_overflow_marker_rule_on_a_synthetic_file(tmp_path: Path) -> None:
    f = tmp_path / "ovf.bin"
    data = _rec(1, 2, 1, 100) + _rec(0, 240, 0, 0) + _rec(3, 4, 0, 50) + _rec(0, 240, 0, 0) \
        + _rec(0, 240, 0, 0) + _rec(5, 6, 1, 7)
    f.write_bytes(data)
    ev = read_bin(f)
    assert ev["t"].tolist() == [100, 50 + OVERFLOW_US, 7 + 3 * OVERFLOW_US]
    assert ev["x"].tolist() == [1, 3, 5] and ev["y"].tolist() == [2, 4, 6]
    assert ev["p"].tolist() == [1, 0, 1]


def test_writer_uses_markers_past_23_bits(tmp_path: Path) -> None:
    ts = np.array([0, 5, (1 << 23) - 1, 1 << 23, (1 << 23) + 100_000, 3 << 23])
    ev = _events(ts)
    f = tmp_path / "long.bin"
    write_bin(f, ev)
    np.testing.assert_array_equal(read_bin(f), ev)
    raw = np.frombuffer(f.read_bytes(), np.uint8).reshape(-1, 5)
    assert (raw[:, 1] == 240).sum() > 0


def test_writer_refuses_unrepresentable_events(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="y == 240"):
        write_bin(tmp_path / "a.bin", _events([1], ys=[240]))
    with pytest.raises(DataError, match="negative"):
        write_bin(tmp_path / "b.bin", _events([-1]))
    with pytest.raises(DataError, match="x must lie"):
        write_bin(tmp_path / "c.bin", _events([1], xs=[300]))
    with pytest.raises(DataError, match="t, x, y, p"):
        write_bin(tmp_path / "d.bin", np.zeros(3))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("content", "offset", "match"), [
    (b"", 0, "empty"),
    (_rec(1, 1, 0, 10) + b"\x01\x02", 5, "truncated"),
    (_rec(1, 1, 0, 10) + _rec(1, 1, 0, 5), 5, "backwards"),
    (_rec(1, 1, 0, 10) + _rec(1, 240, 0, 0), 0, "only overflow markers|no events"),
    (_rec(1, 1, 0, 10) + _rec(0, 240, 0, 0) + _rec(40, 1, 0, 5), 10, "outside"),
])
def test_corrupt_files_name_file_and_byte(tmp_path: Path, content: bytes, offset: int, match: str) -> None:
    f = tmp_path / "bad.bin"
    f.write_bytes(content)
    if match == "only overflow markers|no events":
        f.write_bytes(_rec(0, 240, 0, 0) * 2)
    with pytest.raises(DataError, match=match) as info:
        read_bin(f, sensor=(34, 34))
    assert info.value.path == str(f) and info.value.offset == offset
    assert str(f) in str(info.value) and f"byte {offset}" in str(info.value)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read") as info:
        read_bin(tmp_path / "nope.bin")
    assert "nope.bin" in str(info.value)


def test_sort_option_orders_backwards_file(tmp_path: Path) -> None:
    f = tmp_path / "b.bin"
    f.write_bytes(_rec(1, 1, 0, 10) + _rec(2, 2, 0, 5))
    assert read_bin(f, sort=True)["t"].tolist() == [5, 10]


def _mini_root(tmp_path: Path) -> Path:
    root = tmp_path / "nm"
    for d, n in (("0", 3), ("1", 2)):
        (root / "Train" / d).mkdir(parents=True)
        for k in range(n):
            write_bin(root / "Train" / d / f"{k + 1}.bin", _events([10, 20, 30 + k]))
    return root


def test_skip_records_bad_files_and_raise_stops(tmp_path: Path) -> None:
    root = _mini_root(tmp_path)
    (root / "Train" / "0" / "2.bin").write_bytes(b"\x01\x02\x03")
    (root / "Train" / "1" / "10.bin").write_bytes(b"")
    ds = NMNISTDataset(root, on_error="skip")
    assert len(ds) == 4 and ds.labels == ["0", "0", "1", "1"]
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["10.bin", "2.bin"]
    assert all("byte" in why for _, why in ds.skipped)
    assert "2 skipped" in repr(ds)
    strict = NMNISTDataset(root)  # lazy: the error comes when the bad sample is read
    assert len(strict) == 6 and strict.skipped == []
    names = [Path(strict.path(i)).name for i in range(6)]
    assert names == ["1.bin", "2.bin", "3.bin", "1.bin", "2.bin", "10.bin"]
    with pytest.raises(DataError, match="truncated"):
        strict.events(1)


def test_dataset_options_are_validated(tmp_path: Path) -> None:
    root = _mini_root(tmp_path)
    with pytest.raises(ConfigError, match="split"):
        NMNISTDataset(root, split="val")
    with pytest.raises(ConfigError, match="on_error"):
        NMNISTDataset(root, on_error="ignore")
    with pytest.raises(ConfigError, match="limit"):
        NMNISTDataset(root, limit=-1)
    with pytest.raises(DataError, match="Test"):
        NMNISTDataset(root, split="test")
    (root / "Test" / "3").mkdir(parents=True)
    with pytest.raises(DataError, match="no <class>"):
        NMNISTDataset(root, split="test")
    assert len(NMNISTDataset(root, split="test", limit=0)) == 0


def test_samples_iterates_with_durations(tmp_path: Path) -> None:
    ds = NMNISTDataset(_mini_root(tmp_path))
    out = list(ds.samples())
    assert [(len(ev), dur, lab, i) for ev, dur, lab, i in out][:2] == [(3, 1000, "0", 0), (3, 1000, "0", 1)]


def test_helpers() -> None:
    assert sorted(["10.bin", "2.bin", "1.bin"], key=natural_key) == ["1.bin", "2.bin", "10.bin"]
    assert round_duration(None) == 1000 and round_duration(999) == 1000 and round_duration(1000) == 2000
    assert balanced_limit(["a", "a", "a", "b"], 2) == [0, 3]
    assert balanced_limit(["a", "b"], None) == [0, 1]
