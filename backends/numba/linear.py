"""Dense linear: a parallel GEMV kernel for a few tokens, BLAS for many (refimpl.ops.linear).

Decode (T < GEMM_MIN_TOKENS): each parallel work item owns ROWS output rows and sums
x[t, k] * w[n, k] over k in the compute dtype with the `reassoc` and `contract` fast-math flags only
(LLVM splits the sum into vector partial sums and uses FMA: linear's budget allows any summation
order and contraction), bias added after the sum, as the reference.
Prefill (T >= GEMM_MIN_TOKENS): NumPy's matmul (BLAS sgemm/dgemm, blocked and multi-threaded)
is faster than any loop nest here, so it is used, then the bias is added (one rounding, as the
reference).
bfloat16 weights (kept bfloat16 in memory, half the bytes of float32) are never widened as a whole:
gemv_bf16 widens each weight exactly in registers (the 16 bits shifted into the top of a float32)
for T < BF16_GEMM_MIN_TOKENS, four tokens per pass over the weights; beyond, CHUNK_BYTES of rows at
a time are widened for BLAS. The result is the reference linear on the exactly promoted weight,
within linear's budget. Other narrower weights (float16) are widened by the matmul path.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from refimpl.precision import bfloat16, compute_dtype

from . import bf16
from ._common import JIT, enter, launch, leave

ROWS = 16
GEMM_MIN_TOKENS = 4

_SUM = dict(JIT, fastmath={"reassoc", "contract"})  # the dot only: any summation order, FMA (linear's budget)
BF16_GEMM_MIN_TOKENS = 16  # bfloat16 weights: from this many tokens on, widen CHUNK_BYTES of rows at a time for BLAS
CHUNK_BYTES = 8 << 20


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


@intrinsic
def _bits_f32(typingctx, v):
    """The float32 whose IEEE bits are the uint32 v (a bit cast, exact)."""
    def codegen(context, b, sig, args):
        return b.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@njit(inline="always", **JIT)
def _bf16(u):
    """bfloat16 bits (uint16) -> float32, exactly: the bits are the top half of the float32's."""
    return _bits_f32(np.uint32(u) << np.uint32(16))


@njit(parallel=True, **_SUM)
def gemv_bf16(nt, x, w, bias, has_bias, zero, y):  # x [T, K]; w uint16 [N, K] (bfloat16 bits); y [T, N]
    """y[t, n] = sum_k x[t, k] float(w[n, k]) (+ bias[n]): the weight widened exactly in registers,
    tokens four at a time (each weight read and widened once per four tokens)."""
    old = enter(nt)
    N, K = w.shape
    T = x.shape[0]
    for c in prange((N + ROWS - 1) // ROWS):
        for n in range(c * ROWS, min(N, (c + 1) * ROWS)):
            wn = w[n]
            t = 0
            while t + 4 <= T:
                x0, x1, x2, x3 = x[t], x[t + 1], x[t + 2], x[t + 3]
                a0, a1, a2, a3 = zero, zero, zero, zero
                for k in range(K):
                    wk = _bf16(wn[k])
                    a0 += x0[k] * wk
                    a1 += x1[k] * wk
                    a2 += x2[k] * wk
                    a3 += x3[k] * wk
                if has_bias:
                    a0, a1, a2, a3 = a0 + bias[n], a1 + bias[n], a2 + bias[n], a3 + bias[n]
                y[t, n], y[t + 1, n], y[t + 2, n], y[t + 3, n] = a0, a1, a2, a3
                t += 4
            while t < T:
                acc = zero
                xt = x[t]
                for k in range(K):
                    acc += xt[k] * _bf16(wn[k])
                y[t, n] = acc + bias[n] if has_bias else acc
                t += 1
    leave(old)


def linear(x, weight, bias=None):
    """Same contract as refimpl.ops.linear: x [..., in] @ weight[out, in].T + bias, compute_dtype(x, weight, bias).
    A bfloat16 weight stays bfloat16: gemv_bf16 widens it in registers (few tokens), or CHUNK_BYTES of
    rows at a time are widened (exactly) for BLAS (many tokens)."""
    xa, w = np.asarray(x), np.asarray(weight)
    if w.dtype == bfloat16:  # kept bfloat16 (refimpl.model.prepare_weights, keep_bf16): bf16.py
        return bf16.linear(xa, w, bias)
    dt = compute_dtype(xa, w, bias)
    lead = xa.shape[:-1]
    x2 = np.ascontiguousarray(xa, dtype=dt).reshape(-1, xa.shape[-1])  # [T, in]
    T = x2.shape[0]
    N, K = w.shape
    b = np.zeros(1, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    if w.dtype == bfloat16 and w.flags.c_contiguous:
        y = np.empty((T, N), dt)
        if T < BF16_GEMM_MIN_TOKENS:
            launch(gemv_bf16, T * N * K, x2, w.view(np.uint16), b, bias is not None, dt.type(0), y)
            return y.reshape(*lead, N)
        rows = max(1, CHUNK_BYTES // (4 * K))
        for r0 in range(0, N, rows):
            np.matmul(x2, w[r0:r0 + rows].astype(dt).T, out=y[:, r0:r0 + rows])
        if bias is not None:
            y += b
        return y.reshape(*lead, N)
    if T >= GEMM_MIN_TOKENS or w.dtype != dt or not w.flags.c_contiguous:
        y = x2 @ w.astype(dt, copy=False).T
        if bias is not None:
            y = y + np.asarray(bias).astype(dt, copy=False)
        return y.reshape(*lead, N)
    y = np.empty((T, N), dt)
    launch(gemv, T * N * K, x2, w, b, bias is not None, dt.type(0), y)
    return y.reshape(*lead, N)
