"""Argument handling shared by the launchers: validation, storage dtypes, launch geometry.

Every launcher first runs refimpl's public validator for its op (refimpl.ops.CHECKS, when the
installed refimpl has it), then the shape checks that keep the kernel inside its arrays (a C kernel
reading past an array would crash or read garbage, so these run whatever refimpl provides).
"""

import math

import ml_dtypes
import numpy as np

from refimpl.errors import ArgumentError

BF16 = np.dtype(ml_dtypes.bfloat16)
I32, I64, F32, F64 = np.int32, np.int64, np.float32, np.float64


class Float64NotSupported(Exception):
    """An input needs float64 compute; the kernels compute in float32 (the backend decides what to do)."""


def require(cond, name, expected, found):
    if not cond:
        raise ArgumentError(f"{name}: expected {expected}, found {found}")


def _device_bf16(v):
    """A CuPy array holding bfloat16 bits as uint16 (CupyRuntime's bf16 storage)."""
    return type(v).__module__.startswith("cupy") and getattr(v, "dtype", None) == np.uint16


def check(op, *args, **kwargs):
    """refimpl.ops.CHECKS[op](*args, **kwargs): refimpl's own validation of the op's arguments.

    Skipped for calls with bf16 device arrays (uint16 on CuPy), which the dtype rule of the checks
    would refuse; the launchers' own shape checks still run. Every launcher calls this first, so the
    backend's run() does not call CHECKS again.
    """
    from refimpl.ops import CHECKS

    if op in CHECKS and not any(_device_bf16(v) for v in (*args, *kwargs.values())):
        CHECKS[op](*args, **kwargs)


def is_float(rt, a):
    return a.dtype.kind == "f" or rt.is_bf16(a)


def as_array(rt, a, name):
    """a as the runtime's array (lists and scalars converted), with a float or bf16 dtype."""
    a = rt.asarray(a)
    require(is_float(rt, a), name, "a float array (float32, bfloat16, float16, float64)", f"dtype {a.dtype}")
    return a


def storage(rt, *arrays):
    """The arrays in one storage dtype for a kernel: ("bf16", arrays as bf16) when every array is bf16,
    else ("f32", arrays widened exactly to float32); None entries stay None. Any float64 array raises
    Float64NotSupported (the kernels compute in float32). Arrays come back C-contiguous."""
    present = [a for a in arrays if a is not None]
    if any(a.dtype == np.float64 for a in present):
        raise Float64NotSupported()
    if present and all(rt.is_bf16(a) for a in present):
        return "bf16", [None if a is None else rt.contiguous(a) for a in arrays]
    return "f32", [None if a is None else rt.to_f32(a) for a in arrays]


def f32(rt, a):
    """A float array as C-contiguous float32 (exact widening; float64 refused)."""
    if a is None:
        return None
    if a.dtype == np.float64:
        raise Float64NotSupported()
    return rt.to_f32(a)


def prod(shape):
    return int(math.prod(shape))


def grid1(rt, n):
    """Blocks for a grid-stride loop over n items: at least 1, at most rt.max_grid (every kernel
    loops with stride gridDim.x * blockDim.x, so any grid size gives the same result)."""
    return (max(1, min(rt.max_grid, -(-n // rt.block))),)


def grid_rows(rt, rows):
    """Blocks for a kernel that takes rows blockIdx.x, blockIdx.x + gridDim.x, ..."""
    return (max(1, min(rt.max_grid, rows)),)


def unsupported(op, reason):
    """OpNotSupported for `op` (imported late: refimpl.backends imports this package lazily)."""
    from refimpl.backends import OpNotSupported

    return OpNotSupported(op, "cupy", reason)


def suffix(rt, *arrays):
    """storage()'s choice without converting: "bf16" if every (non-None) array is bf16, else "f32"."""
    present = [a for a in arrays if a is not None]
    if any(a.dtype == np.float64 for a in present):
        raise Float64NotSupported()
    return "bf16" if present and all(rt.is_bf16(a) for a in present) else "f32"
