"""Every CUDA source of backends/cupy/kernels compiles for the GPU (sm_90: PTX, then ptxas) and defines exactly the
kernels the emulator builds from it.

Three compilers read the same .cu files: nvcc (PTX for sm_90), NVRTC (what cupy.RawModule uses on a
GPU; it needs no GPU and no driver to compile) and g++ (the emulator). A kernel missing from one of
them would be a kernel tested in one place and run in another.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from refimpl.backends.cupy.runtime import KERNEL_DIR

SOURCES = sorted(p.stem for p in KERNEL_DIR.glob("*.cu"))
ARCH = "sm_90"


def _nvcc():
    for cand in (shutil.which("nvcc"), "/usr/local/bin/nvcc", "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.exists(cand):
            return cand
    return None


def _entries(ptx):
    return set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))


@pytest.fixture(scope="module")
def emulator_kernels():
    """family -> the kernel names the emulator exports (emu_<name> symbols of its shared library)."""
    if shutil.which("g++") is None or shutil.which("nm") is None:
        pytest.skip("the emulator's kernel list needs g++ and nm (binutils), not on PATH")
    from refimpl.backends.cupy.runtime import EmulatedRuntime

    rt = EmulatedRuntime()
    out = {}
    for fam in SOURCES:
        lib = rt.library(fam)
        syms = subprocess.run(["nm", "-D", "--defined-only", lib._name], capture_output=True, text=True).stdout
        out[fam] = {m for m in re.findall(r"\bemu_(\w+)$", syms, re.M)} - {"last_error", "set_timeout"}
    return out


def test_every_kernel_family_is_a_backend_module():
    from refimpl.backends.cupy.runtime import FAMILIES

    assert sorted(FAMILIES) == SOURCES


@pytest.fixture(scope="module")
def nvcc_ptx(tmp_path_factory):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (looked on PATH, /usr/local/bin, /usr/local/cuda/bin): install the CUDA toolkit "
                    "to compile the kernels for sm_90")
    out = tmp_path_factory.mktemp("ptx")
    cmd = [nvcc, "-ptx", f"-arch={ARCH}", "--Werror", "all-warnings", f"-I{KERNEL_DIR}",
           *(str(KERNEL_DIR / f"{f}.cu") for f in SOURCES), "-odir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return {f: (out / f"{f}.ptx").read_text() for f in SOURCES}


@pytest.mark.parametrize("family", SOURCES)
def test_nvcc_compiles_for_sm90(nvcc_ptx, emulator_kernels, family):
    ptx = nvcc_ptx[family]
    assert f".target {ARCH}" in ptx
    assert _entries(ptx) == emulator_kernels[family]


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError:
        pytest.skip("cupy is not installed (pip install 'refimpl[cuda]'): NVRTC compile check not run")
    try:
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"cupy is installed but NVRTC cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                    f"the nvidia-cuda-nvrtc wheel of the CUDA major version of the cupy wheel provides it")
    return nvrtc


@pytest.mark.parametrize("family", SOURCES)
def test_nvrtc_compiles_for_sm90(emulator_kernels, family):
    _nvrtc()
    from refimpl.backends.cupy.runtime import nvrtc_compile

    ptx = nvrtc_compile(family, arch="compute_90")
    assert _entries(ptx) == emulator_kernels[family]


def _ptxas():
    import glob

    for cand in (shutil.which("ptxas"), "/usr/local/cuda/bin/ptxas", *sorted(glob.glob("/usr/local/cuda-*/bin/ptxas"))):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.mark.parametrize("family", SOURCES)
def test_ptxas_assembles_for_sm90(nvcc_ptx, tmp_path, family):
    """ptxas (which -ptx skips) checks the resource limits: registers, the 48 KB of static shared memory."""
    ptxas = _ptxas()
    if ptxas is None:
        pytest.skip("ptxas not found (PATH, /usr/local/cuda*/bin): the sm_90 resource check is not run")
    src = tmp_path / f"{family}.ptx"
    src.write_text(nvcc_ptx[family])
    r = subprocess.run([ptxas, f"-arch={ARCH}", "-v", str(src), "-o", str(tmp_path / f"{family}.cubin")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Used" in r.stderr, r.stderr  # ptxas -v reports each kernel's resources
    smem = [int(m) for m in re.findall(r"(\d+) bytes smem", r.stderr)]  # absent for kernels without shared memory
    assert max(smem, default=0) <= 48 * 1024, r.stderr
