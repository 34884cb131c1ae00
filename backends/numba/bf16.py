"""Dense linear on bfloat16 weights kept as stored (refimpl.ops.linear with a bfloat16 weight).

A bfloat16 weight widens exactly to float32 (its 16 bits are the high half of the float32), so
keeping the stored bfloat16 matrix and widening each weight inside the product gives the
reference's operands exactly, in half the memory and half the bytes read per token (the reason:
a decode step reads every weight once; gpt-oss's unembedding is 201088 x 2880).

Decode and short prompts (T < GEMM_MIN_TOKENS tokens): a parallel GEMV, one work item per ROWS
output rows, taken 4 at a time (4 memory streams; a row, 2 bytes per weight, stays in L1 while the
T tokens read it; 4 rows measured 18% faster than 1 on one thread, 8.2 vs 6.9 GB/s); each
weight is widened in registers (`_widen`: zero-extend, shift left 16, reinterpret, all 32-bit
integer work that vectorises), multiplied by x in the compute dtype (float64 when x is: the
float32 -> float64 widening is exact too) and summed over k with the `reassoc` fast-math flag only
(LLVM keeps vector partial sums; no contraction), as linear.gemv. Bias added after the sum.
Prefill (T >= GEMM_MIN_TOKENS): CHUNK rows at a time are widened into a buffer and multiplied by
NumPy's matmul (BLAS), then the bias is added; the float32 matrix is never held whole.
Only the summation order differs from the reference (within linear's budget, gamma_K |x| |W|).
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from refimpl.precision import compute_dtype

from ._common import JIT, enter, launch, leave, per_dtype

ROWS = 16  # output rows per parallel work item (decode)
GEMM_MIN_TOKENS = 16  # from this many tokens on: widened chunks and BLAS
CHUNK = 8192  # weight rows widened per BLAS call (8192 x 2880 float32 = 94 MB): few calls, since
# alternating BLAS's threads and Numba's on a busy 2-core machine cost ~0.1 s a switch (measured)

_I32 = ir.IntType(32)
_SUM = dict(JIT, fastmath={"reassoc"})  # the sum over k may be split into vector partial sums; nothing else


@intrinsic
def _widen(typingctx, u):
    """The float32 whose high 16 bits are the bfloat16 bits u (uint16): exact."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        bits = builder.shl(builder.zext(args[0], _I32), ir.Constant(_I32, 16))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


@njit(**_SUM)  # not inlined: an inlined helper would take its caller's fast-math flags
def gemv_rows(x, w, bias, has_bias, zero, y, n0, n1):  # x [T, K]; w [N, K] uint16 (bfloat16 bits); y [T, N]
    """One work item of the GEMV: y[:, n0:n1], sums started at zero (the compute dtype's 0); layer.py's
    one-call layer runs it too."""
    T, K = x.shape[0], w.shape[1]
    n = n0
    while n + 4 <= n1:  # 4 rows at a time: 4 memory streams, each x[k] loaded once for 4 products
        w0, w1, w2, w3 = w[n], w[n + 1], w[n + 2], w[n + 3]  # [K] each
        for t in range(T):
            xr = x[t]  # [K]
            s0 = s1 = s2 = s3 = zero
            for k in range(K):
                xv = xr[k]
                s0 += xv * _widen(w0[k])
                s1 += xv * _widen(w1[k])
                s2 += xv * _widen(w2[k])
                s3 += xv * _widen(w3[k])
            if has_bias:
                s0, s1, s2, s3 = s0 + bias[n], s1 + bias[n + 1], s2 + bias[n + 2], s3 + bias[n + 3]
            y[t, n], y[t, n + 1], y[t, n + 2], y[t, n + 3] = s0, s1, s2, s3
        n += 4
    while n < n1:
        wr = w[n]  # [K]
        for t in range(T):
            xr = x[t]  # [K]
            s = zero
            for k in range(K):
                s += xr[k] * _widen(wr[k])
            y[t, n] = s + bias[n] if has_bias else s
        n += 1


def _make_gemv(dt):
    F = dt.type

    @njit(parallel=True, **_SUM)
    def kernel(nt, x, w, bias, has_bias, y):  # x [T, K]; w [N, K] uint16 (bfloat16 bits); bias [N]; y [T, N]
        old = enter(nt)
        N = w.shape[0]
        for c in prange((N + ROWS - 1) // ROWS):
            gemv_rows(x, w, bias, has_bias, F(0), y, c * ROWS, min(N, (c + 1) * ROWS))
        leave(old)

    return kernel


def _make_widen(dt):
    @njit(parallel=True, **JIT)
    def kernel(nt, w, out):  # w [R, K] uint16; out [R, K] dt
        old = enter(nt)
        R, K = w.shape
        for r in prange(R):
            for k in range(K):
                out[r, k] = _widen(w[r, k])
        leave(old)

    return kernel


gemv_kernel = per_dtype(_make_gemv)
widen_kernel = per_dtype(_make_widen)


def widen(w, dt=np.float32):
    """A bfloat16 matrix [R, K] as dtype dt (float32 or float64), exactly."""
    bits = np.asarray(w).view(np.uint16)
    bits = np.ascontiguousarray(bits).reshape(-1, bits.shape[-1]) if bits.ndim != 2 else np.ascontiguousarray(bits)
    out = np.empty(bits.shape, dtype=dt)
    launch(widen_kernel(np.dtype(dt)), out.size, bits, out)
    return out.reshape(np.shape(w))


def linear(x, weight, bias=None):
    """refimpl.ops.linear (same contract) for a bfloat16 weight [out, in], read as stored (checked by the
    backend base): x [..., in] @ weight.T + bias in compute_dtype(x, weight, bias)."""
    xa, w = np.asarray(x), np.asarray(weight)
    dt = compute_dtype(xa, w, bias)
    lead, n_out, k = xa.shape[:-1], w.shape[0], w.shape[1]
    x2 = np.ascontiguousarray(xa, dtype=dt).reshape(-1, k)  # [T, in]
    bits = w.view(np.uint16)  # [out, in]
    if not bits.flags.c_contiguous:
        bits = np.ascontiguousarray(bits)
    T = x2.shape[0]
    b = np.zeros(1, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)  # [out]
    if T < GEMM_MIN_TOKENS:
        y = np.empty((T, n_out), dt)
        launch(gemv_kernel(dt), T * n_out * k, x2, bits, b, bias is not None, y)
        return y.reshape(*lead, n_out)
    y = np.empty((T, n_out), dt)
    buf = np.empty((min(CHUNK, n_out), k), dt)  # [CHUNK, in]
    wk = widen_kernel(dt)
    with np.errstate(all="ignore"):
        for r0 in range(0, n_out, CHUNK):
            r1 = min(n_out, r0 + CHUNK)
            part = buf[:r1 - r0]
            launch(wk, part.size, bits[r0:r1], part)
            y[:, r0:r1] = x2 @ part.T
        if bias is not None:
            y = y + b
    return y.reshape(*lead, n_out)
