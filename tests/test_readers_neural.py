"""Neural readers: auditory-cortex CSVs, STN .mat, the spike table, binned counts -> events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from streamlsm_sources.neural import (
    AuditoryCortexDataset,
    SpikeTableDataset,
    STNDataset,
    counts_to_events,
    read_auditory_cortex,
    read_spike_table,
    read_stn,
    write_spike_table,
)

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import SPIKES_DTYPE
from streamlsm.plugins import SOURCE_GROUP, Dataset, load

# session -> (trials, cells, spikes, (train, val, test))
SESSIONS = {
    "D_A_I": (1800, 50, 382_668, (1440, 180, 180)),
    "D_A_II": (1800, 37, 90_467, (1440, 180, 180)),
    "D_A_III": (1800, 5, 90_515, (1440, 180, 180)),
    "D_E_I": (3618, 51, 184_001, (2880, 360, 378)),
}


@pytest.fixture(scope="module")
def ac_dir(real_file) -> Path:
    return real_file("neural", "auditory_cortex")


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_auditory_cortex_sessions(ac_dir: Path, session: str) -> None:
    n, cells, spikes, split = SESSIONS[session]
    tr = read_auditory_cortex(ac_dir / f"{session}.csv")
    assert len(tr.events) == n and tr.n_units == cells and tr.skipped == []
    assert sum(len(e) for e in tr.events) == spikes
    assert [tr.roles.count(r) for r in ("train", "val", "test")] == list(split)
    assert sorted(set(tr.labels), key=int) == [str(i) for i in range(1, 19)]
    for ev in tr.events[:50]:
        assert ev.dtype == SPIKES_DTYPE and np.all(np.diff(ev["t"]) > 0)  # at most one spike per bin
        assert (ev["t"] % 1000 == 0).all() and (ev["t"] < 500_000).all()
        assert (ev["x"] >= 0).all() and (ev["x"] < cells).all()


def test_columns_are_read_by_header_name(ac_dir: Path, tmp_path: Path) -> None:
    """D_E_I puts sound_ID/role first; reordering any file's columns changes nothing."""
    src = ac_dir / "D_A_III.csv"
    lines = src.read_text().splitlines()[:40]
    rows = [ln.split(",") for ln in lines]
    order = [500, 501, *range(499, -1, -1)]  # sound_ID, role, then the bins reversed
    moved = tmp_path / "moved.csv"
    moved.write_text("\n".join(",".join(r[i] for i in order) for r in rows) + "\n")
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join(lines) + "\n")
    a, b = read_auditory_cortex(cut), read_auditory_cortex(moved)
    assert a.labels == b.labels and a.roles == b.roles and len(a.events) == 39
    for x, y in zip(a.events, b.events, strict=True):
        np.testing.assert_array_equal(x, y)


def test_row_by_row_path_equals_the_fast_path(ac_dir: Path, tmp_path: Path) -> None:
    lines = (ac_dir / "D_A_II.csv").read_text().splitlines()[:60]
    fast = tmp_path / "fast.csv"
    fast.write_text("\n".join(lines) + "\n")
    slow = tmp_path / "slow.csv"  # a "0.0" cell and a blank line force the row-by-row parser
    first = lines[1].split(",")
    first[0] = "0.0" if first[0] == "0" else first[0] + ".0"
    slow.write_text("\n".join([lines[0], ",".join(first), "", *lines[2:]]) + "\n")
    a, b = read_auditory_cortex(fast), read_auditory_cortex(slow)
    assert a.labels == b.labels and a.n_units == b.n_units
    assert a.where[5].endswith(":row 7") and b.where[5].endswith(":row 8")
    for x, y in zip(a.events, b.events, strict=True):
        np.testing.assert_array_equal(x, y)


def _ac_file(tmp_path: Path, bad: str) -> Path:
    header = [str(i) for i in range(500)] + ["sound_ID", "role"]
    good = ["0"] * 500 + ["3", "train"]
    good[10] = "2"
    rows = [header, good, list(good), list(good)]
    if bad == "role":
        rows[2][-1] = "holdout"
    elif bad == "short":
        rows[2] = rows[2][:-1]
    elif bad == "text":
        rows[2][7] = "x"
    elif bad == "negative":
        rows[2][7] = "-1"
    f = tmp_path / f"{bad}.csv"
    f.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return f


@pytest.mark.parametrize("bad", ["role", "short", "text", "negative"])
def test_bad_rows_name_the_row(tmp_path: Path, bad: str) -> None:
    f = _ac_file(tmp_path, bad)
    with pytest.raises(DataError) as info:
        read_auditory_cortex(f)
    assert info.value.row == 3 and str(f) in str(info.value) and "row 3" in str(info.value)
    tr = read_auditory_cortex(f, on_error="skip")
    assert len(tr.events) == 2 and tr.skipped[0][0] == f"{f}:row 3"
    ds = AuditoryCortexDataset(f, on_error="skip")
    assert len(ds) == 2 and len(ds.skipped) == 1 and ds.sensor_size == (2,)
    assert ds.events(0)["t"].tolist() == [10_000] and ds.events(0)["x"].tolist() == [1]


