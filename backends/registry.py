"""Finding a backend by name: registered names, prefixes, "module:attribute", entry points, REFIMPL_BACKEND.

    get_backend("numba")                     a registered name (numpy, numba, cupy, cupy-emulated)
    get_backend("mypkg.fast:FastBackend")    a Backend class, instance or factory, importable (the
                                             current directory is searched too)
    get_backend("misreading:sinks_ignored")  a prefix resolver (refimpl.conformance registers
                                             "misreading" when imported; the registry never imports it)
    get_backend()                            $REFIMPL_BACKEND, else "numpy"
"""

import importlib
import importlib.metadata
import os
import sys

from .base import Backend, BackendError, BackendUnavailable

ENV_VAR = "REFIMPL_BACKEND"
ENTRY_POINT_GROUP = "refimpl.backends"
DEFAULT_BACKEND = "numpy"

_FACTORIES = {}
_PREFIXES = {}


def register_backend(name, factory, *, replace=False):
    """Register `factory` (a Backend subclass, instance, or zero-argument callable returning one) as `name`."""
    if not isinstance(name, str) or not name or ":" in name:
        raise BackendError(f"name: expected a non-empty backend name without ':', found {name!r}")
    if name in _FACTORIES and not replace:
        raise BackendError(f"backend {name!r}: already registered (pass replace=True to replace it)")
    _FACTORIES[name] = factory


def register_prefix(prefix, resolver, *, replace=False):
    """Resolve specs "prefix:NAME" with resolver(NAME) -> Backend (it raises BackendError for an unknown NAME)."""
    if not isinstance(prefix, str) or not prefix.isidentifier():
        raise BackendError(f"prefix: expected an identifier, found {prefix!r}")
    if prefix in _PREFIXES and not replace:
        raise BackendError(f"backend prefix {prefix!r}: already registered (pass replace=True to replace it)")
    _PREFIXES[prefix] = resolver


def registered_backends():
    """Names registered in this process (entry points not included)."""
    return tuple(sorted(_FACTORIES))


def _entry_points():
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _instantiate(obj, spec):
    if isinstance(obj, Backend):
        return obj
    if isinstance(obj, type) or callable(obj):
        try:
            obj = obj()
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"backend {spec!r}: building it failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Backend):
        raise BackendError(f"backend {spec!r}: expected a refimpl.backends.Backend (class, instance or factory), "
                           f"found {type(obj).__name__}")
    return obj


def _import(module):
    """importlib.import_module, with the current directory on the path (as `python -m` would have it)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if cwd in sys.path or not (exc.name and module.split(".")[0] == exc.name.split(".")[0]):
            raise
        sys.path.insert(0, cwd)
        try:
            return importlib.import_module(module)
        finally:
            sys.path.remove(cwd)


def _from_module_attribute(spec):
    module, _, attr = spec.partition(":")
    try:
        obj = _import(module)
    except ImportError as exc:
        raise BackendError(f"backend {spec!r}: cannot import module {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BackendError(f"backend {spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _instantiate(obj, spec)


def get_backend(spec=None):
    """The backend named by `spec`.

    spec: a Backend instance (returned as is); a registered name ("numpy", "numba", "cupy", ...);
    "prefix:NAME" for a registered prefix (e.g. "misreading:NAME" once refimpl.conformance is imported);
    "module:attribute" (an importable Backend subclass, instance or factory; a class is instantiated);
    an entry point name in the group "refimpl.backends"; or None: the environment variable
    REFIMPL_BACKEND, else "numpy". Raises BackendError naming the spec, or BackendUnavailable.
    """
    if isinstance(spec, Backend):
        return spec
    if spec is None:
        spec = os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    if not isinstance(spec, str) or not spec.strip():
        raise BackendError(f"backend {spec!r}: expected a backend name, 'module:attribute' or 'prefix:NAME'")
    spec = spec.strip()
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in _PREFIXES:
        return _instantiate(_PREFIXES[prefix](rest), spec)
    if colon and prefix == "misreading":
        raise BackendError(f"backend {spec!r}: the prefix 'misreading' is registered by refimpl.conformance; "
                           f"import refimpl.conformance first (the `refimpl conform` command does)")
    if colon:
        return _from_module_attribute(spec)
    if spec in _FACTORIES:
        return _instantiate(_FACTORIES[spec], spec)
    eps = _entry_points()
    if spec in eps:
        try:
            obj = eps[spec].load()
        except Exception as exc:
            raise BackendError(f"backend {spec!r}: loading entry point {eps[spec].value!r} failed: {exc}") from exc
        return _instantiate(obj, spec)
    raise BackendError(
        f"backend {spec!r}: unknown; registered: {', '.join(registered_backends()) or 'none'}; "
        f"entry points ({ENTRY_POINT_GROUP}): {', '.join(sorted(eps)) or 'none'}; "
        f"other forms: 'module:attribute'"
        + "".join(f", '{p}:NAME'" for p in sorted(_PREFIXES))
    )


def _lazy(name, module, attr, requires, *, gpu=False, extra=None):
    """A factory that imports `module` only when the backend is asked for."""

    def factory():
        try:
            req = importlib.import_module(requires)
        except ImportError:
            raise BackendUnavailable(f"backend {name!r}: not installed (package {requires!r} cannot be imported; "
                                     f"pip install 'refimpl[{extra or name}]')") from None
        if gpu:
            try:
                count = req.cuda.runtime.getDeviceCount()
            except Exception:
                count = 0
            if count < 1:
                raise BackendUnavailable(f"backend {name!r}: no GPU (CUDA reports no device)")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                raise BackendUnavailable(f"backend {name!r}: not installed (module {module!r} is not part of "
                                         f"this installation)") from None
            raise
        if not hasattr(mod, attr):
            raise BackendUnavailable(f"backend {name!r}: module {module!r} has no {attr!r} in this installation")
        return _instantiate(getattr(mod, attr), name)

    return factory


def _numpy_factory():
    from .numpy import NumpyBackend

    return NumpyBackend()


register_backend("numpy", _numpy_factory)
register_backend("numba", _lazy("numba", "refimpl.backends.numba", "NumbaBackend", "numba"))
register_backend("cupy", _lazy("cupy", "refimpl.backends.cupy", "CupyBackend", "cupy", gpu=True, extra="cuda"))
register_backend("cupy-emulated", _lazy("cupy-emulated", "refimpl.backends.cupy", "EmulatedCupyBackend", "numpy"))
