"""Reservoir: frozen weights + a state table with one slot per stream; packets in, features out."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import replace
from itertools import accumulate

import numpy as np

from ..errors import ConfigError, ReservoirError, WireError
from ..events import LAYOUTS, EventPacket, as_layout
from . import kernel as _k
from .config import ReservoirConfig
from .device import make_weights
from .features import _U64, Features, normal_table
from .mapping import build_map

__all__ = ["Features", "Reservoir", "normal_table"]


class Reservoir:
    """A LIF reservoir for one modality; ``feed`` advances many streams' packets in one kernel call.

    State per stream (membrane, last spikes, open-bin input, counts) lives in preallocated tables
    with one slot per stream id; a slot is taken at the stream's first packet and kept until
    ``release``. Any split of a stream into packets gives bit-identical features, equal to
    ``encode`` of the whole samples. The read-noise key of a sample is its ``sample_id`` (so a
    sample streamed live and encoded offline draws the same noise). ``encode`` takes each sample's
    duration (default: last event + 1 us); pass the source's ``duration_us`` to match a replay.
    Not thread-safe: one caller at a time (staging buffers and state are shared); ``encode`` may
    run while no ``feed`` does. The kernel releases the GIL.
    """

    def __init__(self, config: ReservoirConfig,
                 weights: tuple[np.ndarray, np.ndarray] | None = None, capacity: int = 4) -> None:
        config.validate()
        cfg = config
        self.config = cfg
        self.map = build_map(cfg.layout, sensor=cfg.sensor, crop=cfg.crop, pool=cfg.pool,
                             polarity=cfg.polarity, stereo=cfg.stereo, n_inputs=cfg.n_inputs,
                             unit_offset=cfg.unit_offset)
        if cfg.n_inputs and cfg.n_inputs != self.map.n_inputs:
            raise ConfigError("n_inputs", f"{cfg.n_inputs} != {self.map.n_inputs} channels of the mapping")
        self.n_inputs = self.map.n_inputs
        N = cfg.n_neurons
        if weights is None:
            weights = make_weights(self.n_inputs, N, cfg.weight_scale, cfg.rec_scale, cfg.device, cfg.seed)
        w_in, w_rec = (np.ascontiguousarray(w, dtype=np.float32) for w in weights)
        if w_in.shape != (self.n_inputs, N) or w_rec.shape != (N, N):
            raise ReservoirError(f"weights must be ({self.n_inputs}, {N}) and ({N}, {N}), "
                                 f"got {w_in.shape} and {w_rec.shape}")
        self.w_in, self.w_rec = w_in, w_rec
        noisy = cfg.read_noise > 0
        self._w2_in = w_in * w_in if noisy else np.zeros((0, N), np.float32)
        self._w2_rec = w_rec * w_rec if noisy else np.zeros((0, N), np.float32)
        self._decay = np.float32(cfg.decay)
        self._thr = np.float32(cfg.threshold)
        self._eta = np.float32(cfg.read_noise)
        self._clip = np.float32(cfg.clip)
        self._seed = np.uint64(cfg.seed)
        self._ntab = normal_table()
        self._K = cfg.feature_windows
        self._H = cfg.max_bins if self._K > 1 else 0
        self.n_features = N * self._K
        self._dtype = LAYOUTS[cfg.layout]
        self._slots: dict[Hashable, int] = {}  # slot key (a stream id, or the segmenter's tuple) -> row
        self._free: list[int] = []
        self._alloc_state(max(1, capacity))
        self._scratch = [np.zeros(N, np.float32) for _ in range(3)]
        self._alloc_stage(64, 4096)

    # ---- state and staging tables -------------------------------------------------------------
    def _alloc_state(self, S: int) -> None:
        N, C = self.config.n_neurons, self.n_inputs
        old = getattr(self, "_state", None)
        new = {
            "v": np.zeros((S, N), np.float32), "sprev": np.zeros((S, N), np.uint8),
            "sidx": np.zeros((S, N), np.int32), "acc": np.zeros((S, C + 2), np.float32),
            "fidx": np.zeros((S, C + 1), np.int32), "ist": np.zeros((S, _k.NIST), np.int64),
            "key": np.zeros(S, np.uint64), "cnt": np.zeros((S, N), np.int32),
            "hist": np.zeros((S, self._H, N), np.uint8),
        }
        if old is not None:
            n = old["v"].shape[0]
            for name, arr in new.items():
                arr[:n] = old[name]
            self._free.extend(range(S - 1, n - 1, -1))
        else:
            self._free.extend(range(S - 1, -1, -1))
        self._state = new
        self._capacity = S

    def _alloc_stage(self, P: int, E: int) -> None:
        self._pk = {"slot": np.zeros(P, np.int32), "t0": np.zeros(P, np.int64),
                    "t1": np.zeros(P, np.int64), "flags": np.zeros(P, np.int8),
                    "key": np.zeros(P, np.uint64), "e": np.zeros(P + 1, np.int64),
                    "out_pk": np.zeros(P, np.int32), "out_t0": np.zeros(P, np.int64)}
        self._out = np.zeros((P, self.n_features), np.float32)
        self._ev = {"t": np.zeros(E, np.int64), "x": np.zeros(E, np.int16),
                    "y": np.zeros(E, np.int16), "p": np.zeros(E, np.int8)}

    @property
    def slot_bytes(self) -> int:
        """Bytes of state one slot (one stream, or one window of a stream) holds."""
        N, C = self.config.n_neurons, self.n_inputs
        return N * (4 + 1 + 4 + 4) + (C + 2) * 4 + (C + 1) * 4 + _k.NIST * 8 + 8 + self._H * N

    @property
    def capacity(self) -> int:
        """Slots allocated now (grows by half when full; shrinks when mostly free)."""
        return self._capacity

    def _slot(self, key: Hashable) -> int:
        s = self._slots.get(key)
        if s is None:
            if not self._free:
                self._alloc_state(self._capacity + max(4, self._capacity // 2))
            s = self._free.pop()
            self._slots[key] = s
        return s

    def _compact(self) -> None:
        """Move the used slots to the front and give back the tables' tail (a quarter or less in
        use): the state of a burst of streams does not stay allocated after they are gone."""
        keep = max(4, 2 * len(self._slots))
        if keep >= self._capacity:
            return
        old = self._state
        moves = {}
        free_low = sorted(s for s in self._free if s < keep)
        for name, s in self._slots.items():
            if s >= keep:
                moves[name] = free_low.pop(0)
        new = {k: np.array(a[:keep]) for k, a in old.items()}  # copies: the old tables are freed
        for name, dst in moves.items():
            src = self._slots[name]
            for k, a in new.items():
                a[dst] = old[k][src]
            self._slots[name] = dst
        used = set(self._slots.values())
        self._free = [s for s in range(keep - 1, -1, -1) if s not in used]
        self._state = new
        self._capacity = keep

    @property
    def threads(self) -> int:
        """Threads used by ``encode`` (numba's setting; change it with ``set_threads``)."""
        return _k.threads()

    @staticmethod
    def set_threads(n: int) -> int:
        """Set the threads of ``encode`` (all reservoirs of the process); returns the new value."""
        return _k.threads(n)

    @property
    def streams(self) -> list[str]:
        """Stream ids that hold a slot (a tuple slot key names its stream first)."""
        return list(dict.fromkeys(k[0] if isinstance(k, tuple) else k for k in self._slots))

    def release(self, *keys: Hashable) -> None:
        """Forget slots (a stream id, or the segmenter's slot tuples): what they held in flight is
        discarded and the slots are free for other streams."""
        st = self._state
        for key in keys:
            s = self._slots.pop(key, None)
            if s is not None:
                _k.reset_slot(s, st["v"], st["sprev"], st["acc"], st["fidx"], st["ist"], st["cnt"], st["hist"])
                st["ist"][s] = 0
                self._free.append(s)
        if self._capacity > 64 and len(self._slots) * 4 <= self._capacity:
            self._compact()

    def stats(self, stream_id: str) -> dict[str, int]:
        """Events seen, dropped (outside the mapping) and late (before the open bin) of a stream."""
        s = self._slots.get(stream_id)
        if s is None:
            raise ReservoirError(f"unknown stream {stream_id!r}")
        ist = self._state["ist"][s]
        return {"events": int(ist[_k.I_EVENTS]), "dropped": int(ist[_k.I_DROPPED]),
                "late": int(ist[_k.I_LATE]), "bin": int(ist[_k.I_CUR]), "active": int(ist[_k.I_ACTIVE])}

    def membrane(self, stream_id: str) -> np.ndarray:
        """A copy of a stream's membrane potentials (after its last closed bin)."""
        s = self._slots.get(stream_id)
        if s is None:
            raise ReservoirError(f"unknown stream {stream_id!r}")
        return self._state["v"][s].copy()

    # ---- streaming ------------------------------------------------------------------------------
    def feed(self, packets: EventPacket | Sequence[EventPacket], received_ns: int | Sequence[int] = 0, *,
             slots: Sequence[Hashable] | None = None, keys: Sequence[int] | None = None) -> list[Features]:
        """Advance the streams of these packets (in order); features of every sample that ended.

        A packet runs in the state slot ``slots[i]`` (default: its stream id) with read-noise key
        ``keys[i]`` (default: its sample_id); the segmenter passes its window slots and keys.
        ``received_ns`` (one for all, or one per packet) is carried to the features of the sample
        that packet closes.
        """
        if isinstance(packets, EventPacket):
            packets = (packets,)
        dt = self._dtype
        if any(pk.events.dtype is not dt and pk.events.dtype != dt for pk in packets):
            packets = [self._by_name(pk) for pk in packets]
        P = len(packets)
        if P == 0:
            return []
        evs = [pk.events for pk in packets]
        for i, e in enumerate(evs):
            if e.dtype is not dt and e.dtype != dt:  # identity first: structured == is slow
                raise ReservoirError(f"stream {packets[i].stream_id!r}: events of dtype {e.dtype}, this "
                                     f"reservoir takes layout {self.config.layout!r}")
        lens = [len(e) for e in evs]
        E = sum(lens)
        if P > self._pk["slot"].shape[0] or E > self._ev["t"].shape[0]:
            self._alloc_stage(max(P, 2 * self._pk["slot"].shape[0]), max(E, 2 * self._ev["t"].shape[0]))
        pks, ev = self._pk, self._ev
        table = self._slots
        pks["slot"][:P] = [table[k] if k in table else self._slot(k)
                           for k in (slots if slots is not None else [pk.stream_id for pk in packets])]
        pks["t0"][:P] = [pk.t_start for pk in packets]
        pks["t1"][:P] = [pk.t_end for pk in packets]
        pks["flags"][:P] = [pk.sample_begin | (pk.sample_end << 1) for pk in packets]
        pks["key"][:P] = [k & _U64 for k in (keys if keys is not None else [pk.sample_id for pk in packets])]
        eoff = pks["e"]
        eoff[0] = 0
        eoff[1:P + 1] = list(accumulate(lens))
        if E:
            # the packets' bytes joined (np.concatenate of structured arrays costs ~3 us a packet);
            # joined through uint8 views: numpy caches buffer info on an array whose buffer is taken
            buf = np.frombuffer(b"".join([np.ascontiguousarray(e).view(np.uint8) for e in evs]), dt, count=E)
            ev["t"][:E] = buf["t"]
            ev["x"][:E] = buf["x"]
            if "y" in dt.names:
                ev["y"][:E] = buf["y"]
            if "p" in dt.names:
                ev["p"][:E] = buf["p"]
        n_out = self._run(P)
        if n_out == 0:
            return []
        out = []
        per_packet = not isinstance(received_ns, int)
        for r in range(n_out):
            i = int(pks["out_pk"][r])
            pk = packets[i]
            out.append(Features(pk.stream_id, pk.sample_id, int(pks["out_t0"][r]), pk.t_end,
                                self._out[r].copy(), pk.label, pk.modality or self.config.modality,
                                pk.seq, pk.sent_ns, int(received_ns[i]) if per_packet else received_ns))
        return out

    def _by_name(self, pk: EventPacket) -> EventPacket:
        """The packet with its events converted to this reservoir's layout by field name (tonic's
        x, y, t, p of any widths); ReservoirError naming the stream when they do not fit."""
        if pk.events.dtype == self._dtype:
            return pk
        try:
            return replace(pk, events=as_layout(pk.events, self.config.layout))
        except WireError as exc:
            raise ReservoirError(f"stream {pk.stream_id!r}: events of dtype {pk.events.dtype} do not fit "
                                 f"layout {self.config.layout!r}: {exc}") from None

    def _run(self, P: int) -> int:
        pks, ev = self._pk, self._ev
        return self._kernel(pks["slot"], pks["t0"], pks["t1"], pks["flags"], pks["key"], pks["e"], P,
                            ev["t"], ev["x"], ev["y"], ev["p"], pks["out_pk"], pks["out_t0"])

    def slot(self, stream_id: str) -> int:
        """The state-table slot of a stream (taken on first use), for ``feed_columns``."""
        return self._slot(stream_id)

    def feed_columns(self, slot: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
                     flags: np.ndarray, key: np.ndarray, offsets: np.ndarray, t: np.ndarray,
                     x: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columnar batch entry point (no per-packet Python work): packet i of slot[i] covers
        [t_start[i], t_end[i]) with events offsets[i]:offsets[i+1] of the flat t/x/y/p arrays;
        flags bit 0 = sample_begin, bit 1 = sample_end; key = noise key (the sample id as uint64).
        Dtypes: int32 slot, int64 times/offsets, int8 flags, uint64 key, int16 x/y, int8 p.
        Returns (features rows, packet index of each row, t_start of each row's sample): views
        into internal buffers, valid until the next call."""
        P = slot.shape[0]
        if self._out.shape[0] < P:
            self._alloc_stage(P, self._ev["t"].shape[0])
        pks = self._pk
        n = self._kernel(slot, t_start, t_end, flags, key, offsets, P, t, x, y, p, pks["out_pk"], pks["out_t0"])
        return self._out[:n], pks["out_pk"][:n], pks["out_t0"][:n]

    def _kernel(self, slot, t0, t1, flags, key, eoff, P, et, ex, ey, ep, out_pk, out_t0) -> int:
        st, (cur, q, z) = self._state, self._scratch
        m = self.map
        return _k.feed_batch(slot, t0, t1, flags, key, eoff, P,
                             et, ex, ey, ep, m.lut, m.xm, m.ym, m.pm,
                             self._clip, self.config.bin_us, self._K,
                             self.w_in, self.w_rec, self._w2_in, self._w2_rec, self._decay,
                             self._thr, self._eta, self._seed, self._ntab,
                             st["v"], st["sprev"], st["sidx"], st["acc"], st["fidx"], st["ist"],
                             st["key"], st["cnt"], st["hist"], cur, q, z, self._out, out_pk, out_t0)

    __call__ = feed

    # ---- offline batch ---------------------------------------------------------------------------
    def encode(self, samples: Iterable[np.ndarray], durations_us: Sequence[int] | None = None,
               sample_ids: Sequence[int] | None = None) -> np.ndarray:
        """Features (n, n_features) float32 of whole samples (times from each sample's start), in
        parallel over samples; bit-identical to feeding them as packets of any size with
        t_start=0, t_end=duration and sample_id = sample_ids[i] (default i). A sample's duration
        defaults to its last event time + 1 (0 when empty)."""
        samples = list(samples)
        n = len(samples)
        for i, smp in enumerate(samples):
            if smp.dtype != self._dtype:
                try:  # tonic-style arrays (x, y, t, p of any widths) are converted by field name
                    samples[i] = as_layout(smp, self.config.layout)
                except WireError as exc:
                    raise ReservoirError(f"sample {i}: events of dtype {smp.dtype}, this reservoir "
                                         f"takes layout {self.config.layout!r}: {exc}") from None
        lengths = np.array([len(smp) for smp in samples], np.int64)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if durations_us is None:
            t_end = np.array([int(smp["t"][-1]) + 1 if len(smp) else 0 for smp in samples], np.int64)
        else:
            t_end = np.asarray(durations_us, np.int64)
            if t_end.shape != (n,):
                raise ReservoirError(f"durations_us must have {n} entries, got shape {t_end.shape}")
        ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids, np.int64)
        if ids.shape != (n,):
            raise ReservoirError(f"sample_ids must have {n} entries")
        keys = ids.astype(np.int64).view(np.uint64)
        cat = np.concatenate(samples) if n else np.zeros(0, self._dtype)
        total = len(cat)
        et = np.ascontiguousarray(cat["t"], np.int64)
        ex = np.ascontiguousarray(cat["x"], np.int16)
        ey = np.ascontiguousarray(cat["y"], np.int16) if "y" in self._dtype.names else np.zeros(total, np.int16)
        ep = np.ascontiguousarray(cat["p"], np.int8) if "p" in self._dtype.names else np.zeros(total, np.int8)
        H = 0
        if self._K > 1 and n:
            bu = self.config.bin_us
            H = int(min(self._H, max(1, int(((t_end + bu - 1) // bu).max()))))
        out = np.zeros((n, self.n_features), np.float32)
        stats = np.zeros((n, 3), np.int64)
        if n:
            m = self.map
            _k.encode_batch(offsets, t_end, keys, et, ex, ey, ep, m.lut, m.xm, m.ym, m.pm, self._clip,
                            self.config.bin_us, self._K, H, self.w_in, self.w_rec, self._w2_in,
                            self._w2_rec, self._decay, self._thr, self._eta, self._seed, self._ntab,
                            out, stats, min(n, 4 * _k.threads()))
        self.last_encode_stats = {"events": int(stats[:, 0].sum()), "dropped": int(stats[:, 1].sum()),
                                  "late": int(stats[:, 2].sum())}
        return out
