"""Activations and MLPs: gelu, silu, swiglu, swiglu_oss, gelu_mlp, swiglu_mlp.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""

import math

import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    Budget,
    ELEM,
    FLOAT_MAX,
    LIBM_ULP,
    Misreading,
    as_dtype,
    case,
    each,
    exact,
    f64,
    gamma,
    lib_rel,
    linear_bound,
    make_rng,
    normal_values,
    oss_parts,
    scales,
    sigmoid,
    sizes,
    with_knobs,
)


# ----------------------------------------------------------------------------- budgets


def _gelu_parts(x, approximate, u):
    """(y, derivative, bound) of gelu at x (float64)."""
    lib = lib_rel(u)
    if approximate == "tanh":
        c, a = math.sqrt(2 / math.pi), 0.044715
        z = c * (x + a * x**3)
        t = np.tanh(z)
        y = 0.5 * x * (1 + t)
        sech2 = 1 - t * t
        # tanh form: x^3 (2), * a (1 + the constant's 1), + x (1), * c (1 + 1): z within gamma_7;
        # tanh: lib; 1 + t, * x: 2u |y|. Sigmoid form x sigmoid(2z): (1 - s)|2z| gamma_7 + (4L+3) u.
        b_tanh = 2 * u * np.abs(y) + 0.5 * np.abs(x) * (sech2 * np.abs(z) * gamma(7, u) + lib * np.abs(t))
        s2 = sigmoid(2 * z)
        b_sig = np.abs(y) * ((1 - s2) * np.abs(2 * z) * gamma(7, u) + (2 * lib + 3 * u))
        dy = 0.5 * (1 + t) + 0.5 * x * sech2 * c * (1 + 3 * a * x * x)
        return y, dy, np.maximum(b_tanh, b_sig)
    w = x / math.sqrt(2)
    e = np.vectorize(math.erf, otypes=[np.float64])(w) if w.size else w
    y = 0.5 * x * (1 + e)
    derf = 2 / math.sqrt(math.pi) * np.exp(-w * w)
    # w = x / sqrt(2): gamma_2; erf: LIB_ULP["erf"] ulps; 1 + e, * x: 2u |y|. The CDF form
    # x * Phi(x), Phi = erfc(-w) / 2 from an erf-class library (PyTorch's CPU gelu kernel is of this
    # kind: ~3.6 u |x| near 0, measured by golden/torch_adapter): Phi within LIB_ULP["erf"] ulps.
    lib_erf = lib_rel(u, "erf")
    b_erf = 0.5 * np.abs(x) * (derf * np.abs(w) * gamma(2, u) + lib_erf * np.abs(e))
    b_cdf = 0.5 * np.abs(x) * (derf * np.abs(w) * gamma(2, u) + lib_erf * np.abs(1 + e))
    b = 2 * u * np.abs(y) + np.maximum(b_erf, b_cdf)
    dy = 0.5 * (1 + e) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return y, dy, b


def _b_gelu(i, y, u, ops=reference_ops):
    x = f64(i["x"])
    return _gelu_parts(x, i["approximate"], u)[2], {"u": u, "LIBM_ULP": LIBM_ULP}


def silu_rel(u):
    # sigmoid = 1/(1+e) or e/(1+e), e = exp(-|x|): <= 2 lib + 2u; * x: u.
    return 2 * lib_rel(u) + 3 * u


def _b_silu(i, y, u, ops=reference_ops):
    x = f64(i["x"])
    # an exp(-x) that overflows gives 0 instead of |x e^x|: below |x| / max once e^-x > max, and within
    # 2 |x| / max where the library's exp overflows for an argument just under ln(max) (its own error).
    return silu_rel(u) * np.abs(y) + 2 * np.abs(x) / FLOAT_MAX[u], {"u": u, "c": silu_rel(u) / u}


def _b_swiglu(i, y, u, ops=reference_ops):
    g, p = f64(i["gate"]), f64(i["up"])
    return (silu_rel(u) + u) * np.abs(y) + 2 * np.abs(g * p) / FLOAT_MAX[u], {"u": u, "c": silu_rel(u) / u + 1}


def _b_swiglu_oss(i, y, u, ops=reference_ops):
    return oss_parts(f64(i["h"]), float(i["alpha"]), i["limit"], i["layout"], u)[3], {"u": u}


def _b_gelu_mlp(i, y, u, ops=reference_ops):
    x = f64(i["x"])
    fw, fb, pw, pb = f64(i["fc_weight"]), f64(i["fc_bias"]), f64(i["proj_weight"]), f64(i["proj_bias"])
    h = x @ fw.T + (0 if fb is None else fb)
    bh = linear_bound(x, fw, fb, None, u)
    a, da, ba = _gelu_parts(h, i["approximate"], u)
    return linear_bound(a, pw, pb, np.abs(da) * bh + ba, u), {"u": u, "d": x.shape[-1], "F": fw.shape[0]}


def _b_swiglu_mlp(i, y, u, ops=reference_ops):
    x = f64(i["x"])
    gw, uw, dw = f64(i["gate_weight"]), f64(i["up_weight"]), f64(i["down_weight"])
    g, p = x @ gw.T, x @ uw.T
    bg, bp = linear_bound(x, gw, None, None, u), linear_bound(x, uw, None, None, u)
    s = sigmoid(g)
    silu = g * s
    a = silu * p
    ba = np.abs(s * (1 + g * (1 - s)) * p) * bg + np.abs(silu) * bp + (silu_rel(u) + u) * np.abs(a)
    return linear_bound(a, dw, None, ba, u), {"u": u, "d": x.shape[-1], "I": gw.shape[0]}


BF16_ULP = 2.0 ** -8  # relative spacing of bfloat16 values (8 significand bits)


def _b_swiglu_oss_bf16(i, y, u, ops=reference_ops):
    # Defined in float32 arithmetic: NumPy's own steps give the same bits. Another exp may round one
    # float32 ulp differently and flip a bfloat16 rounding: one bf16 ulp per rounded step (5), each
    # passed on with a factor <= 2 (|d sigmoid| <= 1/4 times |alpha g|, products): 8 bf16 ulps of |y|,
    # plus one bf16 ulp of the largest |y| in the row for values near 0.
    yy = np.abs(np.asarray(y, dtype=np.float64))
    return 8 * BF16_ULP * (yy + BF16_ULP * yy.max(axis=-1, keepdims=True)), {"bf16_ulp": BF16_ULP}


BUDGETS = [
    Budget("gelu", "ulp",
           "tanh: |err| <= max(2u|y| + |x|/2 (sech^2(z)|z| gamma_7 + 2L u|t|), |y| ((1-s)|2z| gamma_7 + (4L+3)u)); "
           "none: 2u|y| + |x|/2 (erf'(w)|w| gamma_2 + 2L u max(|erf w|, |1 + erf w|)) (erf or CDF form)",
           ELEM + "; the inner argument's roundings are counted and passed through the function's "
           "condition number; the tanh and the x*sigmoid(2z) forms are both admitted", _b_gelu),
    Budget("silu", "ulp", "|err| <= (4L+3) u |y| + 2 |x| / max_float",
           ELEM + "; sigmoid from exp(-|x|): 2 lib + 2u, times x: u; an exp(-x) that overflows gives 0",
           _b_silu),
    Budget("swiglu", "ulp", "|err| <= (4L+4) u |y| + 2 |gate up| / max_float", ELEM + "; silu then one product",
           _b_swiglu),
    Budget("swiglu_oss", "ulp", "|err| <= |y| ((1-s)|alpha g| gamma_2 + (4L+5) u) + 2 |g (l+1)| / max_float",
           ELEM + "; clamps are exact; alpha*g (2 roundings) through sigmoid's condition (1-s)|z|; "
           "sigmoid 2 lib + 2u; *g, +1, * : 3u", _b_swiglu_oss),
    Budget("swiglu_oss_bf16", "ulp", "|err| <= 8 bf16 ulps (|y| + 2^-8 max|y|)",
           "float32 steps each rounded to bfloat16 (spec/precision.md row 17); one bf16 flip per step",
           _b_swiglu_oss_bf16),
    Budget("gelu_mlp", "error_model", "linear bound, through |gelu'(h)|, gelu's bound, then the second linear",
           "composition of linear, gelu, linear; each stage's input error times its derivative", _b_gelu_mlp),
    Budget("swiglu_mlp", "error_model",
           "linear bounds B_g, B_p; B_a = |silu'(g) p| B_g + |silu(g)| B_p + (4L+4) u |a|; then linear",
           "composition of two linears, swiglu, linear", _b_swiglu_mlp),
]


# ----------------------------------------------------------------------------- cases


@case("gelu", st.fixed_dictionaries(dict(n=sizes(), scale=scales(), approximate=st.sampled_from(("tanh", "none")))),
     [dict(n=33, scale=3.0, approximate="tanh"), dict(n=33, scale=3.0, approximate="none")])
def _(c, g, dt, seed):
    return dict(x=as_dtype(normal_values(g, (2, c["n"]), 2 * c["scale"]), dt), approximate=c["approximate"])


@case("silu", st.fixed_dictionaries(dict(n=sizes(), scale=scales())), [dict(n=33, scale=3.0)])
def _(c, g, dt, seed):
    return dict(x=as_dtype(normal_values(g, (2, c["n"]), 3 * c["scale"]), dt))


@case("swiglu", st.fixed_dictionaries(dict(n=sizes(), scale=scales())), [dict(n=33, scale=3.0)])
def _(c, g, dt, seed):
    return dict(gate=as_dtype(normal_values(g, (2, c["n"]), 3 * c["scale"]), dt), up=as_dtype(normal_values(g, (2, c["n"]), c["scale"]), dt))


@case("swiglu_oss", st.fixed_dictionaries(dict(n=sizes(), scale=st.sampled_from((4.0, 1.0, 1e-3, 30.0)),
                                              layout=st.sampled_from(("interleaved", "interleaved", "halves")),
                                              limit=st.sampled_from((7.0, 7.0, None, 3.0)),
                                              alpha=st.sampled_from((1.702, 1.702, 1.0)))),
     [dict(n=16, scale=6.0, layout="interleaved", limit=7.0), dict(n=8, scale=4.0, layout="interleaved", limit=None, alpha=1.0)])
def _(c, g, dt, seed):
    return dict(h=as_dtype(normal_values(g, (3, 2 * c["n"]), c["scale"]), dt), layout=c["layout"], limit=c["limit"],
                alpha=c.get("alpha", 1.702))


@case("swiglu_oss_bf16", st.fixed_dictionaries(dict(n=sizes(), scale=st.sampled_from((4.0, 1.0, 1e-3, 30.0)),
                                                   limit=st.sampled_from((7.0, 7.0, None)))),
      [dict(n=16, scale=6.0, limit=7.0)])
def _(c, g, dt, seed):
    h = reference_ops.round_to_storage(normal_values(g, (3, 2 * c["n"]), c["scale"]), "bfloat16")  # bf16-valued, as the model gives
    return dict(h=as_dtype(h, dt), limit=c["limit"])


@case("gelu_mlp", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(1, 3)), d=sizes(edges=(31, 32, 33)),
                                            f=sizes(edges=(31, 32, 33, 128)), bias=st.booleans(),
                                            approximate=st.sampled_from(("tanh", "none")))),
     [dict(t=3, d=8, f=33, bias=True, approximate="tanh")])
def _(c, g, dt, seed):
    d, f = c["d"], c["f"]
    return dict(x=as_dtype(normal_values(g, (c["t"], d), 1.0), dt), fc_weight=as_dtype(normal_values(g, (f, d), 2 / np.sqrt(d)), dt),
                fc_bias=as_dtype(normal_values(g, f, 0.5), dt) if c["bias"] else None,
                proj_weight=as_dtype(normal_values(g, (d, f), 1 / np.sqrt(f)), dt),
                proj_bias=as_dtype(normal_values(g, d, 0.5), dt) if c["bias"] else None, approximate=c["approximate"])


@case("swiglu_mlp", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(1, 3)), d=sizes(edges=(31, 32, 33)),
                                              i=sizes(edges=(31, 32, 33, 128)))),
     [dict(t=3, d=8, i=33)])
def _(c, g, dt, seed):
    d, i = c["d"], c["i"]
    return dict(x=as_dtype(normal_values(g, (c["t"], d), 1.0), dt), gate_weight=as_dtype(normal_values(g, (i, d), 2 / np.sqrt(d)), dt),
                up_weight=as_dtype(normal_values(g, (i, d), 1 / np.sqrt(d)), dt), down_weight=as_dtype(normal_values(g, (d, i), 1 / np.sqrt(i)), dt))


# ----------------------------------------------------------------------------- misreadings


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


def _ex_swiglu():
    g = make_rng(2)
    return "swiglu_oss", dict(h=g.uniform(-12, 12, size=(6, 16)))


def _ex_gelu():
    return "gelu", dict(x=np.linspace(-4, 4, 33))


MISREADINGS = [
    Misreading("swiglu_no_clamp", "gpt-oss SwiGLU without the clamp at limit 7",
            with_knobs(("swiglu_oss", "swiglu_oss_bf16", "gpt_oss_experts"), limit=None), _ex_swiglu),
    Misreading("swiglu_no_plus_one", "gpt-oss SwiGLU multiplies by lin instead of (lin + 1)",
            {"swiglu_oss": _swiglu_no_plus_one}, _ex_swiglu),
    Misreading("swiglu_silu", "gpt-oss SwiGLU with SiLU (alpha = 1) instead of alpha = 1.702",
            with_knobs(("swiglu_oss", "swiglu_oss_bf16", "gpt_oss_experts"), alpha=1.0), _ex_swiglu),
    Misreading("swiglu_halves", "gpt-oss SwiGLU splits gate/linear into halves instead of interleaved columns",
            with_knobs(("swiglu_oss",), layout="halves"), _ex_swiglu),
    Misreading("gelu_erf_for_tanh", "exact erf GELU where the model uses the tanh approximation (GPT-2)",
            with_knobs(("gelu", "gelu_mlp"), approximate="none"), _ex_gelu),
]
