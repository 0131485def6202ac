"""Numba kernels of the event-driven LIF reservoir: the only module of streamlsm that imports numba.

Equations (PAPER.md, hard reset, no refractory period), per stream and per time bin b:
    v[b] = decay * v[b-1] * (1 - s[b-1]) + W_in^T x[b] + W_rec^T s[b-1] (+ read noise)
    s[b] = v[b] > threshold
Only the rows of input channels that fired in the bin and of neurons that spiked in the previous
bin are added. The input current of a bin is summed first (weights on a 2^-k grid, see
device.grid_step, make that sum exact in any order), then added once to the leaked membrane, then the noise is added: one rounding
sequence, the same in every entry point, so any split of a stream into packets and the offline
batch path give bit-identical spikes. Read noise is drawn from a counter-based hash keyed by
(seed, stream key, bin, neuron), never from a sequential generator.

State lives in caller-owned arrays with one slot (row) per stream:
    v f32[S,N] membrane, sprev u8[S,N] spikes of the last closed bin, sidx i32[S,N] their indices,
    acc f32[S,C+2] input of the open bin (columns C, C+1: for dropped events), fidx i32[S,C+1]
    channels that fired in it,
    ist i64[S,NIST] integers (see I_* below), key u64[S] noise key, cnt i32[S,N] spike counts,
    hist u8[S,H,N] spikes per bin (H = 0 when not needed).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "I_CUR", "I_T0", "I_NSP", "I_NF", "I_ACTIVE", "I_EVENTS", "I_DROPPED", "I_LATE", "NIST",
    "MIX_GOLD", "mix64", "normals", "reset_slot", "feed_batch", "encode_batch", "jit_options", "threads",
]

# per-slot integer state columns
I_CUR, I_T0, I_NSP, I_NF, I_ACTIVE, I_EVENTS, I_DROPPED, I_LATE = range(8)
NIST = 8

# fastmath without contraction (no fused multiply-add) and without reassociation: every entry point
# performs the same float32 operations in the same order.
_FASTMATH = {"nnan", "ninf", "nsz", "arcp"}


def threads(n: int | None = None) -> int:
    """The number of threads of the parallel batch entry point (set it with n)."""
    if n is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    return numba.get_num_threads()


def jit_options(parallel: bool = False) -> dict:
    """Every numba option of this module, in one place."""
    return {"cache": True, "nogil": True, "fastmath": _FASTMATH, "boundscheck": False,
            "error_model": "numpy", "parallel": parallel}


_jit = numba.njit(**jit_options())
_pjit = numba.njit(**jit_options(parallel=True))

MIX_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S20 = np.uint64(20)
_LO32 = np.uint64(0xFFFFFFFF)
_LO20 = np.uint64(0xFFFFF)


@_jit
def mix64(z):
    """splitmix64 finaliser: a bijective 64-bit hash (counter-based generator core)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_jit
def _table_normal(u32, ntab):
    """A standard normal deviate from 32 random bits: 12-bit index into an inverse-CDF table
    (len 4097) plus linear interpolation on the remaining 20 bits (only + and *: exact everywhere)."""
    idx = u32 >> _S20
    frac = np.float32(u32 & _LO20) * np.float32(1.0 / 1048576.0)
    a = ntab[idx]
    return a + frac * (ntab[idx + np.uint64(1)] - a)


