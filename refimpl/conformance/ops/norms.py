"""Normalisation: layer_norm, rms_norm, and the pre-/post-norm residual rules.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""

import math

import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    Budget,
    Misreading,
    as_dtype,
    case,
    each,
    exact,
    f64,
    gamma,
    make_rng,
    normal_values,
    scales,
    sizes,
    unit_roundoff,
)


# ----------------------------------------------------------------------------- budgets


def _rescaled(x, y):
    """[..., 1] 1.0 for the finite rows whose sum of squares overflows the compute dtype (they are
    computed on x / max|x|, spec/norms.md: one more rounding per element), else 0.0."""
    big = np.finfo(np.float64 if np.asarray(y).dtype == np.float64 else np.float32).max
    with np.errstate(over="ignore", invalid="ignore"):
        over = ~((x * x).sum(axis=-1, keepdims=True) <= big) & np.isfinite(x).all(axis=-1, keepdims=True)
    return over.astype(np.float64)


def _b_layer_norm(i, y, u, ops=reference_ops):
    # mean: n-1 additions and a division -> |d mu| <= gamma_n mean|x| =: E_c; c = x - mu: +u|c|;
    # var = mean(c^2): gamma_(n+1) relative, plus the propagated 2 (u var + E_c mean|c|);
    # + eps: u; sqrt halves the relative error and adds u -> rho; c / sigma, * w, + b: 3 roundings.
    x, w, b = f64(i["x"]), f64(i["weight"]), f64(i["bias"])
    n = x.shape[-1]
    r = _rescaled(x, y)  # rescaled rows: x / max|x| rounds each element once more (u |x|)
    # The bound is invariant under x -> x / p, eps -> eps / p^2: rescaled rows are evaluated divided by
    # p = 2^floor(log2 max|x|) (exact), so that this float64 evaluation does not overflow either.
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(r > 0, np.exp2(np.floor(np.log2(np.max(np.abs(x), axis=-1, keepdims=True) + (r == 0)))), 1.0)
    x = x / p
    c = x - x.mean(axis=-1, keepdims=True)
    s = (c * c).mean(axis=-1, keepdims=True) + float(i["eps"]) / (p * p)
    ec = (gamma(n, u) + u * r) * np.abs(x).mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = gamma(n + 4, u) / 2 + u + ec * np.abs(c).mean(axis=-1, keepdims=True) / s
        out = np.abs(w) / np.sqrt(s) * (ec + np.abs(c) * (4 * u + rho) + u * r * np.abs(x))
    if b is not None:
        out = out + u * np.abs(b)
    return out, {"n": n, "u": u, "gamma_n": float(gamma(n, u))}


def _b_rms_norm(i, y, u, ops=reference_ops):
    # sum of squares with the division by n: gamma_(n+1); + eps: u; sqrt: half, + u; divide, * w: 2u.
    x = np.asarray(i["x"])
    n = x.shape[-1]
    rel = gamma(n + 2, u) / 2 + 3 * u
    out = (rel + u * _rescaled(f64(x), y)) * np.abs(y)  # a rescaled row: x / max|x| rounds once more
    if i["cast_before_scale"] and x.dtype.itemsize < 4:
        out = out + unit_roundoff(x.dtype) * np.abs(y)
    return out, {"n": n, "u": u, "rel": float(rel)}


def _b_pre_norm_residual(i, y, u, ops=reference_ops):
    x = f64(i["x"])
    s = f64(i["sublayer"](i["norm"](x)))
    return u * (np.abs(x) + np.abs(s)), {"u": u}


def _b_post_norm_residual(i, y, u, ops=reference_ops):
    # The one rounding of z = x + s (u(|x| + |s|) per element) propagated through the norm to first
    # order, sum_j |norm(z + d_j e_j) - norm(z)|, evaluated by perturbing each element of a row.
    x = f64(i["x"])
    s = f64(i["sublayer"](x))
    z = x + s
    d = u * (np.abs(x) + np.abs(s))
    n = z.shape[-1]
    zz = z[..., None, :] + d[..., None, :] * np.eye(n)  # [..., n, n]
    base = f64(i["norm"](z))
    return np.abs(f64(i["norm"](zz)) - base[..., None, :]).sum(axis=-2), {"u": u, "n": n}


BUDGETS = [
    Budget("layer_norm", "error_model",
           "|err| <= |w|/sigma (E_c + |c| (4u + rho)) + u|b|; E_c = gamma_n mean|x|, "
           "rho = gamma_(n+4)/2 + u + E_c mean|c| / (var + eps); a row rescued from overflow: + u mean|x| in "
           "E_c and + u|x| beside |c|",
           "two-pass mean/variance (Welford is as good); E_c is the cancellation in x - mean, which a "
           "one-pass E[x^2] - E[x]^2 exceeds when mean^2 >> var", _b_layer_norm),
    Budget("rms_norm", "error_model", "|err| <= (gamma_(n+2)/2 + 3u) |y|  (+ u_bf16 |y| with cast_before_scale; + u |y| on a row "
           "rescued from overflow)",
           "no cancellation: sum of n squares and /n (gamma_(n+1)), + eps (u), sqrt halves it (+u), / and * w (2u)",
           _b_rms_norm),
    Budget("pre_norm_residual", "error_model", "|err| <= u (|x| + |s|), s = sublayer(norm(x))",
           "one addition; the callables' own errors are checked as their own ops", _b_pre_norm_residual),
    Budget("post_norm_residual", "error_model", "|err_i| <= sum_j |norm(z + d_j e_j) - norm(z)|_i, d = u(|x| + |s|)",
           "the addition's rounding propagated through the norm to first order; the norm's own rounding "
           "is checked as its own op", _b_post_norm_residual),
]


# ----------------------------------------------------------------------------- cases


class PowerOfTwoScale:
    """An exact norm stand-in: x * s with s a vector of +-powers of two (exact in every float dtype)."""

    def __init__(self, s):
        self.s = np.asarray(s, dtype=np.float64)

    def __call__(self, x):
        x = np.asarray(x)
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        return x.astype(dt) * self.s.astype(dt)

    def __repr__(self):
        return f"PowerOfTwoScale({self.s.tolist()})"


class RollHalf:
    """An exact sublayer stand-in: -0.5 * roll(x, 1) along the last axis."""

    def __call__(self, x):
        x = np.asarray(x)
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        return np.roll(x.astype(dt), 1, axis=-1) * dt.type(-0.5)

    def __repr__(self):
        return "RollHalf()"


def _overflow_rows(x, g, dt, on):
    """x with about half its rows scaled so that their largest entry is 4 sqrt(max) of the compute
    dtype: finite rows whose sum of squares overflows (the norms' rescue rule, spec/norms.md)."""
    if not on:
        return x
    big = 4 * math.sqrt(np.finfo(np.float64 if dt == "float64" else np.float32).max)
    rows = g.random(x.shape[0]) < 0.5
    rows[g.integers(x.shape[0])] = True
    x = x.copy()
    x[rows] *= big / np.abs(x[rows]).max(axis=-1, keepdims=True)
    return x


BIG = st.sampled_from((False, False, False, True))  # overflow-range rows in one case of four


@case("layer_norm", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(),
                                              offset=st.sampled_from((0.0, 3.0)), eps=st.sampled_from((1e-5, 1e-6)),
                                              big=BIG)),
     [dict(t=3, n=4, scale=1.0, offset=0.0, eps=1e-5, big=False), dict(t=2, n=33, scale=1.0, offset=3.0, eps=1e-5, big=False),
      dict(t=3, n=16, scale=1.0, offset=3.0, eps=1e-5, big=True)])
