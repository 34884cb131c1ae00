"""compare(): the order of checks, the report's numbers, ULP distances, budgets and the repro."""

import io
import json
import math
import struct
from contextlib import redirect_stdout

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.conformance import BUDGETS, compare, ulp_distance
from refimpl.conformance.kit import KINDS, gamma
from refimpl.errors import ArgumentError
from refimpl.ops import OP_NAMES, ops

U32, U64 = 2.0**-24, 2.0**-53
EDGE = (1, 31, 32, 33, 127, 128, 129)


def _ordered64(v):
    """Independent float64 ULP index via struct (sign-magnitude to a monotone integer)."""
    (i,) = struct.unpack("<q", struct.pack("<d", v))
    return i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF)


# --- ULP distance


def test_ulp_distance_hand_cases():
    one = 1.0
    assert ulp_distance(np.float64(one), np.nextafter(one, 2.0)) == 1
    assert ulp_distance(np.float32(1), np.nextafter(np.float32(1), np.float32(2))) == 1
    assert ulp_distance(np.float32(1), np.float32(2)) == 2**23  # one binade of float32
    assert ulp_distance(1.0, 2.0, np.float64) == 2**52
    assert ulp_distance(0.0, -0.0, np.float64) == 0
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    assert ulp_distance(-tiny, tiny) == 2  # -s, -0/+0, +s
    assert ulp_distance(-1.0, np.nextafter(-1.0, -2.0), np.float64) == 1
    b = ml_dtypes.bfloat16
    assert ulp_distance(np.array(1.0, b), np.array(1.0078125, b)) == 1  # bf16 has 7 fraction bits
    assert ulp_distance(np.array([1.0]), np.array([np.nan]))[0] == np.iinfo(np.uint64).max
    assert int(ulp_distance(-np.inf, np.inf, np.float64)) == _ordered64(np.inf) - _ordered64(-np.inf)


@given(st.floats(allow_nan=False, width=64), st.floats(allow_nan=False, width=64))
def test_ulp_distance_matches_struct_formulation(a, b):
    assert int(ulp_distance(a, b, np.float64)) == abs(_ordered64(a) - _ordered64(b))


# --- the order of checks


def test_shape_mismatch():
    rep = compare(np.zeros((2, 3)), np.zeros((3, 2)), op="embedding")
    assert not rep.ok and rep.failure == "shape" and "(2, 3)" in rep.message


def test_dtype_family_mismatch():
    rep = compare(np.zeros(3, np.int64), np.zeros(3, np.float32), op="embedding")
    assert not rep.ok and rep.failure == "dtype"
    rep = compare(np.zeros(3, bool), np.zeros(3, np.int64), op="visibility_mask")
    assert rep.failure == "dtype"
    # float64 oracle against a float32 (or bfloat16) result is the same family
    assert compare(np.ones(3), np.ones(3, np.float32), op="embedding").ok
    assert compare(np.ones(3), np.ones(3, ml_dtypes.bfloat16), op="embedding").ok


def test_nan_inf_pattern():
    e = np.array([1.0, np.nan, np.inf, -np.inf])
    assert compare(e, e.copy(), op="embedding").ok
    for bad in ([1.0, 2.0, np.inf, -np.inf], [np.nan, np.nan, np.inf, -np.inf], [1.0, np.nan, -np.inf, -np.inf]):
        rep = compare(e, np.array(bad), op="embedding")
        assert not rep.ok and rep.failure == "nan_inf", bad
        assert rep.n_over >= 1 and rep.offenders
    # the NaN pattern is checked before the values: the value error at 0 is not what is reported
    rep = compare(e, np.array([5.0, 1.0, np.inf, -np.inf]), op="embedding")
    assert rep.failure == "nan_inf" and rep.worst_index == (1,) and rep.n_over == 1


# --- values against the budget


def test_exact_budget_reports_offenders():
    e = np.arange(12.0).reshape(3, 4)
    a = e.copy()
    a[1, 2] += 0.5
    a[2, 3] = np.nextafter(a[2, 3], 100)
    rep = compare(e, a, op="embedding")
    assert not rep.ok and rep.failure == "values" and rep.n_over == 2
    assert rep.share_over == pytest.approx(2 / 12)
    assert rep.max_abs_err == 0.5 and rep.worst_index == (1, 2)
    assert rep.worst_expected == 6.0 and rep.worst_actual == 6.5
    assert rep.worst_ulp == 2**49  # float64 spacing in [4, 8) is 2^(2-52): 0.5 / 2^-50 = 2^49
    assert [o["index"] for o in rep.offenders] == [(1, 2), (2, 3)]
    assert rep.budget_used == math.inf


