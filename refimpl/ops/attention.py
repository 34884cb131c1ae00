"""Scaled dot-product attention: visibility, grouped kv heads, sliding window, sinks.

Shapes: queries q [..., Tq, Hq, D], keys k [..., Tk, Hkv, D], values v [..., Tk, Hkv, Dv]
(the leading batch dims of q, k, v are equal). Query head h reads kv head h // (Hq / Hkv).
Positions: query i sits at absolute position p_i = q_offset + i, key j at position j.
See spec/attention.md for the rules, the knobs and the sources they were checked against.
"""

import math

import numpy as np

from .._validate import as_float_array, host_values, is_device_array, positive_int, require
from ..errors import ArgumentError
from ..precision import compute_dtype

__all__ = ["visibility_mask", "repeat_kv", "attention_probs", "attention", "attention_online",
           "attention_scores", "softmax_with_sinks", "attention_values", "resolve_q_offset",
           "check_visibility_mask", "check_repeat_kv", "check_attention_probs", "check_attention",
           "check_attention_online", "check_attention_scores", "check_softmax_with_sinks", "check_attention_values"]


# ----------------------------------------------------------------------------- checks


def _check_window(window):
    if window is not None:
        require(isinstance(window, (int, np.integer)) and not isinstance(window, bool) and window >= 1,
                "window", "None or an integer >= 1 (keys visible, the query itself included)", repr(window))
        window = int(window)
    return window


def _check_causal(causal):
    require(isinstance(causal, (bool, np.bool_)), "causal", "True or False", repr(causal))
    return bool(causal)


def resolve_q_offset(q_len, k_len, q_offset, causal, window):
    """The absolute position of query 0: q_offset, or k_len - q_len by default (checked as
    visibility_mask says). A helper for kernels, not an op."""
    if q_offset is not None:
        require(isinstance(q_offset, (int, np.integer)) and not isinstance(q_offset, bool) and q_offset >= 0,
                "q_offset", "None or an integer >= 0 (absolute position of query 0)", repr(q_offset))
        return int(q_offset)
    off = k_len - q_len
    if off < 0:
        # Positions matter only for the causal bound and the window.
        require(not causal and window is None, "q_offset",
                "an explicit q_offset >= 0 when there are more queries than keys "
                "(causal or windowed attention)",
                f"default k_len - q_len = {k_len} - {q_len} = {off}")
        return 0
    return off


def _check_sinks(sinks, hq):
    if sinks is not None:
        sinks = as_float_array(sinks, "sinks")
        if sinks.shape != (hq,):
            require(False, "sinks", f"shape ({hq},) (one logit per query head)", f"shape {sinks.shape}")
        vals = host_values(sinks)
        if vals is not None:
            s64 = vals.astype(np.float64)
            if np.any(np.isnan(s64) | (s64 == np.inf)):
                require(False, "sinks", "finite logits or -inf (no sink)", f"{vals.tolist()}")
    return sinks


def _check_args(q, k, v, sinks, window, causal, q_offset, scale, mask, need_v):
    """The checks that check_attention_probs, check_attention, check_attention_online and
    check_attention_scores share (ArgumentError; returns None). v is checked when given or when need_v.
    Messages are formatted only on failure: this runs on every attention call."""
    q = as_float_array(q, "q", min_ndim=3)
    k = as_float_array(k, "k", min_ndim=3)
    if k.ndim != q.ndim:
        require(False, "k", f"{q.ndim} dimensions like q [..., Tk, Hkv, D]", f"shape {k.shape}")
    if k.shape[:-3] != q.shape[:-3]:
        require(False, "k", f"batch dims {q.shape[:-3]} (those of q)", f"shape {k.shape}")
    tq, hq, d = q.shape[-3:]
    tk, hkv, dk = k.shape[-3:]
    if not (tq >= 1 and hq >= 1 and d >= 1):
        require(False, "q", "[..., Tq, Hq, D] with Tq, Hq, D >= 1", f"shape {q.shape}")
    if not (tk >= 1 and hkv >= 1):
        require(False, "k", "[..., Tk, Hkv, D] with Tk, Hkv >= 1", f"shape {k.shape}")
    if dk != d:
        require(False, "k", f"head_dim {d} (last dimension of q)", f"shape {k.shape}")
    if hq % hkv:
        require(False, "k", f"num_kv_heads (k.shape[-2]) dividing num_heads={hq} (q.shape[-2])", f"num_kv_heads={hkv}")
    if v is not None or need_v:
        v = as_float_array(v, "v", min_ndim=3)
        if not (v.ndim == k.ndim and v.shape[:-1] == k.shape[:-1] and v.shape[-1] >= 1):
            require(False, "v", f"[..., Tk, Hkv, Dv] = {k.shape[:-1]} + (Dv >= 1,) (those of k)", f"shape {v.shape}")
    _check_sinks(sinks, hq)
    window = _check_window(window)
    causal = _check_causal(causal)
    if scale is not None:
        require(isinstance(scale, (int, float, np.integer, np.floating)) and not isinstance(scale, bool)
                and math.isfinite(float(scale)) and float(scale) > 0,
                "scale", "None or a finite number > 0", repr(scale))
    resolve_q_offset(tq, tk, q_offset, causal, window)
    if mask is not None:
        try:
            m = mask if is_device_array(mask) else np.asarray(mask)
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


