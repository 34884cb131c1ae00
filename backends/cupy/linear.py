"""linear: y = x @ weight.T + bias.

Kernels (kernels/gemm.cu unless said): "rowdot" (one thread per output, float32 accumulation in
index order), "gemv" (one block per output, threads over the input dimension, coalesced weight
reads: the decode shape) and, on a GPU only, "cublas" (CuPy's matmul, i.e. cuBLAS SGEMM on float32
copies of the operands) and "auto" (the GPU default: gemv for at most 8 rows of x, cublas above).
bf16 weights are read as bf16 by rowdot and gemv (kernels *_f32_bf16); cublas widens them first.
"""

import numpy as np

from .args import I32, I64, as_array, check, f32, grid1, grid_rows, prod, require, storage


def _args(rt, x, weight, bias):
    check("linear", x, weight, bias)
    x = as_array(rt, x, "x")
    w = as_array(rt, weight, "weight")
    require(x.ndim >= 1, "x", "at least 1 dimension [..., in]", f"shape {x.shape}")
    require(w.ndim == 2 and w.shape[1] == x.shape[-1], "weight",
            f"shape [out, {x.shape[-1]}] (in = last dimension of x)", f"shape {w.shape}")
    b = None
    if bias is not None:
        b = as_array(rt, bias, "bias")
        require(b.shape == (w.shape[0],), "bias", f"shape ({w.shape[0]},) (out = rows of weight)", f"shape {b.shape}")
    return x, w, b


def _own(kernel):
    def run(rt, x, weight, bias=None):
        return _gemm(rt, kernel, x, weight, bias)

    run.__name__ = f"linear_{kernel}"
    run.__doc__ = f"y = x @ weight.T + bias with kernels/gemm.cu linear_{kernel}_*, float32 (refimpl.ops.linear)."
    return run


def _gemm(rt, kernel, x, weight, bias):
    x, w, b = _args(rt, x, weight, bias)
    bs = f32(rt, b)
    if rt.is_bf16(w) and not rt.is_bf16(x):
        suf, xs, ws = "f32_bf16", f32(rt, x), rt.contiguous(w)
    else:
        suf, (xs, ws) = storage(rt, x, w)
    M, K, N = prod(xs.shape[:-1]), xs.shape[-1], ws.shape[0]
    y = rt.empty(xs.shape[:-1] + (N,), np.float32)
    if M * N:
        if K == 0:
            y[...] = 0 if bs is None else bs
        else:
            if kernel == "rowdot":
                rt.launch("gemm", f"linear_rowdot_{suf}", grid1(rt, M * N), rt.block, xs, ws, bs, y, I64(M), I32(N),
                          I32(K))
            else:
                rt.launch("gemm", f"linear_gemv_{suf}", grid_rows(rt, N), rt.block, xs, ws, bs, y, I32(M), I32(N),
                          I32(K))
    return y


linear_rowdot, linear_gemv = _own("rowdot"), _own("gemv")


def linear_cublas(rt, x, weight, bias=None):
    """y = x @ weight.T + bias through the array library's matmul (cuBLAS under CuPy), float32."""
    x, w, b = _args(rt, x, weight, bias)
    xs, ws, bs = f32(rt, x), f32(rt, w), f32(rt, b)
    y = xs @ ws.T
    if bs is not None:
        y = y + bs
    return y.astype(np.float32, copy=False)


def linear_auto(rt, x, weight, bias=None):
    """gemv for at most 8 rows of x (decode), cublas above (GPU only)."""
    rows = prod(rt.asarray(x).shape[:-1]) if hasattr(x, "shape") else 1
    return (linear_gemv if rows <= 8 else linear_cublas)(rt, x, weight, bias)


def linear(rt, x, weight, bias=None):
    """The runtime's default linear ("auto" on a GPU, "rowdot" in the emulator)."""
    return (linear_auto if rt.name == "cupy" else linear_rowdot)(rt, x, weight, bias)


def kernels(rt_name):
    if rt_name == "cupy":
        return {"linear": {"auto": linear_auto, "cublas": linear_cublas, "rowdot": linear_rowdot, "gemv": linear_gemv}}
    return {"linear": {"rowdot": linear_rowdot, "gemv": linear_gemv}}
