"""Prometheus metrics sink: packets, events, drops, labels, queue depth, latency histogram, real-time factor."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streamlsm.errors import ConfigError
from streamlsm.events import LabelEvent
from streamlsm.net.security import is_local_endpoint

__all__ = ["PrometheusSink"]

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class PrometheusSink:
    """Serves ``/metrics`` on ``addr:port`` (port 0 = any free port, see ``.port``).

    Label latency (daemon receive of a sample's last packet to label publish) feeds a histogram on
    ``write``; daemon counters arrive through ``observe(status)`` every ``limits.stats_every_s``.
    """

    def __init__(self, port: int = 9108, addr: str = "127.0.0.1", serve: bool = True) -> None:
        if type(port) is not int or not 0 <= port <= 65535:
            raise ConfigError("sinks.prometheus.port", f"must be an integer in [0, 65535], got {port!r}")
        if not isinstance(addr, str) or not is_local_endpoint(f"tcp://{addr}:{port}"):
            # the bind rule: beyond loopback only with keys, and HTTP /metrics has none
            raise ConfigError("sinks.prometheus.addr", f"{addr!r} is not a loopback address: /metrics has "
                              "no authentication; bind 127.0.0.1 and scrape through a proxy or tunnel")
        self.registry = CollectorRegistry()
        r = self.registry
        self.packets = Counter("streamlsm_packets", "Event packets received", registry=r)
        self.events = Counter("streamlsm_events", "Events received", registry=r)
        self.drops = Counter("streamlsm_drops", "Packets dropped at the input queue", registry=r)
        self.labels = Counter("streamlsm_labels", "Labels published", ["modality"], registry=r)
        self.queue = Gauge("streamlsm_queue_depth", "Packets waiting in the input queue", registry=r)
        self.rtf = Gauge("streamlsm_real_time_factor",
                         "Pipeline compute seconds per second of stream time", registry=r)
        self.streams = Gauge("streamlsm_streams", "Streams with live state", registry=r)
        self.latency = Histogram("streamlsm_label_latency_seconds", "Last packet received -> label published",
                                 buckets=_BUCKETS, registry=r)
        self._last = {"received": 0, "dropped": 0, "events": 0}
        self.port = None
        self._server = None
        if serve:
            self._server, _thread = start_http_server(int(port), addr=addr, registry=r)
            self.port = self._server.server_port

    def write(self, label: LabelEvent) -> None:
        self.labels.labels(label.modality or "unknown").inc()
        if label.received_ns and label.published_ns >= label.received_ns:
            self.latency.observe((label.published_ns - label.received_ns) / 1e9)

    def observe(self, status: dict) -> None:
        now = {"received": int(status.get("received", 0)), "dropped": int(status.get("dropped", 0)),
               "events": int(status.get("pipeline", {}).get("events", 0))}
        for key, counter in (("received", self.packets), ("dropped", self.drops), ("events", self.events)):
            delta = now[key] - self._last[key]
            if delta > 0:
                counter.inc(delta)
        self._last = now
        self.queue.set(status.get("queue_depth", 0))
        self.rtf.set(status.get("real_time_factor", 0.0))
        self.streams.set(status.get("streams", 0))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
