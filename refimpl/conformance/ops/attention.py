"""Attention: visibility, GQA repeat, scores, softmax with sinks, weighted values, whole attention.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""

import inspect
import math

import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ...precision import bfloat16
from ..kit import (
    Budget,
    FLOAT_TINY,
    GATHER,
    Misreading,
    SOFTMAX_REASON,
    as_dtype,
    bind,
    case,
    each,
    even_dims,
    exact,
    f64,
    gamma,
    make_rng,
    normal_values,
    sizes,
    softmax_rel,
    with_knobs,
)


# ----------------------------------------------------------------------------- budgets


def _attn_parts(i, u, ops):
    q, k = f64(i["q"]), f64(i["k"])
    hq, hkv, d = q.shape[-2], k.shape[-2], q.shape[-1]
    kk = np.repeat(k, hq // hkv, axis=-2)  # [..., Tk, Hq, D]
    scale = 1 / math.sqrt(d) if i["scale"] is None else float(i["scale"])
    s = np.einsum("...qhd,...khd->...hqk", q, kk) * scale  # [..., Hq, Tq, Tk]
    e = gamma(d + 3, u) * np.einsum("...qhd,...khd->...hqk", np.abs(q), np.abs(kk)) * scale
    kw = {n: i[n] for n in ("sinks", "window", "causal", "q_offset", "scale", "mask")}
    p = ops.attention_probs(q, k, **kw)  # [..., Hq, Tq, Tk]
    extra = None
    if i["sinks"] is not None:
        sink = f64(i["sinks"])[:, None, None]  # [Hq, 1, 1]
        ps = 1 - p.sum(axis=-1, keepdims=True)
        ps = np.where(np.isneginf(sink), 0.0, ps)
        extra = (ps, sink)
    rel = softmax_rel(s, p, e, u, extra)
    bp = p * rel + FLOAT_TINY[u]  # exp underflow (flush to zero included) loses at most the smallest normal
    return p, np.where(p > 0, bp, 0.0), d


def _b_attention_probs(i, y, u, ops=reference_ops):
    p, bp, d = _attn_parts(i, u, ops)
    return bp, {"D": d, "Tk": p.shape[-1], "u": u}


def _b_attention(i, y, u, ops=reference_ops):
    # o = sum_j p_j v_j: sum_j B_p |v_j| + gamma_(4 Tk + 1) sum_j p_j |v_j|; 4 Tk covers a tiled
    # (online) kernel that rescales o and l once per tile, tile size 1 being the worst.
    p, bp, d = _attn_parts(i, u, ops)
    v = f64(i["v"])
    hq, hkv, tk = p.shape[-3], v.shape[-2], p.shape[-1]
    vv = np.abs(np.repeat(v, hq // hkv, axis=-2))  # [..., Tk, Hq, Dv]
    sum_pv = np.einsum("...hqk,...khd->...qhd", p, vv)
    out = np.einsum("...hqk,...khd->...qhd", bp, vv) + gamma(4 * tk + 1, u) * sum_pv
    return out, {"D": d, "Tk": tk, "u": u, "gamma_4Tk+1": float(gamma(4 * tk + 1, u))}


def _b_attention_scores(i, y, u, ops=reference_ops):
    # s = fl(scale * fl(q . k)): the dot product of length D (gamma_D, any order), the scale's own
    # roundings (1/sqrt(D): sqrt and reciprocal; a given scale rounded to the compute dtype) and the
    # product: gamma_(D+3) scale (|q| . |k|). Masked entries are -inf on both sides (exact).
    q, k = f64(i["q"]), f64(i["k"])
    hq, hkv, d = q.shape[-2], k.shape[-2], q.shape[-1]
    kk = np.repeat(np.abs(k), hq // hkv, axis=-2)  # [..., Tk, Hq, D]
    scale = 1 / math.sqrt(d) if i["scale"] is None else float(i["scale"])
    out = gamma(d + 3, u) * scale * np.einsum("...qhd,...khd->...hqk", np.abs(q), kk)  # [..., Hq, Tq, Tk]
    return out, {"D": d, "u": u, "gamma_D+3": float(gamma(d + 3, u))}


def _b_softmax_with_sinks(i, y, u, ops=reference_ops):
    # softmax's bound over the last axis (the scores are inputs: no error of their own), plus the sink
    # as one more denominator term p_sink (u|sink - m| + 2L u), p_sink = 1 - sum_j p_j; a -inf sink adds
    # nothing. Masked (-inf) scores give exact zeros.
    s = f64(i["scores"])
    extra = None
    if i["sinks"] is not None:
        sink = f64(i["sinks"])[:, None, None]  # [Hq, 1, 1]
        ps = np.where(np.isneginf(sink), 0.0, 1 - y.sum(axis=-1, keepdims=True))
        extra = (ps, sink)
    with np.errstate(invalid="ignore"):
        b = np.where(y > 0, y * softmax_rel(s, y, 0.0, u, extra) + FLOAT_TINY[u], 0.0)
    return b, {"Tk": s.shape[-1], "u": u}


def _b_attention_values(i, y, u, ops=reference_ops):
    # o = sum_j p_j v_j over Tk keys: Tk products and Tk - 1 additions in any order -> gamma_Tk sum_j
    # |p_j| |v_j| (Higham (3.5)); keys not `visible` to a row are not in its sum.
    p, v = np.abs(f64(i["probs"])), np.abs(f64(i["v"]))
    if i["visible"] is not None:
        p = np.where(np.asarray(i["visible"]), p, 0.0)  # [..., Hq, Tq, Tk]
    hq, hkv, tk = p.shape[-3], v.shape[-2], p.shape[-1]
    vv = np.repeat(v, hq // hkv, axis=-2)  # [..., Tk, Hq, Dv]
    out = gamma(tk, u) * np.einsum("...hqk,...khd->...qhd", p, vv)  # [..., Tq, Hq, Dv]
    # products in the subnormal range (probabilities below the smallest normal) lose up to one
    # subnormal step each: Tk times the smallest subnormal
    out = out + tk * (FLOAT_TINY[u] * 2 * u)
    return out, {"Tk": tk, "u": u, "gamma_Tk": float(gamma(tk, u))}


BUDGETS = [
    exact("visibility_mask", "booleans from integer comparisons"),
    exact("repeat_kv", GATHER),
    Budget("attention_probs", "error_model",
           "|err| <= p_j (eta_j + sum_l p_l eta_l + p_sink eta_sink + gamma_(Tk+1) + u) + tiny; "
           "eta_j = gamma_(D+3) scale (|q|.|k_j|) + 2u|s_j - m| + 2L u + (2L+2) u ln S",
           SOFTMAX_REASON + "; the scores are dot products of length D times the scale (gamma_(D+3)); masked: exact 0",
           _b_attention_probs),
    Budget("attention", "error_model", "|err| <= sum_j B_p,j |v_j| + gamma_(4Tk+1) sum_j p_j |v_j|",
           "probabilities' bound times |v|, plus the weighted sum; 4Tk covers online/tiled rescaling",
           _b_attention),
    Budget("attention_online", "error_model", "as attention", "same quantity as attention", _b_attention),
    Budget("attention_scores", "error_model", "|err| <= gamma_(D+3) scale (|q| . |k_j|); masked entries exact (-inf)",
           "a dot product of length D in any order (Higham (3.5)), the scale's rounding (1/sqrt(D): sqrt and "
           "reciprocal) and one product", _b_attention_scores),
    Budget("softmax_with_sinks", "error_model",
           "|err| <= p_j (eta_j + sum_l p_l eta_l + p_sink eta_sink + gamma_(Tk+1) + u) + tiny; "
           "eta_j = 2u|s_j - m| + 2L u + (2L+2) u ln S, eta_sink = u|sink - m| + 2L u",
           SOFTMAX_REASON + "; the sink is one more denominator term (none when absent or -inf); masked: exact 0",
           _b_softmax_with_sinks),
    Budget("attention_values", "error_model", "|err| <= gamma_Tk sum_j |p_j| |v_j| (visible keys only)",
           "a weighted sum of Tk values: Tk products and Tk - 1 additions in any order (Higham (3.5))",
           _b_attention_values),
]


# ----------------------------------------------------------------------------- cases


@st.composite
def head_configs(draw, max_kv=4, max_group=4):
    """(hq, hkv): hq = hkv * group, so the query heads divide into kv groups (group 1 = MHA)."""
    hkv = draw(st.integers(1, max_kv))
    group = draw(st.integers(1, max_group))
    return hkv * group, hkv


@st.composite
def windows(draw, tk):
    """None, or a window below, at or above the key length (1 is the smallest legal window)."""
    choice = draw(st.sampled_from(("none", "below", "at", "above", "one")))
    if choice == "none":
        return None
    if choice == "one":
        return 1
    if choice == "at":
        return tk
    if choice == "above":
        return tk + draw(st.integers(1, 3))
    return max(1, draw(st.integers(1, max(1, tk - 1))))


@st.composite
def attention_configs(draw, *, tq_sizes=(1, 2, 5, 8, 31, 32, 33, 64, 127, 128, 129), with_mask=True):
    """A whole attention call: heads, head dim, query length, cache length, window, sinks, mask."""
    hq, hkv = draw(head_configs())
    d = draw(even_dims((2, 4, 8, 16, 32, 64, 128)))
    tq = draw(st.sampled_from(tq_sizes))
    cache = draw(st.sampled_from((0, 0, 1, 3, 31, 32, 33)))
    tk = tq + cache
    causal = draw(st.sampled_from((True, True, True, False)))
    window = draw(windows(tk))  # with causal=False too: the window still bounds how far back a query sees
    sinks = draw(st.sampled_from(("none", "normal", "extreme", "neg_inf_some")))
    mask = draw(st.sampled_from(("none", "none", "random", "dead_row"))) if with_mask else "none"
    return dict(hq=hq, hkv=hkv, d=d, tq=tq, tk=tk, cache=cache, causal=causal, window=window, sinks=sinks,
                mask=mask, scale=draw(st.sampled_from((1.0, 1.0, 3.0))), custom_scale=draw(st.booleans()),
                values=draw(st.sampled_from(VALUE_KINDS)))


# Values where numerics separate right from wrong: NaN in keys/values hidden from some query (they must
# not leak through a 0 * NaN), every score of a row very negative (a missing max shift underflows to
# 0/0), and scores large enough to overflow exp without the shift.
VALUE_KINDS = ("normal", "normal", "hidden_nan", "very_negative", "large")


@case("visibility_mask", st.builds(lambda a: a, attention_configs(with_mask=False)),
     [dict(hq=1, hkv=1, d=2, tq=8, tk=8, cache=0, causal=True, window=3, sinks="none", mask="none", scale=1.0, custom_scale=False),
      dict(hq=1, hkv=1, d=2, tq=6, tk=6, cache=0, causal=False, window=2, sinks="none", mask="none", scale=1.0, custom_scale=False),
      dict(hq=1, hkv=1, d=2, tq=3, tk=8, cache=5, causal=True, window=None, sinks="none", mask="none", scale=1.0, custom_scale=False)])
def _(c, g, dt, seed):
    return dict(q_len=c["tq"], k_len=c["tk"], q_offset=c["cache"] if c["cache"] else None, window=c["window"],
                causal=c["causal"])


@case("repeat_kv", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), hkv=st.integers(1, 4), n_rep=st.integers(1, 4),
                                             d=st.sampled_from((2, 8, 64)))),
     [dict(t=3, hkv=2, n_rep=2, d=8)])
def _(c, g, dt, seed):
    return dict(k=as_dtype(normal_values(g, (c["t"], c["hkv"], c["d"]), 1.0), dt), n_rep=c["n_rep"])


def _attention_inputs(c, g, dt, with_v=True):
    hq, hkv, d, tq, tk = c["hq"], c["hkv"], c["d"], c["tq"], c["tk"]
    s = c["scale"]
    kind = c.get("values", "normal")
    q, k = normal_values(g, (tq, hq, d), s), normal_values(g, (tk, hkv, d), 1.0)
    v = normal_values(g, (tk, hkv, d), 1.0)
    if kind == "very_negative":  # q.k = -|q||k| * 40: every visible score far below zero
        q, k = np.abs(q) * 40 / np.sqrt(d), -np.abs(k) * 40 / np.sqrt(d)
    elif kind == "large":
        q = q * 30
    elif kind == "hidden_nan":
        vis = _visible(c, None)  # [Tq, Tk]
        hidden = np.nonzero(~vis.all(axis=0))[0]  # keys hidden from at least one query
        if hidden.size:
            j = hidden[g.integers(hidden.size)]
            v[j] = np.nan
            k[j] = np.nan
    out = dict(q=as_dtype(q, dt), k=as_dtype(k, dt))
    if with_v:
        out["v"] = as_dtype(v, dt)
    sinks = None
    if c["sinks"] == "normal":
        sinks = g.standard_normal(hq)
    elif c["sinks"] == "extreme":
        sinks = np.where(g.random(hq) < 0.5, 30.0, -30.0)
    elif c["sinks"] == "neg_inf_some":
        sinks = np.where(np.arange(hq) % 2 == 0, -np.inf, g.standard_normal(hq))
    out["sinks"] = None if sinks is None else as_dtype(sinks, dt)
    out["window"] = c["window"]
    out["causal"] = c["causal"]
    out["q_offset"] = c["cache"] if c["cache"] else None
    out["scale"] = 0.5 / np.sqrt(d) if c.get("custom_scale") else None
    mask = None
    if c["mask"] == "random":
        mask = g.random((tq, tk)) < 0.8
    elif c["mask"] == "dead_row":
        mask = np.ones((tq, tk), dtype=bool)
        mask[tq // 2] = False
    out["mask"] = mask
    return out


_ATT_EX = [dict(hq=4, hkv=2, d=8, tq=8, tk=8, cache=0, causal=True, window=3, sinks="normal", mask="none", scale=1.0,
                custom_scale=False),
           dict(hq=4, hkv=2, d=8, tq=4, tk=4, cache=0, causal=True, window=None, sinks="none", mask="dead_row", scale=1.0,
                custom_scale=False),
           dict(hq=2, hkv=1, d=16, tq=33, tk=66, cache=33, causal=True, window=40, sinks="neg_inf_some", mask="none",
                scale=1.0, custom_scale=False),
           # the power cases: bottom-right alignment (q_offset > 0, Tq < Tk), a window without causality,
           # hidden NaN, rows of very negative scores
           dict(hq=4, hkv=2, d=8, tq=3, tk=8, cache=5, causal=True, window=None, sinks="none", mask="none", scale=1.0,
                custom_scale=True),
           dict(hq=2, hkv=2, d=8, tq=6, tk=6, cache=0, causal=False, window=2, sinks="none", mask="none", scale=1.0,
                custom_scale=False),
           dict(hq=2, hkv=1, d=8, tq=5, tk=5, cache=0, causal=True, window=2, sinks="normal", mask="none", scale=1.0,
                custom_scale=False, values="hidden_nan"),
           dict(hq=2, hkv=1, d=8, tq=5, tk=5, cache=0, causal=True, window=None, sinks="none", mask="none", scale=1.0,
                custom_scale=False, values="very_negative")]


@case("attention_probs", attention_configs(), _ATT_EX)
def _(c, g, dt, seed):
    return _attention_inputs(c, g, dt)


@case("attention", attention_configs(), _ATT_EX)
def _(c, g, dt, seed):
    return _attention_inputs(c, g, dt)


@case("attention_online", st.tuples(attention_configs(), st.sampled_from((32, 1, 7, 128))).map(
    lambda a: {**a[0], "block_size": a[1]}), [{**e, "block_size": 32} for e in _ATT_EX])
def _(c, g, dt, seed):
    return {**_attention_inputs(c, g, dt), "block_size": c["block_size"]}


_SCORE_SCALES = ("default", "custom", "one")


@case("attention_scores", st.tuples(attention_configs(), st.sampled_from(_SCORE_SCALES)).map(
    lambda a: {**a[0], "score_scale": a[1]}),
     [{**e, "score_scale": s} for e, s in zip(_ATT_EX, ("default", "one", "custom", "one", "default", "one", "default"))])
def _(c, g, dt, seed):
    out = _attention_inputs(c, g, dt, with_v=False)
    del out["sinks"]
    out["scale"] = {"default": None, "one": 1.0, "custom": 0.5 / np.sqrt(c["d"])}[c.get("score_scale", "default")]
    return out


def _visible(c, mask):
    """[Tq, Tk]: the configuration's visibility_mask AND its mask."""
    vis = reference_ops.visibility_mask(c["tq"], c["tk"], q_offset=c["cache"] if c["cache"] else None,
                                        window=c["window"], causal=c["causal"])
    return vis if mask is None else vis & mask


