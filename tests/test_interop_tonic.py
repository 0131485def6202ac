"""tonic interop on real data: a tonic data set (its transforms applied) replays through streamlsm;
tonic transforms run on streamlsm data sets; tonic's readers and ours agree on the same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import DVS_DTYPE, as_layout
from streamlsm.plugins import SOURCE_GROUP, load
from streamlsm.reservoir import Reservoir, preset
from streamlsm.stream.replay import ReplayConfig, schedule

pytestmark = pytest.mark.realdata

tonic = pytest.importorskip("tonic", reason="tonic interop needs tonic: pip install 'streamlsm[tonic]'")
from streamlsm_sources.nmnist import NMNISTDataset  # noqa: E402
from streamlsm_sources.tonic_data import TonicDataset  # noqa: E402


class SharedNMNIST(tonic.datasets.NMNIST):
    """tonic's own NMNIST reader on the shared copy. Its presence check wants the downloaded zip and
    all 60,000 files; the shared copy is 1,000 files in the official Train/<digit>/ layout."""

    def _check_exists(self) -> bool:
        return True


@pytest.fixture(scope="module")
def tonic_nmnist(real_file, tmp_path_factory) -> tuple[Path, Path]:
    train = real_file("nmnist", "Train").resolve()
    save_to = tmp_path_factory.mktemp("tonic")
    (save_to / "SharedNMNIST").mkdir()
    (save_to / "SharedNMNIST" / "Train").symlink_to(train)
    return save_to, train.parent


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in ("t", "x", "y", "p"))


def test_a_tonic_dataset_with_a_transform_replays_as_streamlsm_packets(tonic_nmnist):
    save_to, root = tonic_nmnist
    denoise = tonic.transforms.Denoise(filter_time=10_000)
    tds = SharedNMNIST(str(save_to), transform=denoise)
    assert len(tds) == 1000
    ds = load(SOURCE_GROUP, "tonic")(tds)
    assert isinstance(ds, TonicDataset) and ds.layout == "dvs" and ds.sensor_size == (34, 34, 2)
    ours = NMNISTDataset(root, transform=denoise)  # streamlsm's reader with the same tonic transform
    by_path = {Path(p).parts[-2:]: i for i, p in enumerate(ours._keys)}  # (digit, file)
    for i in (0, 137, 999):
        ev = ds.events(i)
        raw = tonic.io.read_mnist_file(tds.data[i], dtype=tds.dtype)
        assert 0 < len(ev) < len(raw)  # the denoise filter removed events
        assert _same(ev, as_layout(denoise(raw)))
        j = by_path[Path(tds.data[i]).parts[-2:]]
        assert _same(ev, ours.events(j)) and ds.label(i) == ours.label(j)
    # through the replay schedule, then a reservoir: same features as our own reader gives
    cfg = ReplayConfig(packet_us=5_000, speed="max", limit=3)
    packets = [p for _, p in schedule(ds, "tonic", cfg)]
    assert packets[0].events.dtype == DVS_DTYPE and sum(p.sample_end for p in packets) == 3
    res_a, res_b = Reservoir(preset("nmnist", n_neurons=64)), Reservoir(preset("nmnist", n_neurons=64))
    streamed = np.stack([f.counts for f in res_a.feed(packets)])
    offline = res_b.encode([ours.events(by_path[Path(tds.data[i]).parts[-2:]]) for i in range(3)],
                           [ds.duration_us(i) for i in range(3)])
    assert streamed.shape == (3, offline.shape[1]) and np.array_equal(streamed, offline)
    assert streamed.sum() > 0


def test_tonic_transforms_run_on_streamlsm_datasets_and_on_camera_files(tonic_nmnist, real_file):
    _, root = tonic_nmnist
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=3)
    frames, label = NMNISTDataset(root, transform=to_frame, limit=10)[0]
    ev = NMNISTDataset(root, limit=10).events(0)
    assert frames.shape == (3, 2, 34, 34) and label == "0"
    assert np.array_equal(frames, to_frame(ev)) and frames.sum() >= len(ev) - 1 > 1000
    pytest.importorskip("aedat", reason="AEDAT 4 needs pip install 'streamlsm[sensors]'")
    from streamlsm_sources.aedat4 import AEDAT4Dataset

    path = real_file("sensors", "dvs_sample.aedat4")
    theirs = tonic.io.read_aedat4(str(path))  # tonic's own AEDAT 4 reader
    ours = AEDAT4Dataset(path)
    ev = ours.events(0)
    shifted = ev.copy()
    shifted["t"] += ours.t0_us(0)
    assert len(theirs) == 111_954 and _same(shifted, as_layout(theirs))
    half = tonic.transforms.Downsample(spatial_factor=0.5)
    small = AEDAT4Dataset(path, transform=half, chunk_events=10_000).events(0)
    assert _same(small, as_layout(half(ev))) and small["x"].max() < 160


def test_tonic_dataset_wraps_any_indexable_and_checks_its_options():
    ev = np.zeros(5, tonic.io.events_struct)
    ev["t"] = [30, 10, 20, 40, 50]  # an unsorted sample: sorted on the way in
    ev["x"] = [1, 2, 3, 4, 5]
    ds = TonicDataset([(ev, 7), (ev[:2], 3)], modality="vision")
    assert len(ds) == 2 and ds.labels == ["7", "3"] and ds.layout == "dvs"
    assert ds.events(0)["t"].tolist() == [10, 20, 30, 40, 50] and ds.duration_us(0) == 1000
    with pytest.raises(ConfigError, match="name the tonic data set class"):
        TonicDataset("some/folder")
    with pytest.raises(ConfigError, match="tonic has no data set 'Nope'"):
        TonicDataset("some/folder", "Nope")
    with pytest.raises(ConfigError, match="modality"):
        TonicDataset([(ev, 1)], modality="smell")
    with pytest.raises(DataError, match="not structured events"):
        TonicDataset([(np.zeros((2, 34, 34)), 1)])
