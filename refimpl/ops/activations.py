"""GELU, SiLU, the SwiGLU variants and the two dense MLPs (spec/activations.md)."""

import math

import numpy as np

from .._validate import as_float_array, real, require
from ..precision import compute_dtype, round_bf16
from .linear import linear

__all__ = ["gelu", "silu", "swiglu", "swiglu_oss", "gelu_mlp", "swiglu_mlp", "check_gelu", "check_silu",
           "check_swiglu", "check_swiglu_oss", "check_gelu_mlp", "check_swiglu_mlp", "swiglu_oss_bf16",
           "check_swiglu_oss_bf16"]

GELU_APPROXIMATIONS = ("tanh", "none")
SWIGLU_LAYOUTS = ("interleaved", "halves")

_erf = np.frompyfunc(math.erf, 1, 1)


def _float_in(x, name="x"):
    a = as_float_array(x, name)
    dt = compute_dtype(a)
    return a.astype(dt, copy=False), dt


def check_gelu(x, *, approximate="tanh"):
    """The argument checks of gelu (ArgumentError; returns None)."""
    require(approximate in GELU_APPROXIMATIONS, "approximate", f"one of {GELU_APPROXIMATIONS}", repr(approximate))
    as_float_array(x, "x")


def check_silu(x):
    """The argument checks of silu."""
    as_float_array(x, "x")


def check_swiglu(gate, up):
    """The argument checks of swiglu: float arrays of equal shapes."""
    g = as_float_array(gate, "gate")
    u = as_float_array(up, "up")
    require(u.shape == g.shape, "up", f"shape {g.shape} (shape of gate)", f"shape {u.shape}")