def _softmax_inputs(c, g, dt):
    """(scores [Hq, Tq, Tk] float64 with -inf where not visible, sinks [Hq] float64 or None, visible [Tq, Tk])."""
    a = _attention_inputs(c, g, dt, with_v=False)
    vis = _visible(c, a["mask"])
    s = normal_values(g, (c["hq"], c["tq"], c["tk"]), 3 * c["scale"])  # [Hq, Tq, Tk]
    if c.get("values") == "very_negative":
        s = s - 1000.0
    elif c.get("values") == "large":
        s = s * 100
    s = np.where(vis, s, -np.inf)
    snk = None if a["sinks"] is None else np.asarray(a["sinks"], dtype=np.float64)
    return s, snk, vis


@case("softmax_with_sinks", attention_configs(), _ATT_EX)
def _(c, g, dt, seed):
    s, snk, _ = _softmax_inputs(c, g, dt)
    return dict(scores=as_dtype(s, dt), sinks=None if snk is None else as_dtype(snk, dt))


@case("attention_values", st.tuples(attention_configs(), st.booleans()).map(lambda a: {**a[0], "with_visible": a[1]}),
      [{**e, "with_visible": w} for e, w in zip(_ATT_EX, (True, False, True, True, True, True, False))])
def _(c, g, dt, seed):
    s, snk, vis = _softmax_inputs(c, g, dt)
    p = reference_ops.softmax_with_sinks(s, snk)  # [Hq, Tq, Tk], float64
    v = normal_values(g, (c["tk"], c["hkv"], c["d"]), 1.0)  # [Tk, Hkv, Dv]
    hidden = np.nonzero(~vis.all(axis=0))[0]  # keys hidden from some query
    if c.get("with_visible") and c.get("values") == "hidden_nan" and hidden.size:
        v[hidden[0]] = np.nan  # a key outside `visible` contributes nothing to that row, even a NaN
    return dict(probs=as_dtype(p, dt), v=as_dtype(v, dt), visible=vis if c.get("with_visible") else None)


