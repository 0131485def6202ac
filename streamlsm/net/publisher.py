"""A PUB sender that knows its subscriptions: it can wait for a subscriber and counts what no one heard.

A plain ZeroMQ PUB discards a message that no subscription matches, silently, so a replay that
starts before its subscriber loses the first packets and still reports them as sent (the
slow-joiner problem). ``Publisher`` is a ``transport.Sender`` on an XPUB socket: ZeroMQ hands it
each topic's first subscription and last unsubscription, so it knows at every send whether any
subscriber will get the message. ``wait_for_subscriber`` blocks until one has subscribed to a
topic; a message that no subscription matches is not sent and is counted in
``stats["unheard"]`` / ``stats["unheard_events"]`` instead of ``sent``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import zmq

from ..errors import TransportError
from ..events import EventPacket, LabelEvent
from . import wire
from .transport import Sender

__all__ = ["Publisher"]


class Publisher(Sender):
    """``Sender(kind="pub")`` on an XPUB socket that tracks the subscribed topic prefixes."""

    _kinds = {"pub": zmq.XPUB}

    def __init__(self, endpoint: str, *, bind: bool = True, hwm: int = 1000,
                 linger_ms: int | None = None, stamp: bool = True, context=None,
                 setup: Callable[[zmq.Socket], None] | None = None) -> None:
        super().__init__(endpoint, "pub", bind=bind, hwm=hwm, linger_ms=linger_ms, stamp=stamp,
                         context=context, setup=setup)
        self.topics: set[bytes] = set()
        self._heard: dict[bytes, bool] = {}  # topic -> matched, until the subscriptions change
        self.stats.update({"unheard": 0, "unheard_events": 0})

    def _update(self) -> None:
        """Take the (un)subscription messages waiting on the XPUB socket."""
        sync = self._sync
        if sync is None:
            raise TransportError(f"pub socket {self.endpoint} is not open (use 'async with')")
        while sync.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # cheaper than recv raising Again
            msg = sync.recv(zmq.NOBLOCK)
            if msg[:1] == b"\x01":
                self.topics.add(msg[1:])
            elif msg[:1] == b"\x00":
                self.topics.discard(msg[1:])
            self._heard.clear()

    def heard(self, topic: bytes) -> bool:
        """Whether a subscription now matches ``topic`` (a subscription is a topic prefix)."""
        self._update()
        known = self._heard.get(topic)
        if known is None:
            if len(self._heard) >= 4096:
                self._heard.clear()
            known = self._heard[topic] = any(topic.startswith(t) for t in self.topics)
        return known

    async def wait_for_subscriber(self, topic: bytes = wire.EVENTS_TOPIC, *,
                                  timeout: float | None = None, every_s: float = 5.0,
                                  say: Callable[[float], None] | None = None) -> bool:
        """Wait until a subscription matches ``topic``; ``say(waited_s)`` every ``every_s``.

        False after ``timeout`` seconds (None: wait for ever).
        """
        t0 = last = time.monotonic()
        while not self.heard(topic):
            now = time.monotonic()
            if timeout is not None and now - t0 >= timeout:
                return False
            if say is not None and now - last >= every_s:
                last = now
                say(now - t0)
            await asyncio.sleep(0.02)
        return True

    async def send(self, msg: EventPacket | LabelEvent) -> bool:
        """Send one message; False when no subscriber would get it (counted) or the HWM dropped it."""
        prefix = wire.EVENTS_TOPIC if isinstance(msg, EventPacket) else wire.LABEL_TOPIC
        if not self.heard(wire.topic_for(prefix, msg.stream_id)):
            self.stats["unheard"] += 1
            if isinstance(msg, EventPacket):
                self.stats["unheard_events"] += len(msg.events)
            return False
        return await super().send(msg)
