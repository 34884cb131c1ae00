"""Choosing the backend under test, and its kernels, for `refimpl conform` and the pytest plugin.

    backend = resolve_backend("misreading:window_off_by_one" | "my_module:MyBackend" | "numpy" | None)

`module:attr` resolves from the current directory as pytest does (refimpl.backends.registry);
`misreading:NAME` builds the reference with that misreading (refimpl.conformance.misreadings),
registered here with the registry's `register_prefix`; everything else is the registry's.
"""

from refimpl.backends import BackendError, get_backend, register_prefix

PREFIX = "misreading:"


def misreading_backend(name):
    """The reference with misreading `name` swapped in, as a backend named "misreading:<name>"."""
    from .ops import MISREADINGS

    if name not in MISREADINGS:
        raise BackendError(f"backend {PREFIX + name!r}: unknown misreading {name!r}; known: {', '.join(sorted(MISREADINGS))}")
    return MISREADINGS[name].backend()


register_prefix(PREFIX.rstrip(":"), misreading_backend, replace=True)


def resolve_backend(spec=None):
    """The backend for `spec` (a Backend, a name, module:attr, misreading:NAME, or None for the default)."""
    return get_backend(spec)


def kernel_names(backend, op):
    """The backend's kernel names for `op` (first = default); ["default"] when it lists none."""
    return list(backend.kernel_names(op)) or ["default"]


def with_kernel(backend, op, name):
    """A copy of `backend` running kernel `name` for `op` (the backend itself for its default kernel)."""
    if name == kernel_names(backend, op)[0]:
        return backend
    return backend.with_kernel(op, name)


def backend_name(backend):
    """The backend's own name and version, as its header shows them."""
    return f"{getattr(backend, 'name', type(backend).__name__)} {getattr(backend, 'version', '')}".strip()