# ----------------------------------------------------------------------------- conventions


def fully_masked_output(op, inputs, shape):
    """Bool array broadcast to the output `shape`: True on the outputs of query rows that see no key
    and have no sink (the `fully_masked_row` convention: the spec gives zeros, torch gives NaN for a
    -inf mask and a uniform row for a -1e10 one); None when the op has no such rows here.

    attention / attention_online ([..., Tq, Hq, Dv]) and attention_probs ([..., Hq, Tq, Tk]): rows from
    visibility_mask AND mask, with a -inf (or no) sink. softmax_with_sinks ([..., Hq, Tq, Tk]): rows
    whose scores are all -inf, with a -inf (or no) sink.
    """
    if op == "softmax_with_sinks":
        s = np.asarray(inputs["scores"], dtype=np.float64)
        dead = np.all(np.isneginf(s), axis=-1) if s.shape[-1] else np.ones(s.shape[:-1], bool)  # [..., Hq, Tq]
        if inputs.get("sinks") is not None and dead.ndim >= 2:
            sink = np.isneginf(np.asarray(inputs["sinks"], dtype=np.float64))  # [Hq]
            dead = dead & sink[:, None]
        mask = dead[..., None]
    elif op in ATTENTION_OPS:
        q, k = inputs["q"], inputs["k"]
        tq, hq, tk = np.shape(q)[-3], np.shape(q)[-2], np.shape(k)[-3]
        vis = reference_ops.visibility_mask(tq, tk, q_offset=inputs.get("q_offset"), window=inputs.get("window"),
                                            causal=inputs.get("causal", True))
        if inputs.get("mask") is not None:
            vis = vis & np.asarray(inputs["mask"])
        dead = ~vis.any(axis=-1)  # [Tq] (or [..., Tq] with a batched mask)
        dead = np.broadcast_to(dead[..., :, None], (*dead.shape, hq))  # [..., Tq, Hq]
        if inputs.get("sinks") is not None:
            dead = dead & np.isneginf(np.asarray(inputs["sinks"], dtype=np.float64))
        mask = np.swapaxes(dead, -1, -2)[..., None] if op == "attention_probs" else dead[..., None]
    else:
        return None
    try:
        mask = np.broadcast_to(mask, shape)
    except ValueError:
        return None
    return mask if mask.any() else None


