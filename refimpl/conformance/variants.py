"""Known-wrong variants of the reference's own conventions, and the diagnosis that names them.

Each Variant replaces one or more ops by the reference op called with a wrong knob, or by a small
wrapper around it. Two uses: a failing comparison says which known mistake the implementation
matches (`diagnose`), and the suite is run against a backend built from each variant
(`get_backend("misreading:NAME")`) and must fail every one of them.
"""

import inspect
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..errors import RefimplError
from ..ops import ops as reference_ops
from .._validate import is_float_dtype
from .budgets import bind
from .compare import compare

ATTENTION_OPS = ("attention", "attention_probs", "attention_online")
# Ops that take the window / causal / mask knobs: the attention ops, visibility_mask and the bfloat16-mode
# scores (the softmax and the weighted sum of the bfloat16 mode get the -inf pattern / `visible` from them).
WINDOW_OPS = ATTENTION_OPS + ("visibility_mask", "attention_scores")
GPT_OSS_YARN = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                "original_max_position_embeddings": 4096, "truncate": False}


@dataclass(frozen=True)
class Variant:
    """A named known-wrong reading of a convention: `overrides` maps op names to wrong functions.

    example: a function returning (op, inputs) on which this variant's output differs from the
    reference's beyond the op's budget (what the suite's own power check uses).
    """

    name: str
    description: str
    overrides: dict
    example: object = field(default=None, compare=False)

    def ops(self):
        """The reference namespace with this variant's ops swapped in."""
        return SimpleNamespace(**{**vars(reference_ops), **self.overrides})

    def backend(self):
        """A NumPy backend running this variant (named "misreading:<name>")."""
        from refimpl.backends.numpy import NumpyBackend

        return NumpyBackend(self.overrides, name=f"misreading:{self.name}")


def _rewrite(op, change):
    """The reference op with its bound arguments passed through change(kwargs) first."""
    ref = getattr(reference_ops, op)
    sig = inspect.signature(ref)

    def rewrite_inputs(kw):
        """The arguments the reference op is really called with (for the budget of this variant)."""
        kw = bind(op, sig.bind(*(), **kw).arguments)
        change(kw)
        return kw

    def wrong(*args, **kwargs):
        return ref(**rewrite_inputs(sig.bind(*args, **kwargs).arguments))

    wrong.__name__, wrong.__signature__ = op, sig
    wrong.rewrite_inputs = rewrite_inputs
    return wrong


def _set(ops, **values):
    return {op: _rewrite(op, lambda kw: kw.update(values)) for op in ops}


def _each(ops, change):
    return {op: _rewrite(op, change) for op in ops}


# ----------------------------------------------------------------------------- wrappers


def _window_plus_one(kw):
    if kw["window"] is not None:
        kw["window"] = kw["window"] + 1


def _sinks_scaled(kw):
    if kw["sinks"] is not None:
        d = np.shape(kw["q"])[-1]
        scale = 1 / math.sqrt(d) if kw["scale"] is None else kw["scale"]
        kw["sinks"] = np.asarray(kw["sinks"]) * scale


def _swap_pairing(kw):
    kw["pairing"] = "interleaved" if kw["pairing"] == "half" else "half"


def _swap_nibbles(kw):
    kw["nibble_order"] = "high_first" if kw["nibble_order"] == "low_first" else "low_first"


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


def _yarn_rewrite(change):
    def rs(kw):
        r = kw["rope_scaling"]
        if r is not None and r.get("rope_type", r.get("type")) == "yarn":
            kw["rope_scaling"] = change(dict(r), kw)
    return rs


def _yarn_no_concentration(op):
    ref = getattr(reference_ops, op)

    def wrong(*args, **kwargs):
        inv, scaling = ref(*args, **kwargs)
        return inv, 1.0

    wrong.__name__, wrong.__signature__ = op, inspect.signature(ref)
    return wrong


def _yarn_missing_frequencies(head_dim, *, base=10000.0, rope_scaling=None, max_position_embeddings=None):
    r = rope_scaling
    if r is not None and r.get("rope_type", r.get("type")) == "yarn":
        r = None
    return reference_ops.rope_frequencies(head_dim, base=base, rope_scaling=r, max_position_embeddings=max_position_embeddings)


