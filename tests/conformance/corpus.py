"""A mutation corpus: realistic one-op bugs, each a kernel a backend author could write, with a witness.

Mutant(name, kind, op, fn, witness): `fn` takes the reference op's arguments and returns its
result with one bug; `witness()` returns inputs (float64 unless said) on which fn's output differs
from the reference's beyond the op's budget (or in shape, dtype or NaN/Inf pattern). Kinds:
"convention" (a wrong reading of a rule), "knob" (a keyword ignored), "edge" (numerics at edge
inputs: overflow range, hidden NaN, ties, empty sizes, extreme codes), "precision" (float32 work
inside a float64 run), "shape_dtype". tests/conformance/test_corpus.py keeps `refimpl conform`
failing every one of them (each on its own op's row, default settings).
"""

import math
from dataclasses import dataclass

import numpy as np

from refimpl.ops import ops as R


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str
    op: str
    fn: object
    witness: object

    def __repr__(self):
        return f"Mutant({self.name})"


CORPUS = []


def mutant(name, kind, op, witness):
    def register(fn):
        CORPUS.append(Mutant(name, kind, op, fn, witness))
        return fn
    return register


g = np.random.default_rng(0)


def _qkv(tq=6, tk=6, hq=4, hkv=2, d=8, seed=1):
    r = np.random.default_rng(seed)
    return r.standard_normal((tq, hq, d)), r.standard_normal((tk, hkv, d)), r.standard_normal((tk, hkv, d))


def _aw(**kw):
    q, k, v = _qkv(tq=kw.pop("tq", 6), tk=kw.pop("tk", 6), hq=kw.pop("hq", 4), hkv=kw.pop("hkv", 2))
    return dict(q=q, k=k, v=v, **kw)


def _f32(x):
    return np.asarray(x).astype(np.float32)


# ----------------------------------------------------------------------------- convention

@mutant("window_plus_one", "convention", "attention", lambda: _aw(window=2))
def _(q, k, v, *, window=None, **kw):
    return R.attention(q, k, v, window=None if window is None else window + 1, **kw)


@mutant("top_left_causal", "convention", "attention", lambda: _aw(tq=3, tk=6, q_offset=3))
def _(q, k, v, *, q_offset=None, **kw):
    return R.attention(q, k, v, q_offset=0, **kw)  # aligns queries to the first key, not the last


@mutant("gqa_tiled", "convention", "attention", lambda: _aw())
def _(q, k, v, **kw):
    g_ = q.shape[-2] // k.shape[-2]
    return R.attention(q, np.concatenate([k] * g_, axis=-2), np.concatenate([v] * g_, axis=-2), **kw)


@mutant("sinks_times_scale", "convention", "attention", lambda: _aw(sinks=np.array([2.0, -1.0, 0.5, 3.0])))
def _(q, k, v, *, sinks=None, scale=None, **kw):
    s = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    return R.attention(q, k, v, sinks=None if sinks is None else np.asarray(sinks) * s, scale=scale, **kw)


@mutant("sinks_dropped", "convention", "attention_probs", lambda: _aw(sinks=np.array([2.0, -1.0, 0.5, 3.0])))
def _(q, k, v=None, *, sinks=None, **kw):
    return R.attention_probs(q, k, v, **kw)


@mutant("window_ignored_without_causal", "convention", "attention", lambda: _aw(window=2, causal=False))
def _(q, k, v, *, window=None, causal=True, **kw):
    return R.attention(q, k, v, window=window if causal else None, causal=causal, **kw)


@mutant("window_on_both_sides_when_causal_false", "convention", "visibility_mask",
        lambda: dict(q_len=6, k_len=6, window=2, causal=False))
def _(q_len, k_len, *, q_offset=None, window=None, causal=True):
    m = R.visibility_mask(q_len, k_len, q_offset=q_offset, window=window, causal=causal)
    if window is not None and not causal:  # treats a window as implying causality
        m = m & R.visibility_mask(q_len, k_len, q_offset=q_offset, window=None, causal=True)
    return m


@mutant("mask_window_le", "convention", "visibility_mask", lambda: dict(q_len=6, k_len=6, window=3))
def _(q_len, k_len, *, q_offset=None, window=None, causal=True):
    return R.visibility_mask(q_len, k_len, q_offset=q_offset, window=None if window is None else window + 1, causal=causal)


