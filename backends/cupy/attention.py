"""attention (tiled prefill / per-row decode), attention_online, attention_probs and the bf16
building blocks (attention_scores, softmax_with_sinks, attention_values) on kernels/attention.cu.

k and v may be strided views (e.g. [.., T, Hkv, D] views of a KV-cache buffer [.., Hkv, Tmax, D]):
they are passed by pointer and element strides without a copy whenever their last axis is
contiguous and their storage dtype is what the kernel reads.
"""

import math

import numpy as np

from refimpl.ops.attention import resolve_q_offset

from .args import F32, I32, I64, as_array, check, f32, grid1, grid_rows, prod, require, storage, suffix, unsupported

TILED_MAX_HEAD_DIM = 128  # TDMAX in attention.cu
ROWS_MAX_HEAD_DIM = 256  # ROWS_DMAX
DECODE_MAX_QUERIES = 4  # kernel "auto": rows kernel up to this many queries, tiled above


def _knobs(window, causal, scale):
    if window is not None:
        require(isinstance(window, (int, np.integer)) and not isinstance(window, bool) and window >= 1,
                "window", "None or an integer >= 1 (keys visible, the query itself included)", repr(window))
    require(isinstance(causal, (bool, np.bool_)), "causal", "True or False", repr(causal))
    if scale is not None:
        require(isinstance(scale, (int, float, np.integer, np.floating)) and not isinstance(scale, bool)
                and math.isfinite(float(scale)) and float(scale) > 0, "scale", "None or a finite number > 0", repr(scale))


