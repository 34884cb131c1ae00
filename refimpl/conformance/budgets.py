"""The error budget of every op: ONE table, each entry with its kind, formula, derivation and bound.

A budget bounds |computed - exact| for one implementation computing in a dtype with unit roundoff u
(float64: 2^-53; float32, and float16/bfloat16 inputs computed in float32: 2^-24). Comparing two
implementations (say a float32 backend against the float64 oracle) allows the sum of their two
bounds (triangle inequality), plus u_s |y| for an output stored in a narrow dtype (bfloat16: u_s =
2^-8, float16: 2^-11). Both sides start from the same inputs (the oracle converts the backend's
float32/bfloat16 inputs to float64 exactly), so input rounding is not part of any budget.

Standard model (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., ch. 2-3):
fl(a op b) = (a op b)(1 + d), |d| <= u; gamma_n = n u / (1 - n u) bounds the accumulated relative
error of n roundings, and a dot product of length n in any summation order satisfies
|fl(x.y) - x.y| <= gamma_n sum |x_i y_i| (Higham (3.5)); gamma_a + gamma_b <= gamma_(a+b).
Library functions (exp, tanh, erf, pow, log, cos, sin) are assumed within LIBM_ULP ulps, i.e. a
relative error <= 2 LIBM_ULP u (one ulp of y is at most 2u|y| for normal y). First-order terms
only: products of two error terms are O(u^2) and dropped (they are below u^2 / (1 - n u) gamma).

Kinds: "exact" (bound 0), "ulp" (c u |y| plus a small absolute term, c = a count of roundings) and
"error_model" (a bound that grows with the reduction length and the inputs' scale).
Each bound function gets the op's inputs (a dict of every argument, defaults filled), the expected
output in float64, u, and the ops namespace the expected output follows; it returns (elementwise
bound, dict of the numbers it used).
"""

import inspect
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ArgumentError
from ..ops import OP_NAMES
from ..ops import ops as reference_ops
from ..precision import bfloat16

# NumPy's own accuracy tests hold its float32 SIMD exp/log/sin/cos/tanh to at most 4 ulps against
# float64 (numpy/_core/tests/test_umath_accuracy.py, validation sets umath-validation-set-*.csv;
# test_exp_float32 maxulp=3, test_log_float32 maxulp=4); glibc's double versions are within 1-2 ulps.
LIBM_ULP = 4

_UNIT_ROUNDOFF = {
    np.dtype(np.float64): 2.0**-53,
    np.dtype(np.float32): 2.0**-24,
    np.dtype(np.float16): 2.0**-11,
    bfloat16: 2.0**-8,
}
_MAX = {2.0**-53: float(np.finfo(np.float64).max), 2.0**-24: float(np.finfo(np.float32).max)}
_TINY = {2.0**-53: float(np.finfo(np.float64).tiny), 2.0**-24: float(np.finfo(np.float32).tiny)}
KINDS = ("exact", "ulp", "error_model")


def unit_roundoff(dtype):
    """u of a storage dtype (float64 2^-53, float32 2^-24, float16 2^-11, bfloat16 2^-8)."""
    return _UNIT_ROUNDOFF[np.dtype(dtype)]


def compute_unit_roundoff(dtype):
    """u of the dtype an op computes in for an output of `dtype` (float64 -> 2^-53, other floats -> 2^-24)."""
    return 2.0**-53 if np.dtype(dtype) == np.float64 else 2.0**-24


def gamma(n, u):
    """gamma_n = n u / (1 - n u); +inf when n u >= 1 (no bound)."""
    nu = np.asarray(n, dtype=np.float64) * u
    with np.errstate(divide="ignore"):
        return np.where(nu < 1, nu / np.maximum(1 - nu, 0), np.inf)


