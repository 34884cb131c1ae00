"""Where the kernels run: compiled for the CPU emulator (g++ + ctypes) or for a GPU (CuPy RawModule).

Both runtimes load the same sources from kernels/*.cu (one file per op family, including common.h)
and launch a kernel by name with arguments packed the same way:

    rt.launch(family, kernel, grid, block, *args)

args: arrays of the runtime's type (numpy.ndarray for the emulator, cupy.ndarray on a GPU, C order,
passed as pointers), None (a null pointer) or NumPy scalars (np.int32 -> int, np.int64 -> long long,
np.float32 -> float, np.float64 -> double), in the kernel's parameter order. See spec/backends-cupy.md.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess

import tempfile
import threading
from pathlib import Path

import numpy as np

import ml_dtypes

from refimpl.errors import RefimplError

BF16 = np.dtype(ml_dtypes.bfloat16)

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
FAMILIES = ("norms", "activations", "rope", "attention", "mxfp4", "moe", "embedding", "sampling", "gemm")
HEADERS = ("common.h", "emulate.h")
CXX_FLAGS = ("-x", "c++", "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-ffp-contract=off",
             "-fno-fast-math", "-DREFIMPL_EMULATE")
NVRTC_OPTIONS = ("--std=c++17",)


class KernelError(RefimplError):
    """A kernel failed to build or to run (the message names the kernel file and what went wrong)."""


def source(family):
    """The text of kernels/<family>.cu."""
    return (KERNEL_DIR / f"{family}.cu").read_text()


def cache_dir():
    """$REFIMPL_CACHE/cupy-emulated, else $XDG_CACHE_HOME/refimpl/cupy-emulated, else ~/.cache/refimpl/..."""
    base = os.environ.get("REFIMPL_CACHE")
    if base:
        return Path(base) / "cupy-emulated"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "refimpl" / "cupy-emulated"


def host_compiler():
    """The host C++ compiler: $CXX, else g++ (None if neither is on PATH)."""
    cxx = os.environ.get("CXX") or "g++"
    return shutil.which(cxx)


def _compiler_version(cxx):
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except Exception:
        return "unknown"


def build_emulated(path):
    """Compile a .cu file (which includes common.h) for the emulator and load it; cached by digest.

    The shared library is kept in cache_dir() under a name made of the sha256 of the source, the
    headers, the compiler's version line and the flags, so an edit or a new compiler rebuilds it.
    """
    path = Path(path)
    cxx = host_compiler()
    if cxx is None:
        raise KernelError("cupy-emulated: no host C++ compiler (g++ or $CXX) on PATH; the emulator compiles "
                          "backends/cupy/kernels/*.cu with it")
    h = hashlib.sha256(path.read_bytes())
    for name in HEADERS:
        h.update((KERNEL_DIR / name).read_bytes())
    for e in (_compiler_version(cxx), *CXX_FLAGS):
        h.update(str(e).encode() + b"\0")
    d = cache_dir()
    so = d / f"{path.stem}-{h.hexdigest()[:20]}.so"
    if not so.exists():
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=d)
        os.close(fd)
        cmd = [cxx, *CXX_FLAGS, f"-I{KERNEL_DIR}", str(path), "-o", tmp]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(tmp)
            raise KernelError(f"{path.name}: host build failed ({' '.join(cmd)}):\n{r.stderr[-4000:]}")
        os.replace(tmp, so)  # atomic: a concurrent build of the same digest writes the same bytes
    lib = ctypes.CDLL(str(so))
    lib.emu_last_error.restype = ctypes.c_char_p
    lib.emu_set_timeout.argtypes = [ctypes.c_double]
    return lib


class Strided:
    """An array argument passed by its data pointer although it is not C-contiguous (the launcher
    passes its element strides to the kernel)."""

    def __init__(self, array):
        self.array = array


class EmulatedRuntime:
    """Kernels compiled with the host compiler against emulate.h, run on NumPy arrays."""

    name = "emulated"
    block = 32  # threads per block: real threads in the emulator, so kept small
    max_grid = 3  # blocks per launch: every kernel strides over its grid, 3 blocks exercise the strides
    host_bf16 = BF16
    bf16_dtype = BF16

    def __init__(self):
        self.xp = np
        self._libs = {}
        self._lock = threading.Lock()

    # --- arrays (NumPy; bfloat16 is ml_dtypes.bfloat16)
    def asarray(self, a):
        return np.asarray(a)

    def is_bf16(self, a):
        return a.dtype == BF16

    def contiguous(self, a):
        return np.ascontiguousarray(a)

    def to_f32(self, a):
        return np.ascontiguousarray(a, dtype=np.float32)

    def strided(self, a):
        return a if a.flags.c_contiguous else Strided(a)

    def to_host(self, a):
        return np.asarray(a)

    def library(self, family):
        with self._lock:
            if family not in self._libs:
                self._libs[family] = self._build(family)
            return self._libs[family]

    def _build(self, family):
        return build_emulated(KERNEL_DIR / f"{family}.cu")

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def launch(self, family, kernel, grid, block, *args):
        """Run `kernel` of kernels/<family>.cu (family may also be a loaded library, see build_emulated)."""
        lib = family if isinstance(family, ctypes.CDLL) else self.library(family)
        try:
            fn = getattr(lib, f"emu_{kernel}")
        except AttributeError:
            raise KernelError(f"{family}: no kernel {kernel!r} (EMU_EXPORT missing?)") from None
        keep, ptrs = [], []
        for a in args:
            if isinstance(a, Strided):
                c = ctypes.c_void_p(a.array.ctypes.data)
            elif a is None:
                c = ctypes.c_void_p(None)
            elif isinstance(a, np.ndarray):
                if not a.flags.c_contiguous:
                    raise KernelError(f"{kernel}: array arguments must be C-contiguous (launcher bug)")
                c = ctypes.c_void_p(a.ctypes.data)
            elif isinstance(a, np.generic):
                c = np.array(a)  # a 0-d array holds the scalar with its exact C type
            else:
                raise KernelError(f"{kernel}: argument of type {type(a).__name__}: pass NumPy scalars (launcher bug)")
            keep.append(c)
            ptrs.append(ctypes.addressof(c) if isinstance(c, ctypes.c_void_p) else c.ctypes.data)
        params = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        g = tuple(grid) + (1,) * (3 - len(grid))
        b = tuple(block) + (1,) * (3 - len(block)) if isinstance(block, tuple) else (block, 1, 1)
        rc = fn(*(ctypes.c_uint(int(v)) for v in g + b), params)
        if rc != 0:
            raise KernelError(f"{family}: kernel {kernel} failed in the emulator: "
                              f"{lib.emu_last_error().decode()}")


class CupyRuntime:
    """Kernels compiled by NVRTC through cupy.RawModule (one module per family), run on a GPU.

    bfloat16 arrays live on the device as uint16 arrays holding the bf16 bits (CuPy has no bfloat16
    dtype): to_device of an ml_dtypes.bfloat16 array gives uint16, and every launcher reads a
    uint16 array as bfloat16 storage.
    """

    name = "cupy"
    block = 256
    max_grid = 65535
    host_bf16 = BF16
    bf16_dtype = np.dtype(np.uint16)

    def __init__(self):
        import cupy

        self.xp = cupy
        self._cp = cupy
        self._mods = {}

    # --- arrays (CuPy; bfloat16 as uint16 bits)
    def asarray(self, a):
        if isinstance(a, np.ndarray) and a.dtype == BF16:
            return self._cp.asarray(a.view(np.uint16))
        return self._cp.asarray(a)

    def is_bf16(self, a):
        return a.dtype == np.uint16

    def contiguous(self, a):
        return self._cp.ascontiguousarray(a)

    def to_f32(self, a):
        if a.dtype == np.uint16:
            return (a.astype(np.uint32) << 16).view(np.float32)
        return self._cp.ascontiguousarray(a, dtype=np.float32)

    def strided(self, a):
        return a

    def to_host(self, a):
        if isinstance(a, self._cp.ndarray):
            h = self._cp.asnumpy(a)
            return h.view(BF16) if h.dtype == np.uint16 else h
        return np.asarray(a)

    def module(self, family):
        if family not in self._mods:
            self._mods[family] = self._cp.RawModule(code=source(family),
                                                    options=(f"-I{KERNEL_DIR}", *NVRTC_OPTIONS))
        return self._mods[family]

    def empty(self, shape, dtype):
        return self._cp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self._cp.zeros(shape, dtype=dtype)

    def launch(self, family, kernel, grid, block, *args):
        fn = self.module(family).get_function(kernel)
        conv = [np.uint64(0) if a is None else a for a in args]
        g = tuple(int(v) for v in grid)
        b = (int(block),) if not isinstance(block, tuple) else tuple(int(v) for v in block)
        fn(g, b, tuple(conv))


def nvrtc_compile(family, arch="compute_90"):
    """Compile kernels/<family>.cu to PTX with NVRTC; needs no GPU and no driver.

    Calls NVRTC through cupy_backends.cuda.libs.nvrtc (cupy.cuda.compiler.compile_using_nvrtc asks
    the driver for the current device first, which fails without a GPU). NVRTC itself comes from
    the nvidia-cuda-nvrtc wheel (or a CUDA toolkit on the library path). Returns the PTX text;
    raises KernelError with NVRTC's log on a compile error.
    """
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(source(family), f"{family}.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"-I{KERNEL_DIR}", *NVRTC_OPTIONS, f"-arch={arch}"])
        except nvrtc.NVRTCError as exc:
            raise KernelError(f"kernels/{family}.cu: NVRTC compile failed for {arch}: {exc}\n"
                              f"{nvrtc.getProgramLog(prog)}") from None
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


__all__ = ["EmulatedRuntime", "CupyRuntime", "KernelError", "KERNEL_DIR", "FAMILIES", "nvrtc_compile",
           "cache_dir", "host_compiler", "build_emulated"]
