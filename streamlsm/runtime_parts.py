"""Parts of the edge daemon: its configuration records, the bounded packet buffer, sinks from config."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, StreamLSMError
from .plugins import SINK_GROUP, load

__all__ = ["InputConfig", "ModelConfig", "SinkConfig", "OutputConfig", "ControlConfig", "LimitsConfig",
           "PacketBuffer", "make_sinks", "give_back_freed_memory"]


@dataclass(frozen=True, slots=True)
class InputConfig:
    """One event input socket (PULL or SUB; bound or connected)."""

    endpoint: str
    kind: Literal["pull", "sub"] = "pull"
    bind: bool = True
    hwm: int = 10_000
    topics: list[str] = field(default_factory=lambda: ["ev/"])


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The model bundle and the prototype checkpoint (created on the first change, restored on start)."""

    bundle: Path
    prototypes: Path
    threshold: float | None = None
    update: Literal["none", "mean", "ema"] = "none"
    ema: float = 0.1
    signing_key: Path | None = None  # set: load (and reload) only bundles signed with this key
    error_target: float = 0.05  # error of emitted labels the abstention is certified for (calibrated bundles)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Where labels go: a PUB socket (topic lb/<stream>) and sink plug-ins by entry-point name."""

    labels: str = "tcp://127.0.0.1:5601"
    hwm: int = 10_000
    linger_ms: int = 1000  # on a clean stop, labels still queued for subscribers may leave this long
    sinks: list[SinkConfig] = field(default_factory=list)

    def validate(self) -> None:
        if not 0 <= self.linger_ms <= 60_000:
            raise ConfigError("linger_ms", f"must lie in [0, 60000] milliseconds, got {self.linger_ms}")


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """The REQ/REP control socket ('' = off); support files and bundles only from ``allowed_dirs``."""

    endpoint: str = ""
    allowed_dirs: list[Path] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    queue: int = 10_000
    overflow: Literal["block", "drop_oldest"] = "block"
    batch: int = 256
    max_events: int = 1 << 16     # per packet (a frame above it disconnects its peer): 0.85 MB of DVS
    queue_mb: float = 256.0      # events waiting in the queue, in MiB (block: wait; drop_oldest: drop)
    stats_every_s: float = 1.0
    compute: Literal["thread", "inline"] = "thread"  # pipeline in a worker thread, or in the loop
    coalesce_us: int = 0         # after the first queued packet, wait this long for more (bigger batches)
    warm_up: bool = True         # run one tiny sample per modality before reading input
    gil_switch_ms: float = 0.0   # the interpreter's thread switch interval while serving (0 = leave it)
    max_call_us: int = 60_000_000  # stream time (sum of packet spans) per pipeline call: a batch
    #                                covering more is split, so control and stop get the lock between
    max_neurons: int = 8192      # `ctl reload`: a bundle's reservoir larger than this is refused
    model_mb: float = 1024.0     # `ctl reload`: weights a bundle may need (reservoirs + heads, MiB)

    def validate(self) -> None:
        if self.queue < 1:
            raise ConfigError("queue", f"must be >= 1, got {self.queue}")
        if self.batch < 1:
            raise ConfigError("batch", f"must be >= 1, got {self.batch}")
        if not 0 <= self.coalesce_us <= 1_000_000:
            raise ConfigError("coalesce_us", f"must lie in [0, 1000000], got {self.coalesce_us}")
        if self.max_events < 1:
            raise ConfigError("max_events", f"must be >= 1, got {self.max_events}")
        if not 0 < self.queue_mb < float("inf"):
            raise ConfigError("queue_mb", f"must be a finite number > 0, got {self.queue_mb}")
        if not 0.05 <= self.stats_every_s <= 3600:  # 0 spun an idle daemon at 100 % CPU
            raise ConfigError("stats_every_s", f"must lie in [0.05, 3600] seconds, got {self.stats_every_s}")
        if self.max_call_us < 1:
            raise ConfigError("max_call_us", f"must be >= 1, got {self.max_call_us}")
        if self.max_neurons < 1:
            raise ConfigError("max_neurons", f"must be >= 1, got {self.max_neurons}")
        if not 0 < self.model_mb < float("inf"):
            raise ConfigError("model_mb", f"must be a finite number > 0, got {self.model_mb}")
        if not 0 <= self.gil_switch_ms <= 100:
            raise ConfigError("gil_switch_ms", f"must lie in [0, 100], got {self.gil_switch_ms}")


def give_back_freed_memory() -> bool:
    """glibc only (else False, nothing changed): blocks of 256 KiB and more (ZeroMQ frames of a
    flood of big messages, numpy arrays) always come from mmap and go back to the OS when freed,
    and the heap is trimmed above 4 MiB free. By default glibc raises its mmap threshold after
    such frees, so a burst of big input stayed in the daemon's RSS for good (issue 11, item 4)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 256 * 1024)) and bool(mallopt(m_trim_threshold, 4 << 20))


def make_sinks(specs: Sequence[SinkConfig]) -> list[Any]:
    """Sink objects from their entry-point names and options (ConfigError naming the bad one)."""
    out = []
    for i, spec in enumerate(specs):
        cls = load(SINK_GROUP, spec.name)
        try:
            out.append(cls(**spec.options))
        except (TypeError, ValueError, OSError, StreamLSMError) as exc:  # bad option, port in use,
            # unwritable path, a sink's own check (the relay's bind rule, its endpoint in use)
            for made in out:  # e.g. a metrics server already listening
                made.close()
            raise ConfigError(f"outputs.sinks[{i}].options", f"{spec.name}: {exc}") from None
    return out


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
