"""The backend interface: the op table and its checks, kernel tables, capabilities and skips,
conversions, kernel choice, the registry and every form of backend selection."""

import importlib.metadata
import inspect
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from refimpl.backends import (
    Backend,
    BackendError,
    BackendUnavailable,
    NumpyBackend,
    OpNotSupported,
    get_backend,
    register_backend,
)
from refimpl.backends import registry
from refimpl.conformance import MISREADINGS, compare, diagnose
from refimpl.errors import ArgumentError
from refimpl.ops import CHECKS, OP_NAMES, OPS, ops


# --- the example of spec/backend-interface.md: one op overridden, the rest is the reference


class MyRMSNorm(NumpyBackend):
    name = "my-rmsnorm"
    version = "0.1"

    def rms_norm(self, x, weight, *, eps=1e-5, cast_before_scale=False):
        x = np.asarray(x, dtype=np.float32)
        inv = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))
        return x * inv * np.asarray(weight, dtype=np.float32)


def test_spec_example_subclass_passes_rms_norm_and_keeps_the_rest():
    g = np.random.default_rng(0)
    for n in (1, 31, 32, 33, 127, 128, 129):
        x, w = g.standard_normal((3, n)).astype(np.float32), g.standard_normal(n).astype(np.float32)
        b = get_backend(MyRMSNorm())
        actual = b.as_ops().rms_norm(x, w, eps=1e-5)
        expected = ops.rms_norm(x.astype(np.float64), w.astype(np.float64), eps=1e-5)
        rep = compare(expected, actual, op="rms_norm", inputs=dict(x=x, weight=w, eps=1e-5))
        assert rep.ok, str(rep)
    assert b.as_ops().fallbacks == ()
    assert b.capabilities()["ops"] == set(OP_NAMES)
    assert b.name == "my-rmsnorm"


def test_spec_example_with_a_bug_is_caught_and_diagnosed():
    class EpsOutside(NumpyBackend):
        def rms_norm(self, x, weight, *, eps=1e-5, cast_before_scale=False):
            x = np.asarray(x, dtype=np.float32)
            return x / (np.sqrt(np.mean(x * x, axis=-1, keepdims=True)) + np.float32(eps)) * np.asarray(weight, np.float32)

    g = np.random.default_rng(1)
    x, w = (g.standard_normal((2, 16)) * 1e-3).astype(np.float32), g.standard_normal(16).astype(np.float32)
    inputs = dict(x=x, weight=w)
    actual = EpsOutside().as_ops().rms_norm(x, w)
    rep = compare(ops.rms_norm(x.astype(np.float64), w.astype(np.float64)), actual, op="rms_norm", inputs=inputs)
    assert not rep.ok and rep.failure == "values"
    assert diagnose("rms_norm", inputs, actual) == ["rmsnorm_eps_outside"]


# --- the op set


def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_op_table_checks_and_reference_kernels_share_one_signature():
    assert tuple(OPS) == OP_NAMES and set(CHECKS) == set(OPS)
    for name, fn in OPS.items():
        assert fn.__name__ == name and getattr(ops, name) is fn
        assert CHECKS[name].__name__ == f"check_{name}" and _params(CHECKS[name]) == _params(fn), name
    b = NumpyBackend()
    for name in OPS:
        for kernel in b.kernel_names(name):
            assert _params(b.with_kernel(name, kernel).kernel(name)) == _params(OPS[name]), (name, kernel)


def test_checks_return_none_and_raise_the_reference_message():
    x, w = np.ones((2, 4), np.float32), np.ones(4, np.float32)
    assert CHECKS["rms_norm"](x, w, eps=1e-5) is None
    for call in (lambda f: f(x, np.ones(3)), lambda f: f(x, w, eps=-1.0)):
        with pytest.raises(ArgumentError) as want:
            call(OPS["rms_norm"])
        with pytest.raises(ArgumentError) as got:
            call(CHECKS["rms_norm"])
        assert str(got.value) == str(want.value)