def check_swiglu_oss(h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    """The argument checks of swiglu_oss."""
    require(layout in SWIGLU_LAYOUTS, "layout", f"one of {SWIGLU_LAYOUTS}", repr(layout))
    real(alpha, "alpha", low=0.0, what="a finite number > 0")
    if limit is not None:
        real(limit, "limit", low=0.0, what="a finite number > 0 or None")
    h = as_float_array(h, "h", min_ndim=1)
    require(h.shape[-1] % 2 == 0, "h", "an even last dimension (gate and linear parts)", f"shape {h.shape}")


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp is only taken of -|z| <= 0."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def gelu(x, *, approximate="tanh"):
    """GELU, elementwise.

    approximate="tanh" (default; GPT-2's ``gelu`` in openai/gpt-2 src/model.py,
    HF ``gelu_new``):  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    approximate="none" (exact; torch ``nn.GELU()``): 0.5 x (1 + erf(x / sqrt(2))).

    Dtype: computed in and returns ``compute_dtype(x)``. For "none", erf is
    evaluated per element in float64 by the C library (``math.erf``, < 1 ulp)
    and rounded once to the compute dtype. NaN propagates; gelu(+inf) = +inf;
    gelu(-inf) is NaN for "tanh" (-inf * 0) and for "none" (-inf * 0).
    """
    check_gelu(x, approximate=approximate)
    x, dt = _float_in(x)
    half = dt.type(0.5)
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            c = dt.type(math.sqrt(2.0 / math.pi))
            inner = c * (x + dt.type(0.044715) * x**3)
            return half * x * (1 + np.tanh(inner))
        z = (x.astype(np.float64) / math.sqrt(2.0)).ravel()  # [N]
        e = _erf(z).astype(np.float64).reshape(x.shape).astype(dt)  # [x.shape]
        return half * x * (1 + e)


def silu(x):
    """SiLU (swish with beta 1): x * sigmoid(x), elementwise.

    sigmoid(x) is evaluated as 1/(1+exp(-x)) for x >= 0 and exp(x)/(1+exp(x))
    for x < 0, so exp never overflows (no warning at |x| = 1000; silu(1000) =
    1000, silu(-1000) = -0). silu(-inf) = -inf * 0 = NaN (IEEE, as torch).
    Computed in and returns ``compute_dtype(x)``.
    """
    check_silu(x)
    x, _ = _float_in(x)
    with np.errstate(invalid="ignore"):
        return x * _sigmoid(x)


def swiglu(gate, up):
    """SwiGLU gating: silu(gate) * up, elementwise; gate and up have equal shapes.

    LLaMA-family MLP hidden activation (HF ``LlamaMLP``: ``act_fn(gate_proj(x)) * up_proj(x)``).
    Computed in and returns ``compute_dtype(gate, up)``.
    """
    check_swiglu(gate, up)
    g, u = as_float_array(gate, "gate"), as_float_array(up, "up")
    dt = compute_dtype(g, u)
    return silu(g.astype(dt, copy=False)) * u.astype(dt, copy=False)


def swiglu_oss(h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    """gpt-oss clamped SwiGLU on the fused mlp1 output h [..., 2I]; returns [..., I] in ``compute_dtype(h)``.

    layout="interleaved" (released gpt-oss): gate = h[..., 0::2], lin = h[..., 1::2];
    layout="halves" (a known-wrong reading): gate = h[..., :I], lin = h[..., I:]. Then, in order:
      gate = min(gate, limit)          (clamped from above only)
      lin  = clip(lin, -limit, limit)  (clamped on both sides)
      out  = (gate * sigmoid(alpha * gate)) * (lin + 1)
    alpha: finite > 0 (gpt-oss: 1.702). limit: finite > 0 (gpt-oss: 7.0), or None for no
    clamping (a known-wrong variant). NaN propagates through the clamps.
    """
    check_swiglu_oss(h, alpha=alpha, limit=limit, layout=layout)
    h, dt = _float_in(h, "h")
    alpha, limit = float(alpha), None if limit is None else float(limit)
    if layout == "interleaved":
        gate, lin = h[..., 0::2], h[..., 1::2]  # [..., I], [..., I]
    else:
        half = h.shape[-1] // 2
        gate, lin = h[..., :half], h[..., half:]  # [..., I], [..., I]
    if limit is not None:
        gate = np.minimum(gate, dt.type(limit))
        lin = np.clip(lin, dt.type(-limit), dt.type(limit))
    with np.errstate(invalid="ignore", over="ignore"):
        glu = gate * _sigmoid(dt.type(alpha) * gate)
        return glu * (lin + dt.type(1))


def check_gelu_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias, *, approximate="tanh"):
    """The argument checks of gelu_mlp."""
    require(approximate in GELU_APPROXIMATIONS, "approximate", f"one of {GELU_APPROXIMATIONS}", repr(approximate))
    x = as_float_array(x, "x", min_ndim=1)
    fw = as_float_array(fc_weight, "fc_weight")
    pw = as_float_array(proj_weight, "proj_weight")
    require(fw.ndim == 2 and fw.shape[1] == x.shape[-1], "fc_weight", f"shape [F, {x.shape[-1]}]", f"shape {fw.shape}")
    require(pw.ndim == 2 and pw.shape[1] == fw.shape[0], "proj_weight", f"shape [d_out, {fw.shape[0]}]", f"shape {pw.shape}")
    if fc_bias is not None:
        fb = as_float_array(fc_bias, "fc_bias")
        require(fb.shape == (fw.shape[0],), "fc_bias", f"shape ({fw.shape[0]},)", f"shape {fb.shape}")
    if proj_bias is not None:
        pb = as_float_array(proj_bias, "proj_bias")
        require(pb.shape == (pw.shape[0],), "proj_bias", f"shape ({pw.shape[0]},)", f"shape {pb.shape}")


def check_swiglu_oss_bf16(h, *, alpha=1.702, limit=7.0):
    """The argument checks of swiglu_oss_bf16: those of swiglu_oss (interleaved)."""
    check_swiglu_oss(h, alpha=alpha, limit=limit)


def swiglu_oss_bf16(h, *, alpha=1.702, limit=7.0):
    """swiglu_oss (interleaved) in the official gpt-oss reference's step order, each step rounded to bf16.

    h: [..., 2I], taken as float32 (exact for the bfloat16-valued input the bfloat16 dtype gives).
    With R = round to the nearest bfloat16 (refimpl.precision.round_bf16) and every step in float32:
      g = min(h[..., 0::2], limit), l = clip(h[..., 1::2], -limit, limit)   (exact; limit None: none)
      z = R(fl32(alpha) g); s = R(sigmoid(z)) (sigmoid = 1 / (1 + exp(-z))); glu = R(g s)
      out = R(glu R(l + 1))
    Returns [..., I] float32 holding bfloat16 values (spec/precision.md row 17).
    """
    check_swiglu_oss_bf16(h, alpha=alpha, limit=limit)
    h = as_float_array(h, "h").astype(np.float32)
    g, lin = h[..., 0::2], h[..., 1::2]  # [..., I], [..., I]
    if limit is not None:
        g = np.minimum(g, np.float32(limit))
        lin = np.clip(lin, np.float32(-limit), np.float32(limit))
    z = round_bf16(np.float32(alpha) * g)
    with np.errstate(over="ignore"):
        sig = round_bf16(np.float32(1) / (np.float32(1) + np.exp(-z)))
    glu = round_bf16(g * sig)
    return round_bf16(glu * round_bf16(lin + np.float32(1)))


def gelu_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias, *, approximate="tanh"):
    """GPT-2 MLP: proj(gelu(fc(x))) = gelu(x @ fc_weight.T + fc_bias) @ proj_weight.T + proj_bias.

    x: [..., d]; fc_weight: [F, d] (GPT-2: F = 4d, ``mlp.c_fc`` transposed from
    Conv1D); fc_bias: [F] or None; proj_weight: [d_out, F] (``mlp.c_proj``);
    proj_bias: [d_out] or None. approximate: as in ``gelu`` (GPT-2: "tanh").
    Each step follows ``linear``'s dtype rule. Returns [..., d_out].
    """
    check_gelu_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias, approximate=approximate)
    x, fw, pw = as_float_array(x, "x"), as_float_array(fc_weight, "fc_weight"), as_float_array(proj_weight, "proj_weight")
    h = gelu(linear(x, fw, fc_bias), approximate=approximate)  # [..., F]
    return linear(h, pw, proj_bias)  # [..., d_out]


