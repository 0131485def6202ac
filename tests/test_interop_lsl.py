"""Lab Streaming Layer, in-process on the loopback: the label sink is a Markers outlet that an inlet
resolves by name; the inlet source turns spike markers and signals into event packets."""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from streamlsm.errors import ConfigError, DataError
from streamlsm.events import COCHLEA_DTYPE, SPIKES_DTYPE, LabelEvent
from streamlsm.plugins import SINK_GROUP, SOURCE_GROUP, load
from streamlsm.stream.replay import ReplayConfig, schedule

lsl = pytest.importorskip("pylsl", reason="LSL needs pylsl: pip install 'streamlsm[lsl]'")

# Keep liblsl on this machine: discovery only to 127.0.0.1, no IPv6, no multicast groups joined.
# Must come before any other LSL call in this process.
lsl.set_config_content("[ports]\nIPv6 = disable\n[multicast]\nResolveScope = machine\n"
                       "ListenAddress = 127.0.0.1\nAddressesOverride = {127.0.0.1}\n"
                       "[lab]\nKnownPeers = {127.0.0.1}\n")

from streamlsm_sinks.lsl import LSLMarkerSink  # noqa: E402
from streamlsm_sources.lsl import LSLInletSource, delta_events  # noqa: E402

RESOLVE_S = 5.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


def _label(i: int, published_ns: int) -> LabelEvent:
    return LabelEvent(stream_id="cam", seq=i, t_start=0, t_end=1000, label=str(i % 3), score=0.5 + i / 100,
                      truth=str(i % 3), sample_id=i, bundle_hash="abc123", seed=7,
                      published_ns=published_ns)


def test_label_sink_is_a_markers_outlet_an_inlet_resolves_by_name():
    name = _unique("streamlsm-labels")
    sink = load(SINK_GROUP, "lsl")(name, bundle_hash="abc123", seed=7, provenance={"run": "t1"})
    assert isinstance(sink, LSLMarkerSink)
    try:
        found = lsl.resolve_byprop("name", name, 1, RESOLVE_S)
        assert len(found) == 1
        info = found[0]
        assert info.type() == "Markers" and info.channel_count() == 1
        assert info.nominal_srate() == lsl.IRREGULAR_RATE and info.channel_format() == lsl.cf_string
        inlet = lsl.StreamInlet(info)
        full = inlet.info(timeout=RESOLVE_S)  # the full description travels with the inlet
        prov = ET.fromstring(full.as_xml()).find("desc/provenance")
        assert prov.findtext("software") == "streamlsm" and prov.findtext("bundle_hash") == "abc123"
        assert prov.findtext("seed") == "7" and prov.findtext("run") == "t1"
        inlet.open_stream(timeout=RESOLVE_S)
        deadline = time.monotonic() + RESOLVE_S
        while not sink.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        age_ns = 200_000_000  # a label published 0.2 s ago gets an LSL time 0.2 s in the past
        before = lsl.local_clock()
        for i in range(5):
            sink.write(_label(i, time.time_ns() - age_ns))
        got = []
        while len(got) < 5 and time.monotonic() < deadline:
            sample, ts = inlet.pull_sample(timeout=0.5)
            if sample is not None:
                got.append((sample[0], ts))
        assert [g[0] for g in got] == ["0", "1", "2", "0", "1"]
        for _, ts in got:
            assert before - 0.2 - 0.05 < ts < before - 0.2 + 0.5
        inlet.close_stream()
    finally:
        sink.close()
    sink.write(_label(9, 0))
    assert sink.written == 5 and sink.dropped == 1


def test_label_sink_json_format_carries_every_field():
    name = _unique("streamlsm-json")
    sink = LSLMarkerSink(name, format="json")
    try:
        inlet = lsl.StreamInlet(lsl.resolve_byprop("name", name, 1, RESOLVE_S)[0])
        inlet.open_stream(timeout=RESOLVE_S)
        deadline = time.monotonic() + RESOLVE_S
        while not sink.have_consumers() and time.monotonic() < deadline:
            time.sleep(0.01)
        label = _label(4, time.time_ns())
        sink.write(label)
        sample, _ = inlet.pull_sample(timeout=RESOLVE_S)
        assert json.loads(sample[0]) == label.to_dict()
        inlet.close_stream()
    finally:
        sink.close()
    with pytest.raises(ConfigError, match="format"):
        LSLMarkerSink(name, format="xml")


