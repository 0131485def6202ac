"""Reservoir kernel vs oracles: numpy reference, hand-computed trajectory, chunked == whole, streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamlsm.errors import ConfigError, ReservoirError
from streamlsm.events import COCHLEA_DTYPE, DVS_DTYPE, SPIKES_DTYPE, EventPacket
from streamlsm.reservoir import DeviceConfig, Features, Reservoir, ReservoirConfig, preset
from streamlsm.reservoir.reference import input_frames, reference_run


def random_dvs(rng, n, duration, sensor=34):
    ev = np.zeros(n, DVS_DTYPE)
    ev["t"] = np.sort(rng.integers(0, duration, n))
    ev["x"] = rng.integers(-1, sensor + 1, n)  # some out of range on purpose
    ev["y"] = rng.integers(0, sensor, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def packets_of(ev, duration, cuts, stream="s", sample_id=0, label="3"):
    """Split one sample into packets at the given cut times (each packet [a, b))."""
    edges = np.unique(np.r_[0, np.asarray(cuts, np.int64), duration])
    out = []
    for j in range(len(edges) - 1):
        a, b = int(edges[j]), int(edges[j + 1])
        part = ev[(ev["t"] >= a) & (ev["t"] < b)]
        out.append(EventPacket(stream, j, a, b, part, "vision", sample_id, label,
                               sample_begin=j == 0, sample_end=j == len(edges) - 2))
    return out


@pytest.fixture(scope="module")
def small_cfg():
    return preset("nmnist", n_neurons=60, weight_scale=0.6, rec_scale=0.5, seed=3)


@pytest.mark.parametrize("K,binary", [(1, False), (4, False), (1, True)])
def test_matches_numpy_reference(small_cfg, K, binary):
    cfg = dataclasses.replace(small_cfg, feature_windows=K, binary=binary)
    res = Reservoir(cfg)
    rng = np.random.default_rng(0)
    samples = [random_dvs(rng, int(rng.integers(0, 3000)), 200_000) for _ in range(6)]
    durs = [200_000 + int(rng.integers(0, 9000)) for _ in samples]
    feats = res.encode(samples, durs)
    total = 0
    for i, ev in enumerate(samples):
        frames = input_frames(ev, durs[i], res.map, cfg.bin_us, cfg.clip)
        ref, spikes = reference_run(frames, res.w_in, res.w_rec, cfg.decay, cfg.threshold, K)
        np.testing.assert_array_equal(feats[i], ref)
        total += spikes.sum()
    assert total > 0


def test_real_nmnist_matches_reference(real_data):
    from streamlsm_sources.nmnist import NMNISTDataset

    ds = NMNISTDataset(real_data / "nmnist", split="train", limit=None)
    idx = [0, 150, 400, 999]
    samples = [ds.events(i) for i in idx]
    durs = [ds.duration_us(i) for i in idx]
    cfg = preset("nmnist", feature_windows=5)
    res = Reservoir(cfg)
    feats = res.encode(samples, durs)
    for i, ev in enumerate(samples):
        frames = input_frames(ev, durs[i], res.map, cfg.bin_us, cfg.clip)
        ref, spikes = reference_run(frames, res.w_in, res.w_rec, cfg.decay, cfg.threshold, 5)
        np.testing.assert_array_equal(feats[i], ref)
        rate = spikes.mean()
        assert 0.01 < rate < 0.2  # calibrated preset fires at a useful rate on real data


def test_hand_computed_trajectory():
    # one input channel (spikes layout), two neurons; decay 0.5 and weights exact in binary
    cfg = ReservoirConfig(modality="neural", layout="spikes", n_inputs=1, n_neurons=2, decay=0.5,
                          threshold=5.0, bin_us=10, sensor=(1, 1), crop=(0, 0, 0, 0))
    w_in = np.array([[3.0, 1.0]], np.float32)
    w_rec = np.array([[0.0, 2.0], [0.0, 0.0]], np.float32)
    res = Reservoir(cfg, weights=(w_in, w_rec))
    ev = np.zeros(5, SPIKES_DTYPE)
    ev["t"] = [1, 12, 21, 25, 41]  # bins 0, 1, 2, 2, 4
    expect = {10: [3, 1], 20: [4.5, 1.5], 30: [8.25, 2.75], 40: [0, 3.375], 50: [3, 2.6875]}
    for t_end in range(10, 60, 10):
        part = ev[(ev["t"] >= t_end - 10) & (ev["t"] < t_end)]
        out = res.feed(EventPacket("h", t_end // 10, t_end - 10, t_end, part, sample_id=0,
                                   sample_begin=t_end == 10, sample_end=t_end == 50))
        if t_end < 50:
            np.testing.assert_array_equal(res.membrane("h"), np.array(expect[t_end], np.float32))
    assert len(out) == 1 and out[0].counts.tolist() == [1.0, 0.0]
    assert out[0].t_start == 0 and out[0].t_end == 50


@pytest.mark.parametrize("eta", [0.0, 0.1])
def test_chunked_equals_whole_random_splits(small_cfg, eta):
    cfg = dataclasses.replace(small_cfg, read_noise=eta, feature_windows=3)
    rng = np.random.default_rng(7)
    samples = [random_dvs(rng, 2500, 150_000) for _ in range(4)]
    durs = [150_000] * 4
    whole = Reservoir(cfg).encode(samples, durs, sample_ids=[10, 11, 12, 13])
    for trial in range(3):
        res = Reservoir(cfg)
        pk = []
        for i, ev in enumerate(samples):
            cuts = rng.integers(0, durs[i], int(rng.integers(0, 40)))
            pk += packets_of(ev, durs[i], cuts, stream=f"st{trial}", sample_id=10 + i)
        got = []
        k = 0
        while k < len(pk):  # random batch sizes, empty packets included
            step = int(rng.integers(1, 9))
            got += res.feed(pk[k:k + step])
            k += step
        assert [f.sample_id for f in got] == [10, 11, 12, 13]
        np.testing.assert_array_equal(np.stack([f.counts for f in got]), whole)
    if eta:
        noiseless = Reservoir(dataclasses.replace(cfg, read_noise=0.0)).encode(samples, durs)
        assert not np.array_equal(noiseless, whole)


def test_multi_stream_call_equals_separate_streams(small_cfg):
    cfg = dataclasses.replace(small_cfg, read_noise=0.05)
    rng = np.random.default_rng(11)
    streams = {}
    for s in range(5):
        sample_list = []
        for k in range(3):
            ev = random_dvs(rng, 1500, 90_000)
            ev["t"] += k * 100_000
            sample_list.append((k * 100_000, ev, 100 * s + k))
        streams[f"cam{s}"] = sample_list

    def stream_packets(name):
        out = []
        for t0, ev, sid in streams[name]:
            for j, a in enumerate(range(t0, t0 + 90_000, 1000)):
                part = ev[(ev["t"] >= a) & (ev["t"] < a + 1000)]
                out.append(EventPacket(name, j, a, a + 1000, part, "vision", sid, "x",
                                       sample_begin=j == 0, sample_end=a + 1000 == t0 + 90_000))
        return out

    separate = {}
    for name in streams:
        res = Reservoir(cfg)
        separate[name] = [f.counts for f in res.feed(stream_packets(name))]
    # one reservoir, packets of all streams interleaved in time, 64 packets per call
    allp = sorted((p for name in streams for p in stream_packets(name)), key=lambda p: (p.t_start, p.stream_id))
    res = Reservoir(cfg, capacity=2)  # forces the state table to grow
    got: dict[str, list] = {name: [] for name in streams}
    for k in range(0, len(allp), 64):
        for f in res.feed(allp[k:k + 64]):
            got[f.stream_id].append(f.counts)
    for name in streams:
        assert len(got[name]) == 3
        np.testing.assert_array_equal(np.stack(got[name]), np.stack(separate[name]))
    assert sorted(res.streams) == sorted(streams)


def test_features_fields_and_counters(small_cfg):
    res = Reservoir(small_cfg)
    ev = np.zeros(4, DVS_DTYPE)
    ev["t"] = [10, 20, 30, 40]
    ev["x"] = [10, 0, 40, 12]  # (0, 10): outside the crop; x=40: off the sensor
    ev["y"] = [10, 10, 10, 10]
    ev["p"] = [0, 0, 0, 1]  # polarity 1 dropped by the preset
    pk = EventPacket("a", 5, 1000, 7000, ev.copy(), "vision", 42, "7", True, True, sent_ns=123)
    pk.events["t"] += 1000
    (f,) = res.feed(pk, received_ns=456)
    assert isinstance(f, Features)
    assert (f.stream_id, f.sample_id, f.t_start, f.t_end, f.label, f.seq) == ("a", 42, 1000, 7000, "7", 5)
    assert (f.sent_ns, f.received_ns, f.modality) == (123, 456, "vision")
    assert f.counts.dtype == np.float32 and f.counts.shape == (res.n_features,)
    st = res.stats("a")
    assert st["events"] == 4 and st["dropped"] == 3 and st["late"] == 0


def test_empty_packets_and_idle_gaps(small_cfg):
    res = Reservoir(small_cfg)
    ev = random_dvs(np.random.default_rng(2), 800, 30_000)
    # a sample with a 10 s idle tail in empty packets of 100 ms: same as one big packet
    pk = [EventPacket("g", 0, 0, 30_000, ev, sample_id=1, sample_begin=True)]
    pk += [EventPacket("g", i, 30_000 + (i - 1) * 100_000, 30_000 + i * 100_000, ev[:0], sample_id=1)
           for i in range(1, 101)]
    pk[-1].sample_end = True
    a = res.feed(pk)[0].counts
    b = Reservoir(small_cfg).encode([ev], [30_000 + 100 * 100_000], sample_ids=[1])[0]
    np.testing.assert_array_equal(a, b)
    assert res.feed([]) == []


def test_late_and_out_of_packet_events_are_counted(small_cfg):
    res = Reservoir(small_cfg)
    ev = np.zeros(2, DVS_DTYPE)
    ev["x"], ev["y"], ev["t"] = 12, 12, [50_000, 7_000]
    res.feed(EventPacket("l", 0, 0, 40_000, ev[:1], sample_begin=True))  # t >= t_end: counted late
    res.feed(EventPacket("l", 1, 40_000, 60_000, ev[1:]))  # bin already closed: late
    assert res.stats("l")["late"] == 2
    assert res.stats("l")["events"] == 2 and res.stats("l")["dropped"] == 0
    np.testing.assert_array_equal(res.membrane("l"), 0)  # neither event reached the membrane


def test_no_allocation_in_steady_state(small_cfg):
    import gc
    import tracemalloc

    res = Reservoir(dataclasses.replace(small_cfg, read_noise=0.05))
    rng = np.random.default_rng(5)
    ev = random_dvs(rng, 600, 2_000_000)
    pk = [EventPacket(f"m{s}", i, i * 1000, (i + 1) * 1000, ev[(ev["t"] >= i * 1000) & (ev["t"] < (i + 1) * 1000)],
                      sample_id=s, sample_begin=i == 0) for i in range(2000) for s in range(4)]
    batches = [pk[k:k + 40] for k in range(0, len(pk), 40)]
    for b in batches[:10]:
        res.feed(b)
    gc.collect()
    tracemalloc.start()
    for b in batches[10:30]:
        res.feed(b)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for b in batches[30:]:  # 170 calls, 6800 packets
        res.feed(b)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 1024, after - before


def test_layout_and_config_errors(small_cfg):
    res = Reservoir(small_cfg)
    with pytest.raises(ReservoirError):
        res.feed(EventPacket("x", 0, 0, 10, np.zeros(1, COCHLEA_DTYPE)))
    with pytest.raises(ReservoirError):
        res.encode([np.zeros(1, SPIKES_DTYPE)])
    with pytest.raises(ReservoirError):
        res.stats("nope")
    with pytest.raises(ConfigError):
        preset("nope")
    with pytest.raises(ConfigError):
        preset("nmnist", threshold=0.0)
    with pytest.raises(ConfigError):
        preset("nmnist", n_inputs=100)
        Reservoir(preset("nmnist", n_inputs=100))
    with pytest.raises(ConfigError) as exc:
        Reservoir(preset("nmnist", device=dataclasses.replace(small_cfg.device, breakdown=2.0)))
    assert exc.value.key == "device.breakdown"


@pytest.mark.parametrize("name", ["nmnist", "ntidigits", "cochlea", "neural", "letters"])
def test_presets(name):
    cfg = preset(name)
    res = Reservoir(dataclasses.replace(cfg, n_neurons=min(cfg.n_neurons, 64)))
    assert res.n_features == min(cfg.n_neurons, 64)
    assert cfg.weight_scale > 0
    assert preset("nmnist").n_neurons == 200 and Reservoir(preset("nmnist")).n_inputs == 256


def test_release_and_reuse(small_cfg):
    res = Reservoir(small_cfg, capacity=1)
    ev = random_dvs(np.random.default_rng(1), 300, 20_000)
    a = res.feed(EventPacket("r", 0, 0, 20_000, ev, sample_id=3, sample_begin=True, sample_end=True))
    res.feed(EventPacket("r", 1, 20_000, 25_000, ev[:0], sample_id=4, sample_begin=True))
    res.release("r")
    assert res.streams == []
    b = res.feed(EventPacket("q", 0, 0, 20_000, ev, sample_id=3, sample_begin=True, sample_end=True))
    np.testing.assert_array_equal(a[0].counts, b[0].counts)


def test_config_round_trips_through_dicts():
    from streamlsm.config import from_dict, to_dict

    for name in ("nmnist", "ntidigits", "cochlea", "neural", "letters"):
        assert from_dict(ReservoirConfig, to_dict(preset(name))) == preset(name)
    cfg = from_dict(ReservoirConfig, {"crop": [9, 9, 16, 16], "device": {"mode": "rram", "breakdown": 0.4}})
    assert cfg.crop == (9, 9, 16, 16) and cfg.device.breakdown == 0.4
    with pytest.raises(ConfigError) as exc:
        from_dict(ReservoirConfig, {"device": {"breakdown": 3.0}})
    assert exc.value.key == "device.breakdown"


def test_rram_device_reservoir_on_real_nmnist(real_data):
    """The calibrated scale applies to normalised conductances: an RRAM crossbar (differential
    pairs, half the cells broken down, read noise on) fires at a similar useful rate."""
    from streamlsm_sources.nmnist import NMNISTDataset

    ds = NMNISTDataset(real_data / "nmnist", split="train")
    idx = [3, 300, 600, 900]
    cfg = preset("nmnist", read_noise=0.05, device=DeviceConfig(mode="rram", breakdown=0.5, d2d=0.05))
    durs = [ds.duration_us(i) for i in idx]
    feats = Reservoir(cfg).encode([ds.events(i) for i in idx], durs)
    rate = feats.sum() / (cfg.n_neurons * sum(-(-d // cfg.bin_us) for d in durs))
    assert 0.02 < rate < 0.2


def test_empty_inputs(small_cfg):
    res = Reservoir(dataclasses.replace(small_cfg, feature_windows=3))
    assert res.encode([]).shape == (0, res.n_features)
    empty = np.zeros(0, DVS_DTYPE)
    out = res.encode([empty, empty], [0, 30_000])
    assert out.shape == (2, res.n_features) and not out.any()
    (f,) = res.feed(EventPacket("e", 0, 0, 30_000, empty, sample_begin=True, sample_end=True))
    assert not f.counts.any()


def test_threshold_is_strict_and_negative_ids_key_noise_alike(small_cfg):
    # v == threshold does not spike (s = v > threshold, PAPER.md); the reference agrees
    cfg = ReservoirConfig(modality="neural", layout="spikes", n_inputs=1, n_neurons=1, decay=0.5,
                          threshold=5.0, bin_us=10, sensor=(1, 1), crop=(0, 0, 0, 0))
    w = (np.array([[5.0]], np.float32), np.zeros((1, 1), np.float32))
    ev = np.zeros(3, SPIKES_DTYPE)
    ev["t"] = [1, 21, 22]  # bin 0: v = 5 (no spike); bin 2: v = 1.25 + 10 (spike)
    feats = Reservoir(cfg, weights=w).encode([ev], [30])
    ref, spikes = reference_run(input_frames(ev, 30, Reservoir(cfg, weights=w).map, 10), *w, 0.5, 5.0)
    assert spikes[:, 0].tolist() == [False, False, True]
    assert feats[0].tolist() == [1.0] and ref.tolist() == [1.0]
    # a negative sample id keys the read noise the same way offline and streamed
    noisy = dataclasses.replace(small_cfg, read_noise=0.1)
    sample = random_dvs(np.random.default_rng(8), 2000, 90_000)
    enc = Reservoir(noisy).encode([sample], [90_000], sample_ids=[-5])
    fed = Reservoir(noisy).feed(packets_of(sample, 90_000, [30_000, 61_000], sample_id=-5))
    np.testing.assert_array_equal(fed[0].counts, enc[0])
    assert not np.array_equal(Reservoir(noisy).encode([sample], [90_000], sample_ids=[5]), enc)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("K", [1, 4])
def test_one_packet_spanning_2_to_62_us_does_not_hang(small_cfg, K):
    """Issue 11, item 1: the float32 membrane decays to the smallest denormal and stays there
    (1e-45 * 0.9 rounds back to 1e-45), so 'jump ahead once the membrane is zero' never fired and
    every bin of the span (~7.7e14) was simulated. Now a leak step that changes nothing ends the
    simulation of the empty span: the features equal those of any shorter span past that point."""
    cfg = dataclasses.replace(small_cfg, feature_windows=K)
    ev = random_dvs(np.random.default_rng(4), 400, 20_000)
    ev = ev[(ev["x"] >= 0) & (ev["x"] < 34)]
    huge = Reservoir(cfg).feed(EventPacket("h", 0, 0, 2 ** 62, ev, sample_id=1, sample_begin=True,
                                           sample_end=True))[0].counts
    long_ = Reservoir(cfg).encode([ev], [100_000_000], sample_ids=[1])[0]
    assert huge.sum() > 0
    if K == 1:  # the totals do not depend on where the spikes fall
        np.testing.assert_array_equal(huge, long_)
    # the membrane really sits on a fixed point of the leak: another step changes nothing
    res = Reservoir(cfg)
    res.feed(EventPacket("m", 0, 0, 10_000_000, ev, sample_id=1, sample_begin=True))
    v = res.membrane("m")
    np.testing.assert_array_equal(np.float32(cfg.decay) * v, v)


def test_state_tables_shrink_after_a_burst_of_streams(small_cfg):
    """Issue 11, item 7: a burst of streams grew the tables for good; now they shrink once most
    slots are free, and the streams still open keep their state (features unchanged)."""
    ev = random_dvs(np.random.default_rng(6), 300, 20_000)
    ref = Reservoir(small_cfg)
    res = Reservoir(small_cfg)
    first = EventPacket("keep", 0, 0, 10_000, ev[ev["t"] < 10_000], sample_id=2, sample_begin=True)
    second = EventPacket("keep", 1, 10_000, 20_000, ev[ev["t"] >= 10_000], sample_id=2, sample_end=True)
    ref.feed(first)
    for i in range(500):
        res.feed(EventPacket(f"b{i}", 0, 0, 1_000, ev[:0], sample_begin=True))
    res.feed(first)
    grown = res.capacity
    for i in range(500):
        res.release(f"b{i}")
    assert grown >= 501 and res.capacity <= 64 and res.streams == ["keep"]
    np.testing.assert_array_equal(res.feed(second)[0].counts, ref.feed(second)[0].counts)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("K", [1, 4])
def test_packets_near_the_end_of_time_do_not_spin(small_cfg, K):
    """Found by the hostile generator (issue 11): with t_start = 2^63 - 2, t_lo + bin_us overflowed
    int64, the open bin's limit went negative and the event loop spun for ever on the first event."""
    cfg = dataclasses.replace(small_cfg, feature_windows=K)
    ev = np.zeros(3, DVS_DTYPE)
    ev["t"] = 2 ** 63 - 2
    ev["x"], ev["y"] = 12, 12
    res = Reservoir(cfg)
    res.feed(EventPacket("e", 0, 2 ** 63 - 2, 2 ** 63 - 1, ev, sample_id=1, sample_begin=True))
    assert res.stats("e") == {"events": 3, "dropped": 0, "late": 0, "bin": 0, "active": 1}
    ev2 = ev.copy()
    ev2["t"] = 0
    (f,) = res.feed(EventPacket("z", 0, 0, 2 ** 63 - 1, ev2, sample_id=1, sample_begin=True, sample_end=True))
    ref = Reservoir(cfg).encode([ev2[:3]], [1_000_000], sample_ids=[1])[0]
    if K == 1:  # past the leak's fixed point nothing changes: the same totals as a 1 s sample
        np.testing.assert_array_equal(f.counts, ref)