def _kv_view(rt, a, suf, batch):
    """(array, (sb, st, sh)) for a [..., T, H, D] array read by the kernel: strided if possible."""
    if suf == "f32" and a.dtype != np.float32:
        a = rt.to_f32(a)  # exact widening of bf16 / float16 (a copy)
    a4 = a.reshape((batch,) + a.shape[-3:])
    item = a4.dtype.itemsize
    if a4.strides[-1] != item or any(s % item for s in a4.strides) or any(s < 0 for s in a4.strides):
        a4 = rt.contiguous(a4)
    sb, st, sh, _ = (s // item for s in a4.strides)
    if batch == 1:
        sb = 0
    return rt.strided(a4), (I64(sb), I64(st), I64(sh))


def _prepare(rt, q, k, v, sinks, window, causal, q_offset, scale, mask, need_v=True):
    _knobs(window, causal, scale)
    q, k = as_array(rt, q, "q"), as_array(rt, k, "k")
    require(q.ndim >= 3, "q", "at least 3 dimensions [..., Tq, Hq, D]", f"shape {q.shape}")
    require(k.ndim == q.ndim and k.shape[:-3] == q.shape[:-3], "k",
            f"[..., Tk, Hkv, D] with batch dims {q.shape[:-3]} (those of q)", f"shape {k.shape}")
    tq, hq, d = q.shape[-3:]
    tk, hkv, dk = k.shape[-3:]
    require(tq >= 1 and hq >= 1 and d >= 1, "q", "[..., Tq, Hq, D] with Tq, Hq, D >= 1", f"shape {q.shape}")
    require(tk >= 1 and hkv >= 1 and dk == d, "k", f"[..., Tk >= 1, Hkv >= 1, {d}]", f"shape {k.shape}")
    require(hq % hkv == 0, "k", f"num_kv_heads (k.shape[-2]) dividing num_heads={hq} (q.shape[-2])", f"num_kv_heads={hkv}")
    if v is not None or need_v:
        v = as_array(rt, v, "v")
        require(v.ndim == k.ndim and v.shape[:-1] == k.shape[:-1] and v.shape[-1] >= 1, "v",
                f"[..., Tk, Hkv, Dv] = {k.shape[:-1]} + (Dv >= 1,) (those of k)", f"shape {v.shape}")
    if sinks is not None:
        sinks = as_array(rt, sinks, "sinks")
        require(sinks.shape == (hq,), "sinks", f"shape ({hq},) (one logit per query head)", f"shape {sinks.shape}")
    off = resolve_q_offset(tq, tk, q_offset, causal, window)
    lead = q.shape[:-3]
    batch = prod(lead)
    m = None
    if mask is not None:
        m = rt.asarray(mask)
        require(m.dtype == np.bool_, "mask", "a bool array (True = visible)", str(m.dtype))
        full = lead + (hq, tq, tk)
        try:
            m = rt.xp.broadcast_to(m, full)
        except ValueError:
            require(False, "mask", f"a shape broadcastable to {full} ([..., Hq, Tq, Tk])", f"shape {m.shape}")
        m = rt.contiguous(m.astype(np.uint8))
    # storage: bf16 kernels only when q, k, v are all bf16; sinks always float32
    suf = suffix(rt, q, k, v)
    sinks32 = f32(rt, sinks)
    qs = rt.contiguous(q) if suf == "bf16" else rt.to_f32(q)
    kk, kstr = _kv_view(rt, k, suf, batch)
    vv, vstr = (None, (I64(0),) * 3) if v is None else _kv_view(rt, v, suf, batch)
    sc = F32(1.0 / math.sqrt(d) if scale is None else float(scale))
    return dict(suf=suf, q=qs, k=kk, v=vv, kstr=kstr, vstr=vstr, sinks=sinks32, mask=m, lead=lead, B=batch, Tq=tq,
                Tk=tk, Hq=hq, Hkv=hkv, D=d, Dv=None if v is None else v.shape[-1], off=off,
                window=0 if window is None else int(window), causal=bool(causal), scale=sc)


def _run(rt, p, kernel):
    B, Tq, Hq, Dv = p["B"], p["Tq"], p["Hq"], p["Dv"]
    if kernel == "tiled" and max(p["D"], Dv) > TILED_MAX_HEAD_DIM:
        raise unsupported("attention", f"kernel 'tiled' supports head_dim <= {TILED_MAX_HEAD_DIM}, found "
                                       f"D={p['D']}, Dv={Dv}")
    if kernel == "rows" and max(p["D"], Dv) > ROWS_MAX_HEAD_DIM:
        raise unsupported("attention", f"kernel 'rows' supports head_dim <= {ROWS_MAX_HEAD_DIM}, found "
                                       f"D={p['D']}, Dv={Dv}")
    out = rt.empty(p["lead"] + (Tq, Hq, Dv), np.float32)
    if kernel == "tiled":
        grid = grid_rows(rt, B * Hq * (-(-Tq // 16)))
    else:
        grid = grid_rows(rt, B * Hq * Tq)
    rt.launch("attention", f"attention_{kernel}_{p['suf']}", grid, rt.block, p["q"], p["k"], p["v"], *p["kstr"],
              *p["vstr"], p["sinks"], p["mask"], out, I32(B), I32(Tq), I32(p["Tk"]), I32(Hq), I32(p["Hkv"]),
              I32(p["D"]), I32(Dv), I32(p["off"]), I32(p["window"]), I32(p["causal"]), p["scale"])
    return out


def _attention(kernel):
    def attention(rt, q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
        """o [..., Tq, Hq, Dv], float32 (refimpl.ops.attention): online softmax over key tiles."""
        check("attention", q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale,
              mask=mask)
        p = _prepare(rt, q, k, v, sinks, window, causal, q_offset, scale, mask)
        name = kernel
        if name == "auto":
            name = "rows" if p["Tq"] <= DECODE_MAX_QUERIES or max(p["D"], p["Dv"]) > TILED_MAX_HEAD_DIM else "tiled"
        return _run(rt, p, name)

    attention.__name__ = f"attention_{kernel}"
    return attention


attention_auto, attention_tiled, attention_rows = _attention("auto"), _attention("tiled"), _attention("rows")


def attention_online(rt, q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None,
                     block_size=32):
    """refimpl.ops.attention_online: the tiled kernel (its key tile is 16 whatever block_size says;
    the result is the same up to float rounding, which is what the op promises)."""
    require(isinstance(block_size, (int, np.integer)) and not isinstance(block_size, bool) and block_size >= 1,
            "block_size", "an integer >= 1", repr(block_size))
    return attention_auto(rt, q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale,
                          mask=mask)


def attention_scores(rt, q, k, *, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """s [..., Hq, Tq, Tk]: scale * q.k, -inf where not visible, float32 (refimpl.ops.attention_scores)."""
    check("attention_scores", q, k, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
    p = _prepare(rt, q, k, None, None, window, causal, q_offset, scale, mask, need_v=False)
    B, Tq, Tk, Hq = p["B"], p["Tq"], p["Tk"], p["Hq"]
    s = rt.empty(p["lead"] + (Hq, Tq, Tk), np.float32)
    n = B * Hq * Tq * Tk
    rt.launch("attention", f"attention_scores_{p['suf']}", grid1(rt, n), rt.block, p["q"], p["k"], *p["kstr"],
              p["mask"], s, I32(B), I32(Tq), I32(Tk), I32(Hq), I32(p["Hkv"]), I32(p["D"]), I32(p["off"]),
              I32(p["window"]), I32(p["causal"]), p["scale"])
    return s


def softmax_with_sinks(rt, scores, sinks=None):
    """p [..., Hq, Tq, Tk]: softmax over the last axis with one extra logit per head (refimpl.ops)."""
    check("softmax_with_sinks", scores, sinks)
    s = as_array(rt, scores, "scores")
    require(s.ndim >= 3 and s.shape[-1] >= 1 and s.shape[-3] >= 1, "scores", "[..., Hq, Tq, Tk] with Hq, Tk >= 1",
            f"shape {s.shape}")
    hq, tq, tk = s.shape[-3:]
    if sinks is not None:
        sinks = as_array(rt, sinks, "sinks")
        require(sinks.shape == (hq,), "sinks", f"shape ({hq},) (one logit per query head)", f"shape {sinks.shape}")
    suf, (ss,) = storage(rt, s)
    sk = f32(rt, sinks)
    rows = prod(s.shape[:-1])
    p = rt.empty(s.shape, np.float32)
    if rows:
        rt.launch("attention", f"softmax_sinks_{suf}", grid_rows(rt, rows), rt.block, ss, sk, p, I64(rows), I32(tq), I32(hq),
                  I32(tk))
    return p


def attention_values(rt, probs, v, *, visible=None):
    """o [..., Tq, Hq, Dv] = probs @ v per head, over visible keys only if `visible` is given."""
    check("attention_values", probs, v, visible=visible)
    p = as_array(rt, probs, "probs")
    require(p.ndim >= 3 and min(p.shape[-3:]) >= 1, "probs", "[..., Hq, Tq, Tk] with Hq, Tq, Tk >= 1", f"shape {p.shape}")
    hq, tq, tk = p.shape[-3:]
    v = as_array(rt, v, "v")
    require(v.ndim == p.ndim and v.shape[:-3] == p.shape[:-3] and v.shape[-3] == tk, "v",
            f"[..., Tk={tk}, Hkv, Dv] with leading dims {p.shape[:-3]} (those of probs)", f"shape {v.shape}")
    hkv, dv = v.shape[-2], v.shape[-1]
    require(hkv >= 1 and hq % hkv == 0 and dv >= 1, "v",
            f"num_kv_heads (v.shape[-2]) dividing Hq={hq} (probs.shape[-3]) and Dv >= 1", f"shape {v.shape}")
    lead = p.shape[:-3]
    batch = prod(lead)
    vis = None
    if visible is not None:
        m = rt.asarray(visible)
        require(m.dtype == np.bool_, "visible", f"None or a bool array broadcastable to {p.shape} (probs)", str(m.dtype))
        try:
            m = rt.xp.broadcast_to(m, p.shape)
        except ValueError:
            require(False, "visible", f"None or a bool array broadcastable to {p.shape} (probs)", f"shape {m.shape}")
        vis = rt.contiguous(m.astype(np.uint8))
    suf = "bf16" if rt.is_bf16(p) and rt.is_bf16(v) else "f32"
    ps = rt.contiguous(p) if suf == "bf16" else f32(rt, p)
    if v.dtype == np.float64:
        f32(rt, v)  # raises Float64NotSupported
    vv, vstr = _kv_view(rt, v, suf, batch)
    o = rt.empty(lead + (tq, hq, dv), np.float32)
    n = batch * tq * hq * dv
    rt.launch("attention", f"attention_values_{suf}", grid1(rt, n), rt.block, ps, vv, *vstr, vis, o, I32(batch),
              I32(tq), I32(tk), I32(hq), I32(hkv), I32(dv))
    return o


def attention_probs(rt, q, k, v=None, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """softmax_with_sinks(attention_scores(...)): probabilities [..., Hq, Tq, Tk], float32."""
    check("attention_probs", q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale,
          mask=mask)
    if v is not None:
        _prepare(rt, q, k, v, sinks, window, causal, q_offset, scale, mask)  # v's checks
    s = attention_scores(rt, q, k, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
    return softmax_with_sinks(rt, s, sinks)


KERNELS = {
    "attention": {"auto": attention_auto, "tiled": attention_tiled, "rows": attention_rows},
    "attention_online": {"auto": attention_online},
    "attention_probs": {"composed": attention_probs},
    "attention_scores": {"elementwise": attention_scores},
    "softmax_with_sinks": {"rowblock": softmax_with_sinks},
    "attention_values": {"elementwise": attention_values},
}
