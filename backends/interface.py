"""The backend interface: the operation set, capabilities, kernel variants, registry and selection.

A backend implements some of the reference operations (``refimpl.ops.OP_NAMES``) as methods with the
same names and signatures. Arrays cross the interface as the backend's own array type
(``to_backend`` / ``to_numpy`` convert); ``as_ops()`` wraps a backend into a namespace of NumPy-in,
NumPy-out functions that the model and the conformance suite call. See spec/backend-interface.md.
"""

import copy
import importlib
import importlib.metadata
import inspect
import os
from types import SimpleNamespace

import numpy as np

from refimpl.errors import RefimplError
from refimpl.ops import OP_NAMES
from refimpl.ops import ops as reference_ops

ENV_VAR = "REFIMPL_BACKEND"
ENTRY_POINT_GROUP = "refimpl.backends"
DEFAULT_BACKEND = "numpy"
DTYPES = ("float64", "float32", "bfloat16")


class BackendError(RefimplError):
    """A backend cannot be found, built or used; the message names the backend spec."""


class BackendUnavailable(BackendError):
    """A known backend cannot run here (its package is not installed, or there is no GPU)."""


class OpNotSupported(BackendError, NotImplementedError):
    """The backend does not implement an op (or not for this dtype / size); turns into a skip."""

    def __init__(self, op, backend, reason="not implemented"):
        self.op, self.backend, self.reason = op, getattr(backend, "name", backend), reason
        super().__init__(f"{op}: not supported by backend {self.backend!r} ({reason})")


# ----------------------------------------------------------------------------- the base class


def _method_signature(fn):
    sig = inspect.signature(fn)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sig.replace(parameters=[self_param, *sig.parameters.values()])


def _stub(name):
    def op(self, *args, **kwargs):
        raise OpNotSupported(name, self)

    op.__name__ = op.__qualname__ = name
    op.__signature__ = _method_signature(getattr(reference_ops, name))
    op.__doc__ = f"Same contract as refimpl.ops.{name}; this backend does not implement it."
    op.not_implemented = True
    return op


class Backend:
    """Base class of every backend. Subclasses override the op methods they implement.

    Every op of ``refimpl.ops`` is a method here with the same name and signature (``self`` added);
    the base version raises ``OpNotSupported``. Arrays passed to and returned by op methods are the
    backend's own array type; NumPy callers go through ``as_ops()``.
    """

    name = "abstract"
    version = "0"
    needs_gpu = False

    def __init__(self):
        self._variants = {}

    # --- description
    def capabilities(self):
        """dict(ops=set of op names implemented, dtypes=set of dtype names, limits=dict, needs_gpu=bool)."""
        ops = {n for n in OP_NAMES if not getattr(getattr(type(self), n), "not_implemented", False)}
        return dict(ops=ops, dtypes=set(DTYPES), limits={}, needs_gpu=self.needs_gpu)

    def unsupported_reason(self, op, *, dtype=None, **sizes):
        """None if the backend can run `op` at this dtype and these sizes, else the reason (a skip message).

        sizes: e.g. head_dim=64 is checked against limits["max_head_dim"].
        """
        cap = self.capabilities()
        if op not in cap["ops"]:
            return f"{op}: not implemented by backend {self.name!r}"
        if dtype is not None and str(np.dtype(dtype)) not in cap["dtypes"]:
            return f"{op}: dtype {np.dtype(dtype)} not supported by backend {self.name!r} (supports {sorted(cap['dtypes'])})"
        for key, value in sizes.items():
            limit = cap["limits"].get(f"max_{key}")
            if limit is not None and value > limit:
                return f"{op}: {key}={value} above backend {self.name!r} limit max_{key}={limit}"
        return None

    # --- arrays
    def to_backend(self, array):
        """A NumPy array as this backend's array type."""
        return array

    def to_numpy(self, array):
        """This backend's array as a NumPy array."""
        return np.asarray(array)

    # --- kernel variants
    def kernel_variants(self, op):
        """Names of the kernels this backend has for `op` (first = default); each is tested."""
        return ["default"]

    def kernel_variant(self, op):
        """The kernel currently selected for `op`."""
        return self._variants.get(op, self.kernel_variants(op)[0])

    def with_variant(self, op, variant):
        """A copy of this backend that runs kernel `variant` for `op`."""
        names = self.kernel_variants(op)
        if variant not in names:
            raise BackendError(f"backend {self.name!r}: op {op} has kernel variants {names}, found {variant!r}")
        other = copy.copy(self)
        other._variants = {**self._variants, op: variant}
        return other

    # --- the NumPy-facing namespace
    def as_ops(self, *, fallback=True):
        """A namespace with every op name, NumPy in and NumPy out (see BackendOps)."""
        return BackendOps(self, fallback=fallback)

    def __repr__(self):
        v = {k: v for k, v in self._variants.items()}
        return f"<{type(self).__name__} {self.name!r} {self.version}{' ' + str(v) if v else ''}>"