def test_relative_error_never_nan():
    # relative errors are taken only where the expected value is nonzero (no 1e307 at expected 0),
    # and no ULP count is given across zero (it would count every subnormal: 4e18 "ulps")
    e = np.array([0.0, 0.0, 0.0, 2.0])
    a = np.array([0.0, 1e-30, -1e-300, 2.5])
    rep = compare(e, a, op="embedding")
    assert not math.isnan(rep.max_rel_err) and rep.max_rel_err == pytest.approx(0.25)
    rep = compare(np.zeros(2), np.array([0.0, 1e-300]), op="embedding")
    assert not rep.ok and rep.max_rel_err == 0.0 and rep.worst_ulp is None and "ulp" not in str(rep)
    rep = compare(np.zeros(3), np.zeros(3), op="embedding")
    assert rep.ok and rep.max_rel_err == 0.0 and rep.budget_used == 0.0


def test_linear_bound_hand_worked():
    # x = [1, 2], W = [[3, -4]], b = [5]: sum |x||W| + |b| = 3 + 8 + 5 = 16, K = 2 -> gamma_3.
    x, w, b = np.array([[1.0, 2.0]], np.float32), np.array([[3.0, -4.0]], np.float32), np.array([5.0], np.float32)
    expected = np.array([[0.0]])
    actual = np.array([[0.0]], np.float32)
    rep = compare(expected, actual, op="linear", inputs=dict(x=x, weight=w, bias=b))
    want = 16 * (3 * U32 / (1 - 3 * U32)) + 16 * (3 * U64 / (1 - 3 * U64))
    assert rep.worst_bound == pytest.approx(want, rel=1e-12)
    assert "K=2" in rep.budget_formula and "gamma_(K+1)" in rep.budget_formula
    over = np.array([[2 * want]], np.float32)
    rep = compare(expected, over, op="linear", inputs=dict(x=x, weight=w, bias=b))
    assert not rep.ok and rep.budget_used == pytest.approx(float(np.float32(2 * want)) / want, rel=1e-6)


def test_gamma():
    assert gamma(3, U32) == pytest.approx(3 * U32 / (1 - 3 * U32), rel=1e-15)
    assert gamma(2**24, U32) == math.inf


def test_budget_table_covers_every_op():
    assert set(OP_NAMES) <= set(BUDGETS)
    for name, b in BUDGETS.items():
        assert b.kind in KINDS and b.formula and b.reason, name
        if b.kind != "exact" and not b.parts:
            assert b.bound_fn is not None, name


def _f32(kw):
    return {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in kw.items()}


def _f64(kw):
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in kw.items()}


def _cases(g, n, scale):
    """Inputs for a float32-vs-float64 check of the budgets; n crosses tiling edges."""
    t = min(n, 33)
    return [
        ("linear", dict(x=g.standard_normal((2, n)) * scale, weight=g.standard_normal((3, n)), bias=g.standard_normal(3))),
        ("layer_norm", dict(x=g.standard_normal((2, n)) * scale + 3 * scale, weight=g.standard_normal(n), bias=g.standard_normal(n))),
        ("rms_norm", dict(x=g.standard_normal((2, n)) * scale, weight=g.standard_normal(n))),
        ("gelu", dict(x=g.standard_normal(n) * 3 * scale, approximate="tanh")),
        ("gelu", dict(x=g.standard_normal(n) * 3 * scale, approximate="none")),
        ("silu", dict(x=g.standard_normal(n) * 10 * scale)),
        ("swiglu_oss", dict(h=g.standard_normal((2, 2 * n)) * 4 * scale)),
        ("softmax", dict(x=g.standard_normal((2, n)) * 3 * scale)),
        ("apply_rope", dict(x=g.standard_normal((t, 2, 8)) * scale, cos=np.cos(g.uniform(0, 7, (t, 4))), sin=np.sin(g.uniform(0, 7, (t, 4))))),
        ("attention", dict(q=g.standard_normal((t, 4, 16)), k=g.standard_normal((t, 2, 16)), v=g.standard_normal((t, 2, 16)),
                           window=3, sinks=np.array([1.0, -2.0, 0.0, -np.inf]))),
        ("attention_online", dict(q=g.standard_normal((t, 2, 8)), k=g.standard_normal((t, 2, 8)), v=g.standard_normal((t, 2, 8)))),
        ("router_topk_softmax", dict(logits=g.standard_normal((3, max(n, 4))) * 3, k=min(4, max(n, 4)))),
    ]