def _(c, g, dt, seed):
    n = c["n"]
    x = _overflow_rows(normal_values(g, (c["t"], n), c["scale"]) + c["offset"] * c["scale"], g, dt, c.get("big"))
    return dict(x=as_dtype(x, dt), weight=as_dtype(normal_values(g, n, 1.0), dt), bias=as_dtype(normal_values(g, n, 1.0), dt), eps=c["eps"])


@case("rms_norm", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(),
                                            eps=st.sampled_from((1e-5, 1e-6)), cast=st.sampled_from((False, False, True)),
                                            big=BIG)),
     [dict(t=3, n=16, scale=1e-3, eps=1e-5, cast=False, big=False), dict(t=2, n=129, scale=1.0, eps=1e-6, cast=False, big=False),
      dict(t=3, n=16, scale=1.0, eps=1e-5, cast=False, big=True)])
def _(c, g, dt, seed):
    n = c["n"]
    x = _overflow_rows(normal_values(g, (c["t"], n), c["scale"]), g, dt, c.get("big"))
    return dict(x=as_dtype(x, dt), weight=as_dtype(1 + 0.1 * g.standard_normal(n), dt),
                eps=c["eps"], cast_before_scale=c["cast"])


def _residual_inputs(c, g, dt):
    n = c["n"]
    s = 2.0 ** g.integers(-2, 3, size=n) * np.where(g.random(n) < 0.5, -1.0, 1.0)
    return dict(x=as_dtype(normal_values(g, (c["t"], n), c["scale"]), dt), norm=PowerOfTwoScale(s), sublayer=RollHalf())


_RES = st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(1, 2, 3)), n=sizes(edges=(31, 32, 33), small=(2, 3, 8)),
                                  scale=scales()))


@case("pre_norm_residual", _RES, [dict(t=3, n=8, scale=1.0)])
def _(c, g, dt, seed):
    return _residual_inputs(c, g, dt)


@case("post_norm_residual", _RES, [dict(t=3, n=8, scale=1.0)])
def _(c, g, dt, seed):
    return _residual_inputs(c, g, dt)


# ----------------------------------------------------------------------------- misreadings


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


def _ex_rms():
    g = make_rng(5)
    return "rms_norm", dict(x=g.standard_normal((3, 16)) * 1e-3, weight=g.standard_normal(16))


def _ex_layer_norm():
    g = make_rng(6)
    return "layer_norm", dict(x=g.standard_normal((3, 4)), weight=g.standard_normal(4), bias=g.standard_normal(4))


MISREADINGS = [
    Misreading("rmsnorm_eps_outside", "RMSNorm eps added after the square root: x / (rms + eps)",
            {"rms_norm": _rms_eps_outside}, _ex_rms),
    Misreading("layernorm_unbiased_variance", "LayerNorm variance divided by n - 1 (unbiased) instead of n",
            {"layer_norm": _layer_norm_unbiased}, _ex_layer_norm),
]