def test_the_base_runs_the_check_once_then_the_kernel():
    calls = []

    def kernel(x, weight, *, eps=1e-5, cast_before_scale=False):
        calls.append("kernel")
        return np.asarray(x)

    class Counting(Backend):
        name = "counting"
        kernels = {"rms_norm": {"mine": kernel}}

    seen = []
    real = CHECKS["rms_norm"]
    b = Counting()
    assert b.kernel_names("rms_norm") == ["mine"] and b.capabilities()["ops"] == {"rms_norm"}
    import refimpl.backends.base as base

    def spy(*a, **k):
        seen.append("check")
        return real(*a, **k)

    orig = base.CHECKS
    base.CHECKS = {**orig, "rms_norm": spy}
    try:
        b.ops().rms_norm(np.ones((2, 4)), np.ones(4))
        assert seen == ["check"] and calls == ["kernel"]
        with pytest.raises(ArgumentError, match="weight"):
            b.ops().rms_norm(np.ones((2, 4)), np.ones(3))
        assert calls == ["kernel"]  # a bad call never reaches the kernel
    finally:
        base.CHECKS = orig


def test_a_kernel_table_names_real_ops():
    with pytest.raises(BackendError, match="rms_nrom"):
        type("Typo", (Backend,), {"kernels": {"rms_nrom": {"default": ops.rms_norm}}})
    with pytest.raises(BackendError, match="non-empty"):
        type("Empty", (Backend,), {"kernels": {"rms_norm": {}}})


def test_base_backend_ops_raise_op_not_supported():
    b = Backend()
    with pytest.raises(OpNotSupported, match="linear") as info:
        b.linear(np.ones((1, 2)), np.ones((3, 2)))
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, BackendError)
    assert info.value.op == "linear" and info.value.backend == "abstract"
    assert b.capabilities()["ops"] == set()


class Box:
    """A foreign array type: the backend only ever sees Boxes (the checks read shape, ndim, dtype)."""

    def __init__(self, a):
        self.a = a
        self.shape, self.ndim, self.dtype = a.shape, a.ndim, a.dtype


class SiluOnly(Backend):
    name = "silu-only"
    version = "1"

    def __init__(self):
        super().__init__()
        self.seen = []

    dtypes = ("float32",)
    limits = {"max_head_dim": 64}

    def to_device(self, array):
        return Box(np.asarray(array))

    def to_host(self, array):
        return array.a

    def silu(self, x):
        self.seen.append(type(x))
        a = x.a.astype(np.float32)
        return Box(a / (1 + np.exp(-a)))


def test_missing_op_turns_into_skip_reason_and_fallback():
    b = SiluOnly()
    assert b.capabilities()["ops"] == {"silu"}
    assert b.unsupported_reason("silu", dtype=np.float32) is None
    assert "not implemented" in b.unsupported_reason("rms_norm")
    assert "float64" in b.unsupported_reason("silu", dtype=np.float64)
    assert "max_head_dim=64" in b.unsupported_reason("silu", head_dim=128)
    assert b.unsupported_reason("silu", head_dim=64) is None

    whole = b.as_ops()  # whole-model runs: the missing ops are the reference, and are reported
    assert set(whole.fallbacks) == set(OP_NAMES) - {"silu"}
    x = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(whole.gelu(x), ops.gelu(x))
    strict = b.as_ops(fallback=False)
    with pytest.raises(OpNotSupported, match="gelu"):
        strict.gelu(x)


def test_arrays_cross_as_the_backend_type_and_come_back_as_numpy():
    b = SiluOnly()
    x = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    y = b.as_ops().silu(x)
    assert b.seen == [Box] and isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, [-2 / (1 + np.exp(2)), 0.0, 3 / (1 + np.exp(-3))], rtol=1e-6)  # float32 rounding


