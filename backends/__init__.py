"""Backends: the reference operations, fast. See spec/backend-interface.md.

    from refimpl.backends import get_backend
    ops = get_backend("numpy").as_ops()      # or "numba", "cupy", "module:attribute", "variant:NAME"
"""

from .interface import (
    ENTRY_POINT_GROUP,
    ENV_VAR,
    Backend,
    BackendError,
    BackendOps,
    BackendUnavailable,
    OpNotSupported,
    get_backend,
    register_backend,
    registered_backends,
)
from .numpy import NumpyBackend

__all__ = [
    "Backend", "BackendOps", "BackendError", "BackendUnavailable", "OpNotSupported", "NumpyBackend",
    "get_backend", "register_backend", "registered_backends", "ENV_VAR", "ENTRY_POINT_GROUP",
]
