"""Rounding to the storage dtype, and the sum and the scaling the bfloat16 path stores separately
(spec/elementwise.md). They are ops, so that a backend keeps the arrays on its device for them too."""

import numpy as np

from .. import precision
from .._validate import as_float_array, real, require
from ..precision import compute_dtype

__all__ = ["round_to_storage", "add", "scale", "check_round_to_storage", "check_add", "check_scale"]


def check_round_to_storage(x, dtype):
    """The argument checks of round_to_storage (ArgumentError; returns None)."""
    as_float_array(x, "x")
    precision.check_dtype(dtype)


def round_to_storage(x, dtype):
    """x rounded to the storage dtype of `dtype`, returned in that dtype's compute dtype.

    dtype "float64": x as float64 (exact for every float input). "float32": x rounded to float32
    (nearest, ties to even; overflow gives +-inf). "bfloat16": refimpl.precision.round_bf16(x), the
    nearest bfloat16 value held in float32 (float64 input goes through float32 first, as ml_dtypes
    and torch do). This is the rounding point R of spec/precision.md's table.
    """
    check_round_to_storage(x, dtype)
    return precision.to_storage(as_float_array(x, "x"), dtype)


def check_add(x, y):
    """The argument checks of add: float arrays, y broadcasting to x's shape."""
    a = as_float_array(x, "x")
    b = as_float_array(y, "y")
    try:
        ok = np.broadcast_shapes(tuple(a.shape), tuple(b.shape)) == tuple(a.shape)
    except ValueError:
        ok = False
    if not ok:
        require(False, "y", f"a shape broadcasting to {tuple(a.shape)} (shape of x)", f"shape {tuple(b.shape)}")


def add(x, y):
    """x + y, one IEEE addition per element in compute_dtype(x, y), the result dtype.

    y broadcasts to x's shape (a bias row, a position table [T, d] under a batch). Used where a
    bfloat16 implementation rounds a sum separately (the RoPE terms, a bias after a matmul, the
    learned positions) and for the residual sums a backend keeps on its device.
    """
    check_add(x, y)
    a, b = as_float_array(x, "x"), as_float_array(y, "y")
    dt = compute_dtype(a, b)
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dt, copy=False) + b.astype(dt, copy=False)


def check_scale(x, factor):
    """The argument checks of scale: a float array and a finite real factor."""
    as_float_array(x, "x")
    real(factor, "factor")


def scale(x, factor):
    """x * factor, factor rounded once to compute_dtype(x) (the result dtype), one product per element.

    The bfloat16 path's scaled attention scores (spec/precision.md row 8): -inf (a masked score)
    stays -inf for a factor > 0.
    """
    check_scale(x, factor)
    a = as_float_array(x, "x")
    dt = compute_dtype(a)
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dt, copy=False) * dt.type(factor)
