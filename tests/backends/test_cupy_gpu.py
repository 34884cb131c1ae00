"""backend "cupy" without a GPU: a clear BackendUnavailable, never a traceback from CUDA.

On a machine with an NVIDIA GPU these tests skip: the GPU run is bench/gpu_check.sh (conformance in
float32 and bfloat16, whole models, and the decode benchmark).
"""

import pytest

from refimpl.backends import BackendUnavailable, get_backend


def _gpu_count():
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def test_cupy_backend_without_gpu_says_so():
    n = _gpu_count()
    if n:
        pytest.skip(f"{n} GPU(s) present: the GPU itself is checked by bench/gpu_check.sh")
    with pytest.raises(BackendUnavailable) as e:
        get_backend("cupy")
    msg = str(e.value)
    assert "\n" not in msg
    if n is None:
        assert "not installed" in msg and "refimpl[cuda]" in msg
    else:
        assert "no GPU" in msg


def test_cupy_backend_class_without_gpu_says_so():
    n = _gpu_count()
    if n:
        pytest.skip(f"{n} GPU(s) present: the GPU itself is checked by bench/gpu_check.sh")
    from refimpl.backends.cupy import CupyBackend

    with pytest.raises(BackendUnavailable, match="no GPU" if n == 0 else "not installed"):
        CupyBackend()


def test_importing_the_package_does_not_import_cupy():
    import subprocess
    import sys

    code = "import sys, refimpl.backends.cupy; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
