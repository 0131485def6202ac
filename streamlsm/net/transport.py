"""ZeroMQ transport (zmq.asyncio): Sender (PUSH blocks, PUB drops and counts) and Receiver (PULL/SUB)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from ..errors import ConfigError, TransportError, WireError
from ..events import LAYOUTS, EventPacket, LabelEvent
from . import wire

__all__ = ["Sender", "Receiver", "SEND_KINDS", "RECV_KINDS"]

SEND_KINDS = {"push": zmq.PUSH, "pub": zmq.PUB}
RECV_KINDS = {"pull": zmq.PULL, "sub": zmq.SUB}
_SCHEMES = ("tcp://", "ipc://", "inproc://")


def _check_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str) or not endpoint.startswith(_SCHEMES):
        raise ConfigError("endpoint", f"must start with one of {list(_SCHEMES)}, got {endpoint!r}")
    if endpoint.startswith("tcp://"):
        port = endpoint.rsplit(":", 1)[-1]
        if port.isdigit() and int(port) > 65535:  # libzmq would take it modulo 65536
            raise ConfigError("endpoint", f"port {port} of {endpoint!r} is not in [0, 65535]")
    return endpoint


def _check_hwm(hwm: int) -> int:
    if type(hwm) is not int or hwm < 0:
        raise ConfigError("hwm", f"must be an integer >= 0 (0 = no limit), got {hwm!r}")
    return hwm


_NB_MORE = zmq.NOBLOCK | zmq.SNDMORE
_SMALL = 4096  # a header frame up to this size is copied to bytes (wire.decode reads bytes fastest)
_MAX_FRAMES = 8  # a wire message has 3; extra parts of a malformed message are read and dropped


def _send_frames(sock: zmq.Socket, frames: list) -> None:
    """Send [topic, header, payload] without blocking: zmq.Again if the queue is full.

    Small frames are copied; the payload goes without a copy (ZeroMQ still copies frames below
    pyzmq's copy_threshold, which is cheaper for them). Once the first part is accepted ZeroMQ
    accepts the rest of the message, so Again can only come from the first part.
    """
    if len(frames) == 3:  # every wire message: no loop
        sock.send(frames[0], _NB_MORE)
        sock.send(frames[1], _NB_MORE)
        sock.send(frames[2], zmq.NOBLOCK, copy=False)
        return
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        if i < last:
            sock.send(frame, _NB_MORE)
        else:
            sock.send(frame, zmq.NOBLOCK, copy=False)


def _recv_frames(sock: zmq.Socket) -> list:
    """The parts of one queued message (zmq.Again if none is queued): zmq.Frames, not copied, except the
    topic and header of a 3-part message, which are small and decode faster as bytes.

    ``Frame.more`` says whether another part follows (cheaper than getsockopt(RCVMORE)); parts of
    a malformed message beyond _MAX_FRAMES are read and dropped, so the next message stays aligned.
    """
    part = sock.recv(zmq.NOBLOCK, copy=False)
    frames = [part]
    while part.more:
        part = sock.recv(zmq.NOBLOCK, copy=False)
        if len(frames) < _MAX_FRAMES:
            frames.append(part)
    if len(frames) == 3 and len(frames[1]) <= _SMALL:  # a wire message: small topic and header as bytes
        frames[0] = frames[0].bytes
        frames[1] = frames[1].bytes
    return frames


class _Endpoint:
    """Shared socket life cycle: open on enter (bind or connect), close with linger on exit."""

    _kinds: dict[str, int] = {}

    def __init__(self, endpoint: str, kind: str, bind: bool, hwm: int,
                 context: zmq.asyncio.Context | None,
                 setup: Callable[[zmq.Socket], None] | None = None) -> None:
        if kind not in self._kinds:
            raise ConfigError("kind", f"must be one of {sorted(self._kinds)}, got {kind!r}")
        self.endpoint = _check_endpoint(endpoint)
        self.kind = kind
        self.bind = bool(bind)
        self.hwm = _check_hwm(hwm)
        self.linger_ms = 0
        self._ctx = context
        self._user_setup = setup  # e.g. CURVE options (security.secure_server), before bind/connect
        self._sock: zmq.asyncio.Socket | None = None
        self._sync: zmq.Socket | None = None

    def _setup(self, sock: zmq.Socket) -> None:  # socket options before bind/connect
        pass

    def open(self) -> None:
        ctx = self._ctx if self._ctx is not None else zmq.asyncio.Context.instance()
        try:
            sock = ctx.socket(self._kinds[self.kind])
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot create a {self.kind} socket: {exc}") from None
        try:
            sock.setsockopt(zmq.LINGER, 0)
            self._setup(sock)
            if self._user_setup is not None:
                self._user_setup(sock)
            if self.bind:
                sock.bind(self.endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT) or self.endpoint
            else:
                sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            verb = "bind" if self.bind else "connect"
            raise TransportError(f"cannot {verb} {self.kind} socket to {self.endpoint}: {exc}") from None
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock
        self._sync = zmq.Socket.shadow(sock.underlying)

    def close(self, linger_ms: int | None = None) -> None:
        if self._sock is not None:
            self._sock.close(linger=self.linger_ms if linger_ms is None else linger_ms)
            self._sock = None
            self._sync = None

    async def __aenter__(self):
        self.open()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        # on an error nothing waits for queued messages
        self.close(None if exc_type is None else 0)

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            raise TransportError(f"{self.kind} socket {self.endpoint} is not open (use 'async with')")
        return self._sock


class Sender(_Endpoint):
    """Sends EventPackets and LabelEvents: ``await sender.send(msg)``.

    PUSH waits while the peer's queue is full (nothing is lost). PUB never waits: at the high-water
    mark (``XPUB_NODROP`` makes ZeroMQ report it) the message is dropped and counted in
    ``stats["dropped"]``; a PUB with no subscriber at all discards silently (ZeroMQ semantics).
    With ``nodrop=False`` a PUB drops per subscriber instead: a peer at its high-water mark loses
    the message, the others still get it (ZeroMQ does not report those drops; the daemon's labels
    carry a per-stream ``seq``, so a subscriber sees its own gaps).
    Payload frames go out without a copy where ZeroMQ allows. The socket is created with linger 0;
    ``linger_ms`` is how long messages still queued may leave after a clean exit (default: 1 s for
    PUSH, so a sender that closes right after its last send loses nothing; 0 for PUB). After an
    error the socket always closes with linger 0. (Linger bounds ``Context.term``; closing itself
    never waits.)
    """

    _kinds = SEND_KINDS

    def __init__(self, endpoint: str, kind: str = "push", *, bind: bool = True, hwm: int = 1000,
                 linger_ms: int | None = None, stamp: bool = True,
                 context: zmq.asyncio.Context | None = None,
                 setup: Callable[[zmq.Socket], None] | None = None, nodrop: bool = True) -> None:
        super().__init__(endpoint, kind, bind, hwm, context, setup)
        self.nodrop = bool(nodrop)
        if linger_ms is None:
            linger_ms = 1000 if kind == "push" else 0
        if type(linger_ms) is not int or linger_ms < 0:
            raise ConfigError("linger_ms", f"must be an integer >= 0 (milliseconds), got {linger_ms!r}")
        self.linger_ms = linger_ms
        self.stamp = stamp
        self._pending = 0
        self.stats: dict[str, int] = {"sent": 0, "dropped": 0, "events": 0, "bytes": 0}

    def _setup(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.SNDHWM, self.hwm)
        if self.kind == "pub" and self.nodrop:
            sock.setsockopt(zmq.XPUB_NODROP, 1)

    async def send(self, msg: EventPacket | LabelEvent) -> bool:
        """Send one message; False when PUB dropped it at the high-water mark."""
        sock = self._socket()
        if self.stamp and isinstance(msg, EventPacket):
            msg.sent_ns = time.time_ns()
        frames = wire.encode(msg)
        try:
            if self._pending == 0:
                try:  # fast path: no future when the queue has room
                    _send_frames(self._sync, frames)
                except zmq.Again:
                    if self.kind == "pub":
                        self.stats["dropped"] += 1
                        return False
                else:
                    self._count(msg, frames)
                    return True
            self._pending += 1
            try:
                await sock.send_multipart(frames, copy=False)
            finally:
                self._pending -= 1
        except zmq.ZMQError as exc:
            raise TransportError(f"send on {self.kind} {self.endpoint} failed: {exc}") from None
        self._count(msg, frames)
        return True

    def _count(self, msg: Any, frames: list) -> None:
        self.stats["sent"] += 1
        if isinstance(msg, EventPacket):
            self.stats["events"] += len(msg.events)
        payload = frames[2]
        self.stats["bytes"] += len(frames[1]) + (payload.nbytes if isinstance(payload, memoryview)
                                                 else len(payload))


class Receiver(_Endpoint):
    """Receives and decodes messages: ``async for msg in receiver`` or ``await receiver.recv()``.

    Malformed messages are counted in ``stats["wire_errors"]`` (the last one in ``last_error``) and
    skipped; the loop never dies on them. ``topics`` (SUB only) are topic prefixes, e.g. ``b"ev/"``
    for all event streams or ``"ev/cam0"``; the default subscribes to everything. Up to ``batch``
    queued messages are taken per wake-up without going through the event loop.
    """

    _kinds = RECV_KINDS

    def __init__(self, endpoint: str, kind: str = "pull", *, bind: bool = False, hwm: int = 1000,
                 topics: tuple[bytes | str, ...] = (b"",), batch: int = 256,
                 limits: wire.WireLimits = wire.DEFAULT_LIMITS,
                 context: zmq.asyncio.Context | None = None,
                 setup: Callable[[zmq.Socket], None] | None = None) -> None:
        super().__init__(endpoint, kind, bind, hwm, context, setup)
        self.topics = tuple(t.encode("ascii") if isinstance(t, str) else bytes(t) for t in topics)
        if kind == "pull" and self.topics != (b"",):
            raise ConfigError("topics", "topics apply to SUB sockets only")
        self.batch = max(1, int(batch))
        self.limits = limits
        self.last_error: WireError | None = None
        self._queue: list = []
        self.stats: dict[str, int] = {"received": 0, "events": 0, "labels": 0, "wire_errors": 0}

    def _setup(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.RCVHWM, self.hwm)
        # a peer sending a frame larger than any valid one is disconnected (tcp/ipc), so a bad
        # sender cannot make this process buffer huge frames before decode refuses them
        biggest = self.limits.max_events * max(dt.itemsize for dt in LAYOUTS.values())
        sock.setsockopt(zmq.MAXMSGSIZE, max(biggest, self.limits.max_header_bytes) + 1024)
        if self.kind == "sub":
            for topic in self.topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic)

    def _decode(self, frames: list) -> EventPacket | LabelEvent | None:
        try:
            msg = wire.decode(frames, self.limits)
        except WireError as exc:
            self.stats["wire_errors"] += 1
            # without its traceback: that would keep the bad message's frames (up to the largest
            # message ZeroMQ admits) alive until the next error
            self.last_error = exc.with_traceback(None)
            return None
        stats = self.stats
        stats["received"] += 1
        if type(msg) is EventPacket:
            stats["events"] += len(msg.events)
        else:
            stats["labels"] += 1
        return msg

    async def recv_batch(self, timeout: float | None = None) -> list[EventPacket | LabelEvent]:
        """The messages waiting now (at least one, at most ``batch``); [] after ``timeout`` seconds.

        Messages already queued are taken without going through the event loop; only when none is
        waiting does it wait (``timeout`` None: for ever) for the socket to become readable.
        """
        sock = self._socket()
        sync = self._sync
        out: list = []
        try:
            while True:
                while len(out) < self.batch:
                    try:
                        frames = _recv_frames(sync)
                    except zmq.Again:
                        break
                    msg = self._decode(frames)
                    if msg is not None:
                        out.append(msg)
                if out:
                    return out
                if timeout is None:
                    msg = self._decode(await sock.recv_multipart(copy=False))
                    if msg is not None:
                        out.append(msg)
                elif not await sock.poll(timeout=max(0, int(timeout * 1000)), flags=zmq.POLLIN):
                    return out
        except zmq.ZMQError as exc:
            raise TransportError(f"receive on {self.kind} {self.endpoint} failed: {exc}") from None

    async def recv(self, timeout: float | None = None) -> EventPacket | LabelEvent | None:
        """The next message; None after ``timeout`` seconds without one."""
        if not self._queue:
            self._queue = await self.recv_batch(timeout)
            self._queue.reverse()
            if not self._queue:
                return None
        return self._queue.pop()

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        # one message at a time from the shared queue: a loop that breaks off mid-batch leaves
        # the rest for the next recv() or loop instead of losing it
        while True:
            if not self._queue:
                self._queue = await self.recv_batch()
                self._queue.reverse()
                continue
            yield self._queue.pop()

    def __repr__(self) -> str:
        return f"<Receiver {self.kind} {self.endpoint} {self.stats}>"