def _yarn_missing_inv(head_dim, *, base, factor, **_):
    return reference_ops.inv_freq_default(head_dim, base=base), 1.0


def _swiglu_no_plus_one(h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    """(gate * sigmoid(alpha gate)) * lin: the reference with lin set to 0 gives the glu part exactly."""
    h = np.asarray(h)
    glu = reference_ops.swiglu_oss(h, alpha=alpha, limit=limit, layout=layout)  # validates; [..., I]
    dt = glu.dtype
    hh = h.astype(dt)
    lin_idx = (slice(1, None, 2) if layout == "interleaved" else slice(h.shape[-1] // 2, None))
    lin = hh[..., lin_idx]  # [..., I]
    h0 = hh.copy()
    h0[..., lin_idx] = 0
    glu = reference_ops.swiglu_oss(h0, alpha=alpha, limit=limit, layout=layout)  # [..., I]
    if limit is not None:
        lin = np.clip(lin, dt.type(-limit), dt.type(limit))
    return glu * lin


def _rms_eps_outside(x, weight, *, eps=1e-5, cast_before_scale=False):
    """x / (sqrt(mean(x^2)) + eps) * weight."""
    dt = reference_ops.rms_norm(x, weight, eps=eps, cast_before_scale=cast_before_scale).dtype  # validates
    t = np.asarray(x).astype(dt)
    rms = np.sqrt((t * t).mean(axis=-1, keepdims=True))  # [..., 1]
    return t / (rms + dt.type(eps)) * np.asarray(weight).astype(dt)


def _layer_norm_unbiased(x, weight, bias, *, eps=1e-5):
    """var * n / (n - 1): the reference with weight * sqrt((n-1)/n) and eps * (n-1)/n (same in exact arithmetic)."""
    n = np.shape(x)[-1] if np.ndim(x) else 1
    r = (n - 1) / n if n else 1.0
    w = np.asarray(weight)
    w = w * math.sqrt(r) if w.dtype.kind == "f" else w
    return reference_ops.layer_norm(x, w, bias, eps=eps * r)


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


def _softmax_all_experts(logits, k):
    return reference_ops.router_softmax_topk(logits, k, renormalize=False)


# ----------------------------------------------------------------------------- example inputs


def _rng(seed):
    return np.random.default_rng(seed)


def _attn_inputs(seed=0, *, t=8, hq=4, hkv=2, d=8, **kw):
    g = _rng(seed)
    q, k, v = (g.standard_normal((t, h, d)) for h in (hq, hkv, hkv))
    return dict(q=q, k=k, v=v, **kw)


def _ex_attention(**kw):
    return lambda: ("attention", _attn_inputs(**kw))


def _ex_rope():
    g = _rng(1)
    cos, sin = reference_ops.rope_cos_sin(reference_ops.inv_freq_default(8), np.arange(5))
    return "apply_rope", dict(x=g.standard_normal((5, 2, 8)), cos=cos, sin=sin)


def _ex_yarn():
    return "rope_frequencies", dict(head_dim=64, base=150000.0, rope_scaling=dict(GPT_OSS_YARN),
                                    max_position_embeddings=131072)


def _ex_swiglu():
    g = _rng(2)
    return "swiglu_oss", dict(h=g.uniform(-12, 12, size=(6, 16)))


def _ex_router():
    return "router_topk_softmax", dict(logits=_rng(3).standard_normal((5, 8)) * 2, k=2)


def _ex_mxfp4():
    g = _rng(4)
    return "decode_mxfp4", dict(blocks=g.integers(0, 256, size=(3, 2, 16), dtype=np.uint8),
                                scales=g.integers(120, 130, size=(3, 2), dtype=np.uint8))


def _ex_rms():
    g = _rng(5)
    return "rms_norm", dict(x=g.standard_normal((3, 16)) * 1e-3, weight=g.standard_normal(16))


def _ex_layer_norm():
    g = _rng(6)
    return "layer_norm", dict(x=g.standard_normal((3, 4)), weight=g.standard_normal(4), bias=g.standard_normal(4))


def _ex_gelu():
    return "gelu", dict(x=np.linspace(-4, 4, 33))


# ----------------------------------------------------------------------------- the list

_ROW_2_MASKED = np.broadcast_to(np.arange(4)[:, None] != 2, (4, 4))  # [Tq, Tk]: query 2 sees no key


_ROPE_FREQ = ("rope_frequencies", "inv_freq_yarn")


def _wrong_l0(r, kw):
    r["original_max_position_embeddings"] = kw.get("max_position_embeddings") or int(
        r["factor"] * (r.get("original_max_position_embeddings") or 4096))
    return r


_LIST = [
    Variant("window_off_by_one", "sliding window sees window + 1 keys (i - window <= j instead of i - window < j)",
            _each(WINDOW_OPS, _window_plus_one), _ex_attention(window=3)),
    Variant("full_causal_on_sliding", "the window is ignored: sliding layers attend causally to everything",
            _set(WINDOW_OPS, window=None), _ex_attention(window=3)),
    Variant("gqa_tiled_heads", "query head h reads kv head h % Hkv (tiled) instead of h // (Hq/Hkv) (repeated)",
            {**_each(ATTENTION_OPS + ("attention_scores",), _gqa_tiled),
             **_each(("attention_values",), _gqa_tiled_values)}, _ex_attention()),
    # sinks_scaled leaves softmax_with_sinks alone: it gets the scores already scaled, and neither D nor
    # the scale is among its arguments, so "sink times the score scale" has no meaning there.
    Variant("sinks_scaled", "the sink logit is multiplied by the 1/sqrt(D) score scale",
            _each(ATTENTION_OPS, _sinks_scaled), _ex_attention(sinks=np.array([2.0, -1.0, 0.5, 3.0]))),
    Variant("sinks_ignored", "attention sinks dropped (no extra denominator term)",
            _set(ATTENTION_OPS + ("softmax_with_sinks",), sinks=None),
            _ex_attention(sinks=np.array([2.0, -1.0, 0.5, 3.0]))),
    Variant("mask_minus_1e10", "masking adds -1e10 instead of -inf: a row with no visible key and no sink "
            "gives the softmax over all keys (uniform in float32) instead of zeros",
            {**{op: _mask_minus_1e10(op) for op in ATTENTION_OPS}, "attention_scores": _mask_minus_1e10_scores},
            _ex_attention(t=4, mask=_ROW_2_MASKED)),
    Variant("rope_interleaved", "RoPE rotates pairs (2j, 2j+1) on half-split weights (pairs (j, j + D/2))",
            _each(("apply_rope", "rope_terms"), _swap_pairing), _ex_rope),
    Variant("yarn_missing", "YaRN scaling ignored (plain RoPE frequencies, no concentration)",
            {"rope_frequencies": _yarn_missing_frequencies, "inv_freq_yarn": _yarn_missing_inv}, _ex_yarn),
    Variant("yarn_wrong_original_length",
            "YaRN built from max_position_embeddings (131072 on gpt-oss) instead of the original 4096",
            {"rope_frequencies": _rewrite("rope_frequencies", _yarn_rewrite(_wrong_l0)),
             "inv_freq_yarn": _rewrite("inv_freq_yarn", lambda kw: kw.update(
                 original_max_position_embeddings=int(kw["factor"] * kw["original_max_position_embeddings"])))},
            _ex_yarn),
    Variant("yarn_truncated", "YaRN ramp bounds floored/ceiled (HF default truncate=True; gpt-oss uses False)",
            {"rope_frequencies": _rewrite("rope_frequencies", _yarn_rewrite(lambda r, kw: {**r, "truncate": True})),
             "inv_freq_yarn": _rewrite("inv_freq_yarn", lambda kw: kw.update(truncate=True))}, _ex_yarn),
    Variant("yarn_no_concentration", "YaRN frequencies without the 0.1 ln(factor) + 1 factor on cos and sin",
            {op: _yarn_no_concentration(op) for op in _ROPE_FREQ}, _ex_yarn),
    Variant("swiglu_no_clamp", "gpt-oss SwiGLU without the clamp at limit 7",
            _set(("swiglu_oss", "gpt_oss_experts"), limit=None), _ex_swiglu),
    Variant("swiglu_no_plus_one", "gpt-oss SwiGLU multiplies by lin instead of (lin + 1)",
            {"swiglu_oss": _swiglu_no_plus_one}, _ex_swiglu),
    Variant("swiglu_silu", "gpt-oss SwiGLU with SiLU (alpha = 1) instead of alpha = 1.702",
            _set(("swiglu_oss", "gpt_oss_experts"), alpha=1.0), _ex_swiglu),
    Variant("swiglu_halves", "gpt-oss SwiGLU splits gate/linear into halves instead of interleaved columns",
            _set(("swiglu_oss",), layout="halves"), _ex_swiglu),
    Variant("softmax_all_experts", "router softmax over all experts, then top-k, not renormalised "
            "(renormalised it would equal top-k-then-softmax exactly)",
            {"router_topk_softmax": _softmax_all_experts}, _ex_router),
    Variant("mxfp4_nibbles_swapped", "MXFP4 element 2i read from the high nibble (high_first)",
            _each(("decode_mxfp4", "mxfp4_linear"), _swap_nibbles), _ex_mxfp4),
    Variant("mxfp4_scale_bias_128", "E8M0 scale decoded as 2^(s - 128): every weight halved",
            {**_set(("decode_mxfp4", "mxfp4_linear"), scale_bias=128), **_set(("decode_e8m0",), bias=128)},
            _ex_mxfp4),
    Variant("rmsnorm_eps_outside", "RMSNorm eps added after the square root: x / (rms + eps)",
            {"rms_norm": _rms_eps_outside}, _ex_rms),
    Variant("layernorm_unbiased_variance", "LayerNorm variance divided by n - 1 (unbiased) instead of n",
            {"layer_norm": _layer_norm_unbiased}, _ex_layer_norm),
    Variant("gelu_erf_for_tanh", "exact erf GELU where the model uses the tanh approximation (GPT-2)",
            _set(("gelu", "gelu_mlp"), approximate="none"), _ex_gelu),
]

VARIANTS = {v.name: v for v in _LIST}


def _widen(v):
    if isinstance(v, np.ndarray) and is_float_dtype(v.dtype):
        return v.astype(np.float64)
    return v


def diagnose(op, inputs, actual, *, budget=None, variants=None):
    """Names of the known-wrong variants whose output matches `actual` within the budget, where the
    reference's does not (an empty list when the reference matches, or when nothing does).
    The reference and the variants are evaluated on the inputs widened exactly to float64 (the oracle).

    op: op name; inputs: its inputs (dict by name or tuple of positional arguments); actual: the
    output under test (NumPy); budget: as for compare; variants: names to try (default all).
    """
    kw = bind(op, inputs)
    kw64 = {k: _widen(v) for k, v in kw.items()}  # the oracle: the same inputs, exactly, in float64
    ref = getattr(reference_ops, op)(**kw64)
    if compare(ref, actual, op=op, budget=budget, inputs=kw).ok:
        return []
    names = []
    for v in (VARIANTS[n] for n in variants) if variants is not None else VARIANTS.values():
        fn = v.overrides.get(op)
        if fn is None:
            continue
        try:
            out = fn(**kw64)
        except RefimplError:
            continue
        seen = getattr(fn, "rewrite_inputs", lambda k: k)(kw)  # the knobs the variant really used
        if compare(out, actual, op=op, budget=budget, inputs=seen, ops=v.ops()).ok:
            names.append(v.name)
        elif budget is None and _widened(op, out) is not None and \
                compare(out, actual, op=op, budget=_widened(op, out), inputs=seen, ops=v.ops()).ok:
            names.append(v.name)
    return names


def _widened(op, variant_out):
    """The op's budget plus (4 LIBM_ULP + 8) u |variant output| per element, for matching a variant
    whose structure differs from the reference's (the table's bound is written for the reference's
    formula, e.g. swiglu_oss's |g s (l + 1)| where the variant computes g s l); None for tuple outputs.
    A diagnosis only: the reference itself is always held to the strict budget."""
    from .budgets import LIBM_ULP, Budget, get_budget

    b = get_budget(op)
    if b.parts or isinstance(variant_out, tuple) or b.bound_fn is None:
        return None
    y_v = np.abs(np.asarray(variant_out, dtype=np.float64))

    def bound(i, y, u, ops=None):
        base, params = b.bound_fn(i, y, u, ops or reference_ops)
        return np.asarray(base) + (4 * LIBM_ULP + 8) * u * y_v, params

    return Budget(b.op, b.kind, b.formula + " + (4L+8) u |y_variant|", b.reason, bound)
