"""Threads and the on-disk kernel cache of the Numba backend (spec/backends-numba.md).

Threads: one number for Numba's parallel kernels and the BLAS library NumPy uses (the prefill
matmuls), from `--threads N` (CLI), else the environment variable REFIMPL_THREADS, else the
number of CPUs this process may run on (os.sched_getaffinity). `set_threads(n)` applies it:
numba.set_num_threads(n), and BLAS through threadpoolctl when it is installed; without
threadpoolctl, BLAS follows OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, which
`refimpl` sets from REFIMPL_THREADS before NumPy is imported when it can (see `env_for_blas`).
On a machine shared with other busy processes, fewer threads are faster (spec/backends-numba.md).

Kernel cache: kernels are compiled with cache=True into CACHE_DIR (NUMBA_CACHE_DIR if set, else
$XDG_CACHE_HOME/refimpl/numba or ~/.cache/refimpl/numba), so an installed, read-only package
compiles once per machine and user. The first run prints one line on stderr.
"""

import os
import sys
from pathlib import Path

ENV_VAR = "REFIMPL_THREADS"
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads():
    """REFIMPL_THREADS if set (an integer >= 1), else the CPUs available to this process."""
    v = os.environ.get(ENV_VAR, "").strip()
    if v:
        try:
            n = int(v)
        except ValueError:
            n = 0
        if n < 1:
            from refimpl.errors import ArgumentError

            raise ArgumentError(f"{ENV_VAR}: expected an integer >= 1, found {v!r}")
        return n
    return available_cpus()


def env_for_blas(n=None):
    """Set the BLAS thread variables to n (default: REFIMPL_THREADS) unless already set; effective
    only before NumPy is imported (the CLI calls it first)."""
    n = default_threads() if n is None else int(n)
    for var in _BLAS_VARS:
        os.environ.setdefault(var, str(n))
    return n


_STATE = {"threads": None}


def set_threads(n):
    """Use n threads (int >= 1) for Numba kernels and BLAS; returns a dict of what was set."""
    import numba

    n = int(n)
    if n < 1:
        from refimpl.errors import ArgumentError

        raise ArgumentError(f"threads: expected an integer >= 1, found {n}")
    nb = min(n, numba.config.NUMBA_NUM_THREADS)  # numba cannot grow past its launch-time pool
    numba.set_num_threads(nb)
    blas = None
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(n, user_api="blas")
        blas = "threadpoolctl"
    except ImportError:
        blas = "env:" + ",".join(f"{v}={os.environ.get(v, 'unset')}" for v in _BLAS_VARS[:1])
    _STATE["threads"] = nb
    return {"numba": nb, "blas": blas}


def threads():
    """The thread count set by set_threads (None before)."""
    return _STATE["threads"]


def cache_dir():
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "refimpl" / "numba"


def configure_cache():
    """Point numba's cache at cache_dir() (before any kernel module is imported); print one line on
    stderr when this refimpl/numba version has not compiled its kernels here yet. Returns the dir."""
    import numba

    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("NUMBA_CACHE_DIR"):
            numba.config.CACHE_DIR = str(d)
        from refimpl._version import __version__

        marker = d / f".compiled-refimpl{__version__}-numba{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
        if not marker.exists():
            print(f"refimpl numba: compiling kernels on first use (once per machine; tens of seconds), cache {d}",
                  file=sys.stderr, flush=True)
            marker.touch()
    except OSError:
        pass  # an unwritable cache: numba falls back to its own locations or compiles in memory
    return d
