"""Dense linear: a parallel GEMV kernel for a few tokens, BLAS for many (refimpl.ops.linear).

Decode (T < GEMM_MIN_TOKENS): each parallel work item owns ROWS output rows and sums
x[t, k] * w[n, k] over k in the compute dtype with the `reassoc` and `contract` fast-math flags only
(LLVM splits the sum into vector partial sums and uses FMA: linear's budget allows any summation
order and contraction), bias added after the sum, as the reference.
Prefill (T >= GEMM_MIN_TOKENS): NumPy's matmul (BLAS sgemm/dgemm, blocked and multi-threaded)
is faster than any loop nest here, so it is used, then the bias is added (one rounding, as the
reference).
bfloat16 weights (kept bfloat16 in memory, half the bytes of float32) go to bf16.py, which never
widens a whole matrix: exact widening in registers for a few tokens, in chunks for BLAS beyond.
Other narrower weights (float16) are widened by the matmul path.
"""

import numpy as np
from numba import njit, prange

from refimpl.precision import bfloat16, compute_dtype

from . import bf16
from ._common import JIT, enter, launch, leave

ROWS = 16
GEMM_MIN_TOKENS = 4

_SUM = dict(JIT, fastmath={"reassoc", "contract"})  # the dot only: any summation order, FMA (linear's budget)


@njit(**_SUM)  # not inlined: an inlined helper would take its caller's fast-math flags
def gemv_rows(x, w, bias, has_bias, zero, y, n0, n1):  # x [T, K]; w [N, K]; y [T, N]
    """One work item of gemv: y[:, n0:n1] (layer.py's one-call layer runs it too)."""
    T, K = x.shape[0], w.shape[1]
    for n in range(n0, n1):
        for t in range(T):
            acc = zero
            for k in range(K):
                acc += x[t, k] * w[n, k]
            y[t, n] = acc + bias[n] if has_bias else acc


@njit(parallel=True, **_SUM)
def gemv(nt, x, w, bias, has_bias, zero, y):  # x [T, K]; w [N, K]; y [T, N]
    old = enter(nt)
    N = w.shape[0]
    for c in prange((N + ROWS - 1) // ROWS):
        gemv_rows(x, w, bias, has_bias, zero, y, c * ROWS, min(N, (c + 1) * ROWS))
    leave(old)


def linear(x, weight, bias=None):
    """Same contract as refimpl.ops.linear: x [..., in] @ weight[out, in].T + bias, compute_dtype(x, weight, bias).
    A bfloat16 weight stays bfloat16: bf16.linear widens it exactly in registers (few tokens) or in
    chunks for BLAS (many tokens)."""
    xa, w = np.asarray(x), np.asarray(weight)
    if w.dtype == bfloat16:  # kept bfloat16 (refimpl.model.prepare_weights, keep_bf16): bf16.py
        return bf16.linear(xa, w, bias)
    dt = compute_dtype(xa, w, bias)
    lead = xa.shape[:-1]
    x2 = np.ascontiguousarray(xa, dtype=dt).reshape(-1, xa.shape[-1])  # [T, in]
    T = x2.shape[0]
    N, K = w.shape
    b = np.zeros(1, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    if T >= GEMM_MIN_TOKENS or w.dtype != dt or not w.flags.c_contiguous:
        y = x2 @ w.astype(dt, copy=False).T
        if bias is not None:
            y = y + np.asarray(bias).astype(dt, copy=False)
        return y.reshape(*lead, N)
    y = np.empty((T, N), dt)
    launch(gemv, T * N * K, x2, w, b, bias is not None, dt.type(0), y)
    return y.reshape(*lead, N)
