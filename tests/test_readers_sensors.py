"""Real event-camera files (AEDAT 4, Prophesee EVT 3.0 / EVT 2.0 RAW, DAT): exact decoding, chunked
reading equal to whole reading, replay and `data info` on them, corrupt files as clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamlsm.cli import main
from streamlsm.errors import DataError
from streamlsm.events import DVS_DTYPE
from streamlsm.plugins import SOURCE_GROUP, Dataset, load
from streamlsm.stream.replay import ReplayConfig, schedule, split_sample

pytestmark = pytest.mark.realdata

expelliarmus = pytest.importorskip(
    "expelliarmus", reason="Prophesee RAW/DAT need the optional extra: pip install 'streamlsm[sensors]'")
aedat = pytest.importorskip(
    "aedat", reason="AEDAT 4 needs the optional extra: pip install 'streamlsm[sensors]'")

from streamlsm_sources.aedat4 import AEDAT4Dataset, read_aedat4  # noqa: E402
from streamlsm_sources.prophesee import (  # noqa: E402
    DATDataset,
    EVT2Dataset,
    EVT3Dataset,
    ProphRawDataset,
    read_header,
    read_prophesee,
)


@pytest.fixture(scope="module")
def sensors(real_file) -> Path:
    return real_file("sensors")


def _same(a: np.ndarray, b: np.ndarray, fields=("t", "x", "y", "p")) -> bool:
    return len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in fields)


# -- slow, obvious references written from the vendor's format description -----------------------
def _evt2_reference(path: Path) -> np.ndarray:
    """EVT 2.0: 32-bit words, type in bits 31..28 (0 CD_OFF, 1 CD_ON, 8 EVT_TIME_HIGH); a CD event
    holds time-low (27..22), x (21..11), y (10..0); TIME_HIGH holds bits 33..6 of the time."""
    size, _ = read_header(path)
    w = np.frombuffer(path.read_bytes()[size:], dtype="<u4")
    kind = w >> 28
    last = np.maximum.accumulate(np.where(kind == 8, np.arange(len(w)), -1))  # latest TIME_HIGH
    high = np.where(last >= 0, (w[np.maximum(last, 0)] & 0x0FFFFFFF).astype(np.int64), 0)
    cd = kind <= 1
    out = np.zeros(int(cd.sum()), DVS_DTYPE)
    out["t"] = (high[cd] << 6) | ((w[cd] >> 22) & 0x3F)
    out["x"] = (w[cd] >> 11) & 0x7FF
    out["y"] = w[cd] & 0x7FF
    out["p"] = kind[cd]
    return out


def _dat_reference(path: Path) -> np.ndarray:
    """DAT: header, then event type and size bytes, then 8-byte events: uint32 t, uint32 with x in
    bits 0..13, y in 14..27, polarity in 28..31."""
    size, _ = read_header(path)
    raw = np.frombuffer(path.read_bytes()[size + 2:], dtype="<u4").reshape(-1, 2)
    out = np.zeros(len(raw), DVS_DTYPE)
    out["t"] = raw[:, 0]
    out["x"] = raw[:, 1] & 0x3FFF
    out["y"] = (raw[:, 1] >> 14) & 0x3FFF
    out["p"] = raw[:, 1] >> 28
    return out


# -- exact decoding ---------------------------------------------------------------------------------
def test_evt3_reader_gives_exactly_the_independently_decoded_array(sensors):
    ref = np.load(sensors / "evt3_sample_decoded.npy")
    assert len(ref) == 219_596
    got = read_prophesee(sensors / "evt3_sample.raw")
    assert _same(got, ref)
    for chunk in (1_000, 65_536, 1 << 20):  # the dataset: any chunk size, times from the first event
        ds = EVT3Dataset(sensors / "evt3_sample.raw", chunk_events=chunk)
        ev = ds.events(0)
        assert ev.dtype == DVS_DTYPE and ev["t"][0] == 0
        shifted = ev.copy()
        shifted["t"] += ds.t0_us(0)
        assert _same(shifted, ref)
    assert ds.sensor_size == (1280, 720, 2)  # the header's gen41 plugin (ref x max 1279, y 719)


def test_evt2_and_dat_match_a_reference_decoder_written_from_the_format(sensors):
    ev2 = read_prophesee(sensors / "evt2_sample.raw")
    ref2 = _evt2_reference(sensors / "evt2_sample.raw")
    assert len(ref2) == 539_481 and _same(ev2, ref2)
    dat = read_prophesee(sensors / "ncars_sample.dat")
    refd = _dat_reference(sensors / "ncars_sample.dat")
    assert len(refd) == 2_009 and _same(dat, refd)
    ds = EVT2Dataset(sensors / "evt2_sample.raw", chunk_events=10_000)
    assert ds.sensor_size == (640, 480, 2)  # gen3 plugin
    got = ds.events(0)
    assert int(got["t"][0]) == 0 and np.array_equal(got["t"] + ds.t0_us(0), ref2["t"])
    d = DATDataset(sensors / "ncars_sample.dat")
    assert d.sensor_size == (int(refd["x"].max()) + 1, int(refd["y"].max()) + 1, 2)  # no size in header


def test_aedat4_reader_gives_the_decoder_events_in_chunks(sensors):
    path = sensors / "dvs_sample.aedat4"
    whole = read_aedat4(path)
    assert len(whole) == 111_954
    dec = aedat.Decoder(str(path))  # the decoder's packets, straight
    packets = [p["events"] for p in dec if "events" in p]
    ref = np.concatenate(packets)
    assert _same(whole, ref, ("t", "x", "y")) and np.array_equal(whole["on"], ref["on"])
    for chunk in (1, 5_000, 1 << 20):
        ds = AEDAT4Dataset(path, chunk_events=chunk)
        ev = ds.events(0)
        assert ds.sensor_size == (320, 240, 2)
        assert np.array_equal(ev["t"] + ds.t0_us(0), ref["t"].astype(np.int64))
        assert np.array_equal(ev["p"], ref["on"].astype(np.int8))
        assert np.array_equal(ev["x"], ref["x"]) and np.array_equal(ev["y"], ref["y"])


def test_plugins_are_registered_and_follow_the_dataset_protocol(sensors):
    for name, file in (("aedat4", "dvs_sample.aedat4"), ("evt3", "evt3_sample.raw"),
                       ("evt2", "evt2_sample.raw"), ("prophesee-raw", "evt3_sample.raw"),
                       ("prophesee-dat", "ncars_sample.dat")):
        ds = load(SOURCE_GROUP, name)(sensors / file)
        assert isinstance(ds, Dataset) and len(ds) == 1 and ds.layout == "dvs"
        ev, label = ds[0]
        assert label is None and len(ev) > 0 and ds.duration_us(0) > int(ev["t"][-1])


def test_a_folder_of_recordings_is_labelled_by_subfolder(sensors, tmp_path):
    for label in ("cars", "background"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.dat").symlink_to((sensors / "ncars_sample.dat").resolve())
    ds = DATDataset(tmp_path)
    assert len(ds) == 2 and ds.labels == ["background", "cars"] and ds.classes == ("background", "cars")


# -- streaming with bounded memory ------------------------------------------------------------------
@pytest.mark.parametrize("packet_us", [1000, 700, 5000])
def test_chunked_replay_equals_replaying_the_whole_recording(sensors, packet_us):
    ds = EVT3Dataset(sensors / "evt3_sample.raw", chunk_events=3_000)  # ~73 chunks
    cfg = ReplayConfig(packet_us=packet_us, speed="max")
    got = list(schedule(ds, "cam", cfg))
    whole = list(split_sample(ds.events(0), ds.duration_us(0), cfg))
    assert len(got) == len(whole) > 10
    for (due, pkt), (t0, t1, ev) in zip(got, whole, strict=True):
        assert (pkt.t_start, pkt.t_end, due) == (t0, t1, t1) and _same(pkt.events, ev)
    assert [p.seq for _, p in got] == list(range(len(got)))
    assert [p.sample_begin for _, p in got].count(True) == 1 and got[0][1].sample_begin
    assert [p.sample_end for _, p in got].count(True) == 1 and got[-1][1].sample_end
    assert sum(len(p.events) for _, p in got) == 219_596


def test_chunks_are_bounded_by_chunk_events(sensors):
    ds = EVT2Dataset(sensors / "evt2_sample.raw", chunk_events=4_096)
    sizes = [len(c) for c in ds.chunks(0)]
    assert sum(sizes) == 539_481 and len(sizes) > 100
    assert max(sizes) <= 4_096 + 12  # expelliarmus may end a chunk inside an EVT vector


# -- the command line -------------------------------------------------------------------------------
def test_data_info_knows_camera_files(sensors, capsys):
    for file, want in (("evt3_sample.raw", "EVT3Dataset"), ("evt2_sample.raw", "EVT2Dataset"),
                       ("dvs_sample.aedat4", "AEDAT4Dataset"), ("ncars_sample.dat", "DATDataset")):
        assert main(["data", "info", str(sensors / file)]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{want}: 1 samples, layout dvs"), out


def test_replay_evt3_file_over_zeromq(sensors, capsys):
    from test_cli_replay import finish, start_subscriber

    n_packets = 54  # 54 ms of recording in 1 ms packets
    proc, endpoint = start_subscriber("--quiet", "--count", str(n_packets))
    try:
        rc = main(["replay", "evt3", "--root", str(sensors / "evt3_sample.raw"), "--endpoint",
                   endpoint, "--connect", "--speed", "max", "-o", "chunk_events=10000"])
    finally:
        _lines, summary = finish(proc)
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["events"] == 219_596 and report["sent"] == n_packets and report["dropped"] == 0
    assert summary["events"] == 219_596 and summary["packets"] == n_packets and summary["gaps"] == 0


# -- bad files --------------------------------------------------------------------------------------
def test_bad_files_are_clear_errors(sensors, tmp_path):
    body = (sensors / "evt3_sample.raw").read_bytes()
    size, _ = read_header(sensors / "evt3_sample.raw")
    garbage = tmp_path / "garbage.raw"
    garbage.write_bytes(body[:size] + bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8)))
    with pytest.raises(DataError, match="garbage.raw.*(decoder|outside|backwards)"):
        EVT3Dataset(garbage).events(0)
    with pytest.raises(DataError, match="is evt3, not evt2"):
        EVT2Dataset(sensors / "evt3_sample.raw")
    other = tmp_path / "x.raw"
    other.write_bytes(b"% format EVT21;height=720;width=1280\n% end\n" + b"\0" * 64)
    with pytest.raises(DataError, match="EVT 2.1 and others are not supported"):
        ProphRawDataset(other).events(0)
    cut = tmp_path / "cut.raw"
    cut.write_bytes((sensors / "evt2_sample.raw").read_bytes()[:-3])
    with pytest.raises(DataError, match="cut.raw at byte .*truncated: 1 trailing bytes"):
        EVT2Dataset(cut).events(0)
    aedat4 = (sensors / "dvs_sample.aedat4").read_bytes()
    (tmp_path / "half.aedat4").write_bytes(aedat4[: len(aedat4) // 2])
    with pytest.raises(DataError, match="half.aedat4: AEDAT 4 packet"):
        AEDAT4Dataset(tmp_path / "half.aedat4").events(0)
    bad = bytearray(aedat4)
    bad[len(bad) // 2: len(bad) // 2 + 2000] = bytes(np.random.default_rng(1).integers(0, 256, 2000, np.uint8))
    (tmp_path / "bad.aedat4").write_bytes(bytes(bad))
    with pytest.raises(DataError, match="bad.aedat4: AEDAT 4 packet"):
        AEDAT4Dataset(tmp_path / "bad.aedat4").events(0)
    fake = tmp_path / "x.aedat4"
    fake.write_bytes(b"#!AER-DAT2.0\r\n" + b"\0" * 64)
    with pytest.raises(DataError, match="not an AEDAT 4.0 file"):
        AEDAT4Dataset(fake)
    with pytest.raises(DataError, match="no such file or folder"):
        EVT3Dataset(tmp_path / "absent.raw")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no .raw files"):
        EVT3Dataset(tmp_path / "empty_dir")


def test_skip_screens_a_folder_by_header_and_first_chunk(sensors, tmp_path):
    body = (sensors / "evt3_sample.raw").read_bytes()
    (tmp_path / "a_good.raw").write_bytes(body)
    (tmp_path / "b_evt2.raw").write_bytes((sensors / "evt2_sample.raw").read_bytes())
    (tmp_path / "c_bad.raw").write_bytes(b"% evt 3.0\n" + bytes(range(256)) * 40)
    with pytest.raises(DataError):
        EVT3Dataset(tmp_path).events(1)
    ds = EVT3Dataset(tmp_path, on_error="skip")
    assert len(ds) == 1 and ds.path(0).endswith("a_good.raw") and len(ds.events(0)) == 219_596
    assert [Path(p).name for p, _ in ds.skipped] == ["b_evt2.raw", "c_bad.raw"]