def test_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_auditory_cortex(empty)
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="sound_ID|lacks") as info:
        read_auditory_cortex(nohead)
    assert info.value.row == 1
    only = tmp_path / "only.csv"
    only.write_text(",".join([str(i) for i in range(500)] + ["sound_ID", "role"]) + "\n")
    with pytest.raises(DataError, match="no trials"):
        read_auditory_cortex(only)
    with pytest.raises(DataError, match="cannot read"):
        read_auditory_cortex(tmp_path / "missing.csv")


def test_auditory_cortex_dataset(real_data: Path, ac_dir: Path) -> None:
    ds = load(SOURCE_GROUP, "auditory-cortex")(real_data)  # data root: first session
    assert isinstance(ds, AuditoryCortexDataset) and isinstance(ds, Dataset)
    assert (ds.name, ds.modality, ds.layout) == ("auditory-cortex", "neural", "spikes")
    assert ds.session == "D_A_I" and len(ds) == 1800 and ds.sensor_size == (50,)
    assert ds.classes == tuple(str(i) for i in range(1, 19))
    assert ds.duration_us(0) == 500_000
    test = AuditoryCortexDataset(ac_dir, role="test", session="D_E_I")
    assert len(test) == 378 and {test.role_of(i) for i in range(len(test))} == {"test"}
    assert test.sensor_size == (51,) and test.path(0).startswith(str(ac_dir / "D_E_I.csv"))
    small = AuditoryCortexDataset(ac_dir / "D_A_III.csv", role="train", limit=36)
    assert len(small) == 36 and sorted(set(small.labels), key=int) == list(small.classes)
    with pytest.raises(ConfigError, match="role"):
        AuditoryCortexDataset(ac_dir, role="dev")
    with pytest.raises(ConfigError, match="session"):
        AuditoryCortexDataset(ac_dir, session="D_Z")


def test_stn(real_data: Path, real_file, tmp_path: Path) -> None:
    mat = real_file("neural", "stn", "10_spikes-1.mat")
    tr = read_stn(mat)
    assert len(tr.events) == 50 and tr.n_units == 1
    assert sum(len(e) for e in tr.events) == 4696
    raw = scipy.io.loadmat(mat)
    assert [len(e) for e in tr.events] == raw["train"].sum(axis=1).tolist()
    ds = load(SOURCE_GROUP, "stn")(real_data)
    assert isinstance(ds, STNDataset) and isinstance(ds, Dataset)
    assert len(ds) == 50 and ds.classes == ("0", "1") and ds.sensor_size == (1,)
    assert ds.labels == [str(d) for d in raw["direction"].ravel()]
    assert ds.labels.count("0") == 25 and ds.duration_us(0) == 2_000_000
    assert (ds.events(0)["t"] < 2_000_000).all()
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(bad, {"train": np.zeros((3, 10)), "direction": np.array([0, 1, 2])})
    with pytest.raises(DataError, match="direction") as info:
        read_stn(bad)
    assert info.value.row == 2
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="cannot read"):
        read_stn(junk)


