"""Dense linear: a parallel GEMV kernel for a few tokens, BLAS for many (refimpl.ops.linear).

Decode (T < GEMM_MIN_TOKENS): each parallel work item owns ROWS output rows and sums
x[t, k] * w[n, k] over k in the compute dtype with the `reassoc` fast-math flag only (LLVM splits
the sum into vector partial sums; no contraction), bias added after the sum, as the reference.
Prefill (T >= GEMM_MIN_TOKENS): NumPy's matmul (BLAS sgemm/dgemm, blocked and multi-threaded)
is faster than any loop nest here, so it is used, then the bias is added (one rounding, as the
reference). The weight is read as stored (float32 or float64; a narrower weight, e.g. bfloat16,
is widened by the matmul path).
"""

import numpy as np
from numba import njit, prange

from refimpl.precision import bfloat16, compute_dtype

from . import bf16
from ._common import JIT, enter, launch, leave

ROWS = 16
GEMM_MIN_TOKENS = 4

_SUM = dict(JIT, fastmath={"reassoc"})


@njit(parallel=True, **_SUM)
def gemv(nt, x, w, bias, has_bias, zero, y):  # x [T, K]; w [N, K]; y [T, N]
    old = enter(nt)
    N, K = w.shape
    T = x.shape[0]
    for c in prange((N + ROWS - 1) // ROWS):
        for n in range(c * ROWS, min(N, (c + 1) * ROWS)):
            for t in range(T):
                acc = zero
                for k in range(K):
                    acc += x[t, k] * w[n, k]
                y[t, n] = acc + bias[n] if has_bias else acc
    leave(old)


def linear(x, weight, bias=None):
    """Same contract as refimpl.ops.linear: x [..., in] @ weight[out, in].T + bias, compute_dtype(x, weight, bias)."""
    xa, w = np.asarray(x), np.asarray(weight)
    if w.dtype == bfloat16:  # kept bfloat16 (refimpl.model.prepare_weights, keep_bf16): bf16.py
        return bf16.linear(xa, w, bias)
    dt = compute_dtype(xa, w, bias)
    lead = xa.shape[:-1]
    x2 = np.ascontiguousarray(xa, dtype=dt).reshape(-1, xa.shape[-1])  # [T, in]
    T = x2.shape[0]
    N = w.shape[0]
    if T >= GEMM_MIN_TOKENS or w.dtype != dt or not w.flags.c_contiguous:
        y = x2 @ w.astype(dt, copy=False).T
        if bias is not None:
            y = y + np.asarray(bias).astype(dt, copy=False)
        return y.reshape(*lead, N)
    y = np.empty((T, N), dt)
    b = np.zeros(1, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    launch(gemv, T * N * w.shape[1], x2, w, b, bias is not None, dt.type(0), y)
    return y.reshape(*lead, N)
