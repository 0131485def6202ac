"""ZeroMQ relay sink: republishes labels on another PUB socket (never blocks; drops are counted)."""

from __future__ import annotations

import zmq

from streamlsm.errors import ConfigError, TransportError
from streamlsm.events import LabelEvent
from streamlsm.net import wire
from streamlsm.net.security import check_bind

__all__ = ["RelaySink"]


class RelaySink:
    """Publishes every label (wire format, topic ``lb/<stream>``) on ``endpoint`` (bound by default)."""

    def __init__(self, endpoint: str, bind: bool = True, hwm: int = 10_000) -> None:
        if type(hwm) is not int or hwm < 0:
            raise ConfigError("sinks.relay.hwm", f"must be an integer >= 0 (0 = no limit), got {hwm!r}")
        if bind:  # the bind rule: the relay has no CURVE keys, so it binds only loopback/ipc/inproc
            check_bind(endpoint, None, "sinks.relay.endpoint")
        self._sock = zmq.Context.instance().socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, int(hwm))
        try:
            if bind:
                self._sock.bind(endpoint)
                endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise TransportError(f"relay cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from None
        self.endpoint = endpoint
        self.stats = {"sent": 0, "dropped": 0}

    def write(self, label: LabelEvent) -> None:
        try:
            self._sock.send_multipart(wire.encode(label), zmq.NOBLOCK)
            self.stats["sent"] += 1
        except zmq.Again:
            self.stats["dropped"] += 1

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(0)
