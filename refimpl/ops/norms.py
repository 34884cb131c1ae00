"""LayerNorm, RMSNorm and the two residual placements (spec/norms.md)."""

import math

import numpy as np

from .._validate import as_float_array, require
from ..precision import compute_dtype

__all__ = ["layer_norm", "rms_norm", "pre_norm_residual", "post_norm_residual",
           "check_layer_norm", "check_rms_norm", "check_pre_norm_residual", "check_post_norm_residual"]


def _eps(v):
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    require(ok and math.isfinite(float(v)) and float(v) >= 0.0, "eps", "a finite number >= 0", repr(v))
    return float(v)


def _vector(v, name, width):
    a = as_float_array(v, name)
    require(a.shape == (width,), name, f"shape ({width},) (last dimension of x)", f"shape {a.shape}")
    return a


def _rows(x):
    """x checked as [..., n] with n >= 1; returns (x, n)."""
    x = as_float_array(x, "x", min_ndim=1)
    n = x.shape[-1]
    require(n >= 1, "x", "a last dimension >= 1", f"shape {x.shape}")
    return x, n


def check_layer_norm(x, weight, bias, *, eps=1e-5):
    """The argument checks of layer_norm (ArgumentError; returns None)."""
    x, n = _rows(x)
    _vector(weight, "weight", n)
    if bias is not None:
        _vector(bias, "bias", n)
    _eps(eps)


def check_rms_norm(x, weight, *, eps=1e-5, cast_before_scale=False):
    """The argument checks of rms_norm (ArgumentError; returns None)."""
    x, n = _rows(x)
    _vector(weight, "weight", n)
    _eps(eps)
    require(isinstance(cast_before_scale, bool), "cast_before_scale", "a bool", repr(cast_before_scale))


def _rescaled_rows(x, stat, y, eps, *, center):
    """y, with the rows whose sum of squares (or mean) overflowed recomputed on x / max|x|.

    A finite row with |x| above sqrt(max float) (1.8e19 in float32) overflows x^2 to inf, which would
    normalise it to zeros. Only such rows (stat inf or NaN while the row is finite) are recomputed:
    with s = max_i |x_i|, u = x / s, the result is (u - mean(u)) / sqrt(var(u) + eps / s^2) (RMS: u /
    sqrt(mean(u^2) + eps / s^2)), the same quantity scaled so nothing overflows. Every other row is
    returned bit for bit as computed.
    """
    bad = ~np.isfinite(stat) & np.isfinite(x).all(axis=-1, keepdims=True)  # [..., 1]
    if not bad.any():
        return y
    dt = x.dtype
    s = np.max(np.abs(x), axis=-1, keepdims=True)  # [..., 1]
    s = np.where(bad & (s > 0), s, dt.type(1))
    u = x / s
    if center:
        u = u - u.mean(axis=-1, keepdims=True)
    with np.errstate(under="ignore", over="ignore"):
        floor = dt.type(eps) / (s * s)  # 0 once s^2 overflows: eps is then far below rounding
    r = u / np.sqrt((u * u).mean(axis=-1, keepdims=True) + floor)
    return np.where(bad, r, y)


