"""Correct but differently written kernels: each must pass `refimpl conform`, at any number of examples.

Formulation(name, op, fn): fn takes the reference op's arguments, computes in the dtype the spec
promises (float32 for float32/bfloat16 inputs, float64 for float64), and is a numerically stable
way of writing the op that a backend author could choose (another summation order, another library
function, rsqrt instead of a division, the logsumexp form, a tiled softmax). The budgets
(spec/budgets.md) must admit every one of them: tests/conformance/test_formulations.py keeps it so.
"""

import math
from dataclasses import dataclass

import numpy as np

from refimpl.ops import ops as R


@dataclass(frozen=True)
class Formulation:
    name: str
    op: str
    fn: object
    note: str


FORMULATIONS = []


def formulation(name, op, note):
    def register(fn):
        FORMULATIONS.append(Formulation(name, op, fn, note))
        return fn
    return register


def _dt(*arrays):
    return np.float64 if all(np.asarray(a).dtype == np.float64 for a in arrays if a is not None) else np.float32


@formulation("softmax_logsumexp", "softmax", "exp(x - m - ln sum exp(x - m)): two roundings in the exponent")
def _(x, axis=-1):
    dt = _dt(x)
    x = np.asarray(x).astype(dt)
    m = np.max(x, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(np.isfinite(m), m, 0)
        lse = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
        out = np.exp(x - m - lse)
    return np.where(np.isnan(out) & np.all(np.isneginf(x), axis=axis, keepdims=True), dt(0), out).astype(dt)


@formulation("softmax_reversed_sum", "softmax", "the denominator summed right to left, one multiplication by its reciprocal")
def _(x, axis=-1):
    dt = _dt(x)
    x = np.moveaxis(np.asarray(x).astype(dt), axis, -1)
    m = np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,), dt)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    s = np.zeros(e.shape[:-1] + (1,), dt)
    for j in range(e.shape[-1] - 1, -1, -1):
        s = s + e[..., j:j + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = e * (dt(1) / s)
    out = np.where(s > 0, out, dt(0))
    return np.moveaxis(out, -1, axis)


def _rescued(t, norm):
    """norm(t, 1) -> (y, statistic) per row; rows of finite t whose statistic is not finite (it overflowed)
    again as norm(t / s, s), s = 2^floor(log2 max|x|): an exact scaling, another way than the
    reference's x / max|x| (norm gets the scale to divide eps by s^2)."""
    dt = t.dtype.type
    with np.errstate(all="ignore"):
        y, stat = norm(t, dt(1))
        bad = ~np.isfinite(stat) & np.isfinite(t).all(axis=-1, keepdims=True)
        if bad.any():
            m = np.max(np.abs(t), axis=-1, keepdims=True)
            s = np.where(bad & (m > 0), np.exp2(np.floor(np.log2(np.where(m > 0, m, dt(1))))), dt(1)).astype(t.dtype)
            y = np.where(bad, norm(t / s, s)[0], y)
    return y


@formulation("rms_norm_rsqrt", "rms_norm", "x * rsqrt(mean(x^2) + eps) * w, the sum of squares as a dot product; "
             "a row whose statistic overflows again on x scaled by a power of two")
def _(x, weight, *, eps=1e-5, cast_before_scale=False):
    dt = _dt(x)

    def norm(t, sc):
        ms = np.einsum("...i,...i->...", t, t)[..., None] / dt(t.shape[-1])
        return t * (dt(1) / np.sqrt(ms + dt(eps) / (sc * sc))), ms

    y = _rescued(np.asarray(x).astype(dt), norm)
    if cast_before_scale and np.asarray(x).dtype.itemsize < 4:
        y = y.astype(np.asarray(x).dtype).astype(dt)
    return y * np.asarray(weight).astype(dt)


@formulation("layer_norm_welford", "layer_norm", "Welford's one-pass mean and variance, then (x - mean) * rstd * w + b; "
             "a row whose statistic overflows again on x scaled by a power of two")
def _(x, weight, bias, *, eps=1e-5):
    dt = _dt(x)

    def norm(t, sc):
        mean = np.zeros(t.shape[:-1] + (1,), dt)
        m2 = np.zeros(t.shape[:-1] + (1,), dt)
        for k in range(t.shape[-1]):
            d = t[..., k:k + 1] - mean
            mean = mean + d / dt(k + 1)
            m2 = m2 + d * (t[..., k:k + 1] - mean)
        return (t - mean) * (dt(1) / np.sqrt(m2 / dt(t.shape[-1]) + dt(eps) / (sc * sc))), m2

    out = _rescued(np.asarray(x).astype(dt), norm) * np.asarray(weight).astype(dt)
    return out + np.asarray(bias).astype(dt) if bias is not None else out


@formulation("linear_reversed_k", "linear", "the dot products accumulated from the last k to the first")
def _(x, weight, bias=None):
    dt = _dt(x, weight)
    xx, w = np.asarray(x).astype(dt), np.asarray(weight).astype(dt)
    acc = np.zeros(xx.shape[:-1] + (w.shape[0],), dt)
    for k in range(xx.shape[-1] - 1, -1, -1):
        acc = acc + xx[..., k:k + 1] * w[:, k]
    return acc + np.asarray(bias).astype(dt) if bias is not None else acc


def _erf_other_libm(z):
    """erf from CPython's math (another libm than the reference's), rounded to the compute dtype, plus a
    deliberate error of 11 ulps of the result: a float32 erf as inaccurate as PyTorch's near -2.1."""
    dt = z.dtype.type
    e = np.vectorize(math.erf, otypes=[np.float64])(z.astype(np.float64)) if z.size else z.astype(np.float64)
    e = e.astype(dt)
    return e + dt(11) * np.spacing(np.abs(e)).astype(dt) * np.sign(e)


@formulation("gelu_other_erf", "gelu", "exact GELU with another libm's erf, 11 ulps off; the tanh form as x * sigmoid(2z)")
def _(x, *, approximate="tanh"):
    dt = _dt(x)
    t = np.asarray(x).astype(dt)
    if approximate == "none":
        return dt(0.5) * t * (dt(1) + _erf_other_libm(t / dt(math.sqrt(2))))
    z = dt(math.sqrt(2 / math.pi)) * (t + dt(0.044715) * t * t * t)
    with np.errstate(over="ignore"):
        return t / (dt(1) + np.exp(dt(-2) * z))


@formulation("silu_logaddexp", "silu", "x * exp(-logaddexp(0, -x)) (x * (1 + tanh(x/2)) / 2 is not stable: it cancels for x << 0)")
def _(x):
    dt = _dt(x)
    t = np.asarray(x).astype(dt)
    with np.errstate(over="ignore"):
        return t * np.exp(-np.logaddexp(dt(0), -t))


@formulation("swiglu_division", "swiglu", "gate / (1 + exp(-gate)) * up")
def _(gate, up):
    dt = _dt(gate, up)
    gg, uu = np.asarray(gate).astype(dt), np.asarray(up).astype(dt)
    with np.errstate(over="ignore"):
        return gg / (dt(1) + np.exp(-gg)) * uu


@formulation("attention_tiled_block_1", "attention", "the online (flash) softmax one key at a time")
def _(q, k, v, **kw):
    return R.attention_online(q, k, v, block_size=1, **kw)


@formulation("rope_cos_sin_complex_exp", "rope_cos_sin", "cos and sin from the complex exponential exp(i angle)")
def _(inv_freq, positions, *, attention_scaling=1.0, angle_dtype=np.float64):
    cos, sin = R.rope_cos_sin(inv_freq, positions, attention_scaling=attention_scaling, angle_dtype=angle_dtype)
    dt = cos.dtype
    ang = np.asarray(positions).astype(angle_dtype)[..., None] * np.asarray(inv_freq).astype(angle_dtype)
    z = np.exp(1j * ang.astype(np.float64 if dt == np.float64 else np.float32))
    return (z.real * attention_scaling).astype(dt), (z.imag * attention_scaling).astype(dt)