def _prepare(q, k, v, sinks, window, causal, q_offset, scale, mask):
    """(q, k, v, sinks, visible, scale, dtype, group) from arguments its op's check_<op> accepted."""
    q, k = as_float_array(q, "q"), as_float_array(k, "k")
    v = None if v is None else as_float_array(v, "v")
    sinks = None if sinks is None else as_float_array(sinks, "sinks")
    window, causal = None if window is None else int(window), bool(causal)
    if mask is not None and not is_device_array(mask):
        mask = np.asarray(mask)
    tq, hq, d = q.shape[-3:]
    tk, hkv = k.shape[-3:-1]
    dt = compute_dtype(q, k, v, sinks)
    q, k = q.astype(dt), k.astype(dt)
    if v is not None:
        v = v.astype(dt)
    if sinks is not None:
        sinks = sinks.astype(dt)
    sc = dt.type(1.0 / math.sqrt(d) if scale is None else float(scale))
    off = resolve_q_offset(tq, tk, q_offset, causal, window)
    vis = visibility_mask(tq, tk, q_offset=off, window=window, causal=causal)  # [Tq, Tk]
    if mask is not None:
        vis = vis & mask  # [..., Tq, Tk]
    return q, k, v, sinks, vis, sc, dt, hq // hkv


def check_visibility_mask(q_len, k_len, *, q_offset=None, window=None, causal=True):
    """The argument checks of visibility_mask (ArgumentError; returns None)."""
    q_len = positive_int(q_len, "q_len")
    k_len = positive_int(k_len, "k_len")
    window = _check_window(window)
    causal = _check_causal(causal)
    resolve_q_offset(q_len, k_len, q_offset, causal, window)


def check_repeat_kv(k, n_rep):
    """The argument checks of repeat_kv."""
    as_float_array(k, "k", min_ndim=2)
    positive_int(n_rep, "n_rep")


def check_attention_probs(q, k, v=None, *, sinks=None, window=None, causal=True, q_offset=None, scale=None,
                          mask=None):
    """The argument checks of attention_probs (v checked when given)."""
    _check_args(q, k, v, sinks, window, causal, q_offset, scale, mask, False)