def layer_norm(x, weight, bias, *, eps=1e-5):
    """LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * weight + bias.

    mean and the biased variance (divide by n) are taken in two passes; eps sits inside the sqrt.
    x: [..., n]; weight, bias: [n]; bias None means no bias. eps: finite, >= 0; with eps = 0 a
    zero-variance row gives 0/0 = NaN, as IEEE arithmetic says.
    Dtype: computed in and returned as ``compute_dtype(x, weight, bias)``.
    Overflow: a finite row whose mean or variance overflows is recomputed on x / max|x| with
    eps / max|x|^2 (the same value); other rows are unaffected, bit for bit.
    """
    check_layer_norm(x, weight, bias, eps=eps)
    x, w = as_float_array(x, "x"), as_float_array(weight, "weight")
    b = None if bias is None else as_float_array(bias, "bias")
    eps, dt = float(eps), compute_dtype(x, w, b)
    x = x.astype(dt, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x.mean(axis=-1, keepdims=True)  # [..., 1]
        c = x - mean
        var = (c * c).mean(axis=-1, keepdims=True)  # [..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = c / np.sqrt(var + dt.type(eps))
    y = _rescaled_rows(x, var, y, eps, center=True)
    y = y * w.astype(dt, copy=False)
    if b is not None:
        y = y + b.astype(dt, copy=False)
    return y


def rms_norm(x, weight, *, eps=1e-5, cast_before_scale=False):
    """RMSNorm over the last axis: y = x / sqrt(mean(x^2) + eps) * weight (no mean, no bias).

    x: [..., n]; weight: [n]; eps: finite, >= 0. Computed in compute_dtype(x, weight) (the result
    dtype): the sum of squares, the division and the scale all in it; the scale is applied before
    any rounding to a narrow storage dtype (gpt-oss), which is the caller's step (round_to_storage).
    cast_before_scale=True with x narrower than float32 rounds x / sqrt(...) to x's dtype before
    the scale (HF LlamaRMSNorm's order); no effect for float32/float64 x.
    Overflow: a finite row whose mean(x^2) overflows is recomputed on u = x / max|x| with
    eps / max|x|^2 (same value); other rows are bit for bit unaffected. An all-zero row gives zeros
    (eps > 0). Sources: spec/norms.md.
    """
    check_rms_norm(x, weight, eps=eps, cast_before_scale=cast_before_scale)
    x, w = as_float_array(x, "x"), as_float_array(weight, "weight")
    eps, dt = float(eps), compute_dtype(x, w)
    t = x.astype(dt, copy=False)
    with np.errstate(over="ignore"):
        ms = (t * t).mean(axis=-1, keepdims=True)  # [..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = t / np.sqrt(ms + dt.type(eps))
    t = _rescaled_rows(t, ms, y, eps, center=False)
    if cast_before_scale and x.dtype.itemsize < 4:
        t = t.astype(x.dtype).astype(dt)
    return t * w.astype(dt, copy=False)


def _callable(f, name):
    require(callable(f), name, "a callable taking and returning [..., T, width]", type(f).__name__)


def _same_shape(y, x, name):
    y = as_float_array(y, f"{name} output")
    require(y.shape == x.shape, f"{name} output", f"shape {x.shape} (shape of x)", f"shape {y.shape}")
    return y


def check_pre_norm_residual(x, norm, sublayer):
    """The argument checks of pre_norm_residual that need no call of norm or sublayer."""
    as_float_array(x, "x", min_ndim=1)
    _callable(norm, "norm")
    _callable(sublayer, "sublayer")


def check_post_norm_residual(x, norm, sublayer):
    """The argument checks of post_norm_residual that need no call of norm or sublayer."""
    check_pre_norm_residual(x, norm, sublayer)


def pre_norm_residual(x, norm, sublayer):
    """Pre-norm residual block: ``x + sublayer(norm(x))``.

    The placement used by GPT-2 (``block()`` in openai/gpt-2 src/model.py:
    ``x = x + attn(norm(x, 'ln_1'))``), LLaMA and gpt-oss. The residual
    stream itself is never normalised; a final norm follows the last block.
    norm, sublayer: callables mapping [..., width] to [..., width].
    The sum is computed in ``compute_dtype(x, sublayer(norm(x)))``.
    """
    check_pre_norm_residual(x, norm, sublayer)
    x = as_float_array(x, "x", min_ndim=1)
    y = _same_shape(sublayer(norm(x)), x, "sublayer")
    dt = compute_dtype(x, y)
    return x.astype(dt, copy=False) + y.astype(dt, copy=False)


def post_norm_residual(x, norm, sublayer):
    """Post-norm residual block: ``norm(x + sublayer(x))``.

    The original Transformer's placement (and BERT's); no model in refimpl's
    released set uses it (the seed document's claim that GPT-2 does is wrong;
    see spec/errata.md). The sum is computed in ``compute_dtype(x, sublayer(x))``.
    """
    check_post_norm_residual(x, norm, sublayer)
    x = as_float_array(x, "x", min_ndim=1)
    y = _same_shape(sublayer(x), x, "sublayer")
    dt = compute_dtype(x, y)
    return norm(x.astype(dt, copy=False) + y.astype(dt, copy=False))