for _name in OP_NAMES:
    setattr(Backend, _name, _stub(_name))


class BackendOps(SimpleNamespace):
    """Every op by name, NumPy in and NumPy out, through a backend.

    Implemented ops convert their array arguments with ``to_backend``, call the backend and convert
    the results with ``to_numpy`` (callable arguments, e.g. ``expert_fn``, are wrapped so that they
    see NumPy arrays). With ``fallback=True`` (whole-model runs) an op the backend lacks runs the
    reference instead, and its name is listed in ``fallbacks``; with ``fallback=False`` it raises
    ``OpNotSupported``.
    """

    def __init__(self, backend, *, fallback=True):
        implemented = backend.capabilities()["ops"]
        fns, missing = {}, []
        for name in OP_NAMES:
            if name in implemented:
                fns[name] = _converting(backend, name)
            elif fallback:
                fns[name] = getattr(reference_ops, name)
                missing.append(name)
            else:
                fns[name] = _unsupported(backend, name)
        super().__init__(**fns)
        self.backend = backend
        self.fallbacks = tuple(missing)


def _unsupported(backend, name):
    def op(*args, **kwargs):
        raise OpNotSupported(name, backend)

    op.__name__ = name
    return op


def _converting(backend, name):
    method = getattr(backend, name)

    def to_b(v):
        if isinstance(v, np.ndarray):
            return backend.to_backend(v)
        if callable(v) and not isinstance(v, type):
            return lambda *a, **k: to_b(v(*[to_np(x) for x in a], **{n: to_np(x) for n, x in k.items()}))
        return v

    def to_np(v):
        if isinstance(v, tuple):
            return tuple(to_np(x) for x in v)
        if isinstance(v, list):
            return [to_np(x) for x in v]
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return backend.to_numpy(v)

    def op(*args, **kwargs):
        return to_np(method(*[to_b(a) for a in args], **{k: to_b(v) for k, v in kwargs.items()}))

    op.__name__ = name
    op.__signature__ = inspect.signature(getattr(reference_ops, name))
    return op


# ----------------------------------------------------------------------------- registry


_FACTORIES = {}


def register_backend(name, factory, *, replace=False):
    """Register `factory` (a Backend subclass, instance, or zero-argument callable returning one) as `name`."""
    if not isinstance(name, str) or not name or ":" in name:
        raise BackendError(f"name: expected a non-empty backend name without ':', found {name!r}")
    if name in _FACTORIES and not replace:
        raise BackendError(f"backend {name!r}: already registered (pass replace=True to replace it)")
    _FACTORIES[name] = factory


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


def _from_module_attribute(spec):
    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(f"backend {spec!r}: cannot import module {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BackendError(f"backend {spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _instantiate(obj, spec)


def _from_variant(spec):
    from refimpl.conformance.variants import VARIANTS

    name = spec[len("variant:"):]
    if name not in VARIANTS:
        raise BackendError(f"backend {spec!r}: unknown known-wrong variant {name!r}; known: {', '.join(sorted(VARIANTS))}")
    return VARIANTS[name].backend()


def get_backend(spec=None):
    """The backend named by `spec`.

    spec: a Backend instance (returned as is); a registered name ("numpy", "numba", "cupy", ...);
    "module:attribute" (an importable Backend subclass, instance or factory; a class is instantiated);
    "variant:NAME" (the reference with a known-wrong variant, refimpl.conformance.variants);
    an entry point name in the group "refimpl.backends"; or None: the environment variable
    REFIMPL_BACKEND, else "numpy". Raises BackendError naming the spec, or BackendUnavailable.
    """
    if isinstance(spec, Backend):
        return spec
    if spec is None:
        spec = os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    if not isinstance(spec, str) or not spec.strip():
        raise BackendError(f"backend {spec!r}: expected a backend name, 'module:attribute' or 'variant:NAME'")
    spec = spec.strip()
    if spec.startswith("variant:"):
        return _from_variant(spec)
    if ":" in spec:
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
        f"other forms: 'module:attribute', 'variant:NAME'"
    )


def _lazy(name, module, attr, requires, *, gpu=False):
    """A factory that imports `module` only when the backend is asked for."""

    def factory():
        try:
            req = importlib.import_module(requires)
        except ImportError:
            raise BackendUnavailable(f"backend {name!r}: not installed (package {requires!r} cannot be imported; "
                                     f"pip install 'refimpl[{name if name != 'cupy' else 'cuda'}]')") from None
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
        return _instantiate(getattr(mod, attr), name)

    return factory


def _numpy_factory():
    from .numpy import NumpyBackend

    return NumpyBackend()


register_backend("numpy", _numpy_factory)
register_backend("numba", _lazy("numba", "refimpl.backends.numba", "NumbaBackend", "numba"))
register_backend("cupy", _lazy("cupy", "refimpl.backends.cupy", "CupyBackend", "cupy", gpu=True))
register_backend("cupy-emulated", _lazy("cupy-emulated", "refimpl.backends.cupy", "EmulatedCupyBackend", "numpy"))
