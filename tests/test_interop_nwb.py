"""NWB: the real auditory-cortex session written as units.spike_times + a trials table and read back
by the `nwb` source, trial for trial and spike for spike."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.errors import ConfigError, DataError
from streamlsm.plugins import SOURCE_GROUP, Dataset, load
from streamlsm.stream.replay import ReplayConfig, schedule

pytest.importorskip("pynwb", reason="NWB needs pynwb: pip install 'streamlsm[nwb]'")
from streamlsm_sources.neural import AuditoryCortexDataset  # noqa: E402
from streamlsm_sources.nwb import NWBUnitsDataset, write_nwb  # noqa: E402

GAP_S = 0.1


def _sorted(ev: np.ndarray) -> np.ndarray:
    return ev[np.lexsort((ev["x"], ev["t"]))]


@pytest.fixture(scope="module")
def session(real_file, tmp_path_factory):
    """The real session D_A_I (1,800 trials of 500 ms, 50 cells) as an NWB file."""
    ac = AuditoryCortexDataset(real_file("neural", "auditory_cortex"), session="D_A_I")
    n_units = ac.sensor_size[0]
    starts, stops, spikes = [], [], [[] for _ in range(n_units)]
    t = 0.0
    for i in range(len(ac)):
        ev = ac.events(i)
        for u in np.unique(ev["x"]):
            spikes[u].append(t + ev["t"][ev["x"] == u] / 1e6)
        starts.append(t)
        stops.append(t + ac.duration_us(i) / 1e6)
        t = stops[-1] + GAP_S
    times = [np.sort(np.concatenate(s)) if s else np.zeros(0) for s in spikes]
    path = write_nwb(tmp_path_factory.mktemp("nwb") / "D_A_I.nwb", times, starts, stops,
                     [ac.label(i) for i in range(len(ac))], label_column="sound_id",
                     extra_columns={"role": [ac.role_of(i) for i in range(len(ac))]},
                     description="rat auditory cortex, Szabo and Bartho 2021, session D_A_I")
    return ac, path


def test_nwb_round_trip_of_the_real_auditory_cortex_session(session):
    ac, path = session
    ds = load(SOURCE_GROUP, "nwb")(path)
    assert isinstance(ds, NWBUnitsDataset) and isinstance(ds, Dataset)
    assert ds.label_column == "sound_id" and len(ds) == len(ac) == 1800
    assert ds.sensor_size == ac.sensor_size == (50,) and ds.classes == ac.classes
    assert ds.layout == "spikes" and ds.modality == "neural"
    total = 0
    for i in range(len(ac)):
        got, want = ds.events(i), _sorted(ac.events(i))
        assert np.array_equal(got, want), f"trial {i}"
        assert ds.label(i) == ac.label(i) and ds.duration_us(i) == ac.duration_us(i) == 500_000
        total += len(got)
    assert total == 382_668
    packets = [p for _, p in schedule(ds, "cortex", ReplayConfig(packet_us=50_000, speed="max",
                                                                   limit=4))]
    assert sum(p.sample_end for p in packets) == 4 and len(packets) == 40
    assert sum(len(p.events) for p in packets) == sum(len(ds.events(i)) for i in range(4))


def test_data_info_reads_the_nwb_file(session, capsys):
    from streamlsm.cli import main

    _, path = session
    assert main(["data", "info", str(path), "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NWBUnitsDataset: 1800 samples, layout spikes, sensor (50,)")
    assert "per class: " in out and "1=100" in out


def test_nwb_errors_name_the_problem(session, tmp_path):
    _, path = session
    with pytest.raises(ConfigError, match="no trials column 'stim'.*sound_id"):
        NWBUnitsDataset(path, label_column="stim")
    bad = tmp_path / "x.nwb"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="x.nwb: not a readable NWB file"):
        NWBUnitsDataset(bad)
    with pytest.raises(DataError, match="no such NWB file"):
        NWBUnitsDataset(tmp_path / "absent.nwb")
    no_trials = write_nwb(tmp_path / "one.nwb", [np.array([0.1, 0.2])], [0.0], [1.0], ["a"])
    ds = NWBUnitsDataset(no_trials)
    assert ds.labels == ["a"] and ds.events(0)["t"].tolist() == [100_000, 200_000]
    with pytest.raises(ConfigError, match="differ in length"):
        write_nwb(tmp_path / "two.nwb", [np.zeros(1)], [0.0, 1.0], [1.0], ["a"])
