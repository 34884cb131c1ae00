"""The backend base class: a table of kernels per op, the reference's checks, array conversions.

A backend declares `kernels = {op name: {kernel name: function}}` (the first kernel of an op is its
default); each function takes the reference op's arguments (refimpl.ops.OPS[op]) as the backend's
own arrays and returns the backend's arrays. The base class runs the op's public check
(refimpl.ops.CHECKS[op]) once, then the selected kernel. See spec/backend-interface.md.
"""

import copy
import inspect
from types import MappingProxyType, SimpleNamespace

import numpy as np

from refimpl.errors import RefimplError
from refimpl.ops import CHECKS, OPS

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


class _Method:
    """A kernel written as a method named like the op (`def rms_norm(self, x, weight, ...)`)."""

    def __init__(self, fn):
        self.fn = fn


def _check_table(cls, table):
    if not isinstance(table, dict):
        raise BackendError(f"backend class {cls.__name__}: kernels must be a dict op -> {{kernel name: function}}")
    for op, ks in table.items():
        if op not in OPS:
            raise BackendError(f"backend class {cls.__name__}: kernels names {op!r}, not an op of refimpl.ops.OPS")
        if not isinstance(ks, dict) or not ks or not all(isinstance(n, str) and callable(f) for n, f in ks.items()):
            raise BackendError(f"backend class {cls.__name__}: kernels[{op!r}] must be a non-empty dict "
                               f"{{kernel name: function}}")


class Backend:
    """Base class of every backend: subclasses declare `kernels` (and may override the conversions).

    Class attributes: name, version, needs_gpu, dtypes (the dtype names it computes), limits (e.g.
    {"max_head_dim": 256}), kernels. A method named like an op is the shorthand for a one-kernel entry
    {"default": method} (how a test overrides one op of NumpyBackend). Arrays of op calls through
    `ops()` are the backend's own; `as_ops()` converts NumPy in and out.
    """

    name = "abstract"
    version = "0"
    needs_gpu = False
    dtypes = DTYPES
    limits = MappingProxyType({})
    kernels = MappingProxyType({})
    fuse_projections = False  # True: load stacks q/k/v and gate/up matrices (refimpl.model.fuse_projections)
    keeps_bf16 = False  # True: load keeps bfloat16 matrices bfloat16 (exact widening is the backend's linear's job)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table = {op: dict(ks) for op, ks in super(cls, cls).kernels.items()}  # the base's merged table
        own = cls.__dict__.get("kernels")
        if own is not None:
            own = dict(own)
            _check_table(cls, own)
            table.update({op: dict(ks) for op, ks in own.items()})
        for op, fn in cls.__dict__.items():
            if op in OPS and callable(fn):
                table[op] = {"default": _Method(fn)}
        cls.kernels = MappingProxyType(table)

    def __init__(self):
        self._selected = {}

    # --- description
    def kernel_names(self, op):
        """Names of the kernels this backend has for `op` (first = default; [] when it has none)."""
        return list(self.kernels.get(op, {}))

    def kernel_name(self, op):
        """The name of the kernel selected for `op` (None when the backend has none)."""
        names = self.kernel_names(op)
        return self._selected.get(op, names[0] if names else None)

    def with_kernel(self, op, name):
        """A copy of this backend that runs kernel `name` for `op`."""
        names = self.kernel_names(op)
        if name not in names:
            raise BackendError(f"backend {self.name!r}: op {op} has kernels {names}, found {name!r}")
        other = copy.copy(self)
        other._selected = {**self._selected, op: name}
        return other

    def capabilities(self):
        """dict(ops=set of op names with a kernel, dtypes=set of dtype names, limits=dict, needs_gpu=bool)."""
        return dict(ops=set(self.kernels), dtypes=set(self.dtypes), limits=dict(self.limits), needs_gpu=self.needs_gpu)

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
    def to_device(self, array):
        """A NumPy array as this backend's array (weights once at load; inputs of as_ops calls)."""
        return np.asarray(array)

    def to_host(self, array):
        """This backend's array as a NumPy array (a copy to the host where the memory is elsewhere)."""
        return np.asarray(array)

    def decode_layer(self, config, weights, precision, x, cache):
        """None (the default: the forward runs each layer's ops), or a function step(L, x, cache, cos, sin)
        -> x that runs decoder layer L of this one-token decode step in one call, on the backend's arrays:
        its norms, products, RoPE, the cache write, attention and residuals, each value as the same
        backend's op-by-op run computes it (spec/backend-interface.md). Asked once per forward call
        that continues a cache with one token of one sequence and records no trace."""
        return None

    # --- running ops
    def kernel(self, op):
        """The selected kernel of `op` as a function of the op's arguments; OpNotSupported if none."""
        ks = self.kernels.get(op)
        if not ks:
            raise OpNotSupported(op, self)
        fn = ks[self.kernel_name(op)]
        if isinstance(fn, _Method):
            return fn.fn.__get__(self, type(self))
        return fn

    def run(self, op, *args, **kwargs):
        """refimpl.ops.CHECKS[op](*args, **kwargs), then the selected kernel on the same arguments."""
        kernel = self.kernel(op)
        CHECKS[op](*args, **kwargs)
        return kernel(*args, **kwargs)

    def __getattr__(self, op):
        """backend.<op>(...) is backend.run(op, ...): the backend's arrays in and out."""
        if op in OPS:
            def call(*args, **kwargs):
                return self.run(op, *args, **kwargs)

            call.__name__ = op
            return call
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {op!r}")

    def ops(self):
        """Every op by name on this backend's arrays (a device-resident whole-model run); see BackendOps."""
        return BackendOps(self, convert=False)

    def as_ops(self, *, fallback=True):
        """Every op by name, NumPy in and NumPy out (op-level conformance checks); see BackendOps."""
        return BackendOps(self, convert=True, fallback=fallback)

    def __repr__(self):
        sel = dict(self._selected)
        return f"<{type(self).__name__} {self.name!r} {self.version}{' ' + str(sel) if sel else ''}>"


