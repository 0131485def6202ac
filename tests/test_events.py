"""Event layouts and pure helpers."""

from __future__ import annotations

import numpy as np
import pytest

from streamlsm.errors import WireError
from streamlsm.events import (
    COCHLEA_DTYPE,
    DVS_DTYPE,
    LAYOUTS,
    SPIKES_DTYPE,
    EventPacket,
    dtype_for,
    empty_events,
    layout_of,
    slice_time,
)


def test_layouts_are_packed_little_endian_with_tonic_names():
    assert DVS_DTYPE.names == ("t", "x", "y", "p") and DVS_DTYPE.itemsize == 13
    assert COCHLEA_DTYPE.names == ("t", "x", "p") and COCHLEA_DTYPE.itemsize == 11
    assert SPIKES_DTYPE.names == ("t", "x") and SPIKES_DTYPE.itemsize == 10
    for dt in LAYOUTS.values():
        assert dt["t"] == np.dtype("<i8")
        assert dt["x"].byteorder in ("<", "=", "|") and dt["x"].itemsize == 2


def test_layout_lookup_both_ways():
    for name, dt in LAYOUTS.items():
        assert layout_of(np.zeros(3, dt)) == name
        assert dtype_for(name) == dt
        assert len(empty_events(name)) == 0
    with pytest.raises(WireError, match="layout"):
        dtype_for("rgb")
    with pytest.raises(WireError, match="not a streamlsm layout"):
        layout_of(np.zeros(3, np.int64))


def test_slice_time_half_open_and_view():
    ev = np.zeros(6, SPIKES_DTYPE)
    ev["t"] = [0, 5, 5, 10, 15, 20]
    part = slice_time(ev, 5, 15)
    assert part["t"].tolist() == [5, 5, 10]
    assert np.shares_memory(part, ev)
    assert len(slice_time(ev, 21, 30)) == 0


def test_packet_length_and_layout():
    ev = np.zeros(4, COCHLEA_DTYPE)
    pkt = EventPacket("s0", 0, 0, 1000, ev, modality="audio")
    assert len(pkt) == 4 and pkt.layout == "cochlea"