def test_callable_arguments_see_numpy():
    seen = []

    class Combine(NumpyBackend):
        def to_device(self, array):
            return Box(np.asarray(array))

        def to_host(self, array):
            return array.a if isinstance(array, Box) else np.asarray(array)

        def moe_combine(self, x, weights, indices, expert_fn):
            out = expert_fn(0, x)  # the backend calls it with its own arrays
            return Box(np.asarray(out.a) * weights.a[:, :1])

    def expert(e, rows):
        seen.append(type(rows))
        return rows * 2

    y = Combine().as_ops().moe_combine(np.ones((2, 3)), np.full((2, 1), 0.5), np.zeros((2, 1), int), expert)
    assert seen == [np.ndarray]
    np.testing.assert_array_equal(y, np.ones((2, 3)))


def test_device_ops_fall_back_through_to_host_and_to_device():
    b = SiluOnly()
    dev = b.ops()
    assert set(dev.fallbacks) == set(OP_NAMES) - {"silu"}
    x = b.to_device(np.array([-1.0, 2.0]))
    y = dev.gelu(x)  # no kernel: the reference on a host copy, the result back on the device
    assert isinstance(y, Box)
    np.testing.assert_array_equal(y.a, ops.gelu(np.array([-1.0, 2.0])))
    assert isinstance(dev.silu(x), Box) and b.seen == [Box]


# --- kernel choice


def test_kernel_names_are_listed_and_each_runs():
    b = NumpyBackend()
    assert b.kernel_names("attention") == ["dense", "online"]
    assert b.kernel_names("linear") == ["default"]
    g = np.random.default_rng(2)
    q, k, v = g.standard_normal((33, 4, 8)), g.standard_normal((33, 2, 8)), g.standard_normal((33, 2, 8))
    inputs = dict(q=q, k=k, v=v, window=5, sinks=np.array([0.5, -1.0, 2.0, -np.inf]))
    expected = ops.attention(**inputs)
    for name in b.kernel_names("attention"):
        bv = b.with_kernel("attention", name)
        assert bv.kernel_name("attention") == name and b.kernel_name("attention") == "dense"
        rep = compare(expected, bv.as_ops().attention(**inputs), op="attention", inputs=inputs)
        assert rep.ok, str(rep)
    with pytest.raises(BackendError, match="tiled"):
        b.with_kernel("attention", "tiled")


# --- selection


def test_select_by_name_and_default(monkeypatch):
    monkeypatch.delenv("REFIMPL_BACKEND", raising=False)
    assert isinstance(get_backend("numpy"), NumpyBackend)
    assert get_backend().name == "numpy"
    assert get_backend().capabilities()["ops"] == set(OP_NAMES)


def test_select_by_environment_variable(monkeypatch):
    monkeypatch.setenv("REFIMPL_BACKEND", "misreading:sinks_ignored")
    assert get_backend().name == "misreading:sinks_ignored"
    monkeypatch.setenv("REFIMPL_BACKEND", "no-such-backend")
    with pytest.raises(BackendError, match="no-such-backend"):
        get_backend()


def test_select_by_module_attribute(monkeypatch):
    mod = types.ModuleType("third_party_backend")
    mod.MyRMSNorm = MyRMSNorm
    mod.INSTANCE = MyRMSNorm()
    mod.make = lambda: SiluOnly()
    mod.not_a_backend = 42
    mod.nested = types.SimpleNamespace(cls=MyRMSNorm)
    monkeypatch.setitem(sys.modules, "third_party_backend", mod)
    assert type(get_backend("third_party_backend:MyRMSNorm")) is MyRMSNorm
    assert get_backend("third_party_backend:INSTANCE") is mod.INSTANCE
    assert get_backend("third_party_backend:make").name == "silu-only"
    assert type(get_backend("third_party_backend:nested.cls")) is MyRMSNorm
    assert type(get_backend("refimpl.backends.numpy:NumpyBackend")) is NumpyBackend
    for spec in ("third_party_backend:not_a_backend", "third_party_backend:missing", "no_such_module_xyz:Thing"):
        with pytest.raises(BackendError, match=re.escape(repr(spec))):
            get_backend(spec)


