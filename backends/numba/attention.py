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
Keys are transposed to [B, Hkv, D, Tk] first, so a tile's scores accumulate over d with the inner
loop running across keys (vectorised); each score is summed sequentially over d, then scaled.
"""

import math

import numpy as np
from numba import njit, prange

from refimpl._validate import as_float_array, require
from refimpl.errors import ArgumentError
from refimpl.ops.attention import _check_causal, _check_window, _resolve_offset
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
def _transpose_keys(k, kt):  # k [B, Tk, Hkv, D] -> kt [B, Hkv, D, Tk], in tiles of 16 keys
    B, T, H, D = k.shape
    for b in range(B):
        for h in range(H):
            for j0 in range(0, T, 16):
                n = min(16, T - j0)
                src = k[b, j0:j0 + n, h]  # [n, D]
                dst = kt[b, h, :, j0:j0 + n]  # [D, n]
                for d in range(D):
                    for jj in range(n):
                        dst[d, jj] = src[jj, d]


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


def _make_online(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, q, kt, v, sinks, off, window, causal, scale, block, vbad, out):
        # q [B, Tq, Hq, D]; kt [B, Hkv, D, Tk] (keys transposed); v [B, Tk, Hkv, Dv]; sinks [Hq]; vbad [B, Hkv]; out [B, Tq, Hq, Dv]
        old = enter(nt)
        B, Tq, Hq, D = q.shape
        Tk, Hkv, Dv = v.shape[1], v.shape[2], v.shape[3]
        G = Hq // Hkv
        zero, one, ninf = F(0), F(1), F(-np.inf)
        for item in prange(B * Tq * Hq):
            b, i, h = item // (Tq * Hq), (item // Hq) % Tq, item % Hq
            hk = h // G
            lo, hi = _visible(off + i, Tk, window, causal)
            o = out[b, i, h]  # [Dv]
            o[:] = zero
            m = sinks[h]
            l = zero if m == ninf else one
            buf = np.empty(block, dtype=q.dtype)  # [block]
            qi = q[b, i, h]  # [D]
            start = (lo // block) * block
            for t in range(start, hi + 1, block):
                j0, j1 = max(t, lo), min(t + block, hi + 1)
                mt = m
                nj = j1 - j0
                buf[:nj] = zero
                for d in range(D):
                    qd = qi[d]
                    row = kt[b, hk, d, j0:j1]  # [nj]
                    for jj in range(nj):
                        buf[jj] += qd * row[jj]
                for jj in range(nj):
                    s = buf[jj] * scale
                    buf[jj] = s
                    mt = _nanmax(mt, s)
                if mt == ninf:
                    if vbad[b, hk]:
                        for j in range(j0, j1):
                            vj = v[b, j, hk]
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
                    vj = v[b, j, hk]  # [Dv]
                    for d in range(Dv):
                        o[d] += pj * vj[d]
                l = a * l + lsum
                m = mt
            if l == zero:
                l = one
            for d in range(Dv):
                o[d] = o[d] / l
        leave(old)

    return kernel


def _make_naive(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, q, kt, v, sinks, off, window, causal, scale, vbad, out):  # as the online kernel
        old = enter(nt)
        B, Tq, Hq, D = q.shape
        Tk, Hkv, Dv = v.shape[1], v.shape[2], v.shape[3]
        G = Hq // Hkv
        zero, one, ninf = F(0), F(1), F(-np.inf)
        for item in prange(B * Tq * Hq):
            b, i, h = item // (Tq * Hq), (item // Hq) % Tq, item % Hq
            hk = h // G
            lo, hi = _visible(off + i, Tk, window, causal)
            o = out[b, i, h]  # [Dv]
            o[:] = zero
            n = max(hi - lo + 1, 0)
            e = np.empty(n, dtype=q.dtype)  # [n]
            qi = q[b, i, h]
            snk = sinks[h]
            m = snk
            e[:] = zero
            for d in range(D):
                qd = qi[d]
                row = kt[b, hk, d, lo:lo + n]  # [n]
                for jj in range(n):
                    e[jj] += qd * row[jj]
            for j in range(n):
                s = e[j] * scale
                e[j] = s
                m = _nanmax(m, s)
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
                vj = v[b, j, hk]
                for d in range(Dv):
                    o[d] += pj * vj[d]
        leave(old)

    return kernel


online_kernel = per_dtype(_make_online)
naive_kernel = per_dtype(_make_naive)


def check(q, k, v, sinks, window, causal, q_offset, scale, mask):
    """refimpl.ops.attention's argument checks (same messages); returns (q, k, v, sinks, window, causal,
    offset, scale, mask) with arrays as given (not yet converted)."""
    q = as_float_array(q, "q", min_ndim=3)
    k = as_float_array(k, "k", min_ndim=3)
    require(k.ndim == q.ndim, "k", f"{q.ndim} dimensions like q [..., Tk, Hkv, D]", f"shape {k.shape}")
    require(k.shape[:-3] == q.shape[:-3], "k", f"batch dims {q.shape[:-3]} (those of q)", f"shape {k.shape}")
    tq, hq, d = q.shape[-3:]
    tk, hkv, dk = k.shape[-3:]
    require(tq >= 1 and hq >= 1 and d >= 1, "q", "[..., Tq, Hq, D] with Tq, Hq, D >= 1", f"shape {q.shape}")
    require(tk >= 1 and hkv >= 1, "k", "[..., Tk, Hkv, D] with Tk, Hkv >= 1", f"shape {k.shape}")
    require(dk == d, "k", f"head_dim {d} (last dimension of q)", f"shape {k.shape}")
    require(hq % hkv == 0, "k", f"num_kv_heads (k.shape[-2]) dividing num_heads={hq} (q.shape[-2])",
            f"num_kv_heads={hkv}")
    v = as_float_array(v, "v", min_ndim=3)
    require(v.ndim == k.ndim and v.shape[:-1] == k.shape[:-1] and v.shape[-1] >= 1, "v",
            f"[..., Tk, Hkv, Dv] = {k.shape[:-1]} + (Dv >= 1,) (those of k)", f"shape {v.shape}")
    if sinks is not None:
        sinks = as_float_array(sinks, "sinks")
        require(sinks.shape == (hq,), "sinks", f"shape ({hq},) (one logit per query head)", f"shape {sinks.shape}")
        s64 = sinks.astype(np.float64)
        require(not np.any(np.isnan(s64) | (s64 == np.inf)), "sinks",
                "finite logits or -inf (no sink)", f"{sinks.tolist()}")
    window = _check_window(window)
    causal = _check_causal(causal)
    if scale is not None:
        require(isinstance(scale, (int, float, np.integer, np.floating)) and not isinstance(scale, bool)
                and math.isfinite(float(scale)) and float(scale) > 0,
                "scale", "None or a finite number > 0", repr(scale))
    off = _resolve_offset(tq, tk, q_offset, causal, window)
    if mask is not None:
        try:
            m = np.asarray(mask)
        except Exception as exc:
            raise ArgumentError(f"mask: expected a bool array, found {type(mask).__name__} ({exc})") from None
        require(m.dtype == np.bool_, "mask", "a bool array (True = visible)", str(m.dtype))
        require(m.ndim >= 2 and m.shape[-2:] == (tq, tk), "mask", f"[..., Tq={tq}, Tk={tk}]", f"shape {m.shape}")
        batch_shape = q.shape[:-3] + (hq, tq, tk)
        try:
            np.broadcast_shapes(m.shape, batch_shape)
        except ValueError:
            raise ArgumentError(f"mask: expected a shape broadcastable to {batch_shape} "
                                f"([..., Hq, Tq, Tk]), found shape {m.shape}") from None
        mask = m
    return q, k, v, sinks, window, causal, off, scale, mask


def run(q, k, v, sinks, window, causal, off, scale, *, variant="online", block=BLOCK):
    """The kernel on checked arguments; returns [..., Tq, Hq, Dv] in compute_dtype(q, k, v, sinks)."""
    dt = compute_dtype(q, k, v, sinks)
    lead = q.shape[:-3]
    qc = contiguous(q, dt).reshape(-1, *q.shape[-3:])  # [B, Tq, Hq, D]
    kc = contiguous(k, dt).reshape(-1, *k.shape[-3:])  # [B, Tk, Hkv, D]
    kt = np.empty((kc.shape[0], kc.shape[2], kc.shape[3], kc.shape[1]), dtype=dt)  # [B, Hkv, D, Tk]
    _transpose_keys(kc, kt)
    vc = contiguous(v, dt).reshape(-1, *v.shape[-3:])  # [B, Tk, Hkv, Dv]
    hq = q.shape[-2]
    sk = np.full(hq, -np.inf, dtype=dt) if sinks is None else contiguous(sinks, dt)  # [Hq]
    sc = dt.type(1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale))
    vbad = np.empty((vc.shape[0], vc.shape[2]), dtype=np.bool_)  # [B, Hkv]
    _nonfinite(vc, vbad)
    out = np.empty((qc.shape[0], qc.shape[1], hq, vc.shape[-1]), dtype=dt)  # [B, Tq, Hq, Dv]
    w = 0 if window is None else int(window)
    work = qc.shape[0] * qc.shape[1] * hq * kc.shape[1] * (kc.shape[3] + vc.shape[3])
    if variant == "online":
        launch(online_kernel(dt), work, qc, kt, vc, sk, int(off), w, bool(causal), sc, int(block), vbad, out)
    elif variant == "naive":
        launch(naive_kernel(dt), work, qc, kt, vc, sk, int(off), w, bool(causal), sc, vbad, out)
    else:
        raise ArgumentError(f"variant: expected 'online' or 'naive', found {variant!r}")
    return out.reshape(*lead, *out.shape[1:])  # [..., Tq, Hq, Dv]
