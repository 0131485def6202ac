"""Pipeline: packets -> labels, chunked equals whole, streamed equals offline, windows, gaps, provenance."""

from __future__ import annotations

import numpy as np
import pytest

import streamlsm.reservoir as res
from streamlsm.config import to_dict
from streamlsm.errors import ConfigError, ModelError
from streamlsm.events import COCHLEA_DTYPE, DVS_DTYPE, slice_time
from streamlsm.model.prototypes import PrototypeMatcher
from streamlsm.pipeline import Pipeline, PipelineConfig, offline_labels
from streamlsm.stream.segment import window_key
from streamlsm.testing import FakeReservoir, make_bundle, packets_from_samples, random_samples

F, D = 32, 16


def _setup(modalities=("vision",), config=None, update="none"):
    bundle = make_bundle(F, D, modalities)
    matcher = PrototypeMatcher(D, update=update)
    factory = lambda m: FakeReservoir(F, m)  # noqa: E731
    pipe = Pipeline(bundle, matcher, config or PipelineConfig(), reservoir_factory=factory)
    return bundle, matcher, pipe, factory


def _register(pipe, matcher, samples, modality="vision"):
    by = {}
    for ev, lab in samples:
        by.setdefault(lab, []).append(ev)
    for lab, evs in by.items():
        matcher.add(lab, pipe.embed_support(modality, evs), source="test")


def test_every_sample_labelled_once_and_equal_to_offline():
    bundle, matcher, pipe, factory = _setup()
    train = random_samples(30, DVS_DTYPE, seed=1)
    test = random_samples(20, DVS_DTYPE, seed=2)
    _register(pipe, matcher, train)
    pkts = packets_from_samples(test, "cam0", packet_us=7_000, gap_us=1_000)
    labels = pipe(pkts)
    assert [lab.sample_id for lab in labels] == list(range(20))
    offline = offline_labels(bundle, matcher, "vision", [ev for ev, _ in test], reservoir_factory=factory)
    assert [lab.label for lab in labels] == offline
    assert [lab.truth for lab in labels] == [t for _, t in test]
    acc = np.mean([lab.label == lab.truth for lab in labels])
    assert acc > 0.8  # the class-dependent channels separate the classes


def test_any_split_into_packets_and_calls_gives_the_same_labels():
    samples = random_samples(10, DVS_DTYPE, seed=3)
    results = []
    for packet_us, chunk in ((1_000, 1), (9_000, 5), (60_000, 1000)):
        _, matcher, pipe, _ = _setup()
        _register(pipe, matcher, samples)
        pkts = packets_from_samples(samples, "s", packet_us=packet_us)
        out = []
        for i in range(0, len(pkts), chunk):
            out += pipe(pkts[i:i + chunk], received_ns=[7] * len(pkts[i:i + chunk]))
        results.append([(lab.sample_id, lab.label, round(lab.score, 5)) for lab in out])
        assert all(lab.received_ns == 7 for lab in out)
    assert results[0] == results[1] == results[2]


def test_streams_of_two_modalities_interleaved_are_routed_to_their_heads():
    bundle, matcher, pipe, _ = _setup(modalities=("vision", "audio"))
    vis = random_samples(6, DVS_DTYPE, seed=4)
    aud = random_samples(6, COCHLEA_DTYPE, seed=5, width=64)
    _register(pipe, matcher, vis, "vision")
    a = packets_from_samples(vis, "cam", 5_000, "vision")
    b = packets_from_samples(aud, "ear", 5_000, "audio")
    mixed = [p for pair in zip(a, b, strict=False) for p in pair] + a[len(b):] + b[len(a):]
    labels = pipe(mixed)
    assert sorted((lab.stream_id, lab.sample_id) for lab in labels) == \
        sorted([("cam", i) for i in range(6)] + [("ear", i) for i in range(6)])
    assert {lab.modality for lab in labels if lab.stream_id == "ear"} == {"audio"}
    ear = [lab for lab in labels if lab.stream_id == "ear"]
    emb = bundle.embed("audio", FakeReservoir(F).encode([ev for ev, _ in aud]))
    assert [lab.label for lab in ear] == [m.label for m in matcher.match_many(emb)]
    assert [lab.seq for lab in ear] == list(range(6))


