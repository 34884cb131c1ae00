"""Precision modes and the points where results are rounded.

Three modes:
  "float64"   the oracle: every op computes and returns float64.
  "float32"   every op computes and returns float32.
  "bfloat16"  emulation of a bf16 implementation (the official gpt-oss torch
              reference): tensors are stored in bf16; each op computes in float32
              from bf16 inputs and its output is rounded to bf16 (round to nearest,
              ties to even) where the reference stores a bf16 tensor.

Ops compute in `compute_dtype(x)`: float64 stays float64, every narrower float
(float32, float16, bfloat16) is promoted to float32.
"""

import ml_dtypes
import numpy as np

from .errors import ArgumentError

MODES = ("float64", "float32", "bfloat16")
bfloat16 = np.dtype(ml_dtypes.bfloat16)


def check_mode(mode):
    if mode not in MODES:
        raise ArgumentError(f"dtype: expected one of {', '.join(MODES)}, found {mode!r}")
    return mode


def compute_dtype(*arrays):
    """float64 if any input is float64, else float32."""
    for a in arrays:
        if a is not None and np.dtype(getattr(a, "dtype", None) or np.asarray(a).dtype) == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def storage_dtype(mode):
    """The dtype tensors are kept in under a precision mode."""
    return {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "bfloat16": bfloat16}[check_mode(mode)]


def round_bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), returned as float32.

    float64 input is first rounded to float32 (as ml_dtypes and torch's c10::BFloat16 do), so it
    can round twice. Overflow gives +-inf and NaN stays NaN, silently (IEEE behaviour).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, dtype=np.float32).astype(bfloat16).astype(np.float32)


def to_mode(x, mode):
    """Round x to the storage dtype of `mode` and return it in that mode's compute dtype."""
    check_mode(mode)
    if mode == "float64":
        return np.asarray(x, dtype=np.float64)
    if mode == "float32":
        with np.errstate(over="ignore"):
            return np.asarray(x, dtype=np.float32)
    return round_bf16(x)