@given(st.sampled_from(EDGE), st.sampled_from([1e-3, 1.0, 30.0]), st.integers(0, 2**31))
def test_reference_float32_is_within_budget_of_float64(n, scale, seed):
    """Not too tight: the reference run in float32 on float32 inputs passes against the float64 oracle."""
    for op, kw in _cases(np.random.default_rng(seed), n, scale):
        k32 = _f32(kw)
        rep = compare(getattr(ops, op)(**_f64(k32)), getattr(ops, op)(**k32), op=op, inputs=k32)
        assert rep.ok, str(rep)


def test_budget_is_not_vacuous():
    """Not too loose: a relative error of 2^-12 in a float32 result is over every value budget here."""
    g = np.random.default_rng(3)
    for op, kw in _cases(g, 32, 1.0):
        k32 = _f32(kw)
        exp = getattr(ops, op)(**_f64(k32))
        if isinstance(exp, tuple):
            continue
        bad = (exp * (1 + 2.0**-12)).astype(np.float32)
        rep = compare(exp, bad, op=op, inputs=k32)
        assert not rep.ok, op


def test_tuple_outputs_compare_part_by_part():
    logits = np.array([[3.0, 1.0, 2.0, 0.0]])
    w, i = ops.router_topk_softmax(logits, 2)
    assert compare((w, i), (w, i), op="router_topk_softmax", inputs=dict(logits=logits, k=2)).ok
    rep = compare((w, i), (w, i[:, ::-1]), op="router_topk_softmax", inputs=dict(logits=logits, k=2))
    assert not rep.ok and rep.parts[0].ok and not rep.parts[1].ok
    assert rep.parts[1].op == "router_topk_softmax[1]" and "output 1" in rep.message
    rep = compare((w, i), w, op="router_topk_softmax", inputs=dict(logits=logits, k=2))
    assert rep.failure == "shape"


def test_error_model_budget_needs_inputs():
    with pytest.raises(ArgumentError, match="inputs"):
        compare(np.ones(2), np.ones(2), op="linear")
    with pytest.raises(ArgumentError, match="op"):
        compare(np.ones(2), np.ones(2), op="no_such_op")
    assert compare(np.ones(2), np.ones(2) + 1e-3, op="no_such_op", budget=(1e-2, 0.0)).ok


# --- the report


def test_report_is_json_and_text():
    x = np.array([[1.0, 2.0]], np.float32)
    w = np.array([[3.0, -4.0]], np.float32)
    ctx = dict(backend="numpy", kernel="dense", dtype="float32", seed=7)
    rep = compare(np.array([[-5.0]]), np.array([[np.inf]], np.float32), op="linear", inputs=dict(x=x, weight=w), context=ctx)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert d["failure"] == "nan_inf" and d["backend"] == "numpy" and d["seed"] == 7 and d["worst_actual"] == "inf"
    rep = compare(np.array([[-5.0]]), np.array([[-4.0]], np.float32), op="linear", inputs=dict(x=x, weight=w), context=ctx)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert d["budget_used"] > 1 and d["offenders"][0]["index"] == [0, 0]
    text = str(rep)
    for piece in ("linear: FAIL (values)", "worst at [0, 0]", "budget (error_model)", "backend numpy", "repro:"):
        assert piece in text


def test_repro_rebuilds_the_inputs_and_reruns():
    g = np.random.default_rng(4)
    x, w = g.standard_normal((2, 5)).astype(np.float32), g.standard_normal((3, 5)).astype(np.float32)
    inputs = dict(x=x, weight=w, bias=None)
    rep = compare(ops.linear(x.astype(np.float64), w.astype(np.float64)), ops.linear(x, w) + np.float32(1),
                  op="linear", inputs=inputs, context=dict(backend="numpy", seed=0))
    assert "np.array(" in rep.repro and "dtype=np.float32" in rep.repro
    ns = {}
    out = io.StringIO()
    with redirect_stdout(out):
        exec(rep.repro, ns)  # noqa: S102 - the snippet is generated here from literals
    np.testing.assert_array_equal(ns["inputs"]["x"], x)  # exact round trip of float32 values
    assert "linear: ok" in out.getvalue()  # rerun against the numpy backend: it passes


def test_repro_uses_the_strategy_for_large_inputs():
    x = np.zeros((40, 40))
    rep = compare(np.zeros((40, 40)), np.ones((40, 40)), op="gelu", inputs=dict(x=x),
                  context=dict(seed=123, strategy="draw_inputs('gelu', seed)"))
    assert "seed = 123" in rep.repro and "inputs = draw_inputs('gelu', seed)" in rep.repro
    rep = compare(np.zeros((40, 40)), np.ones((40, 40)), op="gelu", inputs=dict(x=x))
    assert "too large to inline" in rep.repro