@mutant("rope_interleaved_on_half", "convention", "apply_rope",
        lambda: dict(x=g.standard_normal((4, 2, 8)), cos=np.cos(g.uniform(0, 6, (4, 4))), sin=np.sin(g.uniform(0, 6, (4, 4)))))
def _(x, cos, sin, *, pairing="half", rotary_dim=None):
    return R.apply_rope(x, cos, sin, pairing="interleaved" if pairing == "half" else "half", rotary_dim=rotary_dim)


@mutant("rope_terms_pairs_swapped", "convention", "rope_terms",
        lambda: dict(x=g.standard_normal((4, 2, 8)), cos=np.cos(g.uniform(0, 6, (4, 4))), sin=np.sin(g.uniform(0, 6, (4, 4)))))
def _(x, cos, sin, *, pairing="half", rotary_dim=None):
    return R.rope_terms(x, cos, sin, pairing="interleaved" if pairing == "half" else "half", rotary_dim=rotary_dim)


@mutant("rope_sin_sign", "convention", "apply_rope",
        lambda: dict(x=g.standard_normal((4, 2, 8)), cos=np.cos(g.uniform(0, 6, (4, 4))), sin=np.sin(g.uniform(0, 6, (4, 4)))))
def _(x, cos, sin, **kw):
    return R.apply_rope(x, cos, -np.asarray(sin), **kw)  # rotates the other way


