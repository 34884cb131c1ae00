"""Shared pieces of the Numba kernels: the JIT options and per-dtype kernel factories.

Every kernel is built by a factory `make(dt)` for one compute dtype (float32 or float64); inside it,
constants are formed with `F = dt.type`, so float32 kernels never widen to float64 (Numba, like
NumPy, turns float32 op int64 into float64). Arguments are C-contiguous arrays of fixed rank, so
each kernel compiles once per dtype.
"""

import math
import types

import numba
import numpy as np

from .threads import configure_cache, threads as configured_threads

CACHE_DIR = configure_cache()  # before any kernel is decorated: numba reads its cache dir then
JIT = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")  # IEEE: x/0 is inf or NaN


def per_dtype(make):
    """A function dt -> make(dt), built on first use and kept."""
    built = {}

    def get(dt):
        dt = np.dtype(dt)
        if dt not in built:
            built[dt] = make(dt)
        return built[dt]

    get.built = built
    return get


def contiguous(a, dt):
    """a as a C-contiguous array of dtype dt (no copy when it already is one)."""
    return np.ascontiguousarray(a, dtype=dt)


def count(shape):
    """The number of elements of an array of this shape (1 for ())."""
    return math.prod(shape)


SERIAL_BELOW = 1 << 20  # work (about one multiply-add per unit; ~0.3-1 ms serial) under which a kernel
# runs on one thread: on a loaded 2-core machine a parallel region measured 4-12 ms (bench/results)

_SERIAL = {}


def serial_twin(kernel):
    """The same kernel compiled without parallel=True (prange runs as range on the calling thread),
    under its own name so that the two never share an on-disk cache entry (each has its own)."""
    key = id(kernel)
    if key not in _SERIAL:
        f = kernel.py_func
        g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
        g.__qualname__ = f.__qualname__ + "_serial"
        g.__module__ = f.__module__
        opts = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
        _SERIAL[key] = (kernel, numba.njit(cache=True, **opts)(g))  # cached on disk too (as the kernel)
    return _SERIAL[key][1]


def launch(kernel, work, *args):
    """kernel(nt, *args) on all threads (numba.get_num_threads(), set by threads.set_threads), or its
    serial twin when `work` is small.

    Waking the other threads costs microseconds, and on a loaded machine a parallel region waits
    for its slowest thread (a whole scheduler time slice when one is descheduled), so small calls
    (a decode step's norms, activations, rope) run serially. Results do not depend on the thread
    count: each output element is computed by one thread in a fixed order. (The thread count is
    not changed inside kernels: numba's set_num_threads there would make them uncacheable.)
    """
    if work < SERIAL_BELOW or _threads() == 1:
        return serial_twin(kernel)(1, *args)
    return kernel(0, *args)


def _threads():
    """The thread count of set_threads (numba.get_num_threads costs a lock per call), else numba's."""
    n = configured_threads()
    return numba.get_num_threads() if n is None else n


@numba.njit(**JIT)
def enter(nt):
    """Kept for the kernels' structure: a no-op (see launch)."""
    return 0


@numba.njit(**JIT)
def leave(old):
    pass
