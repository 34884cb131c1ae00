"""The backend classes: thin glue between refimpl's backend interface and the kernel launchers.

Each op's kernels are plain functions launcher(rt, *reference args) in the family modules (norms,
activations, rope, attention, mxfp4, moe, embedding, sampling, linear); `kernel_table(rt)` lists
them as {op: {kernel name: function}} (first = default) and the backend binds them to its runtime.
"""

import copy
import functools
import importlib.metadata
from collections import Counter
from types import MappingProxyType

import numpy as np

from refimpl.backends import Backend, BackendUnavailable, OpNotSupported
from refimpl.ops import OPS

from . import activations, attention, embedding, linear, moe, mxfp4, norms, rope, sampling
from .args import Float64NotSupported
from .runtime import CupyRuntime, EmulatedRuntime

DTYPES = ("float32", "bfloat16")


def _refimpl_version():
    try:
        return importlib.metadata.version("refimpl")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _refimpl_version()


def kernel_table(rt_name):
    """{op: {kernel name: launcher(rt, ...)}} for a runtime named rt_name ("emulated" or "cupy")."""
    table = {}
    for mod in (embedding, norms, activations, rope, attention, moe, mxfp4, sampling):
        table.update(mod.KERNELS)
    table.update(linear.kernels(rt_name))
    return table


class _KernelBackend(Backend):
    """Shared glue: the kernel table bound to a runtime, array conversion, the float64 rule.

    `kernels` is set per instance ({op: {kernel name: launcher bound to this backend's runtime}}),
    since the launchers need the runtime; the base class runs refimpl.ops.CHECKS[op] and then the
    selected kernel. The kernels compute in float32 and read float32 or bfloat16 storage. An op
    given a float64 input (whose reference computes in float64) raises OpNotSupported in op-level
    checks (as_ops(fallback=False)); in whole-model runs (ops(), as_ops(fallback=True)) that call
    runs the reference on host copies instead and is counted in `reference_calls` (op -> calls).
    """

    needs_gpu = False
    dtypes = DTYPES
    limits = MappingProxyType({"max_head_dim": attention.ROWS_MAX_HEAD_DIM})

    def __init__(self, runtime):
        super().__init__()
        self.rt = runtime
        self.kernels = MappingProxyType({op: {name: functools.partial(fn, runtime) for name, fn in ks.items()}
                                         for op, ks in kernel_table(runtime.name).items()})
        self._reference_ok = True
        self.reference_calls = Counter()

    def to_device(self, array):
        return self.rt.asarray(array)

    def to_host(self, array):
        return self.rt.to_host(array)

    def ops(self):
        other = copy.copy(self)
        other._reference_ok = True
        return super(_KernelBackend, other).ops()

    def as_ops(self, *, fallback=True):
        other = copy.copy(self)
        other._reference_ok = bool(fallback)
        return super(_KernelBackend, other).as_ops(fallback=fallback)

    def run(self, op, *args, **kwargs):
        """The selected kernel (which runs refimpl.ops.CHECKS[op] itself, see args.check)."""
        kernel = self.kernel(op)
        try:
            return kernel(*args, **kwargs)
        except Float64NotSupported:
            if not self._reference_ok:
                raise OpNotSupported(op, self, "float64 inputs: the kernels compute in float32") from None
        self.reference_calls[op] += 1
        return self._reference(op, args, kwargs)

    def _reference(self, op, args, kwargs):
        def dev(v):
            return self.to_device(v) if isinstance(v, np.ndarray) else v

        def host(v):
            if isinstance(v, (tuple, list)):
                return type(v)(host(x) for x in v)
            if v is None or isinstance(v, (bool, int, float, str, np.generic, np.random.Generator, type, np.dtype)):
                return v
            if callable(v) and not hasattr(v, "shape"):
                return lambda *a, **k: host(v(*[dev(x) for x in a], **{n: dev(x) for n, x in k.items()}))
            return self.to_host(v) if hasattr(v, "shape") else v

        out = OPS[op](*[host(a) for a in args], **{k: host(v) for k, v in kwargs.items()})
        if isinstance(out, tuple):
            return tuple(dev(o) for o in out)
        return dev(out)


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
