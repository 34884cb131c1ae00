"""Precision: the three dtypes a model runs in, one Precision object per model, and rounding.

Three dtypes:
  "float64"   the oracle: every op computes and returns float64.
  "float32"   every op computes and returns float32.
  "bfloat16"  emulation of a bf16 implementation (the official gpt-oss torch
              reference): tensors are stored in bf16; each op computes in float32
              from bf16 inputs and its output is rounded to bf16 (round to nearest,
              ties to even) where the reference stores a bf16 tensor.

Ops compute in `compute_dtype(x)`: float64 stays float64, every narrower float
(float32, float16, bfloat16) is promoted to float32. See spec/precision.md.
"""

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .errors import ArgumentError

DTYPES = ("float64", "float32", "bfloat16")
bfloat16 = np.dtype(ml_dtypes.bfloat16)


def check_dtype(dtype):
    """dtype if it is one of DTYPES, else ArgumentError naming `dtype`."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ArgumentError(f"dtype: expected one of {', '.join(DTYPES)}, found {dtype!r}")
    return dtype


@dataclass(frozen=True)
class Precision:
    """What a model run rounds and computes in; made once (refimpl.load, Precision.of).

    dtype: "float64" | "float32" | "bfloat16". compute: the dtype ops compute in (float64, or
    float32). storage: the dtype tensors are rounded to (float64, float32 or bfloat16).
    rounds_each_step: True for "bfloat16", the emulation of a bf16 implementation that stores each
    intermediate the torch reference stores (spec/precision.md's table; the model then calls the
    step-wise ops). angle_dtype: the RoPE angle dtype (float32 for "bfloat16", as the reference).
    """

    dtype: str
    compute: np.dtype
    storage: np.dtype
    rounds_each_step: bool
    angle_dtype: np.dtype

    @classmethod
    def of(cls, dtype):
        """The Precision of a dtype name (a Precision is returned as it is)."""
        if isinstance(dtype, Precision):
            return dtype
        check_dtype(dtype)
        f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
        return cls(dtype=dtype, compute=f64 if dtype == "float64" else f32, storage=storage_dtype(dtype),
                   rounds_each_step=dtype == "bfloat16", angle_dtype=f32 if dtype == "bfloat16" else f64)


_F64, _F32 = np.dtype(np.float64), np.dtype(np.float32)


def compute_dtype(*arrays):
    """float64 if any input is float64, else float32."""
    for a in arrays:
        if a is not None:
            dt = getattr(a, "dtype", None)
            if (np.asarray(a).dtype if dt is None else dt) == _F64:
                return _F64
    return _F32


def storage_dtype(dtype):
    """The dtype tensors are stored in when a model runs in `dtype`."""
    return {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "bfloat16": bfloat16}[check_dtype(dtype)]


def round_bf16(x):
    """x rounded to the nearest bfloat16 (ties to even), returned as float32.

    float64 input is first rounded to float32 (as ml_dtypes and torch's c10::BFloat16 do), so it
    can round twice. Overflow gives +-inf and NaN stays NaN, silently (IEEE behaviour).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, dtype=np.float32).astype(bfloat16).astype(np.float32)


def to_storage(x, dtype):
    """x rounded to the storage dtype of `dtype`, returned in that dtype's compute dtype (host arrays;
    the op refimpl.ops.round_to_storage is this rule for any backend)."""
    check_dtype(dtype)
    if dtype == "float64":
        return np.asarray(x, dtype=np.float64)
    if dtype == "float32":
        with np.errstate(over="ignore"):
            return np.asarray(x, dtype=np.float32)
    return round_bf16(x)