def test_stream_config_overrides_packet_modality_and_unknown_modality_fails():
    _, matcher, pipe, _ = _setup(modalities=("audio",), config=PipelineConfig(streams={"x": "audio"}))
    matcher.add("a", np.ones(D))
    pkts = packets_from_samples(random_samples(2, DVS_DTYPE), "x", modality="vision")
    assert {lab.modality for lab in pipe(pkts)} == {"audio"}
    bad = packets_from_samples(random_samples(1, DVS_DTYPE), "y", modality="vision")
    assert pipe(bad) == [] and pipe.stats.rejected_packets == len(bad)  # counted, never fatal


def test_sequence_gap_discards_the_broken_sample_and_counts_it():
    _, matcher, pipe, _ = _setup()
    matcher.add("a", np.ones(D))
    pkts = packets_from_samples(random_samples(4, DVS_DTYPE, seed=6), "s", packet_us=10_000)
    per = len(pkts) // 4
    broken = pkts[: per + 2] + pkts[per + 3:]   # one packet of sample 1 lost
    labels = pipe(broken)
    assert [lab.sample_id for lab in labels] == [0, 2, 3]
    assert pipe.stats.seq_gaps == 1 and pipe.stats.incomplete_samples == 1
    assert pipe.stats.skipped_packets == per - 3


def test_joining_mid_sample_skips_until_the_next_sample_begins():
    _, matcher, pipe, _ = _setup()
    matcher.add("a", np.ones(D))
    pkts = packets_from_samples(random_samples(3, DVS_DTYPE), "s", packet_us=10_000)
    labels = pipe(pkts[2:])
    assert [lab.sample_id for lab in labels] == [1, 2]


def test_stream_ids_holding_a_hash_keep_their_name_and_label_seq():
    samples = random_samples(3, DVS_DTYPE, seed=11)
    for cfg in (PipelineConfig(), PipelineConfig(segment="window", window_us=40_000, hop_us=20_000)):
        _bundle, matcher, pipe, _factory = _setup(config=cfg)
        matcher.add("0", np.ones(D))
        pkts = packets_from_samples(samples, "cam#1", packet_us=5_000, duration_us=50_000)
        labels = pipe(pkts)
        assert labels and {lab.stream_id for lab in labels} == {"cam#1"}
        assert [lab.seq for lab in labels] == list(range(len(labels)))


def test_sliding_windows_cover_the_stream_and_equal_offline_windows():
    cfg = PipelineConfig(segment="window", window_us=40_000, hop_us=20_000)
    bundle, matcher, pipe, factory = _setup(config=cfg)
    train = random_samples(12, DVS_DTYPE, seed=7)
    _register(pipe, matcher, train)
    cont = random_samples(1, DVS_DTYPE, duration_us=200_000, events=2000, seed=8)
    pkts = packets_from_samples(cont, "live", packet_us=3_000, duration_us=200_000)
    for p in pkts:  # a continuous sensor knows no samples
        p.sample_begin = p.sample_end = False
    labels = pipe(pkts)
    spans = [(lab.t_start, lab.t_end) for lab in labels]
    assert spans == [(t, t + 40_000) for t in range(0, 160_001, 20_000)]
    ev = cont[0][0]
    windows = []
    for a, b in spans:
        w = slice_time(ev, a, b).copy()
        w["t"] -= a
        windows.append(w)
    assert [lab.sample_id for lab in labels] == list(range(len(spans)))
    assert [lab.label for lab in labels] == offline_labels(bundle, matcher, "vision", windows,
                                                           reservoir_factory=factory)


