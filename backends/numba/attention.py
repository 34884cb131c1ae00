"""Fused attention kernels (refimpl.ops.attention / attention_online): one work item per (batch, query,
head), GQA by index (head h reads kv head h // G), sinks, sliding window, causal bound, q_offset.

Only the visible key range [lo, hi] of each query is read (lo = p - window + 1, hi = p when causal,
clipped to the keys), so masked keys cost nothing; as in the reference, a masked key's value never
reaches the output (not even a NaN through 0 * v), and a visible key's value enters as p_ij * v_j
(IEEE: 0 * inf = NaN where p_ij underflowed to 0). In the online variant a tile whose visible
scores are all -inf leaves the state unchanged; its keys still add 0 * v when some value of that kv
head is NaN/Inf (vbad), as the reference's tile update does.

Variants: "online" (default; refimpl.ops.attention_online's algorithm: tiles of 32 keys aligned at
multiples of 32, running max m, sum l and output o, rescaled once per tile) and "naive" (the dense
reference's two passes: scores, max, exp, sum, p = e / den, o = sum p v).
Keys and values are read where they are (any strides: the KV cache's [Hkv, Tmax, D] buffers seen as
[T, Hkv, D]; no copy, no transpose); each score is summed sequentially over d (contiguous in the
cache layout), then scaled.
"""

import math

import numpy as np
from numba import njit, prange

from refimpl.errors import ArgumentError
from refimpl.ops.attention import check_attention, resolve_q_offset
from refimpl.precision import compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, per_dtype

BLOCK = 32  # keys per tile of the "online" variant (refimpl.ops.attention_online's default)


@njit(**JIT)
def _nanmax(m, s):
    """max(m, s), NaN if either is NaN (np.maximum's rule)."""
    if m != m:
        return m
    if not (s <= m):
        return s
    return m


@njit(**JIT)
def _visible(p, tk, window, causal):
    """First and last visible key of the query at position p (lo > hi: none)."""
    hi = min(p, tk - 1) if causal else tk - 1
    lo = max(0, p - window + 1) if window > 0 else 0
    return lo, hi


@njit(**JIT)
def _nonfinite(v, out):  # v [B, Tk, Hkv, Dv]; out [B, Hkv]: True where some value is NaN or +-inf
    B, T, H, D = v.shape
    for b in range(B):
        for h in range(H):
            bad = False
            for j in range(T):
                for d in range(D):
                    z = v[b, j, h, d] - v[b, j, h, d]  # 0, or NaN for NaN and +-inf
                    bad |= z != z
            out[b, h] = bad


@njit(inline="always", **JIT)
def _scores(qi, kt, j0, n, scale, buf, m):
    """buf[:n] = scale * (qi . keys j0 .. j0+n-1), each dot product summed over d in order; returns
    the running max of m and those scores."""  # qi [D]; kt [Tk, D] (one kv head; any strides); buf [>= n]
    F = qi.dtype.type
    for jj in range(n):
        kj = kt[j0 + jj]  # [D]
        acc = F(0)
        for d in range(qi.shape[0]):
            acc += qi[d] * kj[d]
        buf[jj] = acc
    for jj in range(n):
        s = buf[jj] * scale
        buf[jj] = s
        m = _nanmax(m, s)
    return m