def check_swiglu_mlp(x, gate_weight, up_weight, down_weight):
    """The argument checks of swiglu_mlp."""
    x = as_float_array(x, "x", min_ndim=1)
    gw = as_float_array(gate_weight, "gate_weight")
    uw = as_float_array(up_weight, "up_weight")
    dw = as_float_array(down_weight, "down_weight")
    require(gw.ndim == 2 and gw.shape[1] == x.shape[-1], "gate_weight", f"shape [I, {x.shape[-1]}]", f"shape {gw.shape}")
    require(uw.shape == gw.shape, "up_weight", f"shape {gw.shape} (shape of gate_weight)", f"shape {uw.shape}")
    require(dw.ndim == 2 and dw.shape[1] == gw.shape[0], "down_weight", f"shape [d_out, {gw.shape[0]}]", f"shape {dw.shape}")


def swiglu_mlp(x, gate_weight, up_weight, down_weight):
    """LLaMA MLP: down(silu(gate(x)) * up(x)), no biases.

    x: [..., d]; gate_weight, up_weight: [I, d] (HF ``mlp.gate_proj`` /
    ``mlp.up_proj``); down_weight: [d_out, I] (``mlp.down_proj``).
    Each step follows ``linear``'s dtype rule. Returns [..., d_out].
    """
    check_swiglu_mlp(x, gate_weight, up_weight, down_weight)
    x, gw = as_float_array(x, "x"), as_float_array(gate_weight, "gate_weight")
    uw, dw = as_float_array(up_weight, "up_weight"), as_float_array(down_weight, "down_weight")
    a = swiglu(linear(x, gw), linear(x, uw))  # [..., I]
    return linear(a, dw)  # [..., d_out]
