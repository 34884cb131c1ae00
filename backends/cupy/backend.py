"""The backend classes: thin glue between refimpl's backend interface and the kernel launchers.

Each op's kernels are plain functions launcher(rt, *reference args) in the family modules (norms,
activations, rope, attention, mxfp4, moe, embedding, sampling, linear); `kernel_table(rt)` lists
them as {op: {kernel name: function}} (first = default) and the backend binds them to its runtime.
"""

import copy
import functools
import inspect
from collections import Counter

import numpy as np

from refimpl import __version__
from refimpl.backends import Backend, BackendUnavailable, OpNotSupported
from refimpl.ops import ops as reference_ops

from . import activations, attention, embedding, linear, moe, mxfp4, norms, rope, sampling
from .args import Float64NotSupported
from .runtime import CupyRuntime, EmulatedRuntime

DTYPES = ("float32", "bfloat16")


def kernel_table(rt_name):
    """{op: {kernel name: launcher(rt, ...)}} for a runtime named rt_name ("emulated" or "cupy")."""
    table = {}
    for mod in (embedding, norms, activations, rope, attention, moe, mxfp4, sampling):
        table.update(mod.KERNELS)
    table.update(linear.kernels(rt_name))
    return table


def _op_method(op):
    def method(self, *args, **kwargs):
        return self._call(op, *args, **kwargs)

    ref = getattr(reference_ops, op)
    sig = inspect.signature(ref)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = sig.replace(parameters=[self_param, *sig.parameters.values()])
    method.__name__ = method.__qualname__ = op
    method.__doc__ = f"refimpl.ops.{op} on this backend's kernels (see kernel_names / kernel_variants)."
    return method


class _KernelBackend(Backend):
    """Shared glue: kernel table, kernel selection, array conversion, the float64 rule.

    The kernels compute in float32 and read float32 or bfloat16 storage. An op given a float64
    input (whose reference computes in float64) raises OpNotSupported in op-level checks
    (as_ops(fallback=False)); in whole-model runs (as_ops(fallback=True)) that call runs the
    reference on the host instead and is counted in `reference_calls` (op -> calls).
    """

    needs_gpu = False
    dtypes = DTYPES

    def __init__(self, runtime):
        super().__init__()
        self.rt = runtime
        self._table = kernel_table(runtime.name)
        self._reference_ok = False
        self.reference_calls = Counter()

    # --- the table, in the shape of the architecture issue's interface
    @property
    def kernels(self):
        """{op: {kernel name: function with the reference op's signature, device arrays in and out}}."""
        return {op: {name: functools.partial(fn, self.rt) for name, fn in ks.items()} for op, ks in self._table.items()}

    def kernel_names(self, op):
        return list(self._table.get(op, {"default": None}))

    def kernel_variants(self, op):  # the current interface's name for kernel_names
        return self.kernel_names(op)

    def with_kernel(self, op, name):
        return self.with_variant(op, name)

    def capabilities(self):
        cap = super().capabilities()
        cap["ops"] = set(self._table)
        cap["dtypes"] = set(DTYPES)
        cap["limits"] = {"attention_tiled_head_dim": attention.TILED_MAX_HEAD_DIM,
                         "attention_rows_head_dim": attention.ROWS_MAX_HEAD_DIM}
        return cap

    def to_device(self, array):
        return self.rt.asarray(array)

    def to_host(self, array):
        return self.rt.to_host(array)

    def to_backend(self, array):
        return self.to_device(array)

    def to_numpy(self, array):
        return self.to_host(array)

    def as_ops(self, *, fallback=True):
        other = copy.copy(self)
        other._reference_ok = bool(fallback)
        return super(_KernelBackend, other).as_ops(fallback=fallback)

    def _call(self, op, *args, **kwargs):
        fn = self._table[op][self.kernel_variant(op)]
        try:
            return fn(self.rt, *args, **kwargs)
        except Float64NotSupported:
            if not self._reference_ok:
                raise OpNotSupported(op, self, "float64 inputs: the kernels compute in float32") from None
        self.reference_calls[op] += 1
        return self._reference(op, args, kwargs)

    def _reference(self, op, args, kwargs):
        def host(v):
            if callable(v) and not isinstance(v, type):
                return lambda *a, **k: host(v(*[self.to_device(x) if isinstance(x, np.ndarray) else x for x in a], **k))
            if isinstance(v, (tuple, list)):
                return type(v)(host(x) for x in v)
            if v is None or isinstance(v, (bool, int, float, str, np.generic, np.random.Generator)):
                return v
            return self.to_host(v) if hasattr(v, "dtype") else v

        out = getattr(reference_ops, op)(*[host(a) for a in args], **{k: host(v) for k, v in kwargs.items()})
        if isinstance(out, tuple):
            return tuple(self.to_device(o) if isinstance(o, np.ndarray) else o for o in out)
        return self.to_device(out) if isinstance(out, np.ndarray) else out


for _op in kernel_table("cupy"):
    setattr(_KernelBackend, _op, _op_method(_op))


class EmulatedCupyBackend(_KernelBackend):
    """The CUDA kernels of backends/cupy/kernels compiled for the CPU emulator (emulate.h), on NumPy arrays.

    Proves indexing, masking, synchronisation and accumulation order of the kernels on machines
    without a GPU; says nothing about speed (spec/backends-cupy.md).
    """

    name = "cupy-emulated"
    version = f"{__version__}+emulated"

    def __init__(self):
        super().__init__(EmulatedRuntime())


def _cupy_or_unavailable():
    try:
        import cupy
    except ImportError:
        raise BackendUnavailable("backend 'cupy': not installed (package 'cupy' cannot be imported; "
                                 "pip install 'refimpl[cuda]')") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a driver too old for the wheel's CUDA runtime
        raise BackendUnavailable(f"backend 'cupy': no GPU (CUDA reports: {type(exc).__name__}: {exc}); "
                                 f"'cupy-emulated' runs the same kernels on the CPU") from None
    if count < 1:
        raise BackendUnavailable("backend 'cupy': no GPU (CUDA reports no device); "
                                 "'cupy-emulated' runs the same kernels on the CPU")
    return cupy


class CupyBackend(_KernelBackend):
    """The CUDA kernels of backends/cupy/kernels on a GPU through cupy.RawModule (NVRTC); linear is cuBLAS.

    Raises BackendUnavailable ("no GPU") where CUDA reports no device.
    """

    name = "cupy"
    needs_gpu = True

    def __init__(self):
        cupy = _cupy_or_unavailable()
        self.version = f"{__version__}+cupy{cupy.__version__}"
        super().__init__(CupyRuntime())
