"""RMSNorm and LayerNorm kernels, checked against refimpl.ops.norms (tests/test_numba_backend.py).

One row per parallel work item; each row is reduced sequentially in the compute dtype (the
reference's np.mean sums pairwise, so the sums differ in order only; budgets: spec/budgets.md).
"""

import numpy as np
from numba import njit, prange

from refimpl.precision import compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, count, per_dtype


@njit(inline="always", **JIT)
def _row_scale(x, r, n, zero):
    """max |x[r]| when the row is finite, else zero: the scale of the rescue of a finite row whose
    statistic overflowed (both norms; spec/norms.md)."""
    s = zero
    for i in range(n):
        a = abs(x[r, i])
        if not np.isfinite(a):
            return zero
        if a > s:
            s = a
    return s


@njit(inline="always", **JIT)
def rms_row(x, r, w, eps, out):
    """out[r] = rms_norm of x[r] (x, out [N, n]; w [n]), summed sequentially, with the rescue; constants
    in x's dtype (module level, not a factory's closure: a kernel whose closure holds a compiled
    function misses numba's disk cache and compiles in every process). layer.py fuses it too."""
    F = x.dtype.type
    n = x.shape[1]
    nf = F(n)
    acc = F(0)
    for i in range(n):
        acc += x[r, i] * x[r, i]
    s = _row_scale(x, r, n, F(0)) if not np.isfinite(acc) else F(0)
    if s > F(0):  # a finite row whose mean(x^2) overflowed: the same quantity on u = x / max|x|
        acc = F(0)
        for i in range(n):
            u = x[r, i] / s
            acc += u * u
        den = np.sqrt(acc / nf + eps / (s * s))
        for i in range(n):
            out[r, i] = x[r, i] / s / den * w[i]
    else:
        den = np.sqrt(acc / nf + eps)
        for i in range(n):
            out[r, i] = x[r, i] / den * w[i]


def _make_rms(dt):
    @njit(parallel=True, **JIT)
    def kernel(nt, x, w, eps, out):  # x, out [N, n]; w [n]
        old = enter(nt)
        for r in prange(x.shape[0]):
            rms_row(x, r, w, eps, out)
        leave(old)

    return kernel


@njit(inline="always", **JIT)
def _centred(x, r, n, s, nf):
    """(mean, sum of squared deviations) of x[r] / s (s = 1: the row itself), in x's dtype."""
    F = x.dtype.type
    acc = F(0)
    for i in range(n):
        acc += x[r, i] / s
    mean = acc / nf
    acc = F(0)
    for i in range(n):
        c = x[r, i] / s - mean
        acc += c * c
    return mean, acc


def _make_layer(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, x, w, b, has_bias, eps, out):  # x, out [N, n]; w, b [n]
        old = enter(nt)
        N, n = x.shape
        nf = F(n)
        for r in prange(N):
            s = F(1)
            mean, acc = _centred(x, r, n, s, nf)
            e = eps
            if not np.isfinite(acc):
                m = _row_scale(x, r, n, F(0))
                if m > F(0):  # a finite row whose variance overflowed: the same quantity on u = x / max|x|
                    s = m
                    mean, acc = _centred(x, r, n, s, nf)
                    e = eps / (s * s)
            den = np.sqrt(acc / nf + e)
            for i in range(n):
                y = (x[r, i] / s - mean) / den * w[i]
                if has_bias:
                    y = y + b[i]
                out[r, i] = y
        leave(old)

    return kernel


rms_kernel = per_dtype(_make_rms)
layer_kernel = per_dtype(_make_layer)


def rms_norm(x, weight, *, eps=1e-5, cast_before_scale=False):
    """refimpl.ops.rms_norm (same contract): y = x / sqrt(sum(x_i^2) / n + eps) * weight.

    The sum of squares runs sequentially over the row; cast_before_scale with a narrow x runs the
    kernel with weight 1 (exact), rounds to x's dtype and scales in NumPy.
    """
    x, w = np.asarray(x), np.asarray(weight)  # checked by the backend base (refimpl.ops.check_rms_norm)
    eps, dt = float(eps), compute_dtype(x, w)
    n = x.shape[-1]
    narrow_cast = cast_before_scale and x.dtype.itemsize < 4
    xc = contiguous(x, dt).reshape(count(x.shape[:-1]), n)  # [N, n]
    wc = np.ones(n, dtype=dt) if narrow_cast else contiguous(w, dt)
    out = np.empty(xc.shape, dtype=dt)  # [N, n]
    launch(rms_kernel(dt), xc.size, xc, wc, dt.type(eps), out)  # a Numba kernel: NumPy's errstate plays no part
    out = out.reshape(x.shape)  # [..., n]
    if narrow_cast:
        with np.errstate(all="ignore"):
            out = out.astype(x.dtype).astype(dt) * w.astype(dt, copy=False)
    return out


def layer_norm(x, weight, bias, *, eps=1e-5):
    """refimpl.ops.layer_norm (same contract): two passes (mean, then the centred squares) per row."""
    x, w = np.asarray(x), np.asarray(weight)  # checked by the backend base (refimpl.ops.check_layer_norm)
    b = None if bias is None else np.asarray(bias)
    eps, dt = float(eps), compute_dtype(x, w, b)
    n = x.shape[-1]
    xc = contiguous(x, dt).reshape(count(x.shape[:-1]), n)  # [N, n]
    wc = contiguous(w, dt)
    bc = wc if b is None else contiguous(b, dt)
    out = np.empty(xc.shape, dtype=dt)  # [N, n]
    launch(layer_kernel(dt), 2 * xc.size, xc, wc, bc, b is not None, dt.type(eps), out)
    return out.reshape(x.shape)  # [..., n]