def test_provenance_and_latency_stamps():
    bundle, matcher, pipe, _ = _setup()
    matcher.add("a", np.ones(D))
    pkts = packets_from_samples(random_samples(1, DVS_DTYPE), "s", packet_us=10_000)
    pkts[-1].sent_ns = 123
    (lab,) = pipe(pkts, received_ns=list(range(len(pkts))))
    assert lab.bundle_hash == bundle.hash and lab.bundle_hash.startswith("sha256:")
    assert lab.prototype_version == matcher.version == 1
    assert lab.seed == bundle.seed
    assert lab.source_ns == 123 and lab.received_ns == len(pkts) - 1
    assert (lab.t_start, lab.t_end) == (pkts[0].t_start, pkts[-1].t_end)
    assert lab.topk[0][0] == "a" and lab.label == "a"


def test_truth_updates_fold_confirmed_samples_into_prototypes():
    cfg = PipelineConfig(update="truth")
    _, matcher, pipe, _ = _setup(config=cfg, update="mean")
    samples = random_samples(6, DVS_DTYPE, seed=9)
    _register(pipe, matcher, samples[:3])
    v0 = matcher.version
    pipe(packets_from_samples(samples, "s"))
    assert pipe.stats.updates == 6 and matcher.version == v0 + 6


def test_stream_table_is_bounded():
    _, matcher, pipe, _ = _setup(config=PipelineConfig(max_streams=2, stream_idle_s=0))
    matcher.add("a", np.ones(D))
    for s in ("a", "b", "c"):
        pipe(packets_from_samples(random_samples(1, DVS_DTYPE), s))
    assert pipe.streams == ["b", "c"] and pipe.stats.evicted_streams == 1
    assert sorted(pipe.reservoir("vision").streams) == ["b", "c"]


def test_config_validation_names_the_key():
    from streamlsm.config import from_dict

    with pytest.raises(ConfigError) as err:
        from_dict(PipelineConfig, {"segment": "window", "window_us": 10, "hop_us": 20}, "pipeline")
    assert err.value.key == "pipeline.hop_us"
    with pytest.raises(ModelError):
        Pipeline(make_bundle(F, D), PrototypeMatcher(D + 1))


def test_real_reservoir_streamed_equals_offline():
    cfg = res.preset("nmnist")
    n = res.Reservoir(cfg).n_features
    bundle = make_bundle(n, D)
    bundle.reservoirs["vision"] = to_dict(cfg)
    matcher = PrototypeMatcher(D)
    pipe = Pipeline(bundle, matcher)
    samples = random_samples(8, DVS_DTYPE, duration_us=30_000, seed=10)
    _register(pipe, matcher, samples[:4])
    labels = pipe(packets_from_samples(samples, "s", packet_us=1_000, duration_us=30_000))
    offline = offline_labels(bundle, matcher, "vision", [ev for ev, _ in samples],
                             durations_us=[30_000] * 8)
    assert [lab.label for lab in labels] == offline


