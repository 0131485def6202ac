"""Consistent hashing of stream ids to workers: a hash ring with virtual nodes."""

from __future__ import annotations

import bisect
import hashlib

from ..errors import ConfigError

__all__ = ["HashRing", "stable_hash"]


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process and on every host."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    """Workers placed at ``vnodes`` points each on a 64-bit ring; a stream belongs to the next point.

    Adding or removing one worker of n moves about 1/n of the streams, and only to or from that worker.
    """

    def __init__(self, nodes=(), vnodes: int = 64) -> None:
        if not 1 <= vnodes <= 4096:
            raise ConfigError("vnodes", f"must lie in [1, 4096], got {vnodes}")
        self.vnodes = vnodes
        self._points: list[int] = []
        self._owner: dict[int, str] = {}
        self._nodes: set[str] = set()
        for node in nodes:
            self.add(node)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: str) -> bool:
        return node in self._nodes

    @property
    def nodes(self) -> list[str]:
        return sorted(self._nodes)

    def add(self, node: str) -> bool:
        """Place ``node`` on the ring; False if it was there already."""
        if node in self._nodes:
            return False
        self._nodes.add(node)
        for i in range(self.vnodes):
            h = stable_hash(f"{node}#{i}")
            while h in self._owner:  # a collision of 64-bit points: probe on (deterministic)
                h = (h + 1) % (1 << 64)
            self._owner[h] = node
            bisect.insort(self._points, h)
        return True

    def remove(self, node: str) -> bool:
        """Take ``node`` off the ring; False if it was not there."""
        if node not in self._nodes:
            return False
        self._nodes.discard(node)
        self._points = [p for p in self._points if self._owner[p] != node]
        self._owner = {p: self._owner[p] for p in self._points}
        return True

    def lookup(self, stream_id: str) -> str | None:
        """The worker that owns ``stream_id`` (None when the ring is empty)."""
        if not self._points:
            return None
        i = bisect.bisect_right(self._points, stable_hash(stream_id))
        return self._owner[self._points[i % len(self._points)]]

    def assignment(self, stream_ids) -> dict[str, str | None]:
        return {s: self.lookup(s) for s in stream_ids}
