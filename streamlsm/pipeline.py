"""Synchronous packet -> per-stream reservoir -> segmenter -> projection -> matcher -> LabelEvent pipeline."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, ModelError, ReservoirError, WireError
from .events import LAYOUTS, EventPacket, LabelEvent, as_layout, slice_time
from .model.bundle import embed
from .model.prototypes import PrototypeMatcher

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
class _Window:
    index: int
    t_start: int
    t_end: int
    slot: str       # the reservoir's stream id of this window: "<stream>#<k mod concurrent>"
    seq: int = 0


@dataclass(slots=True)
class _Stream:
    modality: str
    next_seq: int = -1
    in_sample: bool = False
    origin: int | None = None                     # window mode: time of window 0
    next_window: int = 0
    windows: list[_Window] = field(default_factory=list)
    labels: int = 0                               # labels published so far (their seq)
    last_end: int | None = None                   # t_end of the last packet fed (None: a fresh timeline)
    seen_ns: int = 0                              # when its last packet arrived (the pipeline's clock)
    slot_bytes: int = 0                           # reservoir state it holds (counted in state_mb)


class _Refused(Exception):
    """A new stream the stream table or the state budget has no room for (counted, never fatal)."""


class Pipeline:
    """``pipeline(packets, received_ns=None) -> list[LabelEvent]``; state per stream survives calls.

    One reservoir per modality holds every stream's state (a slot per stream) and advances all the
    packets of a call in one kernel call. Any split of a stream into packets and calls gives the
    same labels. Provenance (bundle hash, prototype version, reservoir seed) and latency stamps
    (sender's ``sent_ns`` of the closing packet, the daemon's receive time) ride on every label; the
    runtime stamps ``published_ns``.
    """

    def __init__(self, bundle, matcher: PrototypeMatcher, config: PipelineConfig | None = None,
                 reservoir_factory: ReservoirFactory | None = None,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config or PipelineConfig()
        self.matcher = matcher
        self.stats = PipelineStats()
        self._clock_ns = clock_ns
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._state_bytes = 0
        self._slot_bytes: dict[str, int] = {}
        # (window slot, index) -> starts (stream time) of the windows of that key not labelled yet,
        # oldest first: a restarted stream can open a window of the same key before the old one's label
        self._wstart: dict[tuple[str, int], list[int]] = {}
        self._n_windows = -(-self.config.window_us // self.config.hop_us) + 1
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
            self._drop_windows(self._streams.pop(sid))
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
        """Reservoir state bytes one stream of a modality holds (all its window slots)."""
        got = self._slot_bytes.get(modality)
        if got is None:
            per = int(getattr(self.reservoir(modality), "slot_bytes", 0))
            got = self._slot_bytes[modality] = per * (self._n_windows if self.config.segment == "window" else 1)
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

    def _drop_windows(self, st: _Stream) -> None:
        for w in st.windows:
            starts = self._wstart.get((w.slot, w.index))
            if starts and w.t_start in starts:
                starts.remove(w.t_start)
                if not starts:
                    del self._wstart[(w.slot, w.index)]

    def _release(self, stream_id: str, st: _Stream) -> None:
        self._drop_windows(st)
        self._state_bytes -= st.slot_bytes
        st.slot_bytes = 0
        release = getattr(self._reservoirs.get(st.modality), "release", None)
        if release is not None:
            release(stream_id)
            for k in range(self._n_windows):
                release(f"{stream_id}#{k}")

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
            pkt = EventPacket(sid, 0, 0, 1_000, ev, modality, 0, None, True, True)
            before = self.stats.as_dict()
            try:
                self([pkt], [0])
            finally:
                self.forget(sid)
                for k, v in before.items():
                    setattr(self.stats, k, v)
            done.append(modality)
        return done

    # ------------------------------------------------------------ the call
    def __call__(self, packets: Iterable[EventPacket], received_ns: Sequence[int] | None = None) -> list[LabelEvent]:
        """Feed packets (in arrival order); labels of every sample or window they complete."""
        feed: dict[str, list[EventPacket]] = {}
        recv_of: dict[tuple[str, int], int] = {}
        window = self.config.segment == "window"
        cfg = self.config
        for i, pkt in enumerate(packets):
            now = self._clock_ns()
            recv = received_ns[i] if received_ns is not None else now
            self.stats.packets += 1
            self.stats.events += len(pkt.events)
            try:
                st = self._stream(pkt, now)
            except (ModelError, ConfigError):  # a stream the model cannot take: counted, never fatal
                self.stats.rejected_packets += 1
                continue
            except _Refused:
                self.stats.refused_streams += 1
                continue
            gap = pkt.seq - st.next_seq
            if st.next_seq >= 0 and 0 < pkt.seq < st.next_seq and -gap <= cfg.max_seq_jump:
                self.stats.duplicate_packets += 1  # a duplicate (seq 0 = the source restarted)
                continue
            if st.next_seq >= 0 and gap:
                if 0 < gap <= cfg.max_seq_jump:
                    self.stats.seq_gaps += gap
                else:  # far back or far ahead: a restarted source, or a spoofed seq; never a mute
                    self.stats.seq_resets += 1
                self._break(st)
            st.next_seq = pkt.seq + 1
            want = self._dtype(st.modality)
            if want is not None and pkt.events.dtype != want:
                try:  # tonic-style arrays (x, y, t, p of any widths) are converted by field name
                    pkt = replace(pkt, events=as_layout(pkt.events, _LAYOUT_NAME[want]))
                except WireError:
                    pkt = None
            if pkt is None:
                self.stats.rejected_packets += 1
                self._break(st)
                continue
            # what this packet costs the reservoir: the time it moves its stream forward
            fresh = st.last_end is None or (pkt.sample_begin and not window)
            advance = pkt.t_end - (pkt.t_start if fresh else st.last_end)
            if not 0 <= advance <= cfg.max_advance_us:  # too far forward, or back in time
                self.stats.refused_spans += 1
                self._break(st)
                continue
            if window or pkt.sample_begin or st.in_sample:
                st.last_end = pkt.t_end
            self.stats.stream_us += pkt.t_end - pkt.t_start
            out = feed.setdefault(st.modality, [])
            if window:
                for piece in self._windows(st, pkt):
                    out.append(piece)
                    if piece.sample_end:
                        recv_of[(piece.stream_id, piece.seq)] = recv
                continue
            if pkt.sample_begin:
                if st.in_sample:
                    self.stats.incomplete_samples += 1
                st.in_sample = True
            if not st.in_sample:
                self.stats.skipped_packets += 1
                continue
            if pkt.sample_end:
                st.in_sample = False
                recv_of[(pkt.stream_id, pkt.seq)] = recv
            out.append(pkt)
        done = []
        for modality, pkts in feed.items():
            if not pkts:
                continue
            try:
                feats = self.reservoir(modality).feed(pkts)
            except ReservoirError:
                self.stats.reservoir_errors += 1
                self._reservoirs.pop(modality, None)
                for st in self._streams.values():
                    if st.modality == modality:
                        self._drop_windows(st)
                        st.in_sample, st.windows, st.origin = False, [], None
                continue
            for f in feats:
                done.append((modality, f, recv_of.get((f.stream_id, f.seq), 0)))
        return self._label(done)

    def _break(self, st: _Stream) -> None:
        """End a stream's sample or windows in flight (counted incomplete) and its timeline."""
        if st.in_sample or st.windows:
            self.stats.incomplete_samples += 1 if st.in_sample else len(st.windows)
        self._drop_windows(st)
        st.in_sample, st.windows, st.origin, st.last_end = False, [], None, None

    # ------------------------------------------------------------ sliding windows
    def _windows(self, st: _Stream, pkt: EventPacket) -> list[EventPacket]:
        cfg = self.config
        if st.origin is None:
            st.origin, st.next_window = pkt.t_start, 0
        while st.origin + st.next_window * cfg.hop_us < pkt.t_end:
            t0 = st.origin + st.next_window * cfg.hop_us
            slot = f"{pkt.stream_id}#{st.next_window % self._n_windows}"
            st.windows.append(_Window(st.next_window, t0, t0 + cfg.window_us, slot))
            self._wstart.setdefault((slot, st.next_window), []).append(t0)
            st.next_window += 1
        keep, pieces = [], []
        for w in st.windows:
            a, b = max(pkt.t_start, w.t_start), min(pkt.t_end, w.t_end)
            if a >= b:
                keep.append(w)
                continue
            end = pkt.t_end >= w.t_end
            ev = slice_time(pkt.events, a, b)
            if w.t_start:  # window time runs from the window's start, as offline
                ev = ev.copy()
                ev["t"] -= w.t_start
            pieces.append(EventPacket(w.slot, w.seq, a - w.t_start, b - w.t_start, ev, st.modality,
                                      w.index, pkt.label, sample_begin=w.seq == 0, sample_end=end,
                                      sent_ns=pkt.sent_ns))
            w.seq += 1
            if not end:
                keep.append(w)
        st.windows = keep
        return pieces

    # ------------------------------------------------------------ labelling
    def _label(self, done: list) -> list[LabelEvent]:
        if not done:
            return []
        by_mod: dict[str, list[int]] = {}
        for j, (modality, _f, _r) in enumerate(done):
            by_mod.setdefault(modality, []).append(j)
        out: list[LabelEvent | None] = [None] * len(done)
        bhash, k = self.bundle.hash, self.config.topk
        windows = self.config.segment == "window"
        for modality, rows in by_mod.items():
            x = np.stack([np.asarray(done[j][1].counts, dtype=np.float32) for j in rows])
            emb = embed(self.bundle, modality, x)
            matches = self.matcher.match_many(emb, k)
            seed = self.seed_of(modality)
            finite = np.isfinite(emb).all(axis=1)
            for j, e, m, fin in zip(rows, emb, matches, finite, strict=True):
                _mod, f, recv = done[j]
                if not (fin and math.isfinite(m.score) and math.isfinite(m.margin)):
                    self.stats.nonfinite_labels += 1  # never a NaN score on the wire or in a sink
                    continue
                # a window's reservoir slot is "<stream>#<k>"; a stream id may hold "#" itself
                sid, _slot = f.stream_id.rpartition("#")[::2] if windows else (f.stream_id, "")
                t_start, t_end = int(f.t_start), int(f.t_end)
                st = self._streams.get(sid)
                seq = 0
                if st is not None:
                    seq, st.labels = st.labels, st.labels + 1
                    if _slot:  # a window: its span in stream time
                        # the window's own start, recorded when it opened: the stream's origin may
                        # have moved since (a refused packet restarts its windows)
                        starts = self._wstart.get((f.stream_id, int(f.sample_id)))
                        if starts:
                            w0 = starts.pop(0)
                            if not starts:
                                del self._wstart[(f.stream_id, int(f.sample_id))]
                        else:
                            w0 = (st.origin or 0) + int(f.sample_id) * self.config.hop_us
                        t_start, t_end = t_start + w0, t_end + w0
                truth = f.label
                if self.config.update == "truth" and truth is not None and truth in self.matcher:
                    self.stats.updates += int(self.matcher.update(truth, e))
                out[j] = LabelEvent(
                    stream_id=sid, seq=seq, t_start=t_start, t_end=t_end, label=m.label,
                    score=m.score, topk=m.topk, margin=m.margin, truth=truth, modality=modality,
                    sample_id=int(f.sample_id), bundle_hash=bhash,
                    prototype_version=self.matcher.version, seed=seed,
                    source_ns=int(getattr(f, "sent_ns", 0)), received_ns=recv,
                    probability=m.probability)
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