def test_real_reservoir_sliding_windows_equal_offline_windows():

    cfg = res.preset("nmnist", bin_us=2_000, read_noise=0.1, seed=3, crop=(0, 0, 34, 34))
    bundle = make_bundle(res.Reservoir(cfg).n_features, D, reservoirs={"vision": to_dict(cfg)})
    matcher = PrototypeMatcher(D)
    pipe = Pipeline(bundle, matcher, PipelineConfig(segment="window", window_us=40_000, hop_us=20_000))
    _register(pipe, matcher, random_samples(6, DVS_DTYPE, duration_us=40_000, events=12_000, seed=11))
    cont = random_samples(1, DVS_DTYPE, duration_us=120_000, events=40_000, seed=12)
    pkts = packets_from_samples(cont, "live", packet_us=3_000, duration_us=120_000)
    for p in pkts:
        p.sample_begin = p.sample_end = False
    labels = pipe(pkts[:17]) + pipe(pkts[17:])
    spans = [(lab.t_start, lab.t_end) for lab in labels]
    assert spans == [(t, t + 40_000) for t in range(0, 80_001, 20_000)]
    windows = []
    for a, b in spans:
        w = slice_time(cont[0][0], a, b).copy()
        w["t"] -= a
        windows.append(w)
    offline = offline_labels(bundle, matcher, "vision", windows, [40_000] * len(windows),
                             sample_ids=[window_key("live", lab.sample_id) for lab in labels])
    assert [lab.label for lab in labels] == offline
    feats = res.Reservoir(cfg).encode(windows, [40_000] * len(windows),
                                      sample_ids=[window_key("live", lab.sample_id) for lab in labels])
    assert feats.sum() > 0  # the windows do drive the reservoir
    ref = matcher.match_many(bundle.embed("vision", feats))
    np.testing.assert_allclose([lab.score for lab in labels], [m.score for m in ref], rtol=0, atol=1e-6)


def test_packets_of_the_wrong_layout_are_rejected_without_harming_other_streams():
    res = pytest.importorskip("streamlsm.reservoir")

    cfg = res.preset("nmnist", crop=(0, 0, 34, 34))
    bundle = make_bundle(res.Reservoir(cfg).n_features, D, reservoirs={"vision": to_dict(cfg)})
    matcher = PrototypeMatcher(D)
    matcher.add("a", np.ones(D))
    pipe = Pipeline(bundle, matcher)
    good = packets_from_samples(random_samples(2, DVS_DTYPE, duration_us=20_000), "cam")
    bad = packets_from_samples(random_samples(2, COCHLEA_DTYPE, duration_us=20_000), "liar")
    labels = pipe([p for pair in zip(good, bad, strict=True) for p in pair])
    assert [(lab.stream_id, lab.sample_id) for lab in labels] == [("cam", 0), ("cam", 1)]
    assert pipe.stats.rejected_packets == len(bad)


def test_feature_transform_recorded_in_the_bundle_is_applied_to_counts():
    from streamlsm.model.bundle import feature_transform

    bundle, matcher, pipe, factory = _setup()
    bundle.extra["feature_transform"] = {"vision": "log1p"}
    assert feature_transform(bundle, "vision") == "log1p"
    samples = random_samples(6, DVS_DTYPE, seed=13)
    _register(pipe, matcher, samples[:3])
    labels = pipe(packets_from_samples(samples, "s"))
    counts = FakeReservoir(F).encode([ev for ev, _ in samples])
    ref = matcher.match_many(bundle.embed("vision", np.log1p(counts)))
    np.testing.assert_allclose([lab.score for lab in labels], [m.score for m in ref], atol=1e-6)
    raw = matcher.match_many(bundle.embed("vision", counts))
    assert not np.allclose([m.score for m in raw], [m.score for m in ref])
    bundle.extra["feature_transform"] = "sqrt"
    with pytest.raises(ModelError):
        feature_transform(bundle, "vision")


def test_a_modality_without_a_reservoir_config_is_rejected_not_fatal():
    bundle = make_bundle(F, D, modalities=("vision", "audio"))  # no reservoir configs recorded
    matcher = PrototypeMatcher(D)
    pipe = Pipeline(bundle, matcher)  # the default factory reads the bundle's configs
    pkts = packets_from_samples(random_samples(1, DVS_DTYPE), "cam")
    assert pipe(pkts) == [] and pipe.stats.rejected_packets == len(pkts)


# ---- issue 11: hostile and careless packets cost bounded work and never mute a stream
def _one_event(stream, seq, t0, t1, begin=True, end=True, sample=0):
    from streamlsm.events import EventPacket

    ev = np.zeros(1, DVS_DTYPE)
    ev["t"] = t0
    return EventPacket(stream, seq, t0, t1, ev, "vision", sample, None, begin, end)