@mutant("swiglu_oss_no_plus_one", "convention", "swiglu_oss", lambda: dict(h=g.uniform(-6, 6, (3, 16))))
def _(h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    h = np.array(h, dtype=np.result_type(h, np.float32))
    lin = slice(1, None, 2) if layout == "interleaved" else slice(h.shape[-1] // 2, None)
    lv = h[..., lin].copy()
    if limit is not None:
        lv = np.clip(lv, -limit, limit)
    h[..., lin] = 0
    return R.swiglu_oss(h, alpha=alpha, limit=limit, layout=layout) * lv


@mutant("swiglu_oss_layout_swapped", "convention", "swiglu_oss", lambda: dict(h=g.uniform(-6, 6, (3, 16))))
def _(h, *, layout="interleaved", **kw):
    return R.swiglu_oss(h, layout="halves" if layout == "interleaved" else "interleaved", **kw)


@mutant("router_softmax_before_topk", "convention", "router_topk_softmax",
        lambda: dict(logits=g.standard_normal((5, 8)) * 2, k=2))
def _(logits, k):
    return R.router_softmax_topk(logits, k, renormalize=False)


@mutant("expert_choice_softmax_over_tokens", "convention", "expert_choice",
        lambda: dict(logits=g.standard_normal((8, 4)) * 2, capacity=2))
def _(logits, capacity):
    w, idx = R.expert_choice(logits, capacity)
    p = R.softmax(np.asarray(logits, dtype=np.result_type(logits, np.float32)), axis=0)  # over tokens
    return np.take_along_axis(np.swapaxes(p, -1, -2), idx, axis=-1).astype(w.dtype), idx


@mutant("moe_combine_unweighted", "convention", "moe_combine",
        lambda: dict(x=g.standard_normal((4, 3)), weights=np.full((4, 2), 0.3), indices=np.array([[0, 1]] * 4),
                     expert_fn=lambda e, r: r * (e + 1)))
def _(x, weights, indices, expert_fn):
    return R.moe_combine(x, np.ones_like(np.asarray(weights)), indices, expert_fn)


@mutant("mxfp4_high_nibble_first", "convention", "decode_mxfp4",
        lambda: dict(blocks=g.integers(0, 256, (2, 1, 16), dtype=np.uint8), scales=np.full((2, 1), 127, np.uint8)))
def _(blocks, scales, *, nibble_order="low_first", **kw):
    return R.decode_mxfp4(blocks, scales, nibble_order="high_first" if nibble_order == "low_first" else "low_first", **kw)


@mutant("e8m0_bias_128", "convention", "decode_e8m0", lambda: dict(scales=np.array([[120, 127, 130]], np.uint8)))
def _(scales, *, bias=127):
    return R.decode_e8m0(scales, bias=bias + 1)


@mutant("e8m0_255_is_nan", "convention", "decode_e8m0", lambda: dict(scales=np.array([[127, 255]], np.uint8)))
def _(scales, *, bias=127):
    out = R.decode_e8m0(scales, bias=bias)
    return np.where(np.asarray(scales) == 255, np.float32(np.nan), out)


@mutant("rms_eps_after_sqrt", "convention", "rms_norm", lambda: dict(x=g.standard_normal((3, 16)) * 1e-3, weight=np.ones(16)))
def _(x, weight, *, eps=1e-5, cast_before_scale=False):
    dt = R.rms_norm(x, weight, eps=eps).dtype
    t = np.asarray(x).astype(dt)
    return t / (np.sqrt((t * t).mean(-1, keepdims=True)) + dt.type(eps)) * np.asarray(weight).astype(dt)


@mutant("layer_norm_unbiased", "convention", "layer_norm",
        lambda: dict(x=g.standard_normal((3, 4)), weight=np.ones(4), bias=np.zeros(4)))
def _(x, weight, bias, *, eps=1e-5):
    n = np.shape(x)[-1]
    r = (n - 1) / n if n > 1 else 1.0
    return R.layer_norm(x, np.asarray(weight) * math.sqrt(r), bias, eps=eps * r)


@mutant("top_k_ties_cut_to_k", "convention", "top_k_filter", lambda: dict(logits=np.array([[3.0, 1.0, 3.0, 3.0, 0.0]]), k=2))
def _(logits, k):
    x = np.asarray(logits, dtype=np.result_type(logits, np.float32))
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(x.shape, bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return np.where(keep, x, -np.inf)


@mutant("top_p_drops_crossing_token", "convention", "top_p_filter",
        lambda: dict(logits=np.log(np.array([[0.5, 0.3, 0.2]])), p=0.6))
def _(logits, p, *, min_keep=1):
    x = np.asarray(logits, dtype=np.result_type(logits, np.float32))
    q = R.softmax(x)
    order = np.argsort(-x, axis=-1, kind="stable")
    incl = np.cumsum(np.take_along_axis(q, order, -1), -1)
    keep_sorted = (incl <= p) | (np.arange(x.shape[-1]) < min_keep)
    keep = np.zeros(x.shape, bool)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, x, -np.inf)


@mutant("greedy_last_max", "convention", "greedy", lambda: dict(logits=np.array([[1.0, 5.0, 5.0, 2.0]])))
def _(logits):
    x = np.asarray(logits)
    return x.shape[-1] - 1 - np.argmax(x[..., ::-1], axis=-1)


@mutant("sample_temperature_after_filters", "convention", "sample",
        lambda: dict(logits=np.tile([2.0, 1.5, 1.0, 0.0, -1.0], (16, 1)), temperature=0.5, top_p=0.6,
                     rng=np.random.default_rng(0)))
def _(logits, *, temperature=0.0, top_k=None, top_p=None, rng=None):
    if temperature == 0:
        return R.greedy(logits)
    x = np.asarray(logits, dtype=np.float64)
    if top_k is not None:
        x = R.top_k_filter(x, top_k)
    if top_p is not None:
        x = R.top_p_filter(x, top_p)
    return R.sample(x, temperature=temperature, rng=rng)


@mutant("learned_positions_ignore_offset", "knob", "learned_positions", lambda: dict(wpe=g.standard_normal((8, 3)), length=3, offset=2))
def _(wpe, length, *, offset=0):
    return R.learned_positions(wpe, length)


# ----------------------------------------------------------------------------- knobs

@mutant("attention_scale_ignored", "knob", "attention", lambda: _aw(scale=0.1))
def _(q, k, v, *, scale=None, **kw):
    return R.attention(q, k, v, **kw)


@mutant("attention_mask_ignored", "knob", "attention", lambda: _aw(mask=np.tri(6, dtype=bool)[::-1].copy() | np.eye(6, dtype=bool)))
def _(q, k, v, *, mask=None, **kw):
    return R.attention(q, k, v, **kw)


@mutant("attention_always_causal", "knob", "attention", lambda: _aw(causal=False))
def _(q, k, v, *, causal=True, **kw):
    return R.attention(q, k, v, **kw)


@mutant("attention_scores_scale_ignored", "knob", "attention_scores", lambda: dict(q=_qkv()[0], k=_qkv()[1], scale=1.0))
def _(q, k, *, scale=None, **kw):
    return R.attention_scores(q, k, **kw)


@mutant("attention_values_visible_ignored", "knob", "attention_values",
        lambda: dict(probs=np.full((4, 3, 3), 1 / 3), v=g.standard_normal((3, 2, 4)), visible=np.tri(3, dtype=bool)))
def _(probs, v, *, visible=None):
    return R.attention_values(probs, v)


@mutant("rms_eps_fixed", "knob", "rms_norm", lambda: dict(x=g.standard_normal((2, 8)) * 1e-3, weight=np.ones(8), eps=1e-6))
def _(x, weight, *, eps=1e-5, cast_before_scale=False):
    return R.rms_norm(x, weight, cast_before_scale=cast_before_scale)


@mutant("layer_norm_eps_fixed", "knob", "layer_norm", lambda: dict(x=g.standard_normal((2, 8)) * 1e-3, weight=np.ones(8), bias=np.zeros(8), eps=1e-6))
def _(x, weight, bias, *, eps=1e-5):
    return R.layer_norm(x, weight, bias)


@mutant("gelu_approximate_ignored", "knob", "gelu", lambda: dict(x=np.linspace(-4, 4, 17), approximate="none"))
def _(x, *, approximate="tanh"):
    return R.gelu(x)


@mutant("gelu_mlp_approximate_ignored", "knob", "gelu_mlp",
        lambda: dict(x=g.standard_normal((2, 4)), fc_weight=g.standard_normal((8, 4)), fc_bias=None,
                     proj_weight=g.standard_normal((4, 8)), proj_bias=None, approximate="none"))
def _(x, fc_weight, fc_bias, proj_weight, proj_bias, *, approximate="tanh"):
    return R.gelu_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias)


@mutant("swiglu_oss_alpha_fixed", "knob", "swiglu_oss", lambda: dict(h=g.uniform(-4, 4, (3, 16)), alpha=1.0))
def _(h, *, alpha=1.702, **kw):
    return R.swiglu_oss(h, **kw)


@mutant("swiglu_oss_limit_always", "knob", "swiglu_oss", lambda: dict(h=g.uniform(-12, 12, (3, 16)), limit=None))
def _(h, *, limit=7.0, **kw):
    return R.swiglu_oss(h, limit=7.0, **kw)


@mutant("gpt_oss_experts_alpha_limit_fixed", "knob", "gpt_oss_experts",
        lambda: dict(t=g.standard_normal((3, 4)), weights=np.full((3, 2), 0.5), indices=np.array([[0, 1]] * 3),
                     mlp1_weight=g.standard_normal((2, 8, 4)) * 3, mlp1_bias=np.zeros((2, 8)),
                     mlp2_weight=g.standard_normal((2, 4, 4)), mlp2_bias=np.zeros((2, 4)), alpha=1.0, limit=None))
def _(t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, *, alpha=1.702, limit=7.0):
    return R.gpt_oss_experts(t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias)


@mutant("llama3_freq_factors_fixed", "knob", "inv_freq_llama3",
        lambda: dict(head_dim=64, base=500000.0, factor=8.0, low_freq_factor=2.0, high_freq_factor=8.0,
                     original_max_position_embeddings=8192))
def _(head_dim, *, low_freq_factor, high_freq_factor, **kw):
    return R.inv_freq_llama3(head_dim, low_freq_factor=1.0, high_freq_factor=4.0, **kw)


@mutant("yarn_mscale_ignored", "knob", "inv_freq_yarn",
        lambda: dict(head_dim=64, base=10000.0, factor=4.0, mscale=0.707, mscale_all_dim=1.0))
def _(head_dim, *, mscale=None, mscale_all_dim=None, **kw):
    return R.inv_freq_yarn(head_dim, **kw)


@mutant("yarn_attention_factor_ignored", "knob", "inv_freq_yarn",
        lambda: dict(head_dim=64, base=10000.0, factor=4.0, attention_factor=1.5))
def _(head_dim, *, attention_factor=None, **kw):
    return R.inv_freq_yarn(head_dim, **kw)


@mutant("yarn_truncate_ignored", "knob", "yarn_correction_range", lambda: dict(head_dim=64, base=150000.0, truncate=True))
def _(head_dim, *, truncate=False, **kw):
    return R.yarn_correction_range(head_dim, **kw)


@mutant("rope_scaling_type_key_ignored", "knob", "rope_frequencies",
        lambda: dict(head_dim=64, base=10000.0, rope_scaling={"type": "linear", "factor": 4.0}))
def _(head_dim, *, rope_scaling=None, **kw):
    if rope_scaling is not None and "rope_type" not in rope_scaling:
        rope_scaling = None
    return R.rope_frequencies(head_dim, rope_scaling=rope_scaling, **kw)


@mutant("router_renormalize_ignored", "knob", "router_softmax_topk", lambda: dict(logits=g.standard_normal((4, 8)), k=2, renormalize=False))
def _(logits, k, *, renormalize=True):
    return R.router_softmax_topk(logits, k)


@mutant("top_p_min_keep_ignored", "knob", "top_p_filter", lambda: dict(logits=np.array([[5.0, 0.0, -1.0, -2.0]]), p=0.5, min_keep=3))
def _(logits, p, *, min_keep=1):
    return R.top_p_filter(logits, p)


@mutant("cos_sin_scaling_ignored", "knob", "rope_cos_sin",
        lambda: dict(inv_freq=R.inv_freq_default(8), positions=np.arange(4), attention_scaling=1.2))
def _(inv_freq, positions, *, attention_scaling=1.0, angle_dtype=np.float64):
    return R.rope_cos_sin(inv_freq, positions, angle_dtype=angle_dtype)


@mutant("apply_rope_rotary_dim_ignored", "knob", "apply_rope",
        lambda: dict(x=g.standard_normal((3, 1, 8)), cos=np.cos(g.uniform(0, 6, (3, 2))), sin=np.sin(g.uniform(0, 6, (3, 2))), rotary_dim=4))
def _(x, cos, sin, *, pairing="half", rotary_dim=None):
    if rotary_dim is None:
        return R.apply_rope(x, cos, sin, pairing=pairing)
    c, s = np.concatenate([cos, cos], -1), np.concatenate([sin, sin], -1)  # rotates every dim
    return R.apply_rope(x, c, s, pairing=pairing)


@mutant("dropout_training_ignored", "knob", "dropout", lambda: dict(x=np.ones((2, 8)), p=0.5, rng=np.random.default_rng(0), training=False))
def _(x, p, *, rng=None, training=True):
    return R.dropout(x, p, rng=rng if rng is not None else np.random.default_rng(0), training=True)


@mutant("softmax_axis_ignored", "knob", "softmax", lambda: dict(x=g.standard_normal((3, 4)), axis=0))
def _(x, axis=-1):
    return R.softmax(x)


@mutant("sample_top_k_ignored", "knob", "sample",
        lambda: dict(logits=np.tile([1.0, 0.9, 0.8, 0.7], (16, 1)), temperature=1.0, top_k=1, rng=np.random.default_rng(3)))
def _(logits, *, top_k=None, **kw):
    return R.sample(logits, **kw)


@mutant("load_balancing_fraction_ignored", "knob", "load_balancing_loss",
        lambda: dict(router_logits=g.standard_normal((4, 4)), indices=np.array([[0, 1], [1, 2], [0, 3], [2, 3]]), num_experts=4,
                     fraction="per_assignment"))
def _(router_logits, indices, num_experts, *, fraction="per_token"):
    return R.load_balancing_loss(router_logits, indices, num_experts)


@mutant("mxfp4_linear_scale_bias_fixed", "knob", "mxfp4_linear",
        lambda: dict(x=g.standard_normal((2, 32)), blocks=g.integers(0, 256, (3, 1, 16), dtype=np.uint8),
                     scales=np.full((3, 1), 127, np.uint8), scale_bias=128))
def _(x, blocks, scales, bias=None, *, scale_bias=127, **kw):
    return R.mxfp4_linear(x, blocks, scales, bias, **kw)


@mutant("encode_mxfp4_scale_rule_ignored", "knob", "encode_mxfp4", lambda: dict(w=np.linspace(-7, 7, 32)[None], scale_rule="floor"))
def _(w, *, scale_rule="ceil", ties="even"):
    return R.encode_mxfp4(w, ties=ties)


# ----------------------------------------------------------------------------- edge numerics

@mutant("rms_norm_overflow_rows_zero", "edge", "rms_norm",
        lambda: dict(x=np.array([[3e19, -1e19, 2e19, 5.0]], np.float32), weight=np.ones(4, np.float32)))
def _(x, weight, *, eps=1e-5, cast_before_scale=False):
    dt = R.rms_norm(x, weight, eps=eps).dtype  # no rescue: x^2 overflows, the row normalises to zeros
    t = np.asarray(x).astype(dt)
    with np.errstate(over="ignore"):
        return t / np.sqrt((t * t).mean(-1, keepdims=True) + dt.type(eps)) * np.asarray(weight).astype(dt)


@mutant("layer_norm_overflow_rows_nan", "edge", "layer_norm",
        lambda: dict(x=np.array([[3e19, -1e19, 2e19, 5.0]], np.float32), weight=np.ones(4, np.float32),
                     bias=np.zeros(4, np.float32)))
def _(x, weight, bias, *, eps=1e-5):
    dt = R.layer_norm(x, weight, bias, eps=eps).dtype  # no rescue: the variance overflows
    t = np.asarray(x).astype(dt)
    c = t - t.mean(-1, keepdims=True)
    with np.errstate(over="ignore"):
        return c / np.sqrt((c * c).mean(-1, keepdims=True) + dt.type(eps)) * np.asarray(weight).astype(dt) \
            + np.asarray(bias).astype(dt)


@mutant("softmax_no_max_shift", "edge", "softmax", lambda: dict(x=np.array([[1000.0, 0.0, -5.0]])))
def _(x, axis=-1):
    x = np.asarray(x, dtype=np.result_type(x, np.float32))
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


@mutant("softmax_with_sinks_no_max_shift", "edge", "softmax_with_sinks", lambda: dict(scores=np.array([[[1000.0, 0.0]]]), sinks=None))
def _(scores, sinks=None):
    s = np.asarray(scores, dtype=np.result_type(scores, np.float32))
    e = np.exp(s)
    den = e.sum(-1, keepdims=True)
    if sinks is not None:
        den = den + np.exp(np.asarray(sinks, dtype=s.dtype))[:, None, None]
    return e / den


@mutant("softmax_all_neg_inf_nan", "edge", "softmax_with_sinks", lambda: dict(scores=np.array([[[-np.inf, -np.inf], [0.0, 1.0]]]), sinks=None))
def _(scores, sinks=None):
    s = np.asarray(scores, dtype=np.result_type(scores, np.float32))
    m = s.max(-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        e = np.exp(s - m)
        den = e.sum(-1, keepdims=True)
        if sinks is not None:
            den = den + np.exp(np.asarray(sinks, dtype=s.dtype)[:, None, None] - m)
        return e / den


@mutant("attention_hidden_nan_leaks", "edge", "attention",
        lambda: dict(q=_qkv()[0], k=_qkv()[1], v=np.where(np.arange(6)[:, None, None] == 5, np.nan, _qkv()[2])))
def _(q, k, v, **kw):
    p = R.attention_probs(q, k, v, **kw)  # [Hq, Tq, Tk]
    vv = np.repeat(np.asarray(v), q.shape[-2] // v.shape[-2], axis=-2)
    with np.errstate(invalid="ignore"):
        return np.einsum("hqk,khd->qhd", p, vv.astype(p.dtype))  # 0 * NaN = NaN on hidden keys


@mutant("attention_neg_scores_underflow", "edge", "attention_probs",
        lambda: dict(q=np.full((2, 1, 4), 30.0), k=np.array([[[-30.0] * 4], [[-31.0] * 4]]), causal=False))
def _(q, k, v=None, **kw):
    s = R.attention_scores(q, k, **kw)  # [Hq, Tq, Tk]
    e = np.exp(s)  # no max shift: every score very negative -> all underflow
    with np.errstate(invalid="ignore"):
        return e / e.sum(-1, keepdims=True)


@mutant("silu_overflow_nan", "edge", "silu", lambda: dict(x=np.array([[-1000.0, 1000.0, 1.0]])))
def _(x):
    x = np.asarray(x, dtype=np.result_type(x, np.float32))
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        return x * e / (1 + e)


@mutant("gelu_tanh_overflow", "edge", "gelu", lambda: dict(x=np.array([[-1000.0, 1000.0, 1.0]])))
def _(x, *, approximate="tanh"):
    if approximate != "tanh":
        return R.gelu(x, approximate=approximate)
    x = np.asarray(x, dtype=np.result_type(x, np.float32))
    z = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    with np.errstate(over="ignore", invalid="ignore"):
        t = (np.exp(2 * z) - 1) / (np.exp(2 * z) + 1)
    return 0.5 * x * (1 + t)


@mutant("layer_norm_one_pass_variance", "edge", "layer_norm",
        lambda: dict(x=1000.0 + g.standard_normal((2, 16)) * 1e-3, weight=np.ones(16), bias=np.zeros(16)))
def _(x, weight, bias, *, eps=1e-5):
    dt = R.layer_norm(x, weight, bias, eps=eps).dtype
    t = np.asarray(x).astype(dt)
    mu = t.mean(-1, keepdims=True)
    var = np.maximum((t * t).mean(-1, keepdims=True) - mu * mu, 0)
    return (t - mu) / np.sqrt(var + dt.type(eps)) * np.asarray(weight).astype(dt) + np.asarray(bias).astype(dt)


@mutant("moe_combine_duplicate_slot_once", "edge", "moe_combine",
        lambda: dict(x=g.standard_normal((2, 3)), weights=np.full((2, 2), 0.5), indices=np.array([[1, 1], [0, 1]]),
                     expert_fn=lambda e, r: r * (e + 1)))
def _(x, weights, indices, expert_fn):
    idx = np.asarray(indices).copy()
    w = np.array(weights, dtype=np.float64)
    dup = idx[..., 1:] == idx[..., :1]
    w[..., 1:] = np.where(dup, 0.0, w[..., 1:])  # a duplicated expert counted once
    return R.moe_combine(x, w.astype(np.asarray(weights).dtype), idx, expert_fn)


@mutant("gpt_oss_experts_duplicate_slot_once", "edge", "gpt_oss_experts",
        lambda: dict(t=g.standard_normal((2, 4)), weights=np.full((2, 2), 0.5), indices=np.array([[1, 1], [0, 1]]),
                     mlp1_weight=g.standard_normal((2, 8, 4)), mlp1_bias=np.zeros((2, 8)),
                     mlp2_weight=g.standard_normal((2, 4, 4)), mlp2_bias=np.zeros((2, 4))))
def _(t, weights, indices, *a, **kw):
    idx = np.asarray(indices)
    w = np.array(weights, dtype=np.float64)
    w[..., 1:] = np.where(idx[..., 1:] == idx[..., :1], 0.0, w[..., 1:])
    return R.gpt_oss_experts(t, w.astype(np.asarray(weights).dtype), idx, *a, **kw)


@mutant("linear_empty_rows_error", "edge", "linear", lambda: dict(x=np.zeros((0, 4)), weight=np.ones((3, 4)), bias=None))
def _(x, weight, bias=None):
    x = np.asarray(x)
    if x.shape[0] == 0:
        x.max()  # raises on an empty input
    return R.linear(x, weight, bias)


@mutant("decode_e8m0_clamped", "edge", "decode_e8m0", lambda: dict(scales=np.array([[254, 255]], np.uint8)))
def _(scales, *, bias=127):
    return R.decode_e8m0(np.minimum(np.asarray(scales), 254), bias=bias)


@mutant("greedy_inf_ignored", "edge", "greedy", lambda: dict(logits=np.array([[1.0, np.inf, 2.0]])))
def _(logits):
    x = np.asarray(logits, dtype=np.float64)
    return np.argmax(np.where(np.isfinite(x), x, -np.inf), axis=-1)


# ----------------------------------------------------------------------------- precision

def _f32_inside(op):
    ref = getattr(R, op)

    def fn(*args, **kwargs):
        args = [np.asarray(a).astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a for a in args]
        kwargs = {k: (np.asarray(v).astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
                  for k, v in kwargs.items()}
        out = ref(*args, **kwargs)
        return tuple(np.asarray(o).astype(np.float64) if np.asarray(o).dtype == np.float32 else o for o in out) \
            if isinstance(out, tuple) else np.asarray(out).astype(np.float64)
    return fn


for _op, _w in [("linear", lambda: dict(x=g.standard_normal((3, 33)), weight=g.standard_normal((5, 33)), bias=None)),
                ("softmax", lambda: dict(x=g.standard_normal((3, 33)) * 3)),
                ("rms_norm", lambda: dict(x=g.standard_normal((3, 33)), weight=np.ones(33))),
                ("layer_norm", lambda: dict(x=g.standard_normal((3, 33)), weight=np.ones(33), bias=np.zeros(33))),
                ("attention", lambda: _aw()),
                ("gelu", lambda: dict(x=np.linspace(-3, 3, 33))),
                ("silu", lambda: dict(x=np.linspace(-3, 3, 33))),
                ("swiglu_mlp", lambda: dict(x=g.standard_normal((2, 8)), gate_weight=g.standard_normal((16, 8)),
                                            up_weight=g.standard_normal((16, 8)), down_weight=g.standard_normal((8, 16)))),
                ("apply_rope", lambda: dict(x=g.standard_normal((4, 2, 8)), cos=np.cos(g.uniform(0, 6, (4, 4))),
                                            sin=np.sin(g.uniform(0, 6, (4, 4)))))]:
    CORPUS.append(Mutant(f"{_op}_float32_inside_float64", "precision", _op, _f32_inside(_op), _w))


@mutant("inv_freq_float32_inside", "precision", "inv_freq_default", lambda: dict(head_dim=64, base=10000.0))
def _(head_dim, *, base=10000.0):
    j = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return (np.float32(1.0) / np.float32(base) ** j).astype(np.float64)


@mutant("rope_angle_float32", "precision", "rope_cos_sin", lambda: dict(inv_freq=R.inv_freq_default(64), positions=np.arange(100000, 100004)))
def _(inv_freq, positions, *, attention_scaling=1.0, angle_dtype=np.float64):
    return R.rope_cos_sin(inv_freq, positions, attention_scaling=attention_scaling, angle_dtype=np.float32)


@mutant("rms_norm_weight_before_normalise_rounded", "precision", "rms_norm",
        lambda: dict(x=g.standard_normal((2, 8)), weight=1 + 0.1 * g.standard_normal(8)))
def _(x, weight, **kw):
    y = R.rms_norm(x, weight, **kw)
    return y.astype(np.float16).astype(y.dtype)  # an intermediate rounded to half precision


# ----------------------------------------------------------------------------- shape and dtype

@mutant("linear_returns_float32", "shape_dtype", "linear", lambda: dict(x=g.standard_normal((2, 4)), weight=g.standard_normal((3, 4))))
def _(x, weight, bias=None):
    return R.linear(x, weight, bias).astype(np.float32)


@mutant("embedding_returns_float32", "shape_dtype", "embedding", lambda: dict(ids=np.array([1, 2]), weight=g.standard_normal((4, 3))))
def _(ids, weight):
    return R.embedding(ids, weight).astype(np.float32)


@mutant("attention_heads_first", "shape_dtype", "attention", lambda: _aw(tq=6, tk=6))
def _(q, k, v, **kw):
    return np.swapaxes(R.attention(q, k, v, **kw), -2, -3)


@mutant("attention_values_heads_first", "shape_dtype", "attention_values",
        lambda: dict(probs=np.full((4, 3, 3), 1 / 3), v=g.standard_normal((3, 2, 4))))
def _(probs, v, *, visible=None):
    return np.swapaxes(R.attention_values(probs, v, visible=visible), -2, -3)


@mutant("decode_mxfp4_dtype_ignored", "shape_dtype", "decode_mxfp4",
        lambda: dict(blocks=g.integers(0, 256, (2, 1, 16), dtype=np.uint8), scales=np.full((2, 1), 127, np.uint8), dtype=np.float64))
def _(blocks, scales, *, dtype=np.float32, **kw):
    return R.decode_mxfp4(blocks, scales, **kw)


@mutant("top_k_filter_widens", "shape_dtype", "top_k_filter", lambda: dict(logits=g.standard_normal((2, 5)).astype(np.float32), k=2))
def _(logits, k):
    return R.top_k_filter(np.asarray(logits, dtype=np.float64), k)


@mutant("rope_cos_sin_float32_tables", "shape_dtype", "rope_cos_sin",
        lambda: dict(inv_freq=R.inv_freq_default(8), positions=np.arange(4)))
def _(inv_freq, positions, **kw):
    c, s = R.rope_cos_sin(inv_freq, positions, **kw)
    return c.astype(np.float32), s.astype(np.float32)


@mutant("repeat_kv_tiled", "shape_dtype", "repeat_kv", lambda: dict(k=g.standard_normal((3, 2, 4)), n_rep=2))
def _(k, n_rep):
    return np.concatenate([np.asarray(k)] * n_rep, axis=-2)


@mutant("softmax_keepdims_lost", "shape_dtype", "softmax", lambda: dict(x=g.standard_normal((3, 1))))
def _(x, axis=-1):
    return np.squeeze(R.softmax(x, axis=axis), axis=-1) if np.shape(x)[-1] == 1 else R.softmax(x, axis=axis)
