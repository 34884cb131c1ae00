"""The backend interface: op set and signatures, capabilities and skips, conversions, kernel
variants, the registry and every form of backend selection."""

import importlib.metadata
import inspect
import re
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
from refimpl.backends import interface
from refimpl.conformance import MISREADINGS, compare, diagnose
from refimpl.ops import OP_NAMES, ops


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


def test_every_op_is_a_method_with_the_reference_signature():
    for name in OP_NAMES:
        ref = inspect.signature(getattr(ops, name))
        for cls in (Backend, NumpyBackend):
            params = list(inspect.signature(getattr(cls, name)).parameters.values())
            assert params[0].name == "self"
            assert [(p.name, p.kind, p.default) for p in params[1:]] == [
                (p.name, p.kind, p.default) for p in ref.parameters.values()], (cls, name)


def test_base_backend_ops_raise_op_not_supported():
    b = Backend()
    with pytest.raises(OpNotSupported, match="linear") as info:
        b.linear(np.ones((1, 2)), np.ones((3, 2)))
    assert isinstance(info.value, NotImplementedError) and isinstance(info.value, BackendError)
    assert info.value.op == "linear" and info.value.backend == "abstract"
    assert b.capabilities()["ops"] == set()


class Box:
    """A foreign array type: the backend only ever sees Boxes."""

    def __init__(self, a):
        self.a = a


class SiluOnly(Backend):
    name = "silu-only"
    version = "1"

    def __init__(self):
        super().__init__()
        self.seen = []

    def capabilities(self):
        cap = super().capabilities()
        cap["dtypes"] = {"float32"}
        cap["limits"] = {"max_head_dim": 64}
        return cap

    def to_backend(self, array):
        return Box(np.asarray(array))

    def to_numpy(self, array):
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
        def to_backend(self, array):
            return Box(np.asarray(array))

        def to_numpy(self, array):
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


# --- kernel variants


def test_kernel_variants_are_listed_and_each_runs():
    b = NumpyBackend()
    assert b.kernel_variants("attention") == ["dense", "online"]
    assert b.kernel_variants("linear") == ["default"]
    g = np.random.default_rng(2)
    q, k, v = g.standard_normal((33, 4, 8)), g.standard_normal((33, 2, 8)), g.standard_normal((33, 2, 8))
    inputs = dict(q=q, k=k, v=v, window=5, sinks=np.array([0.5, -1.0, 2.0, -np.inf]))
    expected = ops.attention(**inputs)
    for name in b.kernel_variants("attention"):
        bv = b.with_variant("attention", name)
        assert bv.kernel_variant("attention") == name and b.kernel_variant("attention") == "dense"
        rep = compare(expected, bv.as_ops().attention(**inputs), op="attention", inputs=inputs)
        assert rep.ok, str(rep)
    with pytest.raises(BackendError, match="tiled"):
        b.with_variant("attention", "tiled")


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


def test_select_variant_backend():
    for name, variant in MISREADINGS.items():
        b = get_backend(f"misreading:{name}")
        assert b.name == f"misreading:{name}"
        op, inputs = variant.example()
        got = getattr(b.as_ops(), op)(**inputs)
        want = variant.overrides[op](**inputs)
        for g_, w_ in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(np.asarray(g_), np.asarray(w_))
    with pytest.raises(BackendError, match=re.escape("'misreading:no_such_variant'")):
        get_backend("misreading:no_such_variant")


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
    monkeypatch.setattr(interface, "_FACTORIES", dict(interface._FACTORIES))
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
