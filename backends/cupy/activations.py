"""gelu, silu, swiglu, swiglu_oss and the dense MLPs on kernels/activations.cu (elementwise)."""

import math

import numpy as np

from .args import F32, I32, I64, as_array, check, grid1, prod, require, storage
from .linear import linear

GELU_APPROXIMATIONS = ("tanh", "none")
SWIGLU_LAYOUTS = ("interleaved", "halves")


def _unary(rt, kernel, x, *extra):
    suf, (xs,) = storage(rt, x)
    n = prod(xs.shape)
    y = rt.empty(xs.shape, np.float32)
    if n:
        rt.launch("activations", f"{kernel}_{suf}", grid1(rt, n), rt.block, xs, y, I64(n), *extra)
    return y


def gelu(rt, x, *, approximate="tanh"):
    """GELU, tanh form (GPT-2) or exact erf form, float32 (refimpl.ops.gelu)."""
    check("gelu", x, approximate=approximate)
    require(approximate in GELU_APPROXIMATIONS, "approximate", f"one of {GELU_APPROXIMATIONS}", repr(approximate))
    return _unary(rt, "gelu", as_array(rt, x, "x"), I32(approximate == "none"))


def silu(rt, x):
    """x * sigmoid(x) with the overflow-free sigmoid, float32 (refimpl.ops.silu)."""
    check("silu", x)
    return _unary(rt, "silu", as_array(rt, x, "x"))


def swiglu(rt, gate, up):
    """silu(gate) * up, float32 (refimpl.ops.swiglu)."""
    check("swiglu", gate, up)
    g, u = as_array(rt, gate, "gate"), as_array(rt, up, "up")
    require(u.shape == g.shape, "up", f"shape {g.shape} (shape of gate)", f"shape {u.shape}")
    suf, (gs, us) = storage(rt, g, u)
    n = prod(gs.shape)
    y = rt.empty(gs.shape, np.float32)
    if n:
        rt.launch("activations", f"swiglu_{suf}", grid1(rt, n), rt.block, gs, us, y, I64(n))
    return y


def _real(v, name, what, ok):
    good = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    require(good and math.isfinite(float(v)) and ok(float(v)), name, what, repr(v))
    return float(v)


def swiglu_oss(rt, h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    """gpt-oss clamped SwiGLU: h [..., 2I] -> [..., I], float32 (refimpl.ops.swiglu_oss)."""
    check("swiglu_oss", h, alpha=alpha, limit=limit, layout=layout)
    require(layout in SWIGLU_LAYOUTS, "layout", f"one of {SWIGLU_LAYOUTS}", repr(layout))
    alpha = _real(alpha, "alpha", "a finite number > 0", lambda v: v > 0)
    if limit is not None:
        limit = _real(limit, "limit", "a finite number > 0 or None", lambda v: v > 0)
    h = as_array(rt, h, "h")
    require(h.ndim >= 1 and h.shape[-1] % 2 == 0, "h", "an even last dimension (gate and linear parts)",
            f"shape {h.shape}")
    suf, (hs,) = storage(rt, h)
    half = hs.shape[-1] // 2
    rows = prod(hs.shape[:-1])
    y = rt.empty(hs.shape[:-1] + (half,), np.float32)
    if rows * half:
        rt.launch("activations", f"swiglu_oss_{suf}", grid1(rt, rows * half), rt.block, hs, y, I64(rows),
                  I32(half), F32(alpha), F32(limit if limit is not None else 0.0), I32(limit is not None),
                  I32(layout == "interleaved"))
    return y


def gelu_mlp(rt, x, fc_weight, fc_bias, proj_weight, proj_bias, *, approximate="tanh"):
    """proj(gelu(fc(x))): linear, gelu and linear kernels (refimpl.ops.gelu_mlp)."""
    check("gelu_mlp", x, fc_weight, fc_bias, proj_weight, proj_bias, approximate=approximate)
    require(approximate in GELU_APPROXIMATIONS, "approximate", f"one of {GELU_APPROXIMATIONS}", repr(approximate))
    fw, pw = as_array(rt, fc_weight, "fc_weight"), as_array(rt, proj_weight, "proj_weight")
    require(pw.ndim == 2 and fw.ndim == 2 and pw.shape[1] == fw.shape[0], "proj_weight",
            f"shape [d_out, {fw.shape[0] if fw.ndim == 2 else '?'}]", f"shape {pw.shape}")
    h = gelu(rt, linear(rt, x, fw, fc_bias), approximate=approximate)
    return linear(rt, h, pw, proj_bias)


def swiglu_mlp(rt, x, gate_weight, up_weight, down_weight):
    """down(silu(gate(x)) * up(x)): linear and swiglu kernels (refimpl.ops.swiglu_mlp)."""
    check("swiglu_mlp", x, gate_weight, up_weight, down_weight)
    gw, uw = as_array(rt, gate_weight, "gate_weight"), as_array(rt, up_weight, "up_weight")
    require(uw.shape == gw.shape, "up_weight", f"shape {gw.shape} (shape of gate_weight)", f"shape {uw.shape}")
    return linear(rt, swiglu(rt, linear(rt, x, gw), linear(rt, x, uw)), down_weight)


KERNELS = {
    "gelu": {"elementwise": gelu},
    "silu": {"elementwise": silu},
    "swiglu": {"elementwise": swiglu},
    "swiglu_oss": {"elementwise": swiglu_oss},
    "gelu_mlp": {"composed": gelu_mlp},
    "swiglu_mlp": {"composed": swiglu_mlp},
}
