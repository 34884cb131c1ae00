"""Choosing the backend under test, and its kernels, for `refimpl conform` and the pytest plugin.

    backend = resolve_backend("misreading:window_off_by_one" | "my_module:MyBackend" | "numpy" | None)

`module:attr` resolves from the current directory as pytest does (the directory is put first on
sys.path while importing); `misreading:NAME` builds the reference with that misreading
(refimpl.conformance.misreadings); everything else goes to the backend registry.
"""

import os
import sys

from refimpl.backends import BackendError, get_backend

PREFIX = "misreading:"


def misreading_backend(name):
    """The reference with misreading `name` swapped in, as a backend named "misreading:<name>"."""
    from .ops import MISREADINGS

    if name not in MISREADINGS:
        raise BackendError(f"backend {PREFIX + name!r}: unknown misreading {name!r}; known: {', '.join(sorted(MISREADINGS))}")
    return MISREADINGS[name].backend()


def _register_prefix():
    """Offer misreading:NAME to the registry itself, where it supports prefixes (refimpl.backends.registry)."""
    try:
        from refimpl.backends import registry
    except ImportError:
        return
    reg = getattr(registry, "register_prefix", None)
    if reg is not None:
        try:
            reg(PREFIX.rstrip(":"), misreading_backend)
        except Exception:  # already registered, or another signature: resolve_backend handles the prefix
            pass


_register_prefix()


def resolve_backend(spec=None):
    """The backend for `spec` (a Backend, a name, module:attr, misreading:NAME, or None for the default)."""
    if isinstance(spec, str):
        spec = spec.strip()
        if spec.startswith(PREFIX):
            return misreading_backend(spec[len(PREFIX):])
        if ":" in spec:
            cwd = os.getcwd()
            added = cwd not in sys.path and "" not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                return get_backend(spec)
            finally:
                if added and cwd in sys.path:
                    sys.path.remove(cwd)
    return get_backend(spec)


def kernel_names(backend, op):
    """The backend's kernel names for `op` (first = default)."""
    fn = getattr(backend, "kernel_names", None) or getattr(backend, "kernel_variants")
    return list(fn(op))


def with_kernel(backend, op, name):
    """A copy of `backend` running kernel `name` for `op` (the backend itself for its default kernel)."""
    if name == kernel_names(backend, op)[0]:
        return backend
    fn = getattr(backend, "with_kernel", None) or getattr(backend, "with_variant")
    return fn(op, name)


def backend_name(backend):
    """The backend's own name and version, as its header shows them."""
    return f"{getattr(backend, 'name', type(backend).__name__)} {getattr(backend, 'version', '')}".strip()
