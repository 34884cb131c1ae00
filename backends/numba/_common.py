"""Shared pieces of the Numba kernels: the JIT options and per-dtype kernel factories.

Every kernel is built by a factory `make(dt)` for one compute dtype (float32 or float64); inside it,
constants are formed with `F = dt.type`, so float32 kernels never widen to float64 (Numba, like
NumPy, turns float32 op int64 into float64). Arguments are C-contiguous arrays of fixed rank, so
each kernel compiles once per dtype.
"""

import numba
import numpy as np

JIT = dict(cache=False, fastmath=False, nogil=True, error_model="numpy")  # IEEE: x/0 is inf or NaN


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
    return int(np.prod(shape, dtype=np.int64))


SERIAL_BELOW = 1 << 20  # work (about one multiply-add per unit; ~0.3-1 ms serial) under which a kernel
# runs on one thread: on a loaded 2-core machine a parallel region measured 4-12 ms (bench/results)


def launch(kernel, work, *args):
    """kernel(nt, *args) with nt = 1 (the calling thread alone) when `work` is small, else 0 (all threads).

    Every parallel kernel starts with `old = enter(nt)` and ends with `leave(old)` (numba's
    set_num_threads inside the kernel costs nanoseconds; from Python it costs about 10 us).
    Waking the other threads costs microseconds, and on a loaded machine a parallel region waits
    for its slowest thread (a whole scheduler time slice when one is descheduled), so small calls
    (a decode step's norms, activations, rope) run serially. Results do not depend on the thread
    count: each output element is computed by one thread in a fixed order.
    """
    return kernel(1 if work < SERIAL_BELOW else 0, *args)


@numba.njit(**JIT)
def enter(nt):
    """Inside a kernel: use nt threads (0: leave the setting); returns the setting to restore."""
    old = numba.get_num_threads()
    if nt > 0:
        numba.set_num_threads(nt)
    return old


@numba.njit(**JIT)
def leave(old):
    numba.set_num_threads(old)
