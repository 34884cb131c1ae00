"""Tests for refimpl.ops.activations (spec/activations.md)."""

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.activations import gelu, gelu_mlp, silu, swiglu, swiglu_mlp, swiglu_oss

BF16 = np.dtype(ml_dtypes.bfloat16)
EDGE_SIZES = [1, 31, 32, 33, 127, 128, 129]
finite64 = st.floats(-50, 50, allow_nan=False)


def _sig(z):
    """Scalar logistic without overflow."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _gelu_erf(v):
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def _gelu_tanh(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


def _oss_ref(h, alpha=1.702, limit=7.0):
    """Scalar loop: gate = even entries, lin = odd entries."""
    h = np.asarray(h, np.float64)
    out = np.empty(h.shape[:-1] + (h.shape[-1] // 2,))
    for idx in np.ndindex(*h.shape[:-1]):
        for i in range(h.shape[-1] // 2):
            g, l = float(h[idx + (2 * i,)]), float(h[idx + (2 * i + 1,)])
            g = min(g, limit)
            l = max(-limit, min(l, limit))
            out[idx + (i,)] = g * _sig(alpha * g) * (l + 1.0)
    return out


# ---------------------------------------------------------------- gelu


@given(st.lists(finite64, min_size=1, max_size=40))
def test_gelu_none_matches_math_erf(vals):
    y = gelu(np.array(vals), approximate="none")
    assert y.dtype == np.float64
    for v, got in zip(vals, y.tolist()):
        # same formula, same float64 operations, libm erf: at most 1 ulp apart
        assert got == pytest.approx(_gelu_erf(v), rel=4e-16, abs=1e-300)


@given(st.lists(finite64, min_size=1, max_size=40))
def test_gelu_tanh_matches_math_tanh(vals):
    y = gelu(np.array(vals))
    for v, got in zip(vals, y.tolist()):
        # float64 pow/tanh vs math's: a few ulps, plus cancellation in 1 + tanh near tanh = -1
        assert got == pytest.approx(_gelu_tanh(v), rel=1e-13, abs=1e-15)


def test_gelu_tanh_vs_erf_max_difference():
    grid = np.linspace(-10, 10, 20001)
    # the true maximum |tanh-form - erf-form|, from math.erf/math.tanh on the same grid
    true_max = max(abs(_gelu_tanh(float(v)) - _gelu_erf(float(v))) for v in grid)
    assert 4.6e-4 < true_max < 4.8e-4  # known: about 4.73e-4, near x = -2.7
    d = np.abs(gelu(grid, approximate="tanh") - gelu(grid, approximate="none"))
    assert abs(d.max() - true_max) < 1e-12
    assert d.max() < 5e-4
    assert d.max() > 1e-4  # the two forms do differ: the knob matters


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_odd_part_identity(approximate):
    # Phi(x) + Phi(-x) = 1 for both forms (tanh and erf are odd): gelu(x) - gelu(-x) = x
    x = np.linspace(-6, 6, 129)
    np.testing.assert_allclose(gelu(x, approximate=approximate) - gelu(-x, approximate=approximate), x, rtol=0, atol=1e-14)


def test_gelu_special_values_and_dtypes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a in ("tanh", "none"):
            y = gelu(np.array([-1000.0, 0.0, 1000.0, np.inf, np.nan]), approximate=a)
            assert y[0] == 0.0 and y[1] == 0.0 and y[2] == 1000.0 and y[3] == np.inf and np.isnan(y[4])
            assert gelu(np.ones(3, np.float32), approximate=a).dtype == np.float32
            assert gelu(np.ones(3, BF16), approximate=a).dtype == np.float32
            assert gelu(np.float32(1e20), approximate=a) == np.float32(1e20)
    y32 = gelu(np.linspace(-5, 5, 33).astype(np.float32), approximate="none")
    ref = [_gelu_erf(float(v)) for v in np.linspace(-5, 5, 33).astype(np.float32)]
    np.testing.assert_allclose(y32, ref, rtol=1e-6, atol=1e-7)  # float32 rounding of each step


@pytest.mark.parametrize("bad", ["erf", "exact", None, True])
def test_gelu_bad_approximate(bad):
    with pytest.raises(ArgumentError, match="^approximate"):
        gelu(np.ones(2), approximate=bad)


def test_gelu_bad_x():
    with pytest.raises(ArgumentError, match="^x"):
        gelu(np.array(["a"]))


# ---------------------------------------------------------------- silu / swiglu


def test_silu_stable_at_extremes_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dt in (np.float64, np.float32, BF16):
            y = silu(np.array([-1000.0, -100.0, 100.0, 1000.0]).astype(dt))
            assert y.tolist()[0] == 0.0 and y.tolist()[3] == 1000.0
            assert abs(y.tolist()[1]) < 1e-40 and y.tolist()[2] == 100.0
            assert np.all(np.isfinite(y))


@given(st.lists(st.floats(-800, 800), min_size=1, max_size=40))
def test_silu_matches_scalar_formula(vals):
    y = silu(np.array(vals))
    for v, got in zip(vals, y.tolist()):
        assert got == pytest.approx(v * _sig(v), rel=4e-16, abs=1e-300)


def test_silu_float32_and_special_values():
    x = np.linspace(-20, 20, 129).astype(np.float32)
    y = silu(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [float(v) * _sig(float(v)) for v in x], rtol=1e-6, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = silu(np.array([np.inf, -np.inf, np.nan]))
    assert s[0] == np.inf and np.isnan(s[1]) and np.isnan(s[2])


def test_swiglu_is_silu_gate_times_up():
    g = np.array([[-2.0, 0.0, 3.0]])
    u = np.array([[4.0, 5.0, -1.0]])
    y = swiglu(g, u)
    assert y[0].tolist() == pytest.approx([-2 * _sig(-2) * 4, 0.0, 3 * _sig(3) * -1], rel=1e-15)
    assert swiglu(g.astype(np.float32), u.astype(BF16)).dtype == np.float32


@pytest.mark.parametrize(
    "g, u, name",
    [(np.ones(3), np.ones(4), "up"), (np.ones((2, 3)), np.ones(3), "up"), ("a", np.ones(1), "gate"), (np.ones(1), [["x"]], "up")],
)
def test_swiglu_bad_arguments(g, u, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        swiglu(g, u)


# ---------------------------------------------------------------- swiglu_oss


def test_swiglu_oss_gate_clamped_above_only():
    # h = [gate, lin] pairs (interleaved)
    at7 = swiglu_oss(np.array([7.0, 0.0]))
    assert swiglu_oss(np.array([10.0, 0.0])).tolist() == at7.tolist()
    assert swiglu_oss(np.array([1e6, 0.0])).tolist() == at7.tolist()
    assert at7.tolist() == pytest.approx([7.0 * _sig(1.702 * 7.0)], rel=1e-15)
    # below -7 the gate is NOT clamped: -8 and -7 give different values
    m8 = swiglu_oss(np.array([-8.0, 0.0]))
    m7 = swiglu_oss(np.array([-7.0, 0.0]))
    assert m8.tolist() == pytest.approx([-8.0 * _sig(-1.702 * 8.0)], rel=1e-15)
    assert m8.tolist() != m7.tolist()


def test_swiglu_oss_linear_clamped_both_sides_and_plus_one():
    g = 1.0
    s = g * _sig(1.702 * g)
    assert swiglu_oss(np.array([g, 10.0])).tolist() == swiglu_oss(np.array([g, 7.0])).tolist()
    assert swiglu_oss(np.array([g, 7.0])).tolist() == pytest.approx([s * 8.0], rel=1e-15)
    assert swiglu_oss(np.array([g, -10.0])).tolist() == pytest.approx([s * -6.0], rel=1e-15)
    assert swiglu_oss(np.array([g, -10.0])).tolist() == swiglu_oss(np.array([g, -7.0])).tolist()
    # the +1: lin = 0 passes the gate through, lin = -1 gives exactly 0
    assert swiglu_oss(np.array([g, 0.0])).tolist() == pytest.approx([s], rel=1e-15)
    assert swiglu_oss(np.array([g, -1.0])).tolist() == [0.0]


def test_swiglu_oss_interleaving_and_halves_layout():
    # gates 2, -3 at even indices; linears 0.5, 4 at odd indices
    h = np.array([2.0, 0.5, -3.0, 4.0])
    want = [2 * _sig(3.404) * 1.5, -3 * _sig(-5.106) * 5.0]
    assert swiglu_oss(h).tolist() == pytest.approx(want, rel=1e-15)
    # "halves" reads [gate | lin]: the same numbers rearranged give the same result
    assert swiglu_oss(np.array([2.0, -3.0, 0.5, 4.0]), layout="halves").tolist() == pytest.approx(want, rel=1e-15)
    # and on the interleaved tensor, "halves" gives something else
    assert not np.allclose(swiglu_oss(h, layout="halves"), swiglu_oss(h))


def test_swiglu_oss_alpha_and_limit_knobs():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 64)) * 10
    # alpha = 1, no limit: silu(gate) * (lin + 1)
    gate, lin = h[..., 0::2], h[..., 1::2]
    np.testing.assert_allclose(
        swiglu_oss(h, alpha=1.0, limit=None), [[g * _sig(g) * (l + 1) for g, l in zip(gr, lr)] for gr, lr in zip(gate, lin)], rtol=1e-14, atol=1e-300
    )
    np.testing.assert_allclose(swiglu_oss(h, limit=3.0), _oss_ref(h, limit=3.0), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(swiglu_oss(h, alpha=2.5), _oss_ref(h, alpha=2.5), rtol=1e-14, atol=1e-300)


@given(
    width=st.sampled_from([1, 31, 32, 33, 64]),
    rows=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([1.0, 10.0, 1000.0]),
)
def test_swiglu_oss_matches_scalar_loop(width, rows, seed, spread):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((rows, 2 * width)) * spread
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = swiglu_oss(h)
    assert y.shape == (rows, width) and y.dtype == np.float64
    np.testing.assert_allclose(y, _oss_ref(h), rtol=1e-14, atol=1e-300)


def test_swiglu_oss_float32_bf16_and_batch_of_one():
    rng = np.random.default_rng(1)
    h = (rng.standard_normal((2, 5, 2 * 33)) * 8).astype(BF16)
    y = swiglu_oss(h)
    assert y.dtype == np.float32
    # float32 elementwise: a few float32 ulps from the float64 loop on the same (bf16-exact) values
    np.testing.assert_allclose(y, _oss_ref(h.astype(np.float64)), rtol=1e-5, atol=1e-6)
    for b in range(2):
        for t in range(5):
            assert np.array_equal(swiglu_oss(h[b, t][None])[0], y[b, t])  # elementwise: bit-identical


def test_swiglu_oss_extremes_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = swiglu_oss(np.array([-1000.0, 3.0, 1000.0, -1000.0, np.nan, 0.0, 1.0, np.nan], np.float32))
    assert y[0] == 0.0 and y[1] == pytest.approx(7.0 * _sig(7 * 1.702) * -6.0, rel=1e-6)
    assert np.isnan(y[2]) and np.isnan(y[3])


@pytest.mark.parametrize(
    "h, kwargs, name",
    [
        (np.ones(3), {}, "h"),
        (np.ones((2, 5)), {}, "h"),
        (np.float64(1.0), {}, "h"),
        (np.array(["a", "b"]), {}, "h"),
        (np.ones(4), {"layout": "split"}, "layout"),
        (np.ones(4), {"layout": None}, "layout"),
        (np.ones(4), {"alpha": 0.0}, "alpha"),
        (np.ones(4), {"alpha": -1.702}, "alpha"),
        (np.ones(4), {"alpha": float("nan")}, "alpha"),
        (np.ones(4), {"alpha": True}, "alpha"),
        (np.ones(4), {"limit": 0.0}, "limit"),
        (np.ones(4), {"limit": float("inf")}, "limit"),
        (np.ones(4), {"limit": "7"}, "limit"),
    ],
)
def test_swiglu_oss_bad_arguments(h, kwargs, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        swiglu_oss(h, **kwargs)


# ---------------------------------------------------------------- MLPs


def _mat(x, w, b=None):
    out = np.array([[math.fsum(float(x[r, i]) * float(w[o, i]) for i in range(w.shape[1])) for o in range(w.shape[0])] for r in range(x.shape[0])])
    return out if b is None else out + b


@pytest.mark.parametrize("d", [1, 31, 33])
@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_mlp_matches_loop(d, approximate):
    rng = np.random.default_rng(d)
    f = 4 * d
    x = rng.standard_normal((3, d))
    fw, fb = rng.standard_normal((f, d)), rng.standard_normal(f)
    pw, pb = rng.standard_normal((d, f)), rng.standard_normal(d)
    act = _gelu_tanh if approximate == "tanh" else _gelu_erf
    h = np.vectorize(act)(_mat(x, fw, fb))
    ref = _mat(h, pw, pb)
    y = gelu_mlp(x, fw, fb, pw, pb, approximate=approximate)
    assert y.shape == (3, d) and y.dtype == np.float64
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11)  # float64 dots of <= 132 terms
    # batch of one equals batched
    np.testing.assert_allclose(gelu_mlp(x[1:2], fw, fb, pw, pb, approximate=approximate)[0], y[1], rtol=1e-13, atol=1e-13)
    assert gelu_mlp(x.astype(np.float32), fw.astype(BF16), None, pw.astype(BF16), None).dtype == np.float32


@pytest.mark.parametrize("d, i", [(1, 1), (32, 33), (33, 128)])
def test_swiglu_mlp_matches_loop(d, i):
    rng = np.random.default_rng(d + i)
    x = rng.standard_normal((2, d))
    gw, uw, dw = rng.standard_normal((i, d)), rng.standard_normal((i, d)), rng.standard_normal((d, i))
    g, u = _mat(x, gw), _mat(x, uw)
    ref = _mat(np.vectorize(lambda v: v * _sig(v))(g) * u, dw)
    y = swiglu_mlp(x, gw, uw, dw)
    assert y.shape == (2, d)
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11)
    # gate and up are not interchangeable
    assert not np.allclose(swiglu_mlp(x, uw, gw, dw), y)
    assert swiglu_mlp(x.astype(BF16), gw.astype(BF16), uw.astype(BF16), dw.astype(BF16)).dtype == np.float32


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(fc_weight=np.ones((8, 3))), "fc_weight"),
        (dict(fc_weight=np.ones(8)), "fc_weight"),
        (dict(fc_bias=np.ones(7)), "fc_bias"),
        (dict(proj_weight=np.ones((4, 7))), "proj_weight"),
        (dict(proj_bias=np.ones(5)), "proj_bias"),
        (dict(x=np.float64(1.0)), "x"),
        (dict(approximate="erf"), "approximate"),
    ],
)
def test_gelu_mlp_bad_arguments(change, name):
    args = dict(x=np.ones((2, 4)), fc_weight=np.ones((8, 4)), fc_bias=np.ones(8), proj_weight=np.ones((4, 8)), proj_bias=np.ones(4))
    approximate = change.pop("approximate", "tanh")
    args.update(change)
    with pytest.raises(ArgumentError, match=f"^{name}"):
        gelu_mlp(**args, approximate=approximate)


@pytest.mark.parametrize(
    "change, name",
    [
        (dict(gate_weight=np.ones((8, 3))), "gate_weight"),
        (dict(up_weight=np.ones((7, 4))), "up_weight"),
        (dict(down_weight=np.ones((4, 7))), "down_weight"),
        (dict(down_weight=np.ones(8)), "down_weight"),
        (dict(x=np.array([["a"]])), "x"),
    ],
)
def test_swiglu_mlp_bad_arguments(change, name):
    args = dict(x=np.ones((2, 4)), gate_weight=np.ones((8, 4)), up_weight=np.ones((8, 4)), down_weight=np.ones((4, 8)))
    args.update(change)
    with pytest.raises(ArgumentError, match=f"^{name}"):
        swiglu_mlp(**args)


# ------------------------------------------- found by mutation testing (spec/mutation.md)


def _bf16_step_by_step(h, alpha, limit):
    """swiglu_oss_bf16's rule on float32 scalars, each step rounded through ml_dtypes.bfloat16."""
    f, R = np.float32, lambda v: f(np.float32(v).astype(ml_dtypes.bfloat16))  # noqa: E731
    out = []
    for i in range(len(h) // 2):
        g, lin = f(h[2 * i]), f(h[2 * i + 1])
        if limit is not None:
            g, lin = min(g, f(limit)), min(max(lin, f(-limit)), f(limit))
        z = R(f(alpha) * g)
        s = R(f(1) / (f(1) + f(math.exp(-float(z))) if -float(z) < 88 else f(np.inf)))
        glu = R(g * s)
        out.append(float(R(glu * R(lin + f(1)))))
    return out


@pytest.mark.parametrize("alpha, limit", [(1.702, 7.0), (1.0, None), (2.5, 3.0)])
def test_swiglu_oss_bf16_step_by_step(alpha, limit):
    from refimpl.ops.activations import swiglu_oss_bf16

    # gate above the limit (clamped from above only), lin beyond both limits, a negative gate
    # large enough that exp(-z) overflows float32 (sigmoid -> 0), ordinary values
    h = np.array([10.0, -9.0, -3.0, 8.0, 0.8125, 0.3, -60.0, 2.0, 1.5, -0.7], np.float32)
    y = swiglu_oss_bf16(h, alpha=alpha, limit=limit)
    assert y.dtype == np.float32 and y.shape == (5,)
    assert y.tolist() == _bf16_step_by_step(h.tolist(), alpha, limit)
    # [..., 2I] with leading axes: row by row the same
    y2 = swiglu_oss_bf16(np.stack([h, h[::-1].copy()]), alpha=alpha, limit=limit)
    assert y2.tolist() == [_bf16_step_by_step(h.tolist(), alpha, limit),
                           _bf16_step_by_step(h[::-1].tolist(), alpha, limit)]


def test_swiglu_oss_bf16_defaults_are_gpt_oss():
    from refimpl.ops.activations import swiglu_oss_bf16

    h = np.array([10.0, -9.0, 0.8125, 0.3], np.float32)
    assert swiglu_oss_bf16(h).tolist() == _bf16_step_by_step(h.tolist(), 1.702, 7.0)


@pytest.mark.parametrize("kwargs, name", [({"alpha": 0.0}, "alpha"), ({"limit": -1.0}, "limit"),
                                          ({"limit": float("inf")}, "limit")])
def test_swiglu_oss_bf16_bad_arguments(kwargs, name):
    from refimpl.ops.activations import swiglu_oss_bf16

    with pytest.raises(ArgumentError, match=f"^{name}"):
        swiglu_oss_bf16(np.ones(4, np.float32), **kwargs)
    with pytest.raises(ArgumentError, match="^h"):
        swiglu_oss_bf16(np.ones(3, np.float32))


def test_swiglu_float64_in_either_operand_computes_in_float64():
    from refimpl.ops.activations import swiglu

    g32 = np.array([0.5, -1.25], np.float32)
    u64 = np.array([1.0 + 2.0**-40, 3.0])
    # silu(g) u by hand in float64: g / (1 + exp(-g)) * u (1 + 2^-40 is not a float32)
    for g, u in ((g32, u64), (g32.astype(np.float64), u64.astype(np.float32))):
        y = swiglu(g, u)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, [float(a) / (1 + math.exp(-float(a))) * float(b) for a, b in zip(g, u)],
                                   rtol=1e-15, atol=0)


def test_swiglu_mlp_one_and_three_dimensional_x():
    from refimpl.ops.activations import swiglu_mlp

    rng = np.random.default_rng(8)
    gw, uw, dw = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((2, 3))

    def by_hand(row):
        g, u = gw @ row, uw @ row
        return dw @ np.array([a / (1 + math.exp(-a)) * b for a, b in zip(g, u)])

    x1 = rng.standard_normal(4)
    np.testing.assert_allclose(swiglu_mlp(x1, gw, uw, dw), by_hand(x1), rtol=1e-12, atol=1e-12)
    x3 = rng.standard_normal((2, 5, 4))  # x.shape[1] = 5 differs from d = 4
    y = swiglu_mlp(x3, gw, uw, dw)
    assert y.shape == (2, 5, 2)
    np.testing.assert_allclose(y, [[by_hand(r) for r in b] for b in x3], rtol=1e-12, atol=1e-12)
