"""The synchronous pipeline: packets -> admit -> segment -> reservoir -> projection -> nearest prototype -> labels."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, ModelError, ReservoirError, WireError
from .events import LAYOUTS, EventPacket, LabelEvent, as_layout
from .model.bundle import embed
from .model.prototypes import PrototypeMatcher
from .stream.segment import Cursor, Piece, Segmenter

__all__ = ["PipelineConfig", "Pipeline", "PipelineStats", "ReservoirFactory", "default_reservoir_factory",
           "offline_labels"]

ReservoirFactory = Callable[[str], Any]

@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """How packets become labels.

    ``segment="sample"`` labels each sample whose boundaries the packets carry; ``"window"`` labels
    sliding windows of ``window_us`` every ``hop_us`` of a continuous stream (a fresh reservoir run per
    window, so a window's label depends only on its own events). ``streams`` maps a stream id to a
    modality (overrides the packet's); ``modality`` is the default for packets that name none.
    ``update="truth"`` folds samples whose ground truth is known into that class's prototype.
    """

    segment: Literal["sample", "window"] = "sample"
    window_us: int = 100_000
    hop_us: int = 50_000
    topk: int = 5
    max_streams: int = 4096
    modality: str = ""
    streams: dict[str, str] = field(default_factory=dict)
    update: Literal["none", "truth"] = "none"
    # hostile or careless input: bounds on what one packet may cost (each refusal is counted)
    max_advance_us: int = 10_000_000   # a packet may move its stream's time forward by at most this
    max_seq_jump: int = 1 << 16        # a seq this far from the expected one restarts the stream
    stream_idle_s: float = 30.0        # at max_streams, only a stream idle this long makes room
    state_mb: float = 512.0            # reservoir state of all streams together (MiB)

    def validate(self) -> None:
        if self.window_us < 1:
            raise ConfigError("window_us", f"must be >= 1, got {self.window_us}")
        if not 1 <= self.hop_us <= self.window_us:
            raise ConfigError("hop_us", f"must lie in [1, window_us={self.window_us}], got {self.hop_us}")
        if self.window_us // self.hop_us > 64:
            raise ConfigError("hop_us", "window_us / hop_us must be <= 64 (concurrent windows per stream)")
        if not 1 <= self.topk <= 64:
            raise ConfigError("topk", f"must lie in [1, 64], got {self.topk}")
        if self.max_streams < 1:
            raise ConfigError("max_streams", f"must be >= 1, got {self.max_streams}")
        if self.max_advance_us < 1:
            raise ConfigError("max_advance_us", f"must be >= 1, got {self.max_advance_us}")
        if self.max_seq_jump < 1:
            raise ConfigError("max_seq_jump", f"must be >= 1, got {self.max_seq_jump}")
        if not 0 <= self.stream_idle_s < float("inf"):
            raise ConfigError("stream_idle_s", f"must be a finite number >= 0, got {self.stream_idle_s}")
        if not 0 < self.state_mb < float("inf"):
            raise ConfigError("state_mb", f"must be a finite number > 0, got {self.state_mb}")


@dataclass(slots=True)
class PipelineStats:
    """Counters of everything the pipeline saw, skipped or evicted."""

    packets: int = 0
    events: int = 0
    labels: int = 0
    stream_us: int = 0            # stream time covered by the packets (sum of spans)
    seq_gaps: int = 0             # packets missing inside a stream (dropped upstream)
    incomplete_samples: int = 0   # samples discarded because packets were missing
    skipped_packets: int = 0      # packets outside any sample (joined mid-sample, or broken)
    evicted_streams: int = 0
    reservoir_errors: int = 0
    rejected_packets: int = 0     # streams the model cannot embed (no modality / no head for it)
    duplicate_packets: int = 0    # seq already seen: dropped, the sample goes on
    updates: int = 0
    refused_spans: int = 0        # packets moving their stream > max_advance_us forward, or back in time
    seq_resets: int = 0           # seq jumps beyond max_seq_jump (a restart, or a spoof): stream restarted
    refused_streams: int = 0      # new streams refused: max_streams or state_mb full of active streams
    nonfinite_labels: int = 0     # embeddings or scores not finite: no label sent

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}



_LAYOUT_NAME = {dt: name for name, dt in LAYOUTS.items()}  # dtype -> layout name


@dataclass(slots=True)
class _Stream:
    modality: str
    cursor: Cursor = field(default_factory=Cursor)  # where the segmenter is in this stream
    next_seq: int = -1
    labels: int = 0                               # labels published so far (their seq)
    last_end: int | None = None                   # t_end of the last packet fed (None: a fresh timeline)
    seen_ns: int = 0                              # when its last packet arrived (the pipeline's clock)
    slot_bytes: int = 0                           # reservoir state it holds (counted in state_mb)


class _Refused(Exception):
    """A new stream the stream table or the state budget has no room for (counted, never fatal)."""


class Pipeline:
    """``pipeline.process(packets, received_ns=None) -> list[LabelEvent]`` (also ``pipeline(...)``).

    One call, one way forward: **admit** each packet (stream table and budgets, duplicates and
    gaps, layout, how far it moves its stream), **segment** it into pieces (``stream.segment``:
    samples or sliding windows, with their reservoir slots and noise keys), **run** each
    modality's pieces through its reservoir (one kernel call; every stream's state in one table),
    then **label** what ended: feature transform, projection head, nearest prototype.

    State per stream survives calls: any split of a stream into packets and calls gives the same
    labels, equal to the offline batch encode with the same noise keys. Provenance (bundle hash,
    prototype version, reservoir seed) and latency stamps (sender's ``sent_ns`` of the closing
    packet, the server's receive time) ride on every label; the processing loop stamps
    ``published_ns``.
    """

    def __init__(self, bundle, matcher: PrototypeMatcher, config: PipelineConfig | None = None,
                 reservoir_factory: ReservoirFactory | None = None,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config or PipelineConfig()
        self.matcher = matcher
        self.stats = PipelineStats()
        self.segmenter = Segmenter(self.config.segment, self.config.window_us, self.config.hop_us, self.stats)
        self._clock_ns = clock_ns
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._state_bytes = 0
        self._slot_bytes: dict[str, int] = {}
        self._set_bundle(bundle, reservoir_factory)

    # ------------------------------------------------------------ model
    def _set_bundle(self, bundle, reservoir_factory: ReservoirFactory | None) -> None:
        dims = {h.out_features for h in bundle.heads.values() if h.normalise}
        if self.matcher.dim not in dims:
            raise ModelError(f"matcher dim {self.matcher.dim} matches no projection head of the bundle "
                             f"(embedding dims {sorted(dims)})")
        self.bundle = bundle
        self.make_reservoir = reservoir_factory or default_reservoir_factory(bundle)
        self._reservoirs: dict[str, Any] = {}
        self._seeds: dict[str, int] = {}
        self._dtypes: dict[str, Any] = {}

    def swap_bundle(self, bundle, reservoir_factory: ReservoirFactory | None = None) -> None:
        """Use another bundle from the next packet on.

        A modality whose reservoir config is unchanged keeps its reservoir and every stream's state
        (samples in flight are labelled by the new heads); for a changed or dropped one the state
        restarts at each stream's next sample.
        """
        old, old_res, old_factory = self.bundle, self._reservoirs, self.make_reservoir
        self._set_bundle(bundle, reservoir_factory)
        same_factory = reservoir_factory is not None and reservoir_factory is old_factory
        for modality, res in old_res.items():
            keep = modality in bundle.heads and (same_factory or (
                reservoir_factory is None and old.reservoirs.get(modality) is not None
                and old.reservoirs.get(modality) == bundle.reservoirs.get(modality)))
            if keep:
                self._reservoirs[modality] = res
        for sid in [sid for sid, st in self._streams.items() if st.modality not in self._reservoirs]:
            del self._streams[sid]
        self._slot_bytes = {}
        self._state_bytes = sum(st.slot_bytes for st in self._streams.values())

    def reservoir(self, modality: str):
        """The (shared, multi-stream) reservoir of a modality, built on first use."""
        res = self._reservoirs.get(modality)
        if res is None:
            res = self._reservoirs[modality] = self.make_reservoir(modality)
        return res

    def _dtype(self, modality: str):
        """The events dtype the modality's reservoir takes (None when it does not say)."""
        if modality not in self._dtypes:
            layout = getattr(getattr(self.reservoir(modality), "config", None), "layout", None)
            self._dtypes[modality] = LAYOUTS.get(layout) if layout else None
        return self._dtypes[modality]

    def seed_of(self, modality: str) -> int:
        if modality not in self._seeds:
            cfg = self.bundle.reservoirs.get(modality)
            self._seeds[modality] = int(cfg.get("seed", self.bundle.seed)) if isinstance(cfg, dict) \
                else int(self.bundle.seed)
        return self._seeds[modality]

    @property
    def streams(self) -> list[str]:
        return list(self._streams)

    def _modality(self, pkt: EventPacket) -> str:
        m = self.config.streams.get(pkt.stream_id) or pkt.modality or self.config.modality
        if not m:
            raise ModelError(f"stream {pkt.stream_id!r} names no modality (set pipeline.modality or streams)")
        return m

    def slot_bytes(self, modality: str) -> int:
        """Reservoir state bytes one stream of a modality holds (all its slots)."""
        got = self._slot_bytes.get(modality)
        if got is None:
            per = int(getattr(self.reservoir(modality), "slot_bytes", 0))
            got = self._slot_bytes[modality] = per * self.segmenter.slots
        return got

    @property
    def state_bytes(self) -> int:
        """Reservoir state held by the streams now (bounded by ``config.state_mb``)."""
        return self._state_bytes

    def _stream(self, pkt: EventPacket, now_ns: int) -> _Stream:
        st = self._streams.get(pkt.stream_id)
        if st is None:
            modality = self._modality(pkt)
            self.bundle.head(modality)  # ModelError now if the bundle cannot embed this modality
            self._dtype(modality)       # ... or has no reservoir for it
            need = self.slot_bytes(modality)
            cfg = self.config
            budget = int(cfg.state_mb * (1 << 20))
            idle_ns = int(cfg.stream_idle_s * 1e9)
            # a full table makes room only from streams idle for stream_idle_s: a flood of new ids
            # is refused (counted) instead of evicting the active streams' samples in flight
            while self._streams and (len(self._streams) >= cfg.max_streams or self._state_bytes + need > budget):
                old_id, old = next(iter(self._streams.items()))
                if now_ns - old.seen_ns < idle_ns:
                    raise _Refused(pkt.stream_id)
                del self._streams[old_id]
                self._release(old_id, old)
                self.stats.evicted_streams += 1
            if self._state_bytes + need > budget:
                raise _Refused(pkt.stream_id)
            st = self._streams[pkt.stream_id] = _Stream(modality, slot_bytes=need)
            self._state_bytes += need
        else:
            self._streams.move_to_end(pkt.stream_id)
        st.seen_ns = now_ns
        return st

    def _release(self, stream_id: str, st: _Stream) -> None:
        self._state_bytes -= st.slot_bytes
        st.slot_bytes = 0
        release = getattr(self._reservoirs.get(st.modality), "release", None)
        if release is not None:
            release(*self.segmenter.slots_of(stream_id))

    def forget(self, stream_id: str) -> None:
        """Drop a stream's state (its open sample or windows are discarded)."""
        st = self._streams.pop(stream_id, None)
        if st is not None:
            self._release(stream_id, st)

    def warm_up(self) -> list[str]:
        """Build every modality's reservoir and run one tiny sample through the streaming path
        (compiles the kernels now, not at the first real packet); returns the modalities warmed."""
        done = []
        for modality in self.bundle.modalities:
            try:
                dtype = self._dtype(modality)
            except (ModelError, ConfigError):
                continue  # a head without a reservoir config is not streamed
            if dtype is None:
                continue
            sid = "_warm_up"
            ev = np.zeros(1, dtype)
            span = min(self.config.window_us, self.config.max_advance_us) if self.config.segment == "window" \
                else 1_000
            pkt = EventPacket(sid, 0, 0, span, ev, modality, 0, None, True, True)
            before = self.stats.as_dict()
            try:
                self.process([pkt], [0])
            finally:
                self.forget(sid)
                for k, v in before.items():
                    setattr(self.stats, k, v)
            done.append(modality)
        return done

    # ------------------------------------------------------------ the call
    def process(self, packets: Iterable[EventPacket], received_ns: Sequence[int] | None = None) -> list[LabelEvent]:
        """Feed packets (in arrival order); labels of every sample or window they complete."""
        pieces: dict[str, list[tuple[Piece, int]]] = {}  # modality -> (piece, received_ns), in order
        for i, pkt in enumerate(packets):
            now = self._clock_ns()
            admitted = self._admit(pkt, now)
            if admitted is None:
                continue
            st, pkt = admitted
            recv = received_ns[i] if received_ns is not None else now
            pieces.setdefault(st.modality, []).extend((c, recv) for c in self.segmenter.cut(st.cursor, pkt))
        return self._label(self._run(pieces))

    __call__ = process

    def _admit(self, pkt: EventPacket, now: int) -> tuple[_Stream, EventPacket] | None:
        """The packet's stream and the packet in its reservoir's layout, or None (counted): a stream
        the model cannot take or has no room for, a duplicate, or a packet that moves its stream
        back in time or too far forward. A gap or a seq jump restarts the stream's segmentation."""
        cfg, stats = self.config, self.stats
        stats.packets += 1
        stats.events += len(pkt.events)
        try:
            st = self._stream(pkt, now)
        except (ModelError, ConfigError):  # a stream the model cannot take: counted, never fatal
            stats.rejected_packets += 1
            return None
        except _Refused:
            stats.refused_streams += 1
            return None
        gap = pkt.seq - st.next_seq
        if st.next_seq >= 0 and 0 < pkt.seq < st.next_seq and -gap <= cfg.max_seq_jump:
            stats.duplicate_packets += 1  # a duplicate (seq 0 = the source restarted)
            return None
        if st.next_seq >= 0 and gap:
            if 0 < gap <= cfg.max_seq_jump:
                stats.seq_gaps += gap
            else:  # far back or far ahead: a restarted source, or a spoofed seq; never a mute
                stats.seq_resets += 1
            self._break(st)
        st.next_seq = pkt.seq + 1
        want = self._dtype(st.modality)
        if want is not None and pkt.events.dtype != want:
            try:  # tonic-style arrays (x, y, t, p of any widths) are converted by field name
                pkt = replace(pkt, events=as_layout(pkt.events, _LAYOUT_NAME[want]))
            except WireError:
                stats.rejected_packets += 1
                self._break(st)
                return None
        # what this packet costs the reservoir: the time it moves its stream forward
        window = cfg.segment == "window"
        fresh = st.last_end is None or (pkt.sample_begin and not window)
        advance = pkt.t_end - (pkt.t_start if fresh else st.last_end)
        if not 0 <= advance <= cfg.max_advance_us:  # too far forward, or back in time
            stats.refused_spans += 1
            self._break(st)
            return None
        if window or pkt.sample_begin or st.cursor.in_sample:
            st.last_end = pkt.t_end
        stats.stream_us += pkt.t_end - pkt.t_start
        return st, pkt

    def _break(self, st: _Stream) -> None:
        """End a stream's sample or windows in flight (counted incomplete) and its timeline."""
        self.segmenter.restart(st.cursor)
        st.last_end = None

    def _run(self, pieces: dict[str, list[tuple[Piece, int]]]) -> list[tuple[str, Any]]:
        """Each modality's pieces through its reservoir: (modality, features) of what ended (the
        features carry the receive time of the packet that closed them). A reservoir error drops
        that reservoir (rebuilt on next use) and restarts its streams."""
        done = []
        for modality, todo in pieces.items():
            try:
                feats = self.reservoir(modality).feed([c.packet for c, _ in todo], [r for _, r in todo],
                                                      slots=[c.slot for c, _ in todo], keys=[c.key for c, _ in todo])
            except ReservoirError:
                self.stats.reservoir_errors += 1
                self._reservoirs.pop(modality, None)
                for st in self._streams.values():
                    if st.modality == modality:
                        self.segmenter.restart(st.cursor)
                        st.last_end = None
                continue
            done += [(modality, f) for f in feats]
        return done

    # ------------------------------------------------------------ labelling
    def _label(self, done: list[tuple[str, Any]]) -> list[LabelEvent]:
        if not done:
            return []
        by_mod: dict[str, list[int]] = {}
        for j, (modality, _f) in enumerate(done):
            by_mod.setdefault(modality, []).append(j)
        out: list[LabelEvent | None] = [None] * len(done)
        bhash, k = self.bundle.hash, self.config.topk
        for modality, rows in by_mod.items():
            x = np.stack([np.asarray(done[j][1].counts, dtype=np.float32) for j in rows])
            emb = embed(self.bundle, modality, x)
            matches = self.matcher.match_many(emb, k)
            seed = self.seed_of(modality)
            finite = np.isfinite(emb).all(axis=1)
            for j, e, m, fin in zip(rows, emb, matches, finite, strict=True):
                f = done[j][1]
                if not (fin and math.isfinite(m.score) and math.isfinite(m.margin)):
                    self.stats.nonfinite_labels += 1  # never a NaN score on the wire or in a sink
                    continue
                st = self._streams.get(f.stream_id)
                seq = 0
                if st is not None:
                    seq, st.labels = st.labels, st.labels + 1
                truth = f.label
                if self.config.update == "truth" and truth is not None and truth in self.matcher:
                    self.stats.updates += int(self.matcher.update(truth, e))
                out[j] = LabelEvent(
                    stream_id=f.stream_id, seq=seq, t_start=int(f.t_start), t_end=int(f.t_end), label=m.label,
                    score=m.score, topk=m.topk, margin=m.margin, truth=truth, modality=modality,
                    sample_id=int(f.sample_id), bundle_hash=bhash,
                    prototype_version=self.matcher.version, seed=seed,
                    source_ns=int(getattr(f, "sent_ns", 0)),
                    received_ns=int(f.received_ns), probability=m.probability)
        labels = [lab for lab in out if lab is not None]
        self.stats.labels += len(labels)
        return labels

    def embed_support(self, modality: str, samples: Sequence[np.ndarray],
                      durations_us: Sequence[int] | None = None) -> np.ndarray:
        """Embeddings (n, D) of whole support samples of a modality (batch reservoir encode)."""
        if not len(samples):
            raise ModelError("no support samples given")
        feats = self.reservoir(modality).encode(list(samples), durations_us)
        return embed(self.bundle, modality, feats)


def default_reservoir_factory(bundle) -> ReservoirFactory:
    """modality -> a ``Reservoir`` (one per modality, all streams share it) from the bundle's config."""
    from .reservoir import (  # late: the numba kernel compiles on first use
        Reservoir,
        ReservoirConfig,
    )

    def make(modality: str):
        return Reservoir(bundle.reservoir_config(modality, ReservoirConfig))

    return make


def offline_labels(bundle, matcher, modality: str, samples: Sequence[np.ndarray],
                   durations_us: Sequence[int] | None = None, k: int = 5,
                   reservoir_factory: ReservoirFactory | None = None,
                   sample_ids: Sequence[int] | None = None) -> list[str]:
    """The offline evaluation: batch ``Reservoir.encode`` + ``Bundle.embed`` + matcher, one label per sample.

    ``sample_ids`` are the ids the streamed samples carry (they key the reservoir's read noise).
    """
    make = reservoir_factory or default_reservoir_factory(bundle)
    res = make(modality)
    samples = list(samples)
    if sample_ids is not None:
        feats = res.encode(samples, durations_us, sample_ids=sample_ids)
    else:
        feats = res.encode(samples, durations_us)
    emb = embed(bundle, modality, feats)
    return [m.label for m in matcher.match_many(emb, k)]
