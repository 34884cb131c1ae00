"""Argument checks of the public entry points `refimpl.load` and `Model.generate` (spec/reliability.md).

Each check returns the normalised value or raises ArgumentError naming the argument, what was
expected and what was found, before any file is opened or any token computed. Rules:
  path_or_name   a non-empty str or os.PathLike (load("") would otherwise read the current folder)
  dtype          "float64" | "float32" | "bfloat16", or the matching NumPy / ml_dtypes dtype or type
                 (np.dtype("float64"), np.float32, ml_dtypes.bfloat16), returned as the string
  max_new_tokens an int >= 0 (bool refused: True is not a count)
  temperature    a real number (int or float, not bool or str), finite, >= 0
  top_k          None or an int >= 1;  top_p  None or a real number in (0, 1]
  seed           None or an int >= 0 (what numpy.random.default_rng accepts; bool refused)
  stop_ids       None or an iterable of int ids >= 0 (a bare int is refused: write [5])
  on_token       None or a callable
"""

import math
import numbers
import os

import numpy as np

from .errors import ArgumentError

DTYPES = ("float64", "float32", "bfloat16")

__all__ = ["check_path_or_name", "check_dtype", "check_generate_args", "DTYPES"]


def _fail(name, expected, found):
    raise ArgumentError(f"{name}: expected {expected}, found {found}")


def _found(v):
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) <= 60 else r[:57] + '...'}"


def check_path_or_name(path_or_name):
    """A model name or path as a str; refuses '', whitespace, None and non-path objects."""
    if isinstance(path_or_name, os.PathLike):
        path_or_name = os.fspath(path_or_name)
    if not isinstance(path_or_name, str):
        _fail("path_or_name", "a model name or a path (str or os.PathLike)", _found(path_or_name))
    if not path_or_name.strip():
        _fail("path_or_name", "a model name or a path", "an empty string")
    if "\x00" in path_or_name:
        _fail("path_or_name", "a model name or a path", "a string containing a NUL character")
    return path_or_name


def check_dtype(dtype):
    """One of DTYPES as a string; NumPy / ml_dtypes dtypes and types of those names are accepted."""
    if isinstance(dtype, str):
        if dtype in DTYPES:
            return dtype
        _fail("dtype", f"one of {', '.join(DTYPES)}", _found(dtype))
    if isinstance(dtype, (bool, numbers.Number)) or dtype is None:
        _fail("dtype", f"one of {', '.join(DTYPES)}", _found(dtype))
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        _fail("dtype", f"one of {', '.join(DTYPES)} (or its NumPy dtype)", _found(dtype))
    if name not in DTYPES:
        _fail("dtype", f"one of {', '.join(DTYPES)}", f"dtype {name}")
    return name


def _int(v, name, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        _fail(name, f"an integer >= {lo}", _found(v))
    if v < lo:
        _fail(name, f"an integer >= {lo}", _found(v))
    return int(v)


def _real(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        _fail(name, "a number", _found(v))
    v = float(v)
    if not math.isfinite(v):
        _fail(name, "a finite number", _found(v))
    return v


def check_generate_args(*, max_new_tokens, temperature, top_k=None, top_p=None, seed=None, stop_ids=None,
                        on_token=None):
    """The arguments of Model.generate, normalised (see the module docstring for the rules)."""
    max_new_tokens = _int(max_new_tokens, "max_new_tokens", 0)
    temperature = _real(temperature, "temperature")
    if temperature < 0:
        _fail("temperature", "a number >= 0", _found(temperature))
    if top_k is not None:
        top_k = _int(top_k, "top_k", 1)
    if top_p is not None:
        top_p = _real(top_p, "top_p")
        if not 0 < top_p <= 1:
            _fail("top_p", "a number in (0, 1]", _found(top_p))
    if seed is not None:
        seed = _int(seed, "seed", 0)
    if stop_ids is not None:
        if isinstance(stop_ids, (str, bytes)) or not hasattr(stop_ids, "__iter__"):
            _fail("stop_ids", "a list of token ids (for one id write [id])", _found(stop_ids))
        stop_ids = tuple(_int(t, f"stop_ids[{k}]", 0) for k, t in enumerate(stop_ids))
    if on_token is not None and not callable(on_token):
        _fail("on_token", "a callable taking one id", _found(on_token))
    return dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                stop_ids=stop_ids, on_token=on_token)
