"""Argument checks shared by the reference ops and their public `check_<op>` validators.

Each check raises `ArgumentError` naming the argument, what was expected and what was found, so
that a bad call never reaches NumPy and fails deep inside it. The checks are neutral to the array
library: a backend's own array (anything with `.shape` and `.dtype` that is not a plain NumPy array)
is read through `.shape`, `.ndim` and `.dtype` only, never converted to the host; conditions on the
values (finite sinks, ids in range) are checked when the values are on the host (`host_values`).
"""

import math

import numpy as np

from .errors import ArgumentError


def require(cond, name, expected, found):
    """Raise ArgumentError("`name`: expected <expected>, found <found>") unless cond."""
    if not cond:
        raise ArgumentError(f"{name}: expected {expected}, found {found}")


def is_device_array(x):
    """True for a backend's own array: has .shape, .ndim and .dtype and is not a NumPy array
    (np.ndarray or np.memmap exactly; a subclass stands for another library's array) or scalar."""
    return (type(x) not in (np.ndarray, np.memmap) and not isinstance(x, np.generic)
            and hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim"))


def host_values(x):
    """x as a NumPy array when its values are on the host, else None (a backend's array)."""
    if is_device_array(x):
        return None
    return np.asarray(x)


def _float_kind(dt):
    return dt.kind == "f" or is_float_dtype(dt)


def as_float_array(x, name, *, min_ndim=0):
    """x as a floating array (bfloat16/float16 allowed), at least min_ndim dims.

    Host input becomes a NumPy array (integers widen to float64); a backend's array is returned
    as it is, after its dtype and rank are checked.
    """
    if type(x) is np.ndarray and x.dtype.kind == "f":  # the common case, first
        if x.ndim < min_ndim:
            require(False, name, f"at least {min_ndim} dimensions", f"shape {x.shape}")
        return x
    if is_device_array(x):
        dt = np.dtype(x.dtype)
        require(_float_kind(dt), name, "a floating dtype", str(dt))
        require(x.ndim >= min_ndim, name, f"at least {min_ndim} dimensions", f"shape {tuple(x.shape)}")
        return x
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
    """x as an integer array; floats and bools are refused (a backend's array is returned as it is)."""
    if is_device_array(x):
        require(np.dtype(x.dtype).kind in "iu", name, "an integer dtype", str(x.dtype))
        return x
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


def real(v, name, *, low=None, low_open=True, what=None):
    """v as a finite Python float, optionally > low (>= low when low_open is False)."""
    ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    ok = ok and math.isfinite(float(v))
    if ok and low is not None:
        ok = float(v) > low if low_open else float(v) >= low
    if what is None:
        what = "a finite number" + ("" if low is None else f" {'>' if low_open else '>='} {low}")
    require(ok, name, what, repr(v))
    return float(v)