@njit(inline="always", **JIT)
def online(qi, kt, vt, vbad, snk, lo, hi, scale, block, o):  # kt [Tk, D], vt [Tk, Dv]: one kv head; o [Dv]
    """The "online" variant for one query and head (layer.py fuses it too); constants in o's dtype.
    Module level, not a factory's closure: a kernel whose closure holds a compiled function misses
    numba's disk cache and compiles in every process."""
    F = o.dtype.type
    zero, one, ninf = F(0), F(1), F(-np.inf)
    Dv = o.shape[0]
    m = snk
    l = zero if m == ninf else one
    buf = np.empty(block, dtype=qi.dtype)  # [block]
    start = (lo // block) * block
    for t in range(start, hi + 1, block):
        j0, j1 = max(t, lo), min(t + block, hi + 1)
        mt = _scores(qi, kt, j0, j1 - j0, scale, buf, m)
        if mt == ninf:
            if vbad:
                for j in range(j0, j1):
                    vj = vt[j]
                    for d in range(Dv):
                        o[d] += zero * vj[d]
            continue
        a = np.exp(m - mt)
        for d in range(Dv):
            o[d] = a * o[d]
        lsum = zero
        for j in range(j0, j1):
            pj = np.exp(buf[j - j0] - mt)
            lsum += pj
            vj = vt[j]  # [Dv]
            for d in range(Dv):
                o[d] += pj * vj[d]
        l = a * l + lsum
        m = mt
    if l == zero:
        l = one
    for d in range(Dv):
        o[d] = o[d] / l

@njit(inline="always", **JIT)
def naive(qi, kt, vt, snk, lo, hi, scale, o):  # as online
    F = o.dtype.type
    zero, one, ninf = F(0), F(1), F(-np.inf)
    Dv = o.shape[0]
    n = max(hi - lo + 1, 0)
    e = np.empty(n, dtype=qi.dtype)  # [n]
    m = _scores(qi, kt, lo, n, scale, e, snk)
    if m == ninf:
        m = zero
    den = zero
    for j in range(n):
        e[j] = np.exp(e[j] - m)
        den += e[j]
    den = den + np.exp(snk - m)
    if den == zero:
        den = one
    for j in range(lo, hi + 1):
        pj = e[j - lo] / den
        vj = vt[j]
        for d in range(Dv):
            o[d] += pj * vj[d]


def _make_kernel(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, q, kt, v, sinks, off, window, causal, scale, block, is_naive, vbad, out):
        # q [B, Tq, Hq, D]; k [B, Tk, Hkv, D] and v [B, Tk, Hkv, Dv] (any strides: views of the KV cache);
        # sinks [Hq]; vbad [B, Hkv]; out [B, Tq, Hq, Dv]
        old = enter(nt)
        B, Tq, Hq = q.shape[0], q.shape[1], q.shape[2]
        Tk, Hkv = v.shape[1], v.shape[2]
        G = Hq // Hkv
        for item in prange(B * Tq * Hq):
            b, i, h = item // (Tq * Hq), (item // Hq) % Tq, item % Hq
            hk = h // G
            lo, hi = _visible(off + i, Tk, window, causal)
            o = out[b, i, h]  # [Dv]
            o[:] = F(0)
            if is_naive:
                naive(q[b, i, h], kt[b, :, hk], v[b, :, hk], sinks[h], lo, hi, scale, o)
            else:
                online(q[b, i, h], kt[b, :, hk], v[b, :, hk], vbad[b, hk], sinks[h], lo, hi, scale, block, o)
        leave(old)

    return kernel


attention_kernel = per_dtype(_make_kernel)


def check(q, k, v, sinks, window, causal, q_offset, scale, mask):
    """refimpl.ops.check_attention, then the arguments as the kernel takes them: returns (q, k, v, sinks,
    window, causal, offset, scale, mask), offset the absolute position of query 0."""
    check_attention(q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    sinks = None if sinks is None else np.asarray(sinks)
    window = None if window is None else int(window)
    off = resolve_q_offset(q.shape[-3], k.shape[-3], q_offset, bool(causal), window)
    return q, k, v, sinks, window, bool(causal), off, scale, mask


def _batched(a, dt):
    """a [..., T, H, D] in dtype dt as [B, T, H, D] without copying a view that already has dtype dt
    (strides kept: the kernel reads any layout, e.g. the KV cache's [Hkv, Tmax, D] buffers)."""
    a = np.asarray(a)
    if a.dtype != dt:
        a = a.astype(dt)
    if a.ndim == 3:
        return a[None]
    if a.ndim == 4:
        return a
    return np.ascontiguousarray(a).reshape(-1, *a.shape[-3:])


def run(q, k, v, sinks, window, causal, off, scale, *, variant="online", block=BLOCK):
    """The kernel on checked arguments; returns [..., Tq, Hq, Dv] in compute_dtype(q, k, v, sinks)."""
    dt = compute_dtype(q, k, v, sinks)
    lead = q.shape[:-3]
    qc = contiguous(q, dt).reshape(-1, *q.shape[-3:])  # [B, Tq, Hq, D]
    kc = _batched(k, dt)  # [B, Tk, Hkv, D], a view when k is one (the KV cache's strided view)
    kt = kc
    vc = _batched(v, dt)  # [B, Tk, Hkv, Dv]
    hq = q.shape[-2]
    sk = np.full(hq, -np.inf, dtype=dt) if sinks is None else contiguous(sinks, dt)  # [Hq]
    sc = dt.type(1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale))
    vbad = np.empty((vc.shape[0], vc.shape[2]), dtype=np.bool_)  # [B, Hkv]
    _nonfinite(vc, vbad)
    out = np.empty((qc.shape[0], qc.shape[1], hq, vc.shape[-1]), dtype=dt)  # [B, Tq, Hq, Dv]
    w = 0 if window is None else int(window)
    work = qc.shape[0] * qc.shape[1] * hq * kc.shape[1] * (kc.shape[3] + vc.shape[3])
    if variant not in ("online", "naive"):
        raise ArgumentError(f"variant: expected 'online' or 'naive', found {variant!r}")
    launch(attention_kernel(dt), work, qc, kt, vc, sk, int(off), w, bool(causal), sc, int(block), variant == "naive",
           vbad, out)
    return out.reshape(*lead, *out.shape[1:])  # [..., Tq, Hq, Dv]