def check_attention(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """The argument checks of attention (sinks finite or -inf: checked on host values)."""
    _check_args(q, k, v, sinks, window, causal, q_offset, scale, mask, True)


def check_attention_online(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None,
                           block_size=32):
    """The argument checks of attention_online: those of attention, and block_size >= 1."""
    positive_int(block_size, "block_size")
    check_attention(q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)


def check_attention_scores(q, k, *, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """The argument checks of attention_scores."""
    _check_args(q, k, None, None, window, causal, q_offset, scale, mask, False)


def check_softmax_with_sinks(scores, sinks=None):
    """The argument checks of softmax_with_sinks."""
    s = as_float_array(scores, "scores", min_ndim=3)
    require(s.shape[-1] >= 1 and s.shape[-3] >= 1, "scores", "[..., Hq, Tq, Tk] with Hq, Tk >= 1",
            f"shape {s.shape}")
    _check_sinks(sinks, s.shape[-3])


def check_attention_values(probs, v, *, visible=None):
    """The argument checks of attention_values."""
    p = as_float_array(probs, "probs", min_ndim=3)
    v = as_float_array(v, "v", min_ndim=3)
    hq, tk = p.shape[-3], p.shape[-1]
    require(p.shape[-2] >= 1 and hq >= 1 and tk >= 1, "probs", "[..., Hq, Tq, Tk] with Hq, Tq, Tk >= 1",
            f"shape {p.shape}")
    require(v.ndim == p.ndim and v.shape[:-3] == p.shape[:-3] and v.shape[-3] == tk, "v",
            f"[..., Tk={tk}, Hkv, Dv] with leading dims {p.shape[:-3]} (those of probs)", f"shape {v.shape}")
    hkv = v.shape[-2]
    require(hkv >= 1 and hq % hkv == 0 and v.shape[-1] >= 1, "v",
            f"num_kv_heads (v.shape[-2]) dividing Hq={hq} (probs.shape[-3]) and Dv >= 1", f"shape {v.shape}")
    if visible is not None:
        vis = visible if is_device_array(visible) else np.asarray(visible)
        ok = vis.dtype == np.bool_ and vis.ndim >= 2
        if ok:
            try:
                ok = np.broadcast_shapes(tuple(vis.shape), tuple(p.shape)) == tuple(p.shape)
            except ValueError:
                ok = False
        require(ok, "visible", f"None or a bool array broadcastable to {p.shape} (probs)",
                f"{vis.dtype} array of shape {vis.shape}")


def _scores(q, k, scale, group):
    """s[..., h, i, j] = scale * sum_d q[..., i, h, d] k[..., j, h // group, d]."""
    *b, tq, hq, d = q.shape
    tk, hkv = k.shape[-3], k.shape[-2]
    qg = q.reshape(*b, tq, hkv, group, d)  # [..., Tq, Hkv, G, D]
    s = np.einsum("...qhgd,...khd->...hgqk", qg, k)  # [..., Hkv, G, Tq, Tk]
    return s.reshape(*b, hq, tq, tk) * scale  # [..., Hq, Tq, Tk]


def _weighted_values(p, v, group):
    """o[..., i, h, :] = sum_j p[..., h, i, j] v[..., j, h // group, :]."""
    *b, hq, tq, tk = p.shape
    hkv, dv = v.shape[-2], v.shape[-1]
    pg = p.reshape(*b, hkv, group, tq, tk)  # [..., Hkv, G, Tq, Tk]
    o = np.einsum("...hgqk,...khd->...qhgd", pg, v)  # [..., Tq, Hkv, G, Dv]
    return o.reshape(*b, tq, hq, dv)  # [..., Tq, Hq, Dv]


def _visible_values(p, v, vis, group):
    """o[..., i, h, :] = sum over VISIBLE keys j of p[..., h, i, j] v[..., j, h // group, :].

    Equal to _weighted_values bit for bit when v is finite. A non-finite entry of a key's value
    reaches only the rows that see that key (p_ij * v_j, IEEE, even where p_ij underflowed to 0);
    a masked key contributes nothing, so a NaN in a future (causally masked) value never reaches
    an earlier query, as in cached decoding, where that key does not exist yet.
    """
    finite = np.isfinite(v)
    if finite.all():
        return _weighted_values(p, v, group)
    vc = np.where(finite, v, v.dtype.type(0))
    o = _weighted_values(p, vc, group)  # [..., Tq, Hq, Dv]
    nonfinite = np.where(finite, v.dtype.type(0), v)  # the non-finite entries only
    tk, hkv = v.shape[-3], v.shape[-2]
    visb = np.broadcast_to(vis, p.shape)  # [..., Hq, Tq, Tk]
    bad_keys = np.nonzero((~finite).reshape(-1, tk, hkv * v.shape[-1]).any(axis=(0, 2)))[0]
    for j in bad_keys:
        vj = np.repeat(nonfinite[..., j, :, :], group, axis=-2)  # [..., Hq, Dv]
        with np.errstate(invalid="ignore"):
            cj = p[..., j, None] * vj[..., None, :]  # [..., Hq, Tq, Dv]
        cj = np.where(visb[..., j, None], cj, v.dtype.type(0))
        o = o + np.moveaxis(cj, -3, -2)  # [..., Tq, Hq, Dv]
    return o


def _probs(q, k, sinks, vis, sc, dt, group):
    """The softmax of attention_probs on validated arrays."""
    s = _scores(q, k, sc, group)  # [..., Hq, Tq, Tk]
    s = np.where(vis, s, dt.type(-np.inf))
    return _softmax_sinks(s, sinks, dt)


def _softmax_sinks(s, sinks, dt):
    """Softmax over the last axis of s [..., Hq, Tq, Tk] with one extra logit sinks[h] per row (or none)."""
    m = s.max(axis=-1)  # [..., Hq, Tq]
    if sinks is not None:
        snk = sinks[:, None]  # [Hq, 1]
        m = np.maximum(m, snk)
    # A row whose max is -inf has nothing visible and no sink: shift by 0 so exp gives exact zeros.
    m = np.where(m == -np.inf, dt.type(0), m)
    e = np.exp(s - m[..., None])  # [..., Hq, Tq, Tk]
    den = e.sum(axis=-1)  # [..., Hq, Tq]
    if sinks is not None:
        den = den + np.exp(snk - m)
    den = np.where(den == 0, dt.type(1), den)
    return (e / den[..., None]).astype(dt, copy=False)


# ----------------------------------------------------------------------------- public ops


def visibility_mask(q_len, k_len, *, q_offset=None, window=None, causal=True):
    """Which keys each query may attend to: bool [q_len, k_len], True = visible.

    Query i is at position p = q_offset + i, key j at position j; visible[i, j] =
    (j <= p if causal else True) and (p - window < j if window is not None else True).
    q_offset defaults to k_len - q_len (the queries are the last q_len key positions); a negative
    default is an error when causal or window is set, an explicit q_offset < 0 always is, and
    p >= k_len is allowed. window=W counts the query itself: keys p-W+1 .. p (window=1 sees only
    j == p). causal=False drops only j <= p. A row can be all False (e.g. q_offset >= k_len +
    window - 1 with causal and window).
    """
    check_visibility_mask(q_len, k_len, q_offset=q_offset, window=window, causal=causal)
    window, causal = None if window is None else int(window), bool(causal)
    off = resolve_q_offset(q_len, k_len, q_offset, causal, window)
    p = off + np.arange(q_len, dtype=np.int64)[:, None]  # [Tq, 1]
    j = np.arange(k_len, dtype=np.int64)[None, :]  # [1, Tk]
    vis = np.ones((q_len, k_len), dtype=bool)  # [Tq, Tk]
    if causal:
        vis &= j <= p
    if window is not None:
        vis &= j > p - window
    return vis


def repeat_kv(k, n_rep):
    """Repeat each kv head n_rep times: [..., T, Hkv, D] -> [..., T, Hkv * n_rep, D].

    out[..., t, h, :] = k[..., t, h // n_rep, :] (each kv head repeated as a contiguous group,
    the GQA layout of gpt-oss, LLaMA and transformers' repeat_kv). Exact copy; dtype kept.
    """
    check_repeat_kv(k, n_rep)
    k, n_rep = as_float_array(k, "k"), int(n_rep)
    return np.repeat(k, n_rep, axis=-2)  # [..., T, Hkv * n_rep, D]


def attention_probs(q, k, v=None, *, sinks=None, window=None, causal=True, q_offset=None, scale=None,
                    mask=None):
    """Attention probabilities p [..., Hq, Tq, Tk] (v is checked if given, not used).

    Query head h reads kv head h // G, G = Hq / Hkv (Hkv must divide Hq):
      s_ij = scale * sum_d q[i, h, d] * k[j, h // G, d]   (scale defaults to 1/sqrt(D))
      s_ij = -inf where key j is not visible (visibility_mask AND ``mask``, True = visible)
      m_i  = max(max_j s_ij, sink_h)                      (sink_h = -inf when sinks is None)
      p_ij = exp(s_ij - m_i) / (sum_j' exp(s_ij' - m_i) + exp(sink_h - m_i))
    The sink (one logit per query head) is not scaled and enters the denominator only; -inf is
    exactly "no sink". A row with every key masked gives p = 0, never NaN.
    Dtype: compute_dtype(q, k, v, sinks), the scale rounded to it. NaN/Inf in q, k propagate.
    """
    check_attention_probs(q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale,
                          mask=mask)
    q, k, v, sinks, vis, sc, dt, group = _prepare(q, k, v, sinks, window, causal, q_offset, scale, mask)
    return _probs(q, k, sinks, vis, sc, dt, group)


def attention(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """Attention output o [..., Tq, Hq, Dv]: o[i, h, :] = sum_j p_ij v[j, h // G, :].

    p is attention_probs(q, k, sinks=..., window=..., causal=..., q_offset=..., scale=..., mask=...)
    (see there for the exact softmax, masking, sink and dtype rules). Dv may differ from D.
    Rows with no visible key give o = 0. The sum runs over visible keys only: a NaN/Inf in a masked
    key's value does not reach o (no 0 * NaN), so a non-finite value at position t reaches only the
    queries that see t (causal: t and later), as in cached decoding; for a visible key it propagates
    as IEEE p_ij * v_j says.
    """
    check_attention(q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
    q, k, v, sinks, vis, sc, dt, group = _prepare(q, k, v, sinks, window, causal, q_offset, scale, mask)
    p = _probs(q, k, sinks, vis, sc, dt, group)  # [..., Hq, Tq, Tk]
    return _visible_values(p, v, vis, group)  # [..., Tq, Hq, Dv]


def attention_online(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None,
                     block_size=32):
    """attention() computed FlashAttention-2 style: keys in tiles, online softmax.

    Scores, masking and scale as attention_probs. Per query row i and head h:
      init:  m = sink_h, l = 1, o = 0 (finite sink);  m = -inf, l = 0, o = 0 (no sink)
      tile J = [t, t + block_size), in increasing order:
             m_new = max(m, max_{j in J} s_ij); skip the tile if m_new == -inf
             a = exp(m - m_new) (0 when m = -inf); P_j = exp(s_ij - m_new) (0 if masked)
             l = a l + sum_J P_j;  o = a o + sum_J P_j v_j;  m = m_new
      end:   o / l, or 0 where l == 0 (no visible key and no sink)
    Equal to attention() up to float rounding for every block_size >= 1 (the last tile may be
    shorter). Dtype as attention_probs.
    """
    check_attention_online(q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale,
                           mask=mask, block_size=block_size)
    block_size = int(block_size)
    q, k, v, sinks, vis, sc, dt, group = _prepare(q, k, v, sinks, window, causal, q_offset, scale, mask)
    *b, tq, hq, _ = q.shape
    tk, dv = k.shape[-3], v.shape[-1]
    full_vis = np.broadcast_to(vis, (*b, hq, tq, tk))  # [..., Hq, Tq, Tk]
    neg_inf = dt.type(-np.inf)
    if sinks is None:
        m = np.full((*b, hq, tq), neg_inf, dtype=dt)  # [..., Hq, Tq]
        l = np.zeros((*b, hq, tq), dtype=dt)  # [..., Hq, Tq]
    else:
        m = np.broadcast_to(sinks[:, None], (*b, hq, tq)).astype(dt)  # [..., Hq, Tq]
        l = np.where(m == -np.inf, dt.type(0), dt.type(1)).astype(dt)  # [..., Hq, Tq]
    o = np.zeros((*b, hq, tq, dv), dtype=dt)  # [..., Hq, Tq, Dv]
    for t in range(0, tk, block_size):
        e = min(t + block_size, tk)
        s = _scores(q, k[..., t:e, :, :], sc, group)  # [..., Hq, Tq, B]
        s = np.where(full_vis[..., t:e], s, neg_inf)
        m_new = np.maximum(m, s.max(axis=-1))  # [..., Hq, Tq]
        live = m_new != -np.inf
        m_safe = np.where(live, m_new, dt.type(0))
        a = np.where(live, np.exp(np.where(live, m, dt.type(0)) - m_safe), dt.type(1))  # exp(-inf) = 0
        pj = np.exp(s - m_safe[..., None])  # [..., Hq, Tq, B]
        l = a * l + pj.sum(axis=-1)
        pv = _visible_values(pj, v[..., t:e, :, :], full_vis[..., t:e], group)  # [..., Tq, Hq, Dv]
        o = a[..., None] * o + np.moveaxis(pv, -3, -2)  # [..., Hq, Tq, Dv]
        m = np.where(live, m_new, m)
    out = o / np.where(l == 0, dt.type(1), l)[..., None]  # [..., Hq, Tq, Dv]
    return np.moveaxis(out, -2, -3).astype(dt, copy=False)  # [..., Tq, Hq, Dv]


# ----------------------------------------------------------------------------- bf16 building blocks
# attention() split at the points where a bf16 implementation stores a tensor (spec/precision.md rows
# 7-11): the model's "bfloat16" dtype rounds between these steps; they are ops like any other, so a
# backend can stand in for them: attention_values(softmax_with_sinks(attention_scores(q, k, ...), sinks), v) equals
# attention(q, k, v, ...) bit for bit.


def attention_scores(q, k, *, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """Scaled scores s [..., Hq, Tq, Tk], -inf where a key is not visible.

    s_ij = scale * (sum_d q[i, h, d] * k[j, h // G, d]) exactly as attention_probs (dot product
    first, in the compute dtype, then one multiplication by scale rounded to that dtype; scale
    defaults to 1/sqrt(D); scale=1.0 returns the plain dot products, bit for bit), and
    s_ij = -inf where visibility_mask(Tq, Tk, q_offset, window, causal) AND mask is False.
    Arguments, checks and dtype as attention_probs (compute_dtype(q, k)).
    """
    check_attention_scores(q, k, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
    q, k, _, _, vis, sc, dt, group = _prepare(q, k, None, None, window, causal, q_offset, scale, mask)
    s = _scores(q, k, sc, group)  # [..., Hq, Tq, Tk]
    return np.where(vis, s, dt.type(-np.inf))


def softmax_with_sinks(scores, sinks=None):
    """p [..., Hq, Tq, Tk]: softmax over the last axis of scores with one extra logit per head.

    scores: [..., Hq, Tq, Tk] (-inf = masked); sinks: [Hq] (finite or -inf; NaN/+inf refused) or None.
      m_i  = max(max_j s_ij, sink_h)      (sink_h = -inf without sinks; m_i := 0 when it is -inf)
      p_ij = exp(s_ij - m_i) / (sum_j' exp(s_ij' - m_i) + exp(sink_h - m_i))
    (a denominator of 0, a row with nothing visible and no sink, gives p = 0). This is the softmax
    of attention_probs, and of torch.softmax over the scores with the sink column concatenated and
    then dropped (gpt-oss sdpa). Computes and returns compute_dtype(scores, sinks).
    """
    check_softmax_with_sinks(scores, sinks)
    s = as_float_array(scores, "scores")
    sinks = None if sinks is None else as_float_array(sinks, "sinks")
    dt = compute_dtype(s, sinks)
    if sinks is not None:
        sinks = sinks.astype(dt)
    return _softmax_sinks(s.astype(dt, copy=False), sinks, dt)


def attention_values(probs, v, *, visible=None):
    """o [..., Tq, Hq, Dv]: o[..., i, h, :] = sum_j probs[..., h, i, j] * v[..., j, h // G, :].

    probs: [..., Hq, Tq, Tk]; v: [..., Tk, Hkv, Dv] with the same leading dims, Hkv dividing Hq,
    G = Hq / Hkv. The sum over j is one matmul accumulated in compute_dtype(probs, v), the dtype
    returned (attention's last step).
    visible: None (every key counts, IEEE: a NaN/Inf value reaches every row through 0 * v) or a
    bool array broadcastable to [..., Hq, Tq, Tk] (e.g. visibility_mask(...)): as in attention, a key
    not visible to row i contributes nothing to it, even a non-finite value; equal bit for bit to
    visible=None when v is finite.
    """
    check_attention_values(probs, v, visible=visible)
    p, v = as_float_array(probs, "probs"), as_float_array(v, "v")
    hq, hkv = p.shape[-3], v.shape[-2]
    vis = None if visible is None else np.asarray(visible)
    dt = compute_dtype(p, v)
    p, v = p.astype(dt, copy=False), v.astype(dt, copy=False)
    if visible is None:
        return _weighted_values(p, v, hq // hkv)  # [..., Tq, Hq, Dv]
    return _visible_values(p, v, vis, hq // hkv)  # [..., Tq, Hq, Dv]