@pytest.mark.parametrize("segment", ["sample", "window"])
def test_a_packet_moving_its_stream_too_far_is_refused_and_counted(segment):
    """Items 1 and 2: t1 = 2**62 (sample mode: ~7.7e14 bins) or 5e9 us (window mode: 99,999
    windows, 3.3 GB) from one packet; now refused (refused_spans), and the stream goes on."""
    cfg = PipelineConfig(segment=segment, max_advance_us=1_000_000)
    _, matcher, pipe, _ = _setup(config=cfg)
    matcher.add("a", np.ones(D))
    assert pipe([_one_event("x", 0, 0, 2 ** 62 if segment == "sample" else 5_000_000_000)]) == []
    assert pipe.stats.refused_spans == 1
    # the next packets of the stream are served as usual (window mode: from a fresh origin)
    good = packets_from_samples(random_samples(2, DVS_DTYPE, duration_us=200_000), "x", seq0=1,
                                t0=6_000_000_000, duration_us=200_000)
    labels = pipe(good)
    assert len(labels) == (2 if segment == "sample" else 7) and pipe.stats.refused_spans == 1
    # a gap in window mode counts as the advance: 1 s after the last packet is one too many
    if segment == "window":
        assert pipe([_one_event("x", good[-1].seq + 1, 6_402_000_000, 6_402_000_010)]) == []
        assert pipe.stats.refused_spans == 2


def test_a_spoofed_seq_does_not_mute_the_stream():
    """Item 9: one packet with seq = 2**63 - 1 made the next legitimate packets duplicates until the
    source restarted at 0; a jump beyond max_seq_jump now restarts the stream (counted) instead."""
    _, matcher, pipe, _ = _setup()
    matcher.add("0", np.ones(D))
    samples = random_samples(6, DVS_DTYPE, seed=3)
    pkts = packets_from_samples(samples, "cam7")
    first = pipe(pkts[:10])
    assert pipe([_one_event("cam7", 2 ** 63 - 1, 10 ** 9, 10 ** 9 + 5, begin=False, end=False)]) == []
    rest = pipe(pkts[10:])
    assert pipe.stats.duplicate_packets == 0 and pipe.stats.seq_resets == 2  # forward, then back
    got = {lab.sample_id for lab in first + rest}
    assert len(got) >= 5  # at most the sample in flight at the spoof is lost
    assert got >= {lab for lab in range(6) if lab != [p.sample_id for p in pkts[:10]][-1]}
    # a real duplicate is still a duplicate
    pipe([pkts[-1]])
    assert pipe.stats.duplicate_packets == 1


def test_a_flood_of_new_streams_is_refused_and_the_active_stream_keeps_its_sample():
    """Item 7 / the stream table: at max_streams a new id evicts only a stream idle for
    stream_idle_s; a flood of fresh ids is refused (counted) while a sample is in flight."""
    clock = [0]
    bundle = make_bundle(F, D)
    matcher = PrototypeMatcher(D)
    matcher.add("a", np.ones(D))
    pipe = Pipeline(bundle, matcher, PipelineConfig(max_streams=8, stream_idle_s=5.0),
                    reservoir_factory=lambda m: FakeReservoir(F, m), clock_ns=lambda: clock[0])
    pkts = packets_from_samples(random_samples(1, DVS_DTYPE, duration_us=40_000), "good")
    pipe(pkts[:2])
    pipe([_one_event(f"flood{i}", 0, 0, 10, end=False) for i in range(100)])
    assert pipe.stats.refused_streams == 93 and len(pipe.streams) == 8
    labels = pipe(pkts[2:])
    assert [lab.stream_id for lab in labels] == ["good"]
    clock[0] += 6 * 10 ** 9  # the flood's streams are idle now: they make room
    pipe([_one_event("late", 0, 0, 10)])
    assert "late" in pipe.streams and pipe.stats.evicted_streams == 1


