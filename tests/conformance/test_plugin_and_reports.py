"""The pytest plugin and `refimpl conform` choose backends the same way (module:attr from the current
directory; an unloadable spec is an error, not a skip), and reports say what failed in plain words."""

import io
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout

import numpy as np

from refimpl.backends import NumpyBackend
from refimpl.cli import main
from refimpl.conformance.suite import format_table, run_suite

MINE = textwrap.dedent('''
    from refimpl.backends import NumpyBackend

    class Mine(NumpyBackend):
        name = "mine"
        version = "7.1"
''')


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_module_attr_from_the_current_directory_and_the_backends_own_name(tmp_path, monkeypatch):
    (tmp_path / "my_conform_backend.py").write_text(MINE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_conform_backend", raising=False)
    rc, out, err = _run(["conform", "--backend", "my_conform_backend:Mine", "--ops", "linear", "--dtype", "float32",
                         "--max-examples", "1"])
    assert rc == 0, out + err
    assert out.splitlines()[0].startswith("backend mine 7.1")  # the backend's own name, then the spec
    assert "linear" in err  # progress lines on stderr although it is not a terminal


def test_unknown_ops_lists_the_valid_names():
    rc, out, err = _run(["conform", "--ops", "rmsnorm", "--max-examples", "1"])
    assert rc == 2 and "rmsnorm" in err and "rms_norm" in err and "valid:" in err


def test_nan_pattern_failure_says_so():
    def nan_softmax(x, axis=-1):
        from refimpl.ops import ops

        y = ops.softmax(x, axis=axis)
        return np.where(y < 0.01, np.nan, y)

    res = run_suite(NumpyBackend({"softmax": nan_softmax}, name="nan"), ops=["softmax"], dtype="float32", max_examples=2)
    text = format_table(res)
    assert "FAIL (NaN/Inf pattern)" in text and "NaN/Inf pattern differs" in text
    assert "1e+307" not in text and "e+18 ulp" not in text


def test_plugin_unloadable_backend_is_an_error_not_a_skip(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "refimpl.conformance",
                        "--refimpl-backend=no_such_module_xyz:Thing", "-k", "unloadable"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode != 0 and "1 failed" in r.stdout and "cannot be loaded" in r.stdout, r.stdout[-2000:]


def test_plugin_resolves_module_attr_from_the_current_directory(tmp_path):
    (tmp_path / "my_plugin_backend.py").write_text(MINE)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "refimpl.conformance",
                        "--refimpl-backend=my_plugin_backend:Mine", "--refimpl-max-examples=1", "-k", "test_op and linear"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "passed" in r.stdout, r.stdout[-2000:]
