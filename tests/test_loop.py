"""The processing loop every server runs: spans cut as configured, labels equal one pipeline call, stamps."""

from __future__ import annotations

import numpy as np

from streamlsm.events import LAYOUTS
from streamlsm.loop import ProcessLoop, split_by_span
from streamlsm.model.prototypes import PrototypeMatcher
from streamlsm.pipeline import Pipeline, PipelineConfig
from streamlsm.testing import FakeReservoir, make_bundle
from streamlsm.testing.procs import packets_from_samples, random_samples


def _pipeline() -> Pipeline:
    bundle = make_bundle(n_features=32, dim=16)
    matcher = PrototypeMatcher(16)
    rng = np.random.default_rng(1)
    for c in "012":
        matcher.add(c, rng.normal(size=(2, 16)).astype(np.float32))
    return Pipeline(bundle, matcher, PipelineConfig(modality="vision"), lambda m: FakeReservoir(32, m))


def _items(n_samples: int = 6):
    pkts = packets_from_samples(random_samples(n_samples, LAYOUTS["dvs"], duration_us=50_000), "s0",
                                packet_us=10_000)
    return [(p, 1_000 + i) for i, p in enumerate(pkts)]


def test_split_by_span_cuts_at_the_limit_and_keeps_order():
    items = _items(2)  # 10 packets of 10 ms
    parts = split_by_span(items, 30_000)
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    assert [i for part in parts for i in part] == items
    # a packet longer than the limit is a call of its own, never dropped
    assert [len(p) for p in split_by_span(items, 1)] == [1] * len(items)


def test_loop_labels_equal_one_pipeline_call_and_are_stamped():
    items = _items()
    whole = _pipeline()([p for p, _ in items], [r for _, r in items])
    loop = ProcessLoop(_pipeline(), max_call_us=20_000, clock_ns=lambda: 123)
    got = loop(items)
    assert len(got) == len(whole) == 6
    assert [(g.stream_id, g.label, g.received_ns) for g in got] == \
        [(w.stream_id, w.label, w.received_ns) for w in whole]
    # the same embeddings; the scores agree to float32 rounding (BLAS sums a smaller batch otherwise)
    np.testing.assert_allclose([g.score for g in got], [w.score for w in whole], rtol=1e-5)
    assert {g.published_ns for g in got} == {123}
    assert loop.stats.calls == 15 and loop.stats.packets == len(items) and loop.stats.labels == 6
