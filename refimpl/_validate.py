"""Argument checks shared by the reference ops.

Each check raises `ArgumentError` naming the argument, what was expected and what
was found, so that a bad call never reaches NumPy and fails deep inside it.
"""

import numpy as np

from .errors import ArgumentError


def require(cond, name, expected, found):
    """Raise ArgumentError("`name`: expected <expected>, found <found>") unless cond."""
    if not cond:
        raise ArgumentError(f"{name}: expected {expected}, found {found}")


def as_float_array(x, name, *, min_ndim=0):
    """x as a floating NumPy array (bfloat16/float16 allowed), at least min_ndim dims."""
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged lists, objects that refuse conversion
        raise ArgumentError(f"{name}: expected an array of floats, found {type(x).__name__} ({exc})") from None
    if a.dtype == object or a.dtype.kind != "f":
        if a.dtype.kind in "iub":
            a = a.astype(np.float64)
        elif not is_float_dtype(a.dtype):
            raise ArgumentError(f"{name}: expected a floating dtype, found {a.dtype}")
    require(a.ndim >= min_ndim, name, f"at least {min_ndim} dimensions", f"shape {a.shape}")
    return a


def is_float_dtype(dt):
    """True for NumPy floats and the ml_dtypes floats (bfloat16, float8, float4)."""
    dt = np.dtype(dt)
    if dt.kind == "f":
        return True
    if dt.kind != "V":  # complex, strings, objects: ml_dtypes.finfo would accept complex as its real part
        return False
    try:
        import ml_dtypes

        ml_dtypes.finfo(dt)
        return True
    except Exception:
        return False


def as_int_array(x, name):
    """x as an integer NumPy array; floats and bools are refused."""
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise ArgumentError(f"{name}: expected an array of integers, found {type(x).__name__} ({exc})") from None
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int64)
    require(a.dtype.kind in "iu", name, "an integer dtype", str(a.dtype))
    return a


def positive_int(v, name):
    require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1, name, "an integer >= 1", repr(v))
    return int(v)


def divides(a, b, name_a, name_b):
    """Require b % a == 0 (a divides b)."""
    require(b % a == 0, name_a, f"a divisor of {name_b}={b}", a)


def last_dim(a, n, name, what):
    require(a.shape[-1] == n, name, f"last dimension {n} ({what})", f"shape {a.shape}")
