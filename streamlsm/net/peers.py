"""Who is on the other end of a ZeroMQ socket: its monitor's handshake and disconnect events, counted.

ZeroMQ connects and reconnects silently: a PUSH that no PULL ever reaches blocks for ever, a SUB
facing a PUSH never hears anything, and neither says so. ``PeerWatch`` is attached to a socket
before it binds or connects (``PeerWatch()(sock)``, or as the ``setup=`` of a ``transport.Sender``
/ ``Receiver``) and then counts the peers that completed the ZMTP handshake, the handshakes that
failed (a peer of a socket type that cannot talk to this one, or a CURVE key it refused) and the
disconnects, so that the commands can say within a few seconds that nobody is there.
"""

from __future__ import annotations

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import TransportError

__all__ = ["PeerWatch", "HandshakeWatch", "CLOSED_IN_HANDSHAKE"]

_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED
           | zmq.EVENT_ACCEPTED)
#: what a connection closed before its handshake completed most often means
CLOSED_IN_HANDSHAKE = "closed during the handshake: socket types that cannot talk, or keys refused"
for _e in _FAILED:
    _EVENTS |= _e


class PeerWatch:
    """Counts a socket's peers from its monitor events (poll it; nothing runs in the background).

    ``peers`` is the number of peers connected now (handshakes done minus disconnects),
    ``handshakes`` all handshakes so far, ``failed`` the connections that failed their handshake
    or closed before it completed (ZeroMQ closes a pair of socket types that cannot talk, e.g. a
    SUB and a PUSH, without a failure event), with the reason in ``last_failure``.
    """

    def __init__(self) -> None:
        self.peers = 0
        self.handshakes = 0
        self.failed = 0
        self.last_failure = ""
        self._pending = 0  # connections whose handshake has not completed
        self._sock: zmq.Socket | None = None
        self._mon: zmq.Socket | None = None

    def __call__(self, sock: zmq.Socket) -> None:
        """Attach to ``sock`` (before bind/connect, so that no handshake is missed)."""
        self._sock = zmq.Socket.shadow(sock.underlying)  # works for zmq.asyncio sockets too
        addr = f"inproc://streamlsm-peers-{id(self)}-{time.monotonic_ns()}"
        self._sock.monitor(addr, _EVENTS)
        self._mon = zmq.Context.shadow(sock.context.underlying).socket(zmq.PAIR)
        self._mon.setsockopt(zmq.LINGER, 0)
        self._mon.connect(addr)

    def poll(self, timeout_s: float = 0.0) -> int:
        """Take the events waiting now (waiting up to ``timeout_s`` for the first); the peer count."""
        if self._mon is None:
            return self.peers
        wait_ms = int(timeout_s * 1000)
        while self._mon.poll(wait_ms):
            wait_ms = 0
            msg = recv_monitor_message(self._mon)
            event = msg["event"]
            if event in (zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED):
                self._pending += 1
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._pending = max(0, self._pending - 1)
                self.peers += 1
                self.handshakes += 1
            elif event == zmq.EVENT_DISCONNECTED:
                if self._pending:
                    self._pending -= 1
                    self.failed += 1
                    self.last_failure = CLOSED_IN_HANDSHAKE
                else:
                    self.peers = max(0, self.peers - 1)
            elif event in _FAILED:
                self._pending = max(0, self._pending - 1)
                self.failed += 1
                self.last_failure = zmq.Event(event).name
        return self.peers

    def wait(self, timeout_s: float) -> bool:
        """Block until at least one peer is connected; False after ``timeout_s`` seconds."""
        if self._mon is None:
            raise TransportError("PeerWatch.wait before the watch was attached to a socket")
        deadline = time.monotonic() + timeout_s
        while self.poll() == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(left, 0.1))
        return True

    def close(self) -> None:
        """Stop listening (before the socket's context terminates; the socket may be open or closed)."""
        if self._mon is not None:
            self._mon.close(0)
            self._mon = None


class HandshakeWatch:
    """Waits, instead of sleeping a fixed time, until a connecting socket has met its peer.

    Call it on the socket before it connects (``watch(sock)``, or ``Receiver(..., setup=watch)``),
    then ``watch.wait()``. A SUB sends its subscriptions right after the ZMTP handshake, so waiting
    for the handshake (plus ``settle_s`` for the subscription to cross loopback) keeps a PUB's first
    messages from being lost (the slow-joiner problem) however loaded the machine is.
    """

    def __init__(self, settle_s: float = 0.05) -> None:
        self.settle_s = settle_s
        self._sock: zmq.Socket | None = None
        self._mon: zmq.Socket | None = None

    def __call__(self, sock: zmq.Socket) -> None:
        self._sock = zmq.Socket.shadow(sock.underlying)  # works for zmq.asyncio sockets too
        addr = f"inproc://streamlsm-handshake-{id(self)}"
        self._sock.monitor(addr, zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._mon = zmq.Context.shadow(sock.context.underlying).socket(zmq.PAIR)
        self._mon.connect(addr)

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the handshake is done; TransportError after ``timeout`` seconds."""
        if self._mon is None or self._sock is None:
            raise TransportError("HandshakeWatch.wait before the watch was attached to a socket")
        try:
            if not self._mon.poll(int(timeout * 1000)):
                raise TransportError(f"no ZeroMQ handshake with the peer within {timeout} s")
        finally:
            self._sock.disable_monitor()
            self._mon.close(0)
            self._mon = None
        time.sleep(self.settle_s)
