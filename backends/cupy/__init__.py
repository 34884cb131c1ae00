"""The CuPy backend: raw CUDA C kernels (kernels/*.cu) launched with cupy.RawModule, and the same
sources compiled for a CPU emulator (kernels/emulate.h) as the backend "cupy-emulated".

    get_backend("cupy")            # on a machine with an NVIDIA GPU and refimpl[cuda]
    get_backend("cupy-emulated")   # anywhere with g++: the same kernels, threads emulated on the CPU

Importing this package does not import cupy. See spec/backends-cupy.md.
"""

from .backend import CupyBackend, EmulatedCupyBackend, kernel_table
from .runtime import FAMILIES, KERNEL_DIR, KernelError, nvrtc_compile

__all__ = ["CupyBackend", "EmulatedCupyBackend", "kernel_table", "KernelError", "KERNEL_DIR", "FAMILIES",
           "nvrtc_compile"]
