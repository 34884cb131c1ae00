"""Backends: the reference operations, fast. See spec/backend-interface.md.

    from refimpl.backends import get_backend
    b = get_backend("numba")        # or "numpy", "cupy", "module:attribute", "misreading:NAME"
    ops = b.as_ops()                # NumPy in / NumPy out (op-level checks)
    dev = b.ops()                   # the backend's own arrays (whole-model runs)
"""

if __name__ != "refimpl.backends":  # e.g. `import backends` from the repository root
    raise ImportError(f"this package is refimpl.backends (installed from backends/), imported as {__name__!r}: "
                      "import refimpl.backends instead (one name keeps the Numba kernel cache consistent)")

from .base import DTYPES, Backend, BackendError, BackendOps, BackendUnavailable, OpNotSupported
from .numpy import NumpyBackend
from .registry import (
    ENTRY_POINT_GROUP,
    ENV_VAR,
    get_backend,
    register_backend,
    register_prefix,
    registered_backends,
)

__all__ = [
    "Backend", "BackendOps", "BackendError", "BackendUnavailable", "OpNotSupported", "NumpyBackend", "DTYPES",
    "get_backend", "register_backend", "register_prefix", "registered_backends", "ENV_VAR", "ENTRY_POINT_GROUP",
]