def _serve(outlet, rows, stop: threading.Event, gap_s: float = 0.002) -> None:
    for row in rows:
        if stop.is_set():
            return
        outlet.push_sample(row)
        time.sleep(gap_s)


def test_inlet_source_turns_spike_markers_into_event_packets():
    name = _unique("spikes")
    info = lsl.StreamInfo(name, "Markers", 1, lsl.IRREGULAR_RATE, lsl.cf_string, name)
    outlet = lsl.StreamOutlet(info)
    units = [3, 1, 4, 1, 5, 9, 2, 6]
    src = load(SOURCE_GROUP, "lsl")(name, duration_s=RESOLVE_S, max_samples=len(units),
                                    resolve_timeout_s=RESOLVE_S)
    assert isinstance(src, LSLInletSource) and src.layout == "spikes"
    stop = threading.Event()
    src._inlet.open_stream(timeout=RESOLVE_S)
    thread = threading.Thread(target=_serve, args=(outlet, [[str(u)] for u in units], stop))
    thread.start()
    try:
        packets = [p for _, p in schedule(src, "lsl", ReplayConfig(packet_us=1000, speed="max"))]
    finally:
        stop.set()
        thread.join(timeout=RESOLVE_S)
        src.close()
    ev = np.concatenate([p.events for p in packets])
    assert ev.dtype == SPIKES_DTYPE and ev["x"].tolist() == units
    assert ev["t"][0] == 0 and np.all(np.diff(ev["t"]) >= 0) and ev["t"][-1] >= 1000 * (len(units) - 1)
    assert packets[0].sample_begin and packets[-1].sample_end and src.stats["samples"] == len(units)


def test_inlet_source_encodes_signals_by_send_on_delta():
    name = _unique("signal")
    info = lsl.StreamInfo(name, "EEG", 2, 500.0, lsl.cf_float32, name)
    outlet = lsl.StreamOutlet(info)
    rows = [[0.0, 0.0], [0.4, -1.2], [2.1, -1.3], [2.2, 0.9], [0.0, 0.9]]
    src = LSLInletSource(name, delta=1.0, duration_s=RESOLVE_S, max_samples=len(rows),
                         resolve_timeout_s=RESOLVE_S)
    assert src.layout == "cochlea" and src.sensor_size == (2,)
    src._inlet.open_stream(timeout=RESOLVE_S)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(outlet, rows, stop))
    thread.start()
    try:
        ev = src.events(0)
    finally:
        stop.set()
        thread.join(timeout=RESOLVE_S)
        src.close()
    # channel 0: 0 -> 2.1 is two steps up (2 ON); 2.2 -> 0.0 two down from the level 2 (2 OFF).
    # channel 1: -1.2 one step down (1 OFF, level -1); 0.9 is 1.9 above -1: one ON
    assert ev.dtype == COCHLEA_DTYPE
    assert list(zip(ev["x"].tolist(), ev["p"].tolist(), strict=True)) == [
        (1, 0), (0, 1), (0, 1), (1, 1), (0, 0), (0, 0)]
    ref_ev, _ = delta_events(np.array(rows), np.arange(5) * 2000, np.zeros(2), 1.0)
    assert np.array_equal(ref_ev[["x", "p"]], ev[["x", "p"]])


def test_inlet_source_errors_are_bounded_and_clear():
    with pytest.raises(DataError, match="no LSL stream with name 'absent-.*' found within 0.5 s"):
        LSLInletSource(_unique("absent"), resolve_timeout_s=0.5)
    with pytest.raises(ConfigError, match="name the LSL stream"):
        LSLInletSource(None)
    with pytest.raises(ConfigError, match="delta"):
        LSLInletSource("x", delta=0)
