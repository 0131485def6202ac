"""Live sensors: ``LiveSender``, a synchronous sender for driver loops, and the live-source runner.

A camera SDK hands its callback a buffer of events every millisecond or so, on its own thread;
``LiveSender.send_events(buffer)`` turns each buffer into one ``EventPacket`` of a stream (fields
converted by name into the stream's layout, time rebased so the stream starts at 0, spans
contiguous, ``seq`` counting from 0) and sends it over ZeroMQ without blocking the sensor: when the
daemon's queue is full the packet is dropped and counted (``stats["dropped"]``), the newest data
keeps flowing. It is thread-safe (one lock around the socket) and needs no asyncio.

``run_source(source, sender, stop)`` runs a ``plugins.LiveSource`` plug-in (entry-point group
``streamlsm.live``) into a sender; `streamlsm live <name>` is that on the command line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import zmq

from ..errors import ConfigError, DataError, TransportError
from ..events import MODALITIES, EventPacket, dtype_for
from ..net import wire
from ..net.transport import SEND_KINDS

__all__ = ["LiveSender", "FIELD_ALIASES", "to_layout", "run_source"]

#: other names SDKs give the fields (DV: timestamp/polarity; some tools: ts, pol)
FIELD_ALIASES = {"t": ("t", "timestamp", "ts"), "x": ("x",), "y": ("y",),
                 "p": ("p", "polarity", "pol")}


def to_layout(events: np.ndarray, layout: str) -> np.ndarray:
    """``events`` (any structured array with the layout's field names or their aliases) in ``layout``.

    Values are checked to fit (x/y in int16, t >= 0 after rebasing is the sender's job); a boolean
    polarity becomes 0/1. The input is returned as is when it already has the layout's dtype.
    """
    want = dtype_for(layout)
    if events.dtype == want:
        return events
    names = events.dtype.names or ()
    out = np.empty(len(events), dtype=want)
    for field in want.names:
        src = next((a for a in FIELD_ALIASES.get(field, (field,)) if a in names), None)
        if src is None:
            raise DataError("events", f"no field {field!r} (or {FIELD_ALIASES.get(field, ())}) "
                            f"for the {layout!r} layout; fields: {list(names)}")
        col = events[src]
        info = np.iinfo(want[field]) if want[field].kind == "i" else None
        if info is not None and len(col) and col.dtype.kind in "iu" and (
                int(col.min()) < info.min or int(col.max()) > info.max):
            raise DataError("events", f"field {src!r} holds values outside {want[field]}")
        out[field] = col
    return out


class LiveSender:
    """Events from a driver loop or SDK callback -> EventPackets of one stream over ZeroMQ (sync).

    ``endpoint``: where the daemon's input listens (PUSH connects to its PULL by default; ``kind=
    "pub"``/``bind=True`` for subscribers). ``rebase``: the first event's time becomes stream time
    0 (cameras count from power-on or the epoch). ``block``: wait for room in the queue (for
    replays of files) instead of dropping (live sensors). Use as a context manager or call
    ``close()``; the last packet is marked ``sample_end`` (the daemon labels what it saw).
    """

    def __init__(self, endpoint: str, *, stream_id: str = "cam0", modality: str = "vision",
                 layout: str = "dvs", kind: str = "push", bind: bool = False, hwm: int = 1000,
                 rebase: bool = True, block: bool = False, label: str | None = None,
                 linger_ms: int = 1000, context: zmq.Context | None = None,
                 setup: Callable[[zmq.Socket], None] | None = None) -> None:
        if kind not in SEND_KINDS:
            raise ConfigError("kind", f"must be one of {sorted(SEND_KINDS)}, got {kind!r}")
        if modality not in MODALITIES:
            raise ConfigError("modality", f"must be one of {list(MODALITIES)}, got {modality!r}")
        wire.topic_for(wire.EVENTS_TOPIC, stream_id)
        self.stream_id, self.modality, self.layout = stream_id, modality, layout
        self.dtype = dtype_for(layout)
        self.rebase, self.block, self.label = rebase, block, label
        self.endpoint = endpoint
        self.stats = {"sent": 0, "events": 0, "dropped": 0, "dropped_events": 0, "late_events": 0}
        self._lock = threading.Lock()
        self._seq = 0
        self._t = 0            # stream time where the next packet starts
        self._origin: int | None = None
        self._closed = False
        self._ctx = context or zmq.Context.instance()
        sock = self._ctx.socket(SEND_KINDS[kind])
        try:
            sock.setsockopt(zmq.LINGER, linger_ms)
            sock.setsockopt(zmq.SNDHWM, hwm)
            if setup is not None:
                setup(sock)
            if bind:
                sock.bind(endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT) or endpoint
            else:
                sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise TransportError(f"cannot {'bind' if bind else 'connect'} {kind} socket to "
                                 f"{endpoint}: {exc}") from None
        self._sock = sock

    def send_events(self, events: np.ndarray, t_end: int | None = None, *,
                    sample_end: bool = False) -> bool:
        """Send one buffer as one packet; False if it was dropped (queue full, counted).

        Times are the sensor's; the packet spans from the end of the last one to just after this
        buffer's last event (or ``t_end``). Events older than the last packet's end (a sensor
        whose buffers overlap) are dropped and counted in ``late_events``.
        """
        ev = to_layout(np.asarray(events), self.layout)
        with self._lock:
            if self._closed:
                raise TransportError(f"LiveSender {self.stream_id} is closed")
            t = ev["t"].astype(np.int64, copy=False)
            if len(t) > 1 and np.count_nonzero(t[1:] < t[:-1]):
                order = np.argsort(t, kind="stable")
                ev, t = ev[order], t[order]
            if self._origin is None:
                self._origin = int(t[0]) if (self.rebase and len(t)) else 0
            if self._origin:
                if ev is events:
                    ev = ev.copy()
                ev["t"] = t - self._origin
                t = ev["t"]
            keep = int(np.searchsorted(t, self._t, side="left"))
            if keep:
                self.stats["late_events"] += keep
                ev = ev[keep:]
            end = int(ev["t"][-1]) + 1 if len(ev) else self._t
            if t_end is not None:
                end = max(end, int(t_end) - self._origin)
            pkt = EventPacket(self.stream_id, self._seq, self._t, max(end, self._t),
                              np.ascontiguousarray(ev), self.modality, 0, self.label,
                              sample_begin=self._seq == 0, sample_end=sample_end,
                              sent_ns=time.time_ns())
            return self._send(pkt)

    def _send(self, pkt: EventPacket) -> bool:
        frames = wire.encode(pkt)
        try:
            self._sock.send_multipart(frames, flags=0 if self.block else zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.stats["dropped"] += 1
            self.stats["dropped_events"] += len(pkt.events)
            self._t = pkt.t_end  # time still advances: the next packet starts after the lost one
            self._seq += 1       # and the receiver sees the gap in seq
            return False
        except zmq.ZMQError as exc:
            raise TransportError(f"send on {self.endpoint} failed: {exc}") from None
        self.stats["sent"] += 1
        self.stats["events"] += len(pkt.events)
        self._t = pkt.t_end
        self._seq += 1
        return True

    def close(self) -> None:
        """Send a last empty packet marking the end of the sample (if any was sent), then close."""
        with self._lock:
            if self._closed:
                return
            if self._seq:
                self._send(EventPacket(self.stream_id, self._seq, self._t, self._t + 1,
                                       np.zeros(0, self.dtype), self.modality, 0, self.label,
                                       sample_begin=False, sample_end=True, sent_ns=time.time_ns()))
            self._closed = True
            self._sock.close()

    def __enter__(self) -> LiveSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_source(source, sender: LiveSender, stop: threading.Event) -> dict:
    """Run a LiveSource plug-in into ``sender`` until ``stop`` is set or the sensor ends."""
    if getattr(source, "layout", sender.layout) != sender.layout:
        raise ConfigError("layout", f"the source gives {source.layout!r} events, the sender "
                          f"sends {sender.layout!r}")
    source.run(sender.send_events, stop)
    return dict(sender.stats)
