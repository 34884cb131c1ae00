"""Affine projection in the torch Linear layout (spec/linear.md)."""

from .._validate import as_float_array, require
from ..precision import compute_dtype

__all__ = ["linear", "check_linear"]


def check_linear(x, weight, bias=None):
    """The argument checks of linear (ArgumentError; returns None)."""
    x = as_float_array(x, "x", min_ndim=1)
    w = as_float_array(weight, "weight")
    if w.ndim != 2:
        require(False, "weight", "a 2-D matrix [out, in]", f"shape {w.shape}")
    if w.shape[1] != x.shape[-1]:
        require(False, "weight", f"shape [out, {x.shape[-1]}] (in = last dimension of x)", f"shape {w.shape}")
    if bias is not None:
        b = as_float_array(bias, "bias")
        if b.shape != (w.shape[0],):
            require(False, "bias", f"shape ({w.shape[0]},) (out = rows of weight)", f"shape {b.shape}")


def linear(x, weight, bias=None):
    """``y = x @ weight.T + bias``.

    x: [..., in]; weight: [out, in] (torch ``Linear`` layout; GPT-2's Conv1D
    ``[in, out]`` weights are transposed once by the loader, never here);
    bias: [out] or None (no bias: LLaMA projections, gpt-oss unembedding).

    Dtype: every input is converted to ``compute_dtype(x, weight, bias)``
    (float64 if any is float64, else float32; bfloat16/float16 weights widen
    exactly), the product is accumulated in that dtype by the matmul, the
    bias is added after the product (one rounding), and the result is that
    dtype. Returns [..., out].
    """
    check_linear(x, weight, bias)
    x, w = as_float_array(x, "x"), as_float_array(weight, "weight")
    b = None if bias is None else as_float_array(bias, "bias")
    dt = compute_dtype(x, w, b)
    y = x.astype(dt, copy=False) @ w.astype(dt, copy=False).T  # [..., out]
    if b is not None:
        y = y + b.astype(dt, copy=False)
    return y