def test_counts_to_events_is_deterministic_and_inside_bins() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.5, size=(200, 12))
    a = counts_to_events(counts, 10_000, seed=7)
    b = counts_to_events(counts, 10_000, seed=7)
    c = counts_to_events(counts, 10_000, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a["t"], c["t"])
    assert len(a) == counts.sum() and a.dtype == SPIKES_DTYPE
    assert np.all(np.diff(a["t"]) >= 0)
    back = np.zeros_like(counts)
    np.add.at(back, (a["t"] // 10_000, a["x"]), 1)
    np.testing.assert_array_equal(back, counts)  # every spike stays in its own bin and unit
    one = counts_to_events(np.array([[4]]), 1000, seed=0)["t"]
    assert [v // 250 for v in one] == [0, 1, 2, 3]  # evenly spread: one per quarter bin
    assert len(counts_to_events(np.zeros((5, 3), int), 1000)) == 0
    with pytest.raises(DataError) as info:
        counts_to_events(np.array([[1, 0], [0, -1]]), 1000)
    assert info.value.row == 1
    with pytest.raises(ConfigError, match="bin_us"):
        counts_to_events(counts, 0)


def _table(tmp_path: Path, name: str) -> Path:
    t = np.array([5, 1_000, 1_500, 2_100, 9_000, 9_500, 12_000, 400])
    u = np.array([0, 1, 3, 1, 2, 0, 1, 2])
    return write_spike_table(tmp_path / name, t, u, t_start_us=[0, 1_000, 9_000],
                             t_end_us=[1_000, 3_000, 12_000], labels=["a", "b", None],
                             trial=["t0", "t1", "t2"])


@pytest.mark.parametrize("name", ["table.npz", "table_dir"])
def test_spike_table_round_trip(tmp_path: Path, name: str) -> None:
    ds = load(SOURCE_GROUP, "spike-table")(_table(tmp_path, name))
    assert isinstance(ds, SpikeTableDataset) and isinstance(ds, Dataset)
    assert (ds.modality, ds.layout, ds.sensor_size) == ("neural", "spikes", (4,))
    assert ds.classes == ("a", "b") and ds.labels == ["a", "b", None]
    assert ds.events(0).tolist() == [(5, 0), (400, 2)]  # sorted by time on reading
    assert ds.events(1).tolist() == [(0, 1), (500, 3), (1_100, 1)]
    assert ds.events(2).tolist() == [(0, 2), (500, 0)]  # t_end is exclusive
    assert [ds.duration_us(i) for i in range(3)] == [1_000, 2_000, 3_000]
    assert ds.path(1).endswith(":trial t1")


def test_spike_table_from_binned_counts(tmp_path: Path) -> None:
    counts = np.array([[1, 0], [2, 1], [0, 0], [0, 3]])
    f = tmp_path / "binned.npz"
    np.savez(f, counts=counts, bin_us=np.int64(10_000), t_start_us=[0, 20_000],
             t_end_us=[20_000, 40_000], label=np.array(["x", "y"]))
    ds = SpikeTableDataset(f, seed=1)
    assert [len(ds.events(i)) for i in range(2)] == [4, 3]
    np.testing.assert_array_equal(ds.events(1), SpikeTableDataset(f, seed=1).events(1))
    assert (ds.events(1)["t"] >= 10_000).all() and (ds.events(1)["x"] == 1).all()
    assert ds.sensor_size == (2,)


def test_spike_table_n_units(tmp_path: Path) -> None:
    f = write_spike_table(tmp_path / "n.npz", [1, 2], [0, 3], [0], [10], ["a"], n_units=192)
    assert SpikeTableDataset(f).sensor_size == (192,)
    f = write_spike_table(tmp_path / "m.npz", [1, 2], [0, 3], [0], [10], ["a"], n_units=2)
    with pytest.raises(DataError, match="n_units"):
        SpikeTableDataset(f)


def test_spike_table_errors(tmp_path: Path) -> None:
    d = _table(tmp_path, "bad")
    text = (d / "trials.csv").read_text().splitlines()
    text[2] = "t1,3000,1000,b"  # ends before it starts
    (d / "trials.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match="t_end_us") as info:
        SpikeTableDataset(d)
    assert info.value.row == 3 and "trials.csv" in str(info.value)
    ds = SpikeTableDataset(d, on_error="skip")
    assert len(ds) == 2 and ds.skipped[0][0].endswith("trials.csv:row 3")
    sp = (d / "spikes.csv").read_text().splitlines()
    sp[4] = "12.5,1"
    (d / "spikes.csv").write_text("\n".join(sp) + "\n")
    with pytest.raises(DataError, match="t_us") as info:
        read_spike_table(d)
    assert info.value.row == 5
    sp[4] = "12,-3"
    (d / "spikes.csv").write_text("\n".join(sp) + "\n")
    with pytest.raises(DataError, match="negative") as info:
        read_spike_table(d)
    assert info.value.row == 5
    (d / "spikes.csv").write_text("t_us,neuron\n1,2\n")
    with pytest.raises(DataError, match="unit") as info:
        read_spike_table(d)
    assert info.value.row == 1
    npz = tmp_path / "x.npz"
    np.savez(npz, t_us=[1, 2], unit=[0, 1])
    with pytest.raises(DataError, match="t_start_us"):
        read_spike_table(npz)
    np.savez(npz, t_us=[1, 2], unit=[0, 1], t_start_us=[0], t_end_us=[5],
             label=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickle"):
        read_spike_table(npz)


def test_cell_ids_beyond_int16_and_corrupt_npz(tmp_path: Path) -> None:
    f = _ac_file(tmp_path, "none")
    lines = f.read_text().splitlines()
    lines[2] = lines[2].replace("0,", "70000,", 1)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="32767") as info:
        read_auditory_cortex(f)
    assert info.value.row == 3
    npz = _table(tmp_path, "t.npz")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(DataError, match="cannot read as npz"):
        read_spike_table(npz)
    d = _table(tmp_path, "d")
    (d / "spikes.csv").write_text("t_us,unit\n1,0\n1e300,1\n")
    with pytest.raises(DataError, match="not an integer") as info:
        read_spike_table(d)
    assert info.value.row == 3