def _f(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def _lib(u):
    """Relative error of a library function: LIBM_ULP ulps = 2 LIBM_ULP u."""
    return 2 * LIBM_ULP * u


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


@dataclass(frozen=True)
class Budget:
    """One row of the budget table."""

    op: str
    kind: str
    formula: str
    reason: str
    bound_fn: object = None  # (inputs, expected, u) -> (bound array, params); None for exact
    parts: tuple = field(default=())  # per-output budgets for ops that return a tuple

    def bound(self, expected, inputs, u, ops=None):
        """Elementwise bound on |computed - exact| for one implementation with unit roundoff u.

        ops: the namespace whose semantics the expected output follows (default the reference; a
        known-wrong variant's namespace when diagnosing), used where the bound needs the op's structure.
        """
        e = np.asarray(expected, dtype=np.float64)
        if self.kind == "exact" or self.bound_fn is None:
            return np.zeros(e.shape), {}
        # Non-finite inputs give non-finite bounds there; compare() judges those elements by their
        # NaN/Inf pattern, not by the bound, so the arithmetic warnings carry no information.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            b, params = self.bound_fn(inputs, e, u, ops or reference_ops)
        return np.broadcast_to(np.asarray(b, dtype=np.float64), e.shape), params

    def part(self, i):
        return self.parts[i] if self.parts else self


def fixed(atol=0.0, rtol=0.0, reason="given by the caller"):
    """A budget |err| <= atol + rtol |expected| (for tests that state their own tolerance and why)."""
    return Budget("fixed", "error_model" if atol or rtol else "exact", f"|err| <= {atol:g} + {rtol:g} |y|", reason,
                  None if not (atol or rtol) else (lambda i, y, u, ops=None: (atol + rtol * np.abs(y), {})))


def bind(op, inputs):
    """The op's inputs as a dict of every argument by name, defaults filled in."""
    if inputs is None:
        return None
    sig = inspect.signature(getattr(reference_ops, op))
    if isinstance(inputs, dict):
        ba = sig.bind_partial(**inputs)
    else:
        ba = sig.bind_partial(*inputs)
    ba.apply_defaults()
    return dict(ba.arguments)


# ----------------------------------------------------------------------------- bound functions


def _linear_bound(x, w, b, bx, u):
    """gamma_(K+1) (|x| @ |W|.T + |b|) + Bx @ |W|.T (bias = one more term of the dot product)."""
    k = x.shape[-1]
    acc = np.abs(x) @ np.abs(w).T
    if b is not None:
        acc = acc + np.abs(b)
    out = gamma(k + 1, u) * acc
    if bx is not None:
        out = out + bx @ np.abs(w).T
    return out


def _b_linear(i, y, u, ops=reference_ops):
    x, w = _f(i["x"]), _f(i["weight"])
    return _linear_bound(x, w, _f(i["bias"]), None, u), {"K": x.shape[-1], "u": u, "gamma_K+1": float(gamma(x.shape[-1] + 1, u))}


def _b_mxfp4_linear(i, y, u, ops=reference_ops):
    w = ops.decode_mxfp4(i["blocks"], i["scales"], dtype=np.float64, nibble_order=i["nibble_order"],
                                   scale_bias=i["scale_bias"])
    x = _f(i["x"])
    return _linear_bound(x, w, _f(i["bias"]), None, u), {"K": x.shape[-1], "u": u, "gamma_K+1": float(gamma(x.shape[-1] + 1, u))}


def _b_gguf_linear(i, y, u, ops=reference_ops):
    w = ops.dequantize_gguf(i["blocks"], i["qtype"], i["shape"]).astype(np.float64)  # exact (gguf's float32 values)
    x = _f(i["x"])
    return _linear_bound(x, w, _f(i["bias"]), None, u), {"K": x.shape[-1], "u": u, "gamma_K+1": float(gamma(x.shape[-1] + 1, u))}


def _b_layer_norm(i, y, u, ops=reference_ops):
    # mean: n-1 additions and a division -> |d mu| <= gamma_n mean|x| =: E_c; c = x - mu: +u|c|;
    # var = mean(c^2): gamma_(n+1) relative, plus the propagated 2 (u var + E_c mean|c|);
    # + eps: u; sqrt halves the relative error and adds u -> rho; c / sigma, * w, + b: 3 roundings.
    x, w, b = _f(i["x"]), _f(i["weight"]), _f(i["bias"])
    n = x.shape[-1]
    c = x - x.mean(axis=-1, keepdims=True)
    s = (c * c).mean(axis=-1, keepdims=True) + float(i["eps"])
    ec = gamma(n, u) * np.abs(x).mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = gamma(n + 4, u) / 2 + u + ec * np.abs(c).mean(axis=-1, keepdims=True) / s
        out = np.abs(w) / np.sqrt(s) * (ec + np.abs(c) * (4 * u + rho))
    if b is not None:
        out = out + u * np.abs(b)
    return out, {"n": n, "u": u, "gamma_n": float(gamma(n, u))}


def _b_rms_norm(i, y, u, ops=reference_ops):
    # sum of squares with the division by n: gamma_(n+1); + eps: u; sqrt: half, + u; divide, * w: 2u.
    x = np.asarray(i["x"])
    n = x.shape[-1]
    rel = gamma(n + 2, u) / 2 + 3 * u
    out = rel * np.abs(y)
    if i["cast_before_scale"] and x.dtype.itemsize < 4:
        out = out + unit_roundoff(x.dtype) * np.abs(y)
    return out, {"n": n, "u": u, "rel": float(rel)}


def _b_pre_norm_residual(i, y, u, ops=reference_ops):
    x = _f(i["x"])
    s = _f(i["sublayer"](i["norm"](x)))
    return u * (np.abs(x) + np.abs(s)), {"u": u}


def _b_post_norm_residual(i, y, u, ops=reference_ops):
    # The one rounding of z = x + s (u(|x| + |s|) per element) propagated through the norm to first
    # order, sum_j |norm(z + d_j e_j) - norm(z)|, evaluated by perturbing each element of a row.
    x = _f(i["x"])
    s = _f(i["sublayer"](x))
    z = x + s
    d = u * (np.abs(x) + np.abs(s))
    n = z.shape[-1]
    zz = z[..., None, :] + d[..., None, :] * np.eye(n)  # [..., n, n]
    base = _f(i["norm"](z))
    return np.abs(_f(i["norm"](zz)) - base[..., None, :]).sum(axis=-2), {"u": u, "n": n}


def _gelu_parts(x, approximate, u):
    """(y, derivative, bound) of gelu at x (float64)."""
    lib = _lib(u)
    if approximate == "tanh":
        c, a = math.sqrt(2 / math.pi), 0.044715
        z = c * (x + a * x**3)
        t = np.tanh(z)
        y = 0.5 * x * (1 + t)
        sech2 = 1 - t * t
        # tanh form: x^3 (2), * a (1 + the constant's 1), + x (1), * c (1 + 1): z within gamma_7;
        # tanh: lib; 1 + t, * x: 2u |y|. Sigmoid form x sigmoid(2z): (1 - s)|2z| gamma_7 + (4L+3) u.
        b_tanh = 2 * u * np.abs(y) + 0.5 * np.abs(x) * (sech2 * np.abs(z) * gamma(7, u) + lib * np.abs(t))
        s2 = _sigmoid(2 * z)
        b_sig = np.abs(y) * ((1 - s2) * np.abs(2 * z) * gamma(7, u) + (2 * lib + 3 * u))
        dy = 0.5 * (1 + t) + 0.5 * x * sech2 * c * (1 + 3 * a * x * x)
        return y, dy, np.maximum(b_tanh, b_sig)
    w = x / math.sqrt(2)
    e = np.vectorize(math.erf, otypes=[np.float64])(w) if w.size else w
    y = 0.5 * x * (1 + e)
    derf = 2 / math.sqrt(math.pi) * np.exp(-w * w)
    # w = x / sqrt(2): gamma_2; erf: lib; 1 + e, * x: 2u |y|.
    b = 2 * u * np.abs(y) + 0.5 * np.abs(x) * (derf * np.abs(w) * gamma(2, u) + lib * np.abs(e))
    dy = 0.5 * (1 + e) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return y, dy, b


def _b_gelu(i, y, u, ops=reference_ops):
    x = _f(i["x"])
    return _gelu_parts(x, i["approximate"], u)[2], {"u": u, "LIBM_ULP": LIBM_ULP}


def _silu_rel(u):
    # sigmoid = 1/(1+e) or e/(1+e), e = exp(-|x|): <= 2 lib + 2u; * x: u.
    return 2 * _lib(u) + 3 * u


def _b_silu(i, y, u, ops=reference_ops):
    x = _f(i["x"])
    # an exp(-x) that overflows for x < -ln(max) gives 0 instead of |x e^x| <= |x| / max.
    return _silu_rel(u) * np.abs(y) + np.abs(x) / _MAX[u], {"u": u, "c": _silu_rel(u) / u}


def _b_swiglu(i, y, u, ops=reference_ops):
    g, p = _f(i["gate"]), _f(i["up"])
    return (_silu_rel(u) + u) * np.abs(y) + np.abs(g * p) / _MAX[u], {"u": u, "c": _silu_rel(u) / u + 1}


def _oss_split(h, layout):
    if layout == "interleaved":
        return h[..., 0::2], h[..., 1::2]
    half = h.shape[-1] // 2
    return h[..., :half], h[..., half:]


def _oss_parts(h, alpha, limit, layout, u):
    """(y, dy/dgate, dy/dlin, bound) of swiglu_oss (float64)."""
    g, l = _oss_split(h, layout)
    if limit is not None:
        g, l = np.minimum(g, limit), np.clip(l, -limit, limit)
    z = alpha * g
    s = _sigmoid(z)
    y = g * s * (l + 1)
    # alpha * g: gamma_2 (the constant and the product); sigmoid: (1 - s)|z| gamma_2 + 2 lib + 2u;
    # * g, l + 1, final product: 3u.
    b = np.abs(y) * ((1 - s) * np.abs(z) * gamma(2, u) + 2 * _lib(u) + 5 * u) + np.abs(g * (l + 1)) / _MAX[u]
    dg = s * (1 + z * (1 - s)) * (l + 1)
    dl = g * s
    return y, dg, dl, b


def _b_swiglu_oss(i, y, u, ops=reference_ops):
    return _oss_parts(_f(i["h"]), float(i["alpha"]), i["limit"], i["layout"], u)[3], {"u": u}


def _b_gelu_mlp(i, y, u, ops=reference_ops):
    x = _f(i["x"])
    fw, fb, pw, pb = _f(i["fc_weight"]), _f(i["fc_bias"]), _f(i["proj_weight"]), _f(i["proj_bias"])
    h = x @ fw.T + (0 if fb is None else fb)
    bh = _linear_bound(x, fw, fb, None, u)
    a, da, ba = _gelu_parts(h, i["approximate"], u)
    return _linear_bound(a, pw, pb, np.abs(da) * bh + ba, u), {"u": u, "d": x.shape[-1], "F": fw.shape[0]}


def _b_swiglu_mlp(i, y, u, ops=reference_ops):
    x = _f(i["x"])
    gw, uw, dw = _f(i["gate_weight"]), _f(i["up_weight"]), _f(i["down_weight"])
    g, p = x @ gw.T, x @ uw.T
    bg, bp = _linear_bound(x, gw, None, None, u), _linear_bound(x, uw, None, None, u)
    s = _sigmoid(g)
    silu = g * s
    a = silu * p
    ba = np.abs(s * (1 + g * (1 - s)) * p) * bg + np.abs(silu) * bp + (_silu_rel(u) + u) * np.abs(a)
    return _linear_bound(a, dw, None, ba, u), {"u": u, "d": x.shape[-1], "I": gw.shape[0]}


def _inv_default_rel(d, base, u):
    """Relative bound of 1 / base^(2j/d): exponent (u) through pow (|e ln b| per unit) + pow + reciprocal,
    or exp(-e ln b) with ln b's error: (2 L + 1)(1 + |e ln b|) u covers both."""
    e = 2.0 * np.arange(d // 2) / d
    return (2 * LIBM_ULP + 1) * (1 + np.abs(e * math.log(base))) * u


def _b_inv_freq_default(i, y, u, ops=reference_ops):
    return _inv_default_rel(int(i["head_dim"]), float(i["base"]), u) * np.abs(y), {"u": u}


def _b_inv_freq_linear(i, y, u, ops=reference_ops):
    return (_inv_default_rel(int(i["head_dim"]), float(i["base"]), u) + u) * np.abs(y), {"u": u}


def _b_inv_freq_llama3(i, y, u, ops=reference_ops):
    d, base, f = int(i["head_dim"]), float(i["base"]), float(i["factor"])
    lff, hff, l0 = float(i["low_freq_factor"]), float(i["high_freq_factor"]), float(i["original_max_position_embeddings"])
    inv = reference_ops.inv_freq_default(d, base=base)
    rel0 = _inv_default_rel(d, base, u)
    wl = 2 * math.pi / inv
    ratio = l0 / wl  # relative error rel0 + 3u (2 pi, the division, L0 / wavelen)
    s = (ratio - lff) / (hff - lff)
    ds = (ratio * (rel0 + 3 * u) + u * np.abs(ratio - lff)) / (hff - lff) + 2 * u * np.abs(s)
    smooth = np.abs(inv - inv / f) * ds + (np.abs(1 - s) * inv / f + np.abs(s) * inv) * (rel0 + 4 * u)
    out = np.where(wl > l0 / lff, (rel0 + u) * inv / f, rel0 * inv)
    medium = ~(wl < l0 / hff) & ~(wl > l0 / lff)
    return np.where(medium, smooth, out), {"u": u}


def _corr_bound(d, base, l0, beta, u):
    """(value, bound) of (d/2) ln(L0 / (2 pi beta)) / ln(base): r within 3u; ln r: 3u + lib |ln r|;
    ln base: lib relative; the division and the product by d/2: 2u."""
    r = l0 / (2 * math.pi * beta)
    c = (d / 2) * math.log(r) / math.log(base)
    return c, (d / 2) / math.log(base) * (3 * u + _lib(u) * abs(math.log(r))) + abs(c) * (_lib(u) + 2 * u)


def _range_bounds(i, u):
    d, base, l0 = int(i["head_dim"]), float(i["base"]), float(i["original_max_position_embeddings"])
    (lo, blo), (hi, bhi) = (_corr_bound(d, base, l0, float(i[k]), u) for k in ("beta_fast", "beta_slow"))
    if i["truncate"]:
        # floor / ceil are exact unless the value is within its bound of an integer (a jump of 1).
        blo = 1.0 if abs(lo - round(lo)) <= blo else 0.0
        bhi = 1.0 if abs(hi - round(hi)) <= bhi else 0.0
    return blo, bhi


def _b_yarn_range_low(i, y, u, ops=reference_ops):
    return np.full(y.shape, _range_bounds(i, u)[0]), {"u": u}


def _b_yarn_range_high(i, y, u, ops=reference_ops):
    return np.full(y.shape, _range_bounds(i, u)[1]), {"u": u}


def _yarn_inv_bound(i, y, u):
    d, base, f = int(i["head_dim"]), float(i["base"]), float(i["factor"])
    inv = reference_ops.inv_freq_default(d, base=base)
    rel0 = _inv_default_rel(d, base, u)
    if f == 1.0:
        return rel0 * inv
    low, high = reference_ops.yarn_correction_range(
        d, base=base, beta_fast=i["beta_fast"], beta_slow=i["beta_slow"],
        original_max_position_embeddings=i["original_max_position_embeddings"], truncate=i["truncate"])
    blo, bhi = _range_bounds(i, u)
    j = np.arange(d // 2)
    ramp = np.clip((j - low) / (high - low), 0, 1)
    # ramp: first-order in low and high, plus 3 roundings; blend inv (1 - r) + (inv / f) r: 4 roundings.
    dramp = (np.abs(j - high) * blo + np.abs(j - low) * bhi) / (high - low) ** 2 + 3 * u * ramp
    return np.abs(inv - inv / f) * dramp + ((1 - ramp) * inv + ramp * inv / f) * (rel0 + 4 * u)


def _b_yarn_inv(i, y, u, ops=reference_ops):
    return _yarn_inv_bound(i, y, u), {"u": u}


def _b_yarn_scaling(i, y, u, ops=reference_ops):
    if i.get("attention_factor") is not None:
        return np.zeros(y.shape), {}
    # 0.1 m ln(f) + 1: ln (lib), two products and a constant (3u), the sum (u); a ratio of two: twice + u.
    return (2 * (_lib(u) + 4 * u) + u) * np.abs(y), {"u": u}


def _rope_kind(rs):
    return None if rs is None else rs.get("rope_type", rs.get("type"))


def _b_rope_frequencies_inv(i, y, u, ops=reference_ops):
    rs, d, base = i["rope_scaling"], int(i["head_dim"]), float(i["base"])
    kind = _rope_kind(rs)
    if kind in (None, "default"):
        return _inv_default_rel(d, base, u) * np.abs(y), {"u": u}
    if kind == "linear":
        return (_inv_default_rel(d, base, u) + u) * np.abs(y), {"u": u}
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return _b_inv_freq_llama3({"head_dim": d, "base": base, **{k: rs[k] for k in keys}}, y, u)
    yi = dict(head_dim=d, base=base, factor=rs["factor"], beta_fast=rs.get("beta_fast") or 32.0,
              beta_slow=rs.get("beta_slow") or 1.0,
              original_max_position_embeddings=rs.get("original_max_position_embeddings") or i["max_position_embeddings"],
              truncate=rs.get("truncate", True))
    return _yarn_inv_bound(yi, y, u), {"u": u}


def _b_rope_frequencies_scaling(i, y, u, ops=reference_ops):
    rs = i["rope_scaling"]
    if _rope_kind(rs) != "yarn":
        return np.zeros(y.shape), {}
    return _b_yarn_scaling({"attention_factor": rs.get("attention_factor")}, y, u)


def _b_rope_cos_sin(i, y, u, ops=reference_ops):
    # angle = p * inv_freq: u |angle| absolute, which cos/sin pass on (|d cos / d angle| <= 1);
    # cos/sin: lib; * scaling: u. Angles formed in angle_dtype use that dtype's u.
    ue = max(u, compute_unit_roundoff(np.dtype(i["angle_dtype"])))
    angle = np.asarray(i["positions"]).astype(np.float64)[..., None] * _f(i["inv_freq"])
    scale = float(i["attention_scaling"])
    return scale * ue * np.abs(angle) + (_lib(ue) + ue) * np.abs(y), {"u": ue}


def _b_apply_rope(i, y, u, ops=reference_ops):
    # out_a = x_a c - x_b s: two products and one sum -> gamma_2 (|x_a c| + |x_b s|); the rest is copied.
    x, c, s = _f(i["x"]), _f(i["cos"]), _f(i["sin"])
    d = x.shape[-1]
    r = d if i["rotary_dim"] is None else int(i["rotary_dim"])
    c, s = np.abs(c)[..., None, :], np.abs(s)[..., None, :]  # [..., T, 1, R/2]
    xr = np.abs(x[..., :r])
    if i["pairing"] == "half":
        a, b = xr[..., : r // 2], xr[..., r // 2:]
        rot = np.concatenate((a * c + b * s, b * c + a * s), axis=-1)
    else:
        a, b = xr[..., 0::2], xr[..., 1::2]
        rot = np.stack((a * c + b * s, b * c + a * s), axis=-1).reshape(xr.shape)
    out = np.zeros(x.shape)
    out[..., :r] = gamma(2, u) * rot
    return out, {"u": u, "gamma_2": float(gamma(2, u))}


def _softmax_rel(x, p, e_abs, u, extra=None):
    """Relative bound of each p_j = exp(x_j - m) / sum: x_j carries absolute error e_abs_j.

    eta_j = e_abs_j + u |x_j - m| + lib (the shift and exp); den: sum_l p_l eta_l + gamma_n; the
    division: u. `extra` = (p_sink, sink logit) for a denominator-only term. Entries with p == 0 add 0.
    """
    m = np.max(np.where(p > 0, x, -np.inf), axis=-1, keepdims=True)
    if extra is not None:
        m = np.maximum(m, extra[1])
    with np.errstate(invalid="ignore"):
        eta = np.where(p > 0, e_abs + u * np.abs(x - m) + _lib(u), 0.0)
    den = (p * eta).sum(axis=-1, keepdims=True)
    n = x.shape[-1]
    if extra is not None:
        ps, sink = extra
        with np.errstate(invalid="ignore"):
            den = den + np.where(ps > 0, ps * (u * np.abs(sink - m) + _lib(u)), 0.0)
        n += 1
    return eta + den + gamma(n, u) + u


def _attn_parts(i, u, ops):
    q, k = _f(i["q"]), _f(i["k"])
    hq, hkv, d = q.shape[-2], k.shape[-2], q.shape[-1]
    kk = np.repeat(k, hq // hkv, axis=-2)  # [..., Tk, Hq, D]
    scale = 1 / math.sqrt(d) if i["scale"] is None else float(i["scale"])
    s = np.einsum("...qhd,...khd->...hqk", q, kk) * scale  # [..., Hq, Tq, Tk]
    e = gamma(d + 3, u) * np.einsum("...qhd,...khd->...hqk", np.abs(q), np.abs(kk)) * scale
    kw = {n: i[n] for n in ("sinks", "window", "causal", "q_offset", "scale", "mask")}
    p = ops.attention_probs(q, k, **kw)  # [..., Hq, Tq, Tk]
    extra = None
    if i["sinks"] is not None:
        sink = _f(i["sinks"])[:, None, None]  # [Hq, 1, 1]
        ps = 1 - p.sum(axis=-1, keepdims=True)
        ps = np.where(np.isneginf(sink), 0.0, ps)
        extra = (ps, sink)
    rel = _softmax_rel(s, p, e, u, extra)
    bp = p * rel + _TINY[u]  # exp underflow (flush to zero included) loses at most the smallest normal
    return p, np.where(p > 0, bp, 0.0), d


def _b_attention_probs(i, y, u, ops=reference_ops):
    p, bp, d = _attn_parts(i, u, ops)
    return bp, {"D": d, "Tk": p.shape[-1], "u": u}


def _b_attention(i, y, u, ops=reference_ops):
    # o = sum_j p_j v_j: sum_j B_p |v_j| + gamma_(4 Tk + 1) sum_j p_j |v_j|; 4 Tk covers a tiled
    # (online) kernel that rescales o and l once per tile, tile size 1 being the worst.
    p, bp, d = _attn_parts(i, u, ops)
    v = _f(i["v"])
    hq, hkv, tk = p.shape[-3], v.shape[-2], p.shape[-1]
    vv = np.abs(np.repeat(v, hq // hkv, axis=-2))  # [..., Tk, Hq, Dv]
    sum_pv = np.einsum("...hqk,...khd->...qhd", p, vv)
    out = np.einsum("...hqk,...khd->...qhd", bp, vv) + gamma(4 * tk + 1, u) * sum_pv
    return out, {"D": d, "Tk": tk, "u": u, "gamma_4Tk+1": float(gamma(4 * tk + 1, u))}


def _b_attention_scores(i, y, u, ops=reference_ops):
    # s = fl(scale * fl(q . k)): the dot product of length D (gamma_D, any order), the scale's own
    # roundings (1/sqrt(D): sqrt and reciprocal; a given scale rounded to the compute dtype) and the
    # product: gamma_(D+3) scale (|q| . |k|). Masked entries are -inf on both sides (exact).
    q, k = _f(i["q"]), _f(i["k"])
    hq, hkv, d = q.shape[-2], k.shape[-2], q.shape[-1]
    kk = np.repeat(np.abs(k), hq // hkv, axis=-2)  # [..., Tk, Hq, D]
    scale = 1 / math.sqrt(d) if i["scale"] is None else float(i["scale"])
    out = gamma(d + 3, u) * scale * np.einsum("...qhd,...khd->...hqk", np.abs(q), kk)  # [..., Hq, Tq, Tk]
    return out, {"D": d, "u": u, "gamma_D+3": float(gamma(d + 3, u))}


def _b_softmax_with_sinks(i, y, u, ops=reference_ops):
    # softmax's bound over the last axis (the scores are inputs: no error of their own), plus the sink
    # as one more denominator term p_sink (u|sink - m| + 2L u), p_sink = 1 - sum_j p_j; a -inf sink adds
    # nothing. Masked (-inf) scores give exact zeros.
    s = _f(i["scores"])
    extra = None
    if i["sinks"] is not None:
        sink = _f(i["sinks"])[:, None, None]  # [Hq, 1, 1]
        ps = np.where(np.isneginf(sink), 0.0, 1 - y.sum(axis=-1, keepdims=True))
        extra = (ps, sink)
    with np.errstate(invalid="ignore"):
        b = np.where(y > 0, y * _softmax_rel(s, y, 0.0, u, extra) + _TINY[u], 0.0)
    return b, {"Tk": s.shape[-1], "u": u}


def _b_attention_values(i, y, u, ops=reference_ops):
    # o = sum_j p_j v_j over Tk keys: Tk products and Tk - 1 additions in any order -> gamma_Tk sum_j
    # |p_j| |v_j| (Higham (3.5)); keys not `visible` to a row are not in its sum.
    p, v = np.abs(_f(i["probs"])), np.abs(_f(i["v"]))
    if i["visible"] is not None:
        p = np.where(np.asarray(i["visible"]), p, 0.0)  # [..., Hq, Tq, Tk]
    hq, hkv, tk = p.shape[-3], v.shape[-2], p.shape[-1]
    vv = np.repeat(v, hq // hkv, axis=-2)  # [..., Tk, Hq, Dv]
    out = gamma(tk, u) * np.einsum("...hqk,...khd->...qhd", p, vv)  # [..., Tq, Hq, Dv]
    return out, {"Tk": tk, "u": u, "gamma_Tk": float(gamma(tk, u))}


def _b_rope_terms(i, y, u, ops=reference_ops):
    # each rotated entry is one product (x_a cos_j, x_b sin_j, ...): u |y|; dims R .. D-1 are copies
    # (a) or zeros (b): exact.
    d = np.shape(i["x"])[-1]
    r = d if i["rotary_dim"] is None else int(i["rotary_dim"])
    out = u * np.abs(y)
    out[..., r:] = 0.0
    return out, {"u": u, "R": r}


def _b_softmax(i, y, u, ops=reference_ops):
    x = np.moveaxis(_f(i["x"]), i["axis"], -1)
    p = np.moveaxis(y, i["axis"], -1)
    with np.errstate(invalid="ignore"):
        b = np.where(p > 0, p * _softmax_rel(x, p, 0.0, u) + _TINY[u], 0.0)
    return np.moveaxis(b, -1, i["axis"]), {"n": x.shape[-1], "u": u}


def _routing_full(logits, u):
    x = _f(logits)
    p = reference_ops.softmax(x)
    return p, _softmax_rel(x, p, 0.0, u)


def _b_router_topk_softmax_w(i, y, u, ops=reference_ops):
    x = _f(i["logits"])
    _, idx = ops.router_topk_softmax(x, i["k"])
    sel = np.take_along_axis(x, idx, axis=-1)
    return y * _softmax_rel(sel, y, 0.0, u) + _TINY[u], {"k": i["k"], "u": u}


def _b_router_softmax_topk_w(i, y, u, ops=reference_ops):
    p, rel = _routing_full(i["logits"], u)
    _, idx = ops.router_softmax_topk(_f(i["logits"]), i["k"])
    rs = np.take_along_axis(rel, idx, axis=-1)
    if i["renormalize"]:
        rs = rs + (y * rs).sum(axis=-1, keepdims=True) + gamma(i["k"], u) + u
    return y * rs + _TINY[u], {"k": i["k"], "u": u}


def _b_route_experts_w(i, y, u, ops=reference_ops):
    if i["rule"] == "topk_softmax":
        return _b_router_topk_softmax_w(i, y, u, ops)
    return _b_router_softmax_topk_w({**i, "renormalize": True}, y, u, ops)


def _b_add(i, y, u, ops=reference_ops):
    return u * np.abs(y), {"u": u}


def _b_scale(i, y, u, ops=reference_ops):
    return 2 * u * np.abs(y), {"u": u}


BF16_ULP = 2.0 ** -8  # relative spacing of bfloat16 values (8 significand bits)


def _b_swiglu_oss_bf16(i, y, u, ops=reference_ops):
    # Defined in float32 arithmetic: NumPy's own steps give the same bits. Another exp may round one
    # float32 ulp differently and flip a bfloat16 rounding: one bf16 ulp per rounded step (5), each
    # passed on with a factor <= 2 (|d sigmoid| <= 1/4 times |alpha g|, products): 8 bf16 ulps of |y|,
    # plus one bf16 ulp of the largest |y| in the row for values near 0.
    yy = np.abs(np.asarray(y, dtype=np.float64))
    return 8 * BF16_ULP * (yy + BF16_ULP * yy.max(axis=-1, keepdims=True)), {"bf16_ulp": BF16_ULP}


def _b_expert_choice_gates(i, y, u, ops=reference_ops):
    p, rel = _routing_full(i["logits"], u)
    _, idx = ops.expert_choice(_f(i["logits"]), i["capacity"])
    r = np.take_along_axis(np.swapaxes(rel, -1, -2), idx, axis=-1)
    return y * r + _TINY[u], {"u": u}


def _b_load_balancing_loss(i, y, u, ops=reference_ops):
    x = _f(i["router_logits"])
    e = int(i["num_experts"])
    p, rel = _routing_full(x, u)
    p, rel = p.reshape(-1, e), rel.reshape(-1, e)
    t = p.shape[0]
    idx = np.asarray(i["indices"])
    k = idx.shape[-1]
    counts = np.bincount(idx.ravel(), minlength=e)
    f = counts / (t if i["fraction"] == "per_token" else t * k)
    mean_p = p.mean(axis=0)
    # P_i = sum_t p_ti / T: sum_t p rel / T + gamma_(T+1) P_i; f_i: u; f_i P_i: u; N sum over E: gamma_(E+1).
    bp = (p * rel).sum(axis=0) / t + gamma(t + 1, u) * mean_p
    b = e * (f * bp + 2 * u * f * mean_p).sum() + gamma(e + 1, u) * e * (f * mean_p).sum()
    return np.full(y.shape, b), {"T": t, "E": e, "u": u}


def _b_moe_combine(i, y, u, ops=reference_ops):
    # sum over k slots of w_j y_j, from zero: k products and k-1 additions -> gamma_k sum |w_j y_j|.
    w = np.abs(_f(i["weights"]))
    fn = i["expert_fn"]
    absum = reference_ops.moe_combine(_f(i["x"]), w, i["indices"], lambda e, r: np.abs(_f(fn(e, r))))
    k = w.shape[-1]
    return gamma(k, u) * absum, {"k": k, "u": u}


def _b_gpt_oss_experts(i, y, u, ops=reference_ops):
    t = _f(i["t"])
    b1, b2 = _f(i["mlp1_bias"]), _f(i["mlp2_bias"])
    get = []
    for name in ("mlp1_weight", "mlp2_weight"):
        wt = i[name]
        get.append((lambda e, wt=wt: _f(wt(e))) if callable(wt) else (lambda e, wt=wt: _f(wt[e])))
    alpha, limit = float(i["alpha"]), i["limit"]

    def parts(e, rows):
        w1, w2 = get[0](e), get[1](e)
        h = rows @ w1.T + b1[e]
        bh = _linear_bound(rows, w1, b1[e], None, u)
        a, dg, dl, ba = _oss_parts(h, alpha, limit, "interleaved", u)
        bg, bl = _oss_split(bh, "interleaved")
        ba = ba + np.abs(dg) * bg + np.abs(dl) * bl
        return a @ w2.T + b2[e], _linear_bound(a, w2, b2[e], ba, u)

    w = np.abs(_f(i["weights"]))
    by = reference_ops.moe_combine(t, w, i["indices"], lambda e, r: parts(e, r)[1])
    absy = reference_ops.moe_combine(t, w, i["indices"], lambda e, r: np.abs(parts(e, r)[0]))
    k = w.shape[-1]
    return by + gamma(k, u) * absy, {"k": k, "u": u}


def _b_dropout(i, y, u, ops=reference_ops):
    if not i["training"] or float(i["p"]) == 0.0:
        return np.zeros(y.shape), {}
    return 2 * u * np.abs(y), {"u": u, "c": 2}


def _b_apply_temperature(i, y, u, ops=reference_ops):
    return 2 * u * np.abs(y), {"u": u, "c": 2}


# ----------------------------------------------------------------------------- the table


def _exact(op, what):
    return Budget(op, "exact", "|err| = 0", what)


_GATHER = "a gather/copy: no arithmetic, so any correct implementation returns the same bits"
_ROUTE = ("indices are a selection: exact when the k-th and (k+1)-th scores differ by more than their error "
          "bounds (the suite draws inputs with that margin; among ties any index of the tie set is accepted)")
_ELEM = f"elementwise; library functions within LIBM_ULP={LIBM_ULP} ulps (NumPy's accuracy tests)"
_SM = ("softmax: an absolute error e in a logit is a relative error e in its exp; shift u|x-m|, exp lib, "
       "sum gamma_n, division u; the denominator averages the numerators' errors")

_TABLE = [
    _exact("embedding", _GATHER),
    _exact("learned_positions", _GATHER),
    Budget("linear", "error_model", "|err| <= gamma_(K+1) (|x| @ |W|.T + |b|)",
           "dot product of length K plus the bias as one more term (Higham (3.5)); any summation order",
           _b_linear),
    Budget("layer_norm", "error_model",
           "|err| <= |w|/sigma (E_c + |c| (4u + rho)) + u|b|; E_c = gamma_n mean|x|, "
           "rho = gamma_(n+4)/2 + u + E_c mean|c| / (var + eps)",
           "two-pass mean/variance (Welford is as good); E_c is the cancellation in x - mean, which a "
           "one-pass E[x^2] - E[x]^2 exceeds when mean^2 >> var", _b_layer_norm),
    Budget("rms_norm", "error_model", "|err| <= (gamma_(n+2)/2 + 3u) |y|  (+ u_bf16 |y| with cast_before_scale)",
           "no cancellation: sum of n squares and /n (gamma_(n+1)), + eps (u), sqrt halves it (+u), / and * w (2u)",
           _b_rms_norm),
    Budget("pre_norm_residual", "error_model", "|err| <= u (|x| + |s|), s = sublayer(norm(x))",
           "one addition; the callables' own errors are checked as their own ops", _b_pre_norm_residual),
    Budget("post_norm_residual", "error_model", "|err_i| <= sum_j |norm(z + d_j e_j) - norm(z)|_i, d = u(|x| + |s|)",
           "the addition's rounding propagated through the norm to first order; the norm's own rounding "
           "is checked as its own op", _b_post_norm_residual),
    Budget("gelu", "ulp",
           "tanh: |err| <= max(2u|y| + |x|/2 (sech^2(z)|z| gamma_7 + 2L u|t|), |y| ((1-s)|2z| gamma_7 + (4L+3)u)); "
           "none: 2u|y| + |x|/2 (erf'(w)|w| gamma_2 + 2L u|erf w|)",
           _ELEM + "; the inner argument's roundings are counted and passed through the function's "
           "condition number; the tanh and the x*sigmoid(2z) forms are both admitted", _b_gelu),
    Budget("silu", "ulp", "|err| <= (4L+3) u |y| + |x| / max_float",
           _ELEM + "; sigmoid from exp(-|x|): 2 lib + 2u, times x: u; an exp(-x) that overflows gives 0",
           _b_silu),
    Budget("swiglu", "ulp", "|err| <= (4L+4) u |y| + |gate up| / max_float", _ELEM + "; silu then one product",
           _b_swiglu),
    Budget("swiglu_oss", "ulp", "|err| <= |y| ((1-s)|alpha g| gamma_2 + (4L+5) u) + |g (l+1)| / max_float",
           _ELEM + "; clamps are exact; alpha*g (2 roundings) through sigmoid's condition (1-s)|z|; "
           "sigmoid 2 lib + 2u; *g, +1, * : 3u", _b_swiglu_oss),
    Budget("gelu_mlp", "error_model", "linear bound, through |gelu'(h)|, gelu's bound, then the second linear",
           "composition of linear, gelu, linear; each stage's input error times its derivative", _b_gelu_mlp),
    Budget("swiglu_mlp", "error_model",
           "linear bounds B_g, B_p; B_a = |silu'(g) p| B_g + |silu(g)| B_p + (4L+4) u |a|; then linear",
           "composition of two linears, swiglu, linear", _b_swiglu_mlp),
    Budget("dropout", "ulp", "|err| <= 2u |y| (exact when not training or p = 0)",
           "the same keep mask (same Generator stream), then (1-p) rounded and one division", _b_dropout),
    Budget("inv_freq_default", "ulp", "|err| <= (2L+1)(1 + |2j/d ln base|) u |y|",
           "exponent 2j/d (u) amplified by ln base through pow, pow itself, the reciprocal", _b_inv_freq_default),
    Budget("inv_freq_linear", "ulp", "|err| <= ((2L+1)(1 + |2j/d ln base|) + 1) u |y|", "default, then / factor",
           _b_inv_freq_linear),
    Budget("inv_freq_llama3", "ulp", "kept/divided bands: default bound (+u); smooth band: |inv - inv/f| ds + "
           "(|1-s| inv/f + |s| inv)(rel0 + 4u)", "the smooth factor s is first order in the wavelength's error",
           _b_inv_freq_llama3),
    Budget("yarn_correction_range", "ulp",
           "|err| <= (d/2)/ln b (3u + 2L u |ln r|) + |corr| (2L+2) u, r = L0/(2 pi beta); truncate: 0, or 1 "
           "where the value lies within that bound of an integer",
           "three roundings in r, two logarithms, a division and a product", parts=(
               Budget("yarn_correction_range", "ulp", "low", "see row", _b_yarn_range_low),
               Budget("yarn_correction_range", "ulp", "high", "see row", _b_yarn_range_high))),
    Budget("inv_freq_yarn", "ulp",
           "inv: |inv - inv/f| d_ramp + blend (rel0 + 4u); scaling: (4L + 9) u |y| (0 for attention_factor)",
           "ramp first order in low/high (yarn_correction_range's bound), 3 roundings; blend 4 roundings",
           parts=(Budget("inv_freq_yarn", "ulp", "inv_freq", "see row", _b_yarn_inv),
                  Budget("inv_freq_yarn", "ulp", "attention_scaling", "see row", _b_yarn_scaling))),
    Budget("rope_frequencies", "ulp", "the bound of the dispatched rule (inv_freq_*); scaling as inv_freq_yarn",
           "dispatch only", parts=(
               Budget("rope_frequencies", "ulp", "inv_freq", "see row", _b_rope_frequencies_inv),
               Budget("rope_frequencies", "ulp", "attention_scaling", "see row", _b_rope_frequencies_scaling))),
    Budget("rope_cos_sin", "ulp", "|err| <= scaling u_a |p inv| + (2L+1) u_a |y|, u_a = max(u, u(angle_dtype))",
           "the angle's rounding is an absolute error that cos/sin pass on (|derivative| <= 1)",
           parts=(Budget("rope_cos_sin", "ulp", "cos", "see row", _b_rope_cos_sin),
                  Budget("rope_cos_sin", "ulp", "sin", "see row", _b_rope_cos_sin))),
    Budget("apply_rope", "error_model", "|err| <= gamma_2 (|x_a c| + |x_b s|); pass-through dims exact",
           "two products and one sum per output (cancellation allowed, hence not relative)", _b_apply_rope),
    Budget("rope_terms", "ulp", "a, b: |err| <= u |y| on the rotated dims; pass-through dims exact",
           "each rotated entry of a and b is one product (x_a cos, -(x_b sin), x_b cos, x_a sin); negation, "
           "copies and zeros are exact", parts=(
               Budget("rope_terms", "ulp", "a: u |y|", "one product per rotated entry", _b_rope_terms),
               Budget("rope_terms", "ulp", "b: u |y|", "one product per rotated entry", _b_rope_terms))),
    _exact("visibility_mask", "booleans from integer comparisons"),
    _exact("repeat_kv", _GATHER),
    Budget("attention_probs", "error_model",
           "|err| <= p_j (eta_j + sum_l p_l eta_l + p_sink eta_sink + gamma_(Tk+1) + u) + tiny; "
           "eta_j = gamma_(D+3) scale (|q|.|k_j|) + u|s_j - m| + 2L u",
           _SM + "; the scores are dot products of length D times the scale (gamma_(D+3)); masked: exact 0",
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
           "eta_j = u|s_j - m| + 2L u, eta_sink = u|sink - m| + 2L u",
           _SM + "; the sink is one more denominator term (none when absent or -inf); masked: exact 0",
           _b_softmax_with_sinks),
    Budget("attention_values", "error_model", "|err| <= gamma_Tk sum_j |p_j| |v_j| (visible keys only)",
           "a weighted sum of Tk values: Tk products and Tk - 1 additions in any order (Higham (3.5))",
           _b_attention_values),
    Budget("router_topk_softmax", "error_model", "weights: softmax bound over the k selected logits; indices exact",
           _SM + "; " + _ROUTE, parts=(
               Budget("router_topk_softmax", "error_model", "softmax over the k selected logits", _SM,
                      _b_router_topk_softmax_w),
               _exact("router_topk_softmax", _ROUTE))),
    Budget("router_softmax_topk", "error_model",
           "weights: softmax over E, gathered (+ the renormalisation: + sum w rel + gamma_k + u); indices exact",
           _SM + "; " + _ROUTE, parts=(
               Budget("router_softmax_topk", "error_model", "softmax over E, gathered, renormalised", _SM,
                      _b_router_softmax_topk_w),
               _exact("router_softmax_topk", _ROUTE))),
    Budget("route_experts", "error_model", "weights: the bound of the rule's router; indices exact",
           _SM + "; " + _ROUTE, parts=(
               Budget("route_experts", "error_model", "the rule's router weights", _SM, _b_route_experts_w),
               _exact("route_experts", _ROUTE))),
    Budget("expert_choice", "error_model", "gates: softmax over E, gathered; indices exact", _SM + "; " + _ROUTE,
           parts=(Budget("expert_choice", "error_model", "softmax over E, gathered", _SM, _b_expert_choice_gates),
                  _exact("expert_choice", _ROUTE))),
    Budget("load_balancing_loss", "error_model",
           "|err| <= N sum_i f_i (B_P,i + 2u P_i) + gamma_(E+1) N sum_i f_i P_i, "
           "B_P,i = sum_t p_ti rel_ti / T + gamma_(T+1) P_i", "softmax bound, a mean over T, a dot over E",
           _b_load_balancing_loss),
    Budget("moe_combine", "error_model", "|err| <= gamma_k sum_j |w_j| |y_j|, y_j = expert_fn outputs",
           "k products and k-1 additions per element; expert_fn's error is its own op's", _b_moe_combine),
    Budget("gpt_oss_experts", "error_model",
           "sum_j |w_j| B_y,j + gamma_k sum_j |w_j y_j|; B_y: linear, swiglu_oss through its derivatives, linear",
           "composition per expert, then the weighted sum", _b_gpt_oss_experts),
    _exact("round_to_storage", "one rounding of the input's value to the storage dtype, from any wider "
           "input holding the same value: the same bits"),
    Budget("add", "ulp", "|err| <= u |y|", "one IEEE addition", _b_add),
    Budget("scale", "ulp", "|err| <= 2u |y|", "the factor's rounding and one product", _b_scale),
    Budget("swiglu_oss_bf16", "ulp", "|err| <= 8 bf16 ulps (|y| + 2^-8 max|y|)",
           "float32 steps each rounded to bfloat16 (spec/precision.md row 17); one bf16 flip per step",
           _b_swiglu_oss_bf16),
    _exact("decode_e8m0", "powers of two, exact in float32 (ldexp)"),
    _exact("decode_mxfp4", "E2M1 value times a power of two: exact in every decode dtype"),
    _exact("encode_mxfp4", "integer codes from exact float64 comparisons; ties stated"),
    Budget("mxfp4_linear", "error_model", "|err| <= gamma_(K+1) (|x| @ |decode(W)|.T + |b|)",
           "the decode is exact, then linear's bound", _b_mxfp4_linear),
    Budget("softmax", "error_model", "|err| <= p_j (eta_j + sum_l p_l eta_l + gamma_n + u) + tiny, "
           "eta_j = u|x_j - m| + 2L u", _SM, _b_softmax),
    _exact("dequantize_gguf", "gguf's float32 dequantization, bit for bit: every weight is one or two float32 "
           "roundings in a fixed order (spec/quant.md), which an implementation must reproduce"),
    _exact("gguf_embedding", "rows of dequantize_gguf: exact (spec/quant.md)"),
    Budget("gguf_linear", "error_model", "|err| <= gamma_(K+1) (|x| @ |dequantize_gguf(W)|.T + |b|)",
           "the weights are exact (dequantize_gguf), then linear's bound", _b_gguf_linear),
    _exact("greedy", "argmax: exact when the top two logits differ (drawn with a margin); ties go to the lowest index"),
    Budget("apply_temperature", "ulp", "|err| <= 2u |y|", "the temperature's rounding and one division (or *1/T)",
           _b_apply_temperature),
    _exact("top_k_filter", "a selection with -inf for the rest; ties at the threshold are all kept"),
    _exact("top_p_filter", "a selection; exact when no prefix sum lies within its rounding of p (margin)"),
    _exact("sample", "inverse-CDF draw from the same Generator; exact away from CDF boundaries (margin)"),
]

BUDGETS = {b.op: b for b in _TABLE}



def get_budget(op):
    """The budget of `op` (ArgumentError naming op if there is none; tests check every op has one)."""
    if op not in BUDGETS:
        raise ArgumentError(f"op: expected an op with a budget (one of {len(BUDGETS)} in BUDGETS), found {op!r}; "
                            f"ops without one: {sorted(set(OP_NAMES) - set(BUDGETS))}")
    return BUDGETS[op]
