"""The daemon's bounded input queue: fair between streams, bounded in packets and bytes, drops counted."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

__all__ = ["PacketBuffer"]


class PacketBuffer:
    """A bounded queue of (packet, received_ns) between the source task and the worker, fair
    between streams: each stream keeps its own first-in first-out line, and ``take`` serves the
    streams in turn, one packet each, so a burst on one stream never makes another wait behind it
    (a 2,000-packet burst cost a one-packet stream 300 ms of label latency when the queue was one
    line; issue 11). The streams served lately (the last ``known_limit``) are served before new
    ones, so a flood of new stream ids does not delay running streams either (a 4,096-id flood cost
    a running stream 440 ms). A stream's own order is kept.

    ``block``: ``put`` waits while full (back-pressure to the socket, then to a PUSH sender).
    ``drop_oldest``: ``put`` never waits; the oldest packet of the stream with the most queued
    packets is dropped and counted (the biggest producer pays, not a quiet stream).
    Full means ``limit`` packets or ``limit_bytes`` bytes of events (one packet is always taken).
    """

    def __init__(self, limit: int, policy: str, limit_bytes: int = 1 << 62, known_limit: int = 65_536) -> None:
        self.limit, self.policy = limit, policy
        self.limit_bytes = limit_bytes
        self.nbytes = 0
        self.count = 0
        self.lines: dict[str, deque] = {}  # stream id -> its queued (packet, received_ns); served in turn
        self._known: OrderedDict[str, None] = OrderedDict()  # streams served lately (LRU, bounded)
        self.known_limit = known_limit
        self.dropped = 0
        self.closed = False
        self._ready = asyncio.Event()
        self._space = asyncio.Event()

    def __len__(self) -> int:
        return self.count

    @property
    def items(self) -> list:
        """Every queued (packet, received_ns), stream by stream in serving order (for inspection)."""
        return [item for line in self.lines.values() for item in line]

    def _full(self, size: int) -> bool:
        return self.count > 0 and (self.count >= self.limit or self.nbytes + size > self.limit_bytes)

    def _drop_one(self) -> None:
        sid = max(self.lines, key=lambda k: len(self.lines[k]))
        line = self.lines[sid]
        old, _ = line.popleft()
        if not line:
            del self.lines[sid]
        self.count -= 1
        self.nbytes -= old.events.nbytes
        self.dropped += 1

    async def put(self, batch: list, received_ns: int) -> None:
        for pkt in batch:
            size = pkt.events.nbytes
            if self._full(size):
                if self.policy == "drop_oldest":
                    while self._full(size):
                        self._drop_one()
                else:
                    self._ready.set()
                    while self._full(size):
                        self._space.clear()
                        await self._space.wait()
            line = self.lines.get(pkt.stream_id)
            if line is None:
                line = self.lines[pkt.stream_id] = deque()
            line.append((pkt, received_ns))
            self.count += 1
            self.nbytes += size
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def _serve(self, sids: list, out: list, most: int) -> None:
        """One packet from each stream of ``sids`` in turn, again and again, until their lines are
        empty or ``out`` holds ``most``; a line served and not empty moves to the back."""
        lines, known = self.lines, self._known
        while sids and len(out) < most:
            again = []
            for sid in sids:
                line = lines.pop(sid)
                out.append(line.popleft())
                known[sid] = None
                known.move_to_end(sid)
                if line:
                    lines[sid] = line
                    again.append(sid)
                if len(out) >= most:
                    return
            sids = again

    async def take(self, most: int) -> list:
        """Up to ``most`` queued items (waits for one; [] once closed and empty): the streams served
        lately first, one packet each in turn, then every stream likewise."""
        while not self.count:
            if self.closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        out: list = []
        self._serve([sid for sid in self.lines if sid in self._known], out, most)  # running streams first
        self._serve(list(self.lines), out, most)  # then everyone, new stream ids included
        while len(self._known) > self.known_limit:
            self._known.popitem(last=False)
        self.count -= len(out)
        self.nbytes -= sum(p.events.nbytes for p, _ in out)
        self._space.set()
        return out