def test_select_by_module_attribute_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "local_backend_xyz.py").write_text(
        "from refimpl.backends import NumpyBackend\n\nclass Mine(NumpyBackend):\n    name = 'local'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert get_backend("local_backend_xyz:Mine").name == "local"


def test_select_misreading_backend():
    for name, variant in MISREADINGS.items():
        b = get_backend(f"misreading:{name}")
        assert b.name == f"misreading:{name}"
        op, inputs = variant.example()
        got = getattr(b.as_ops(), op)(**inputs)
        want = variant.overrides[op](**inputs)
        for g_, w_ in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(np.asarray(g_), np.asarray(w_))
    with pytest.raises(BackendError, match=re.escape("'misreading:no_such_reading'")):
        get_backend("misreading:no_such_reading")


def test_the_registry_does_not_import_conformance():
    code = ("import sys; from refimpl.backends import get_backend; get_backend('numpy')\n"
            "try:\n    get_backend('misreading:sinks_ignored')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "print('refimpl.conformance' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.splitlines()[-1] == "False" and "refimpl.conformance" in out.splitlines()[0]


def test_select_by_entry_point(monkeypatch):
    ep = importlib.metadata.EntryPoint(name="mine", value="refimpl.backends.numpy:NumpyBackend",
                                       group="refimpl.backends")
    real = importlib.metadata.entry_points

    def fake(**kw):
        if kw.get("group") == "refimpl.backends":
            return [ep]
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    assert isinstance(get_backend("mine"), NumpyBackend)
    with pytest.raises(BackendError, match="mine"):  # the error lists the installed entry points
        get_backend("other")


def test_unknown_names_name_the_spec():
    for spec in ("nope", "numpyy", "  "):
        with pytest.raises(BackendError, match=re.escape(repr(spec.strip() or spec))):
            get_backend(spec)
    with pytest.raises(BackendError):
        get_backend(42)


def test_lazy_backends_report_why_unavailable():
    for name in ("numba", "cupy"):
        try:
            b = get_backend(name)
        except BackendUnavailable as exc:
            assert re.search(r"not installed|no GPU", str(exc)) and repr(name) in str(exc)
        else:  # installed and present: it must be a real backend
            assert isinstance(b, Backend)


def test_register_backend(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    register_backend("mine-too", MyRMSNorm)
    assert type(get_backend("mine-too")) is MyRMSNorm
    with pytest.raises(BackendError, match="already registered"):
        register_backend("mine-too", NumpyBackend)
    register_backend("mine-too", lambda: "not a backend", replace=True)
    with pytest.raises(BackendError, match="'mine-too'"):
        get_backend("mine-too")
    with pytest.raises(BackendError, match="name"):
        register_backend("a:b", NumpyBackend)


def test_bfloat16_pieces_are_ops_of_every_backend():
    new = ("attention_scores", "softmax_with_sinks", "attention_values", "rope_terms")
    assert set(new) <= set(OP_NAMES) and set(new) <= NumpyBackend().capabilities()["ops"]
    assert not set(new) & Backend().capabilities()["ops"]  # the base class: OpNotSupported, a skip
    g = np.random.default_rng(2)
    x = g.standard_normal((3, 2, 8)).astype(np.float32)
    cos, sin = ops.rope_cos_sin(ops.inv_freq_default(8), np.arange(3))
    a, b = NumpyBackend().as_ops().rope_terms(x, cos, sin)  # a tuple crosses the interface
    ra, rb = ops.rope_terms(x, cos, sin)
    np.testing.assert_array_equal(a, ra)
    np.testing.assert_array_equal(b, rb)
    q, k = g.standard_normal((4, 2, 8)), g.standard_normal((4, 1, 8))
    s = NumpyBackend().as_ops().attention_scores(q, k, window=2)
    np.testing.assert_array_equal(s, ops.attention_scores(q, k, window=2))
    with pytest.raises(OpNotSupported, match="softmax_with_sinks"):
        Backend().softmax_with_sinks(s)
