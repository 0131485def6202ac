"""NAS / jAER .aedat reader on the four real recordings, synthetic headers and corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlsm_sources.aedat import (
    NASDataset,
    file_options,
    parse_header,
    read_aedat,
    write_aedat,
)

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import COCHLEA_DTYPE
from streamlsm.plugins import SOURCE_GROUP, Dataset, load

# file -> (events, channels, ears, last t in us)
REAL = {
    "130Hz_mono_64ch_ONOFF_addr2b_ts02.aedat": (331_949, 64, 1, 496_680),
    "523Hz_stereo_64ch_ONOFF_addr2b_ts02.aedat": (692_921, 64, 2, 496_097),
    "enun_stereo_64ch_ONOFF_addr4b_ts1.aedat": (428_635, 64, 2, 13_741_184),
    "sound_mono_32ch_ONOFF_addr2b_ts02.aedat": (49_864, 32, 1, 1_259_341),
}


@pytest.fixture(scope="module")
def nas_root(real_file) -> Path:
    return real_file("nas_cochlea")


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_parse(nas_root: Path, name: str) -> None:
    n, channels, ears, last = REAL[name]
    ev = read_aedat(nas_root / name)
    assert ev.dtype == COCHLEA_DTYPE and len(ev) == n
    assert 50_000 * 0.99 <= n <= 690_000 * 1.01
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"][-1] == last
    assert ev["x"].min() >= 0 and ev["x"].max() < channels
    assert set(np.unique(ev["p"])) == {0, 1}
    split = read_aedat(nas_root / name, stereo="split", on_off="split")
    assert split["x"].max() < 2 * channels * ears
    np.testing.assert_array_equal(split["t"], ev["t"])
    np.testing.assert_array_equal(split["x"] // 2 % channels, ev["x"])
    if ears == 2:
        assert (split["x"] >= 2 * channels).any()  # the right ear is there, offset
    else:
        assert split["x"].max() < 2 * channels


def test_stereo_split_and_on_off_mapping(tmp_path: Path) -> None:
    f = tmp_path / "x_stereo_4ch_addr2b_ts1.aedat"
    addr = np.array([0, 1, 2, 7, 8, 15])  # ear0 ch0 p0/p1, ear0 ch1 p0, ear0 ch3 p1, ear1 ch0, ear1 ch3 p1
    write_aedat(f, addr, np.arange(6) * 10)
    fold = read_aedat(f)
    assert fold["x"].tolist() == [0, 0, 1, 3, 0, 3] and fold["p"].tolist() == [0, 1, 0, 1, 0, 1]
    assert read_aedat(f, stereo="split")["x"].tolist() == [0, 0, 1, 3, 4, 7]
    assert read_aedat(f, on_off="split")["x"].tolist() == [0, 1, 2, 7, 0, 7]
    assert read_aedat(f, stereo="split", on_off="split")["x"].tolist() == addr.tolist()
    assert read_aedat(f, on_off="drop")["p"].tolist() == [0] * 6
    assert fold["t"].tolist() == [0, 10, 20, 30, 40, 50]


def test_header_and_options(tmp_path: Path) -> None:
    f = tmp_path / "rec.aedat"  # nothing in the name: the header says 4-byte addresses
    write_aedat(f, np.array([3, 5]), np.array([10, 25]), addr_bytes=4)
    length, lines = parse_header(f.read_bytes())
    assert lines[0] == "#!AER-DAT2.0" and lines[-1] == "#End Of ASCII Header" and length == 60
    with pytest.raises(ConfigError, match="channels"):
        read_aedat(f)
    ev = read_aedat(f, channels=4, tick_us=0.2)
    assert ev["x"].tolist() == [1, 2] and ev["t"].tolist() == [2, 5]
    plain = tmp_path / "rec2.aedat"
    write_aedat(plain, np.array([3]), np.array([1]), header=False)
    with pytest.raises(DataError, match="address width") as info:
        read_aedat(plain, channels=4)
    assert info.value.offset == 0
    with pytest.raises(ConfigError, match="addr_bytes"):
        read_aedat(plain, channels=4, addr_bytes=3)
    assert len(read_aedat(plain, channels=4, addr_bytes=2)) == 1
    with pytest.raises(ConfigError, match="stereo"):
        read_aedat(plain, stereo="both")


def test_file_options() -> None:
    assert file_options("a/130Hz_mono_64ch_ONOFF_addr2b_ts02.aedat") == {
        "addr_bytes": 2, "tick_us": 0.2, "channels": 64, "ears": 1}
    assert file_options("enun_stereo_64ch_ONOFF_addr4b_ts1.aedat") == {
        "addr_bytes": 4, "tick_us": 1.0, "channels": 64, "ears": 2}
    assert file_options("plain.aedat") == {}


def test_timestamp_wrap_is_unwrapped(tmp_path: Path) -> None:
    f = tmp_path / "w_mono_2ch_addr2b_ts1.aedat"
    write_aedat(f, np.array([0, 1, 2]), np.array([(1 << 32) - 10, (1 << 32) - 1, 5]))
    assert read_aedat(f)["t"].tolist() == [(1 << 32) - 10, (1 << 32) - 1, (1 << 32) + 5]


@pytest.mark.parametrize(("addr", "ticks", "tail", "offset", "match"), [
    ([], [], b"", 60, "empty"),                 # the header written is 60 bytes
    ([1], [0], b"\x00\x01", 66, "truncated"),
    ([1, 2], [9, 3], b"", 66, "backwards"),
    ([1, 4], [1, 2], b"", 66, "address 4"),
])
def test_corrupt_files_name_file_and_byte(tmp_path: Path, addr, ticks, tail, offset, match) -> None:
    f = tmp_path / "c_mono_2ch_addr2b_ts1.aedat"
    write_aedat(f, np.array(addr, dtype=np.int64), np.array(ticks, dtype=np.int64))
    f.write_bytes(f.read_bytes() + tail)
    with pytest.raises(DataError, match=match) as info:
        read_aedat(f)
    assert info.value.offset == offset and str(f) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_aedat(tmp_path / "none_mono_2ch_addr2b_ts1.aedat")


def test_dataset_lists_the_four_files(nas_root: Path, real_data: Path) -> None:
    ds = load(SOURCE_GROUP, "nas")(real_data)  # the data root: finds nas_cochlea/
    assert isinstance(ds, NASDataset) and isinstance(ds, Dataset)
    assert (ds.name, ds.modality, ds.layout) == ("nas", "audio", "cochlea")
    assert len(ds) == 4 and ds.classes == () and ds.label(0) is None
    assert [Path(ds.path(i)).name for i in range(4)] == sorted(REAL)
    assert ds.sensor_size == (64,)
    assert ds.stem(3) == "sound_mono_32ch_ONOFF_addr2b_ts02"
    assert ds.duration_us(3) == 1_260_000
    assert NASDataset(nas_root, stereo="split", on_off="split").sensor_size == (256,)


def test_dataset_skip_policy(tmp_path: Path) -> None:
    write_aedat(tmp_path / "good_mono_2ch_addr2b_ts1.aedat", np.array([1, 2]), np.array([1, 2]))
    (tmp_path / "bad_mono_2ch_addr2b_ts1.aedat").write_bytes(b"\x00\x01\x02")
    ds = NASDataset(tmp_path, on_error="skip")
    assert len(ds) == 1 and len(ds.skipped) == 1 and "bad_mono" in ds.skipped[0][0]
    strict = NASDataset(tmp_path)
    assert len(strict) == 2
    with pytest.raises(DataError, match="truncated"):
        strict.events(0)
    with pytest.raises(DataError, match="no .aedat"):
        NASDataset(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    write_aedat(tmp_path / "plain" / "rec.aedat", np.array([1, 2]), np.array([1, 2]))
    with pytest.raises(ConfigError, match="channel count"):  # not a (0,) sensor
        NASDataset(tmp_path / "plain")
    assert NASDataset(tmp_path / "plain", channels=4).sensor_size == (4,)