@_jit
def normals(seed, key, b, n_out, ntab, out):
    """Fill out[:n_out] with the standard normals of (seed, key, bin b), one per neuron index."""
    base = mix64(mix64(np.uint64(seed) ^ mix64(np.uint64(key) + MIX_GOLD)) ^ np.uint64(b))
    for i in range((n_out + 1) // 2):
        h = mix64(base + np.uint64(i) * MIX_GOLD)
        out[2 * i] = _table_normal(h & _LO32, ntab)
        if 2 * i + 1 < n_out:
            out[2 * i + 1] = _table_normal(h >> _S32, ntab)


@_jit
def reset_slot(s, v, sprev, acc, fidx, ist, cnt, hist):
    """Zero one stream slot (membrane, spikes, open-bin input, counts, history)."""
    N = v.shape[1]
    for n in range(N):
        v[s, n] = 0.0
        sprev[s, n] = 0
        cnt[s, n] = 0
    for i in range(ist[s, I_NF]):
        acc[s, fidx[s, i]] = 0.0
    H = hist.shape[1]
    for b in range(min(H, ist[s, I_CUR])):
        for n in range(N):
            hist[s, b, n] = 0
    ist[s, I_CUR] = 0
    ist[s, I_NSP] = 0
    ist[s, I_NF] = 0


@_jit
def _features(s, nbins, K, cnt, hist, out, row):
    """Write the features of slot s (K windows of its nbins bins, or the totals) into out[row]."""
    N = cnt.shape[1]
    if K == 1:
        for n in range(N):
            out[row, n] = np.float32(cnt[s, n])
        return
    for f in range(K * N):
        out[row, f] = 0.0
    H = hist.shape[1]
    nb = min(nbins, H)
    for b in range(nb):
        w = (b * K) // nbins
        for n in range(N):
            if hist[s, b, n]:
                out[row, w * N + n] += 1.0


@_jit
def _run(pk_slot, pk_t0, pk_t1, pk_flags, pk_key, pk_e, p0, p1,
         ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm, input_max, bin_us, K,
         W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab,
         v, sprev, sidx, acc, fidx, ist, key, cnt, hist, cur, q, z, out, out_pk, out_t0, row0):
    """Advance packets p0..p1-1 (packet i: slot pk_slot[i], span [pk_t0[i], pk_t1[i]), events
    pk_e[i]:pk_e[i+1], flags bit 0 sample_begin, bit 1 sample_end, noise key pk_key[i]).
    One function body on purpose: calls between jitted functions with many array arguments cost
    microseconds (reference counting), so the per-event and per-bin paths have none."""
    N = v.shape[1]
    C = W_in.shape[0]  # acc has C + 2 columns: C (zero) and C + 1 (scratch) serve dropped events
    H = hist.shape[1]
    noisy = eta > 0.0
    n_out = 0
    for i in range(p0, p1):
        s = pk_slot[i]
        t_end = pk_t1[i]
        flags = pk_flags[i]
        if (flags & 1) or ist[s, I_ACTIVE] == 0:
            reset_slot(s, v, sprev, acc, fidx, ist, cnt, hist)
            ist[s, I_T0] = pk_t0[i]
            ist[s, I_ACTIVE] = 1
            key[s] = pk_key[i]
        t0 = ist[s, I_T0]
        # times may lie anywhere up to 2^63 - 1: every sum below is written so it cannot overflow
        # (t0 + k * bin_us never exceeds t_end; an overflowing t_lo + bin_us made t_lim negative
        # and the event loop spin for ever on a packet near 2^63)
        span = t_end - t0
        if flags & 2:
            end_target = span // bin_us + (span % bin_us > 0)
        else:
            end_target = span // bin_us
        e = pk_e[i]
        e1 = pk_e[i + 1]
        n_drop = 0
        n_late = 0
        cur_b = ist[s, I_CUR]
        t_lo = t0 + cur_b * bin_us
        t_lim = t_lo + bin_us if t_end - t_lo > bin_us else t_end
        nf = ist[s, I_NF]
        one = np.float32(1.0)
        while True:
            # fast path: events of the open bin, mapped without branches (dropped ones land in
            # the spare columns of acc)
            while e < e1:
                te = ev_t[e]
                if te >= t_lim or te < t_lo:
                    break
                x = np.int64(ev_x[e])
                y = np.int64(ev_y[e])
                p = np.int64(ev_p[e])
                ok = (x >= 0) & (x < xm) & (y >= 0) & (y < ym) & (p >= 0) & (p < pm)
                c = np.int64(lut[((y * xm + x) * pm + p) if ok else 0])
                c = c if ok else -1
                bad = c < 0
                n_drop += bad
                # a dropped event reads column C (always 0) and writes column C + 1 (never read):
                # no chain of loads waiting on stores through one dummy cell
                cr = C if bad else c
                cw = C + 1 if bad else c
                a = acc[s, cr]
                fidx[s, nf] = c
                nf += (a == 0.0) & (not bad)
                acc[s, cw] = min(a + one, input_max)
                e += 1
            if e < e1:
                # slow path: an event outside the open bin
                te = ev_t[e]
                x = np.int64(ev_x[e])
                y = np.int64(ev_y[e])
                p = np.int64(ev_p[e])
                if x < 0 or x >= xm or y < 0 or y >= ym or p < 0 or p >= pm or lut[(y * xm + x) * pm + p] < 0:
                    n_drop += 1
                    e += 1
                    continue
                if te >= t_end or te < t_lo:
                    n_late += 1
                    e += 1
                    continue
                target = (te - t0) // bin_us
            else:
                target = end_target
            ist[s, I_NF] = nf
            # close bins until `target` is the open bin
            while ist[s, I_CUR] < target:
                b = ist[s, I_CUR]
                nf = ist[s, I_NF]
                nsp = ist[s, I_NSP]
                if nf == 0 and nsp == 0:
                    # no input, no spikes: pure leak, no spike possible (threshold > 0), no reads.
                    # Once a leak step changes no membrane (all 0, or stuck where decay * v rounds
                    # back to v: a denormal, or decay = 1) every later bin up to `target` is the
                    # same step again: jump there. Bit-identical to stepping each bin, and the
                    # cost of an empty span no longer depends on the leak reaching exactly zero.
                    moved = False
                    for n in range(N):
                        vo = v[s, n]
                        vv = decay * vo
                        v[s, n] = vv
                        moved = moved or vv != vo
                    ist[s, I_CUR] = b + 1 if moved else target
                    continue
                for n in range(N):
                    cur[n] = 0.0
                if noisy:
                    for n in range(N):
                        q[n] = 0.0
                # (2-D indexing throughout, no row views: each view costs reference counting)
                for k in range(nf):
                    r = fidx[s, k]
                    xin = acc[s, r]
                    acc[s, r] = 0.0
                    if xin == 1.0:
                        for n in range(N):
                            cur[n] += W_in[r, n]
                    else:
                        for n in range(N):
                            cur[n] += xin * W_in[r, n]
                    if noisy:
                        x2 = xin * xin
                        for n in range(N):
                            q[n] += x2 * W2_in[r, n]
                for k in range(nsp):
                    j = sidx[s, k]
                    for n in range(N):
                        cur[n] += W_rec[j, n]
                    if noisy:
                        for n in range(N):
                            q[n] += W2_rec[j, n]
                ist[s, I_NF] = 0
                if noisy:
                    normals(seed, key[s], b, N, ntab, z)
                    for n in range(N):
                        cur[n] = cur[n] + eta * math.sqrt(q[n]) * z[n]
                for n in range(N):  # vectorised: leak or reset, add the current, threshold, count
                    vn = (np.float32(0.0) if sprev[s, n] else decay * v[s, n]) + cur[n]
                    v[s, n] = vn
                    sp = vn > thr
                    sprev[s, n] = sp
                    cnt[s, n] += sp
                k = 0
                for n in range(N):  # branch-free compaction of the spike list
                    sidx[s, k] = n
                    k += sprev[s, n]
                if b < H:
                    for k2 in range(k):
                        hist[s, b, sidx[s, k2]] = 1
                ist[s, I_NSP] = k
                ist[s, I_CUR] = b + 1
            cur_b = ist[s, I_CUR]
            t_lo = t0 + cur_b * bin_us
            t_lim = t_lo + bin_us if t_end - t_lo > bin_us else t_end
            nf = ist[s, I_NF]
            if e >= e1:
                break
        ist[s, I_EVENTS] += pk_e[i + 1] - pk_e[i]
        ist[s, I_DROPPED] += n_drop
        ist[s, I_LATE] += n_late
        if flags & 2:
            row = row0 + n_out
            _features(s, max(end_target, 0), K, cnt, hist, out, row)
            out_pk[n_out] = i
            out_t0[n_out] = t0
            n_out += 1
            reset_slot(s, v, sprev, acc, fidx, ist, cnt, hist)
            ist[s, I_ACTIVE] = 0
    return n_out


@_jit
def feed_batch(pk_slot, pk_t0, pk_t1, pk_flags, pk_key, pk_e, n_pk,
               ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm, input_max, bin_us, K,
               W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab,
               v, sprev, sidx, acc, fidx, ist, key, cnt, hist, cur, q, z, out, out_pk, out_t0):
    """Advance many streams' packets in order (packet i: events pk_e[i]:pk_e[i+1] of the flat
    arrays); returns the number of feature rows written (row r came from packet out_pk[r])."""
    return _run(pk_slot, pk_t0, pk_t1, pk_flags, pk_key, pk_e, 0, n_pk,
                ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm, input_max, bin_us, K,
                W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab,
                v, sprev, sidx, acc, fidx, ist, key, cnt, hist, cur, q, z, out, out_pk, out_t0, 0)


@_jit
def _encode_chunk(ch, n_chunks, offsets, t_end, keys, ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm, input_max,
                  bin_us, K, H, W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab, out, stats):
    """Samples ch, ch + n_chunks, ... one after another in one private state slot."""
    n = offsets.shape[0] - 1
    N = W_rec.shape[0]
    C = W_in.shape[0]
    v = np.zeros((1, N), np.float32)
    sprev = np.zeros((1, N), np.uint8)
    sidx = np.zeros((1, N), np.int32)
    acc = np.zeros((1, C + 2), np.float32)
    fidx = np.zeros((1, C + 1), np.int32)
    ist = np.zeros((1, NIST), np.int64)
    key = np.zeros(1, np.uint64)
    cnt = np.zeros((1, N), np.int32)
    hist = np.zeros((1, H, N), np.uint8)
    cur = np.zeros(N, np.float32)
    q = np.zeros(N, np.float32)
    z = np.zeros(N + 1, np.float32)
    pk_slot = np.zeros(1, np.int32)
    pk_t0 = np.zeros(1, np.int64)
    pk_t1 = np.zeros(1, np.int64)
    pk_flags = np.full(1, 3, np.int8)
    pk_key = np.zeros(1, np.uint64)
    pk_e = np.zeros(2, np.int64)
    out_pk = np.zeros(1, np.int32)
    out_t0 = np.zeros(1, np.int64)
    for i in range(ch, n, n_chunks):
        pk_t1[0] = t_end[i]
        pk_key[0] = keys[i]
        pk_e[0] = offsets[i]
        pk_e[1] = offsets[i + 1]
        e0 = ist[0, I_EVENTS]
        d0 = ist[0, I_DROPPED]
        l0 = ist[0, I_LATE]
        _run(pk_slot, pk_t0, pk_t1, pk_flags, pk_key, pk_e, 0, 1,
             ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm, input_max, bin_us, K,
             W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab,
             v, sprev, sidx, acc, fidx, ist, key, cnt, hist, cur, q, z, out, out_pk, out_t0, i)
        stats[i, 0] = ist[0, I_EVENTS] - e0
        stats[i, 1] = ist[0, I_DROPPED] - d0
        stats[i, 2] = ist[0, I_LATE] - l0


@_pjit
def encode_batch(offsets, t_end, keys, ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm, input_max,
                 bin_us, K, H, W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab, out, stats,
                 n_chunks):
    """Encode whole samples in parallel (sample i: events offsets[i]:offsets[i+1], times from its
    start, duration t_end[i]) into out[i]; the same code as feed_batch (one packet per sample).
    The parallel loop runs over n_chunks interleaved chunks of samples (light to compile)."""
    for ch in numba.prange(n_chunks):
        _encode_chunk(ch, n_chunks, offsets, t_end, keys, ev_t, ev_x, ev_y, ev_p, lut, xm, ym, pm,
                      input_max, bin_us, K, H, W_in, W_rec, W2_in, W2_rec, decay, thr, eta, seed, ntab,
                      out, stats)