# ----------------------------------------------------------------------------- misreadings


ATTENTION_OPS = ("attention", "attention_probs", "attention_online")


# Ops that take the window / causal / mask knobs: the attention ops, visibility_mask and the bfloat16-mode
# scores (the softmax and the weighted sum of the bfloat16 mode get the -inf pattern / `visible` from them).
WINDOW_OPS = ATTENTION_OPS + ("visibility_mask", "attention_scores")


def _window_plus_one(kw):
    if kw["window"] is not None:
        kw["window"] = kw["window"] + 1


def _sinks_scaled(kw):
    if kw["sinks"] is not None:
        d = np.shape(kw["q"])[-1]
        scale = 1 / math.sqrt(d) if kw["scale"] is None else kw["scale"]
        kw["sinks"] = np.asarray(kw["sinks"]) * scale


def _gqa_tiled(kw):
    q, k, v = np.asarray(kw["q"]), np.asarray(kw["k"]), kw.get("v")
    if q.ndim >= 3 and k.ndim == q.ndim and k.shape[-2] and q.shape[-2] % k.shape[-2] == 0:
        g = q.shape[-2] // k.shape[-2]
        kw["k"] = np.concatenate([k] * g, axis=-2)  # [..., Tk, Hq, D]: head h reads kv head h % Hkv
        if v is not None and np.ndim(v) == k.ndim:
            kw["v"] = np.concatenate([np.asarray(v)] * g, axis=-2)  # [..., Tk, Hq, Dv]