def test_state_budget_bounds_the_streams_and_refuses_beyond_it():
    """Memory budget: streams hold reservoir state (slot_bytes); beyond state_mb a new stream is
    refused (counted), and a released stream gives its share back."""
    def factory(m):
        r = FakeReservoir(F, m)
        r.slot_bytes = 1 << 20  # 1 MiB per stream
        return r

    matcher = PrototypeMatcher(D)
    matcher.add("a", np.ones(D))
    pipe = Pipeline(make_bundle(F, D), matcher, PipelineConfig(state_mb=3, stream_idle_s=60),
                    reservoir_factory=factory)
    pipe([_one_event(f"s{i}", 0, 0, 10, end=False) for i in range(5)])
    assert len(pipe.streams) == 3 and pipe.stats.refused_streams == 2
    assert pipe.state_bytes == 3 << 20
    pipe.forget("s0")
    assert pipe.state_bytes == 2 << 20
    pipe([_one_event("s9", 0, 0, 10, end=False)])
    assert "s9" in pipe.streams


def test_non_finite_embeddings_send_no_label():
    """Item 12: a NaN weight gave labels with score NaN (and NaN in the JSONL sink); now such a
    label is not sent, and counted."""
    bundle, matcher, pipe, _ = _setup()
    matcher.add("a", np.ones(D))
    bundle.heads["vision"].weights[0][:] = np.nan
    assert pipe(packets_from_samples(random_samples(2, DVS_DTYPE), "n")) == []
    assert pipe.stats.nonfinite_labels == 2 and pipe.stats.labels == 0


def test_a_packet_going_back_in_time_is_refused():
    """Found by the hostile generator: a sample begun at t = 2^63 - 2 and closed by a packet ending
    at 2^40 gave a label with t_end < t_start, which no subscriber can decode."""
    _, matcher, pipe, _ = _setup()
    matcher.add("a", np.ones(D))
    assert pipe([_one_event("b", 0, 2 ** 63 - 2, 2 ** 63 - 1, end=False),
                 _one_event("b", 1, 2 ** 40, 2 ** 40 + 1, begin=False)]) == []
    assert pipe.stats.refused_spans == 1
    labels = pipe(packets_from_samples(random_samples(1, DVS_DTYPE), "b", seq0=2))
    assert len(labels) == 1 and labels[0].t_start <= labels[0].t_end


def test_window_labels_keep_their_own_span_when_the_stream_restarts_in_the_same_call():
    """Found by the hostile generator in window mode: a label's span was computed from the stream's
    origin at labelling time; a refused packet later in the same call moved the origin, and the
    label went out with t_start beyond 2^63 - 1 (undecodable)."""
    cfg = PipelineConfig(segment="window", window_us=100_000, hop_us=50_000, max_advance_us=1_000_000)
    _, matcher, pipe, _ = _setup(config=cfg)
    matcher.add("a", np.ones(D))
    good = packets_from_samples(random_samples(1, DVS_DTYPE, duration_us=200_000), "w", duration_us=200_000,
                                t0=2 ** 62)
    spoof = _one_event("w", len(good), 2 ** 63 - 2, 2 ** 63 - 1, begin=False, end=False)  # refused, restarts
    labels = pipe(good + [spoof, _one_event("w", len(good) + 1, 2 ** 63 - 2, 2 ** 63 - 1)])
    spans = [(lab.t_start - 2 ** 62, lab.t_end - 2 ** 62) for lab in labels if lab.t_start < 2 ** 63 - 10]
    assert spans == [(0, 100_000), (50_000, 150_000), (100_000, 200_000)]
    assert all(0 <= lab.t_start <= lab.t_end < 2 ** 63 for lab in labels)
    assert pipe.stats.refused_spans == 1
    assert pipe._streams["w"].cursor.open == {0}  # only the window opened after the restart
    pipe.forget("w")
    assert "w" not in pipe.streams