class BackendOps(SimpleNamespace):
    """Every op of refimpl.ops.OPS by name, run by a backend.

    convert=False (`Backend.ops()`): arguments and results are the backend's arrays; an op with a
    kernel runs CHECKS[op] then the kernel; an op without one runs the reference on `to_host` copies
    of its arguments and returns `to_device` of the result (listed in `fallbacks`).
    convert=True (`Backend.as_ops()`): NumPy in, NumPy out: array arguments go through `to_device`,
    results through `to_host`; callable arguments (expert_fn, norm, sublayer) are wrapped so that
    they see NumPy. An op without a kernel runs the reference (fallback=True, listed in `fallbacks`)
    or raises OpNotSupported (fallback=False).
    """

    def __init__(self, backend, *, convert, fallback=True):
        fns, missing = {}, []
        for name in OPS:
            if backend.kernels.get(name):
                fns[name] = _converting(backend, name) if convert else _checked(backend, name)
            elif not fallback:
                fns[name] = _unsupported(backend, name)
            else:
                fns[name] = OPS[name] if convert else _host_fallback(backend, name)
                missing.append(name)
        super().__init__(**fns)
        self.backend = backend
        self.fallbacks = tuple(missing)
        # a whole-layer kernel sees the backend's arrays: not offered where ops convert to NumPy
        self.decode_layer = _no_decode_layer if convert else backend.decode_layer


def _no_decode_layer(config, weights, precision, x, cache):
    return None


def _unsupported(backend, name):
    def op(*args, **kwargs):
        raise OpNotSupported(name, backend)

    op.__name__ = name
    return op


def _checked(backend, name):
    if type(backend).run is not Backend.run:  # a backend with its own run (e.g. its own fallback rule)
        def op(*args, **kwargs):
            return backend.run(name, *args, **kwargs)
    else:  # Backend.run with the kernel resolved once: the hot path of a forward pass
        kernel, check = backend.kernel(name), CHECKS[name]

        def op(*args, **kwargs):
            check(*args, **kwargs)
            return kernel(*args, **kwargs)

    op.__name__ = name
    op.__signature__ = inspect.signature(OPS[name])
    return op


def _mapper(outward, inward):
    """Converts values with `outward`, wrapping callables so that they see `inward`-converted values."""

    def conv(v):
        if isinstance(v, tuple):
            return tuple(conv(x) for x in v)
        if isinstance(v, list):
            return [conv(x) for x in v]
        if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.generic):
            return outward(v)  # an array (NumPy's or the backend's)
        if callable(v) and not isinstance(v, (type, np.random.Generator)):
            back = _mapper(inward, outward)
            return lambda *a, **k: conv(v(*[back(x) for x in a], **{n: back(x) for n, x in k.items()}))
        return v  # numbers, strings, dicts (rope_scaling), dtypes, Generators

    return conv


def _converting(backend, name):
    """NumPy in, NumPy out around backend.run(name, ...)."""

    def to_device(v):
        return backend.to_device(v) if isinstance(v, np.ndarray) else v

    to_b = _mapper(to_device, backend.to_host)
    to_np = _mapper(backend.to_host, to_device)

    def op(*args, **kwargs):
        return to_np(backend.run(name, *[to_b(a) for a in args], **{k: to_b(v) for k, v in kwargs.items()}))

    op.__name__ = name
    op.__signature__ = inspect.signature(OPS[name])
    return op


def _host_fallback(backend, name):
    """The reference on host copies of the backend's arrays; the result back on the backend."""
    ref = OPS[name]

    def to_device(v):
        return backend.to_device(v) if isinstance(v, np.ndarray) else v

    def to_host(v):
        return v if type(v) is np.ndarray else backend.to_host(v)

    to_h = _mapper(to_host, to_device)
    to_d = _mapper(to_device, to_host)

    def op(*args, **kwargs):
        return to_d(ref(*[to_h(a) for a in args], **{k: to_h(v) for k, v in kwargs.items()}))

    op.__name__ = name
    op.__signature__ = inspect.signature(ref)
    return op