def _gqa_tiled_values(kw):
    p, v = np.asarray(kw["probs"]), np.asarray(kw["v"])
    if p.ndim >= 3 and v.ndim == p.ndim and v.shape[-2] and p.shape[-3] % v.shape[-2] == 0:
        kw["v"] = np.concatenate([v] * (p.shape[-3] // v.shape[-2]), axis=-2)  # [..., Tk, Hq, Dv]: head h reads h % Hkv


def _score_scale(value):
    """Where the model relies on the default scale (None = 1/sqrt(D)), use value(D) instead."""
    def change(kw):
        if kw.get("scale") is None and np.ndim(kw["q"]) >= 1:
            kw["scale"] = value(np.shape(kw["q"])[-1])
    return change


def _q_offset_plus_one(kw):
    """Queries placed one position later than they are (each sees the next key; the window moves too)."""
    if "q_len" in kw:  # visibility_mask(q_len, k_len, ...)
        tq, tk = int(kw["q_len"]), int(kw["k_len"])
    else:
        tq, tk = np.shape(kw["q"])[-3], np.shape(kw["k"])[-3]
    off = kw.get("q_offset")
    if off is None:
        off = tk - tq
    if off >= 0:
        kw["q_offset"] = off + 1


def _shift_queries():
    """causal_offset_plus_one's ops. Its budget sees the original inputs: the budget's probabilities come
    from these same ops (attention_probs with the knobs), which add the one themselves; a rewritten
    q_offset would be shifted twice."""
    out = each(WINDOW_OPS, _q_offset_plus_one)
    for fn in out.values():
        fn.rewrite_inputs = lambda kw: kw
    return out


def _masked_rows(kw, shape):
    """[..., Hq, Tq] True where a query sees no key and has no sink."""
    tq, hq = np.shape(kw["q"])[-3], np.shape(kw["q"])[-2]
    tk = np.shape(kw["k"])[-3]
    vis = reference_ops.visibility_mask(tq, tk, q_offset=kw["q_offset"], window=kw["window"], causal=kw["causal"])
    if kw["mask"] is not None:
        vis = vis & np.asarray(kw["mask"])
    dead = ~np.broadcast_to(vis, shape).any(axis=-1)  # [..., Hq, Tq]
    if kw["sinks"] is not None:
        dead = dead & np.isneginf(np.asarray(kw["sinks"], dtype=np.float64))[:, None]
    return dead


def _mask_minus_1e10(op):
    """Masking by adding -1e10: identical while a row sees a key (exp underflows to 0), but a row with no
    visible key and no sink becomes the softmax over ALL its keys instead of zeros (exact-arithmetic
    reading; in float32 the scores vanish into -1e10 and the row is uniform)."""
    ref = getattr(reference_ops, op)
    sig = inspect.signature(ref)

    def wrong(*args, **kwargs):
        kw = bind(op, sig.bind(*args, **kwargs).arguments)
        out = ref(**kw)
        every = dict(kw, window=None, causal=False, mask=None, q_offset=None)
        if np.shape(kw["q"])[-3] > np.shape(kw["k"])[-3]:
            every["q_offset"] = 0
        alt = ref(**every)
        q = np.shape(kw["q"])
        dead = _masked_rows(kw, (*q[:-3], q[-2], q[-3], np.shape(kw["k"])[-3]))  # [..., Hq, Tq]
        if op == "attention_probs":
            return np.where(dead[..., None], alt, out)
        return np.where(np.swapaxes(dead, -1, -2)[..., None], alt, out)  # [..., Tq, Hq, Dv]

    wrong.__name__, wrong.__signature__ = op, sig
    return wrong


def _mask_minus_1e10_scores(q, k, *, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """attention_scores with -1e10 added to the scores of hidden keys instead of setting them to -inf
    (softmax_with_sinks then gives the same probabilities wherever a row sees a key, and the softmax
    over all keys on a row that sees none and has no sink: the mask_minus_1e10 reading of attention)."""
    kw = dict(window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
    out = reference_ops.attention_scores(q, k, **kw)  # validates; [..., Hq, Tq, Tk]
    every = reference_ops.attention_scores(q, k, window=None, causal=False, q_offset=0, scale=scale)  # [..., Hq, Tq, Tk]
    tq, tk = np.shape(q)[-3], np.shape(k)[-3]
    vis = reference_ops.visibility_mask(tq, tk, q_offset=q_offset, window=window, causal=causal)  # [Tq, Tk]
    if mask is not None:
        vis = vis & np.asarray(mask)
    return np.where(vis, every, every + out.dtype.type(-1e10))


def _attn_inputs(seed=0, *, t=8, hq=4, hkv=2, d=8, **kw):
    g = make_rng(seed)
    q, k, v = (g.standard_normal((t, h, d)) for h in (hq, hkv, hkv))
    return dict(q=q, k=k, v=v, **kw)


def _ex_attention(**kw):
    return lambda: ("attention", _attn_inputs(**kw))


_ROW_2_MASKED = np.broadcast_to(np.arange(4)[:, None] != 2, (4, 4))  # [Tq, Tk]: query 2 sees no key


MISREADINGS = [
    Misreading("window_off_by_one", "sliding window sees window + 1 keys (i - window <= j instead of i - window < j)",
            each(WINDOW_OPS, _window_plus_one), _ex_attention(window=3)),
    Misreading("full_causal_on_sliding", "the window is ignored: sliding layers attend causally to everything",
            with_knobs(WINDOW_OPS, window=None), _ex_attention(window=3)),
    Misreading("gqa_tiled_heads", "query head h reads kv head h % Hkv (tiled) instead of h // (Hq/Hkv) (repeated)",
            {**each(ATTENTION_OPS + ("attention_scores",), _gqa_tiled),
             **each(("attention_values",), _gqa_tiled_values)}, _ex_attention()),
    Misreading("sinks_scaled", "the sink logit is multiplied by the 1/sqrt(D) score scale",
            each(ATTENTION_OPS, _sinks_scaled), _ex_attention(sinks=np.array([2.0, -1.0, 0.5, 3.0]))),
    Misreading("sinks_ignored", "attention sinks dropped (no extra denominator term)",
            with_knobs(ATTENTION_OPS + ("softmax_with_sinks",), sinks=None),
            _ex_attention(sinks=np.array([2.0, -1.0, 0.5, 3.0]))),
    Misreading("score_scale_missing", "attention scores not scaled (1 instead of 1/sqrt(D))",
            each(ATTENTION_OPS + ("attention_scores",), _score_scale(lambda d: 1.0)), _ex_attention()),
    Misreading("score_scale_1_over_d", "attention scores scaled by 1/D instead of 1/sqrt(D)",
            each(ATTENTION_OPS + ("attention_scores",), _score_scale(lambda d: 1.0 / d if d else 1.0)),
            _ex_attention()),
    Misreading("causal_offset_plus_one", "causal mask off by one: query i sees key i + 1 (query positions "
            "counted one later than the keys'; the window moves with them)",
            _shift_queries(), _ex_attention()),
    Misreading("mask_minus_1e10", "masking adds -1e10 instead of -inf: a row with no visible key and no sink "
            "gives the softmax over all keys (uniform in float32) instead of zeros",
            {**{op: _mask_minus_1e10(op) for op in ATTENTION_OPS}, "attention_scores": _mask_minus_1e10_scores},
            _ex_attention(t=4, mask=_ROW_2_MASKED)),
]
