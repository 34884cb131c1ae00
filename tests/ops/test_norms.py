"""Tests for refimpl.ops.norms (spec/norms.md)."""

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.norms import layer_norm, post_norm_residual, pre_norm_residual, rms_norm

BF16 = np.dtype(ml_dtypes.bfloat16)
EDGE_SIZES = [1, 31, 32, 33, 127, 128, 129]


def _layer_norm_loop(x, w, b, eps):
    """float64, one row at a time, with exactly rounded sums."""
    x = np.asarray(x, np.float64)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    n = rows.shape[1]
    for r in range(rows.shape[0]):
        row = [float(v) for v in rows[r]]
        mu = math.fsum(row) / n
        var = math.fsum((v - mu) ** 2 for v in row) / n
        s = math.sqrt(var + eps)
        for i in range(n):
            out[r, i] = (row[i] - mu) / s * float(w[i]) + (0.0 if b is None else float(b[i]))
    return out.reshape(x.shape)


def _rms_norm_loop(x, w, eps):
    x = np.asarray(x, np.float64)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    n = rows.shape[1]
    for r in range(rows.shape[0]):
        row = [float(v) for v in rows[r]]
        s = math.sqrt(math.fsum(v * v for v in row) / n + eps)
        for i in range(n):
            out[r, i] = row[i] / s * float(w[i])
    return out.reshape(x.shape)


# ---------------------------------------------------------------- layer_norm


@given(
    n=st.sampled_from(EDGE_SIZES),
    rows=st.integers(1, 3),
    eps=st.sampled_from([1e-5, 1e-6, 0.1]),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_norm_matches_float64_loop(n, rows, eps, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n)) * rng.uniform(0.1, 10) + rng.uniform(-5, 5)
    w = rng.standard_normal(n)
    b = rng.standard_normal(n) if with_bias else None
    y = layer_norm(x, w, b, eps=eps)
    assert y.dtype == np.float64
    # float64 two-pass vs exactly rounded sums; |normalised| <= sqrt(n) keeps errors ~ n ulps
    np.testing.assert_allclose(y, _layer_norm_loop(x, w, b, eps), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("n", EDGE_SIZES)
def test_layer_norm_float32_close_to_float64_loop(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((4, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    y = layer_norm(x, w, b)
    assert y.dtype == np.float32
    # float32 arithmetic on O(1) values, n <= 129: a few hundred float32 ulps at most
    np.testing.assert_allclose(y, _layer_norm_loop(x, w, b, 1e-5), rtol=0, atol=2e-5)


def test_layer_norm_hand_case_biased_variance_eps_inside_sqrt():
    # x = [0, 2]: mean 1, biased variance 1 (unbiased would be 2)
    eps = 1e-5
    y = layer_norm(np.array([0.0, 2.0]), np.ones(2), np.zeros(2), eps=eps)
    v = 1.0 / math.sqrt(1.0 + eps)
    assert y.tolist() == pytest.approx([-v, v], rel=1e-15)
    # eps = 1: 1/sqrt(2) (eps inside the sqrt), not 1/(1+1) (eps outside)
    y = layer_norm(np.array([0.0, 2.0]), np.ones(2), np.zeros(2), eps=1.0)
    assert y.tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], rel=1e-15)


@given(
    n=st.sampled_from([2, 31, 32, 33, 129]),
    shift=st.floats(-1000, 1000),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_norm_shift_invariance(n, shift, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, n))
    assume(np.all(x.std(axis=-1) > 0.05))
    w, b = rng.standard_normal(n), rng.standard_normal(n)
    a = layer_norm(x, w, b)
    c = layer_norm(x + shift, w, b)
    # x + shift rounds each element by up to |shift| * 2^-53; relative to std >= 0.05 that is < 1e-11
    np.testing.assert_allclose(c, a, rtol=0, atol=1e-9)


@given(
    n=st.sampled_from([2, 31, 32, 33, 129]),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_norm_scale_invariance_eps0(n, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, n))
    assume(np.all(x.std(axis=-1) > 0.05))
    w, b = rng.standard_normal(n), rng.standard_normal(n)
    a = layer_norm(x, w, b, eps=0.0)
    c = layer_norm(x * scale, w, b, eps=0.0)
    # with eps = 0 the map is exactly scale-invariant; float64 rounding only
    np.testing.assert_allclose(c, a, rtol=0, atol=1e-10)


def test_layer_norm_scale_invariance_large_values_default_eps():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 64)) * 1e3
    a = layer_norm(x, np.ones(64), np.zeros(64))
    c = layer_norm(x * 7.0, np.ones(64), np.zeros(64))
    # eps / var <= 1e-5 / 1e6: the eps effect is below 1e-11 relative
    np.testing.assert_allclose(c, a, rtol=0, atol=1e-9)


def test_layer_norm_affine_is_elementwise():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 33))
    w, b = rng.standard_normal(33), rng.standard_normal(33)
    plain = layer_norm(x, np.ones(33), None)
    np.testing.assert_allclose(layer_norm(x, w, b), plain * w + b, rtol=0, atol=1e-14)
    # the normalised rows have mean 0 and mean square var / (var + eps)
    var = x.var(axis=-1)
    np.testing.assert_allclose(plain.mean(-1), 0.0, atol=1e-14)
    np.testing.assert_allclose((plain**2).mean(-1), var / (var + 1e-5), rtol=1e-13)


def test_layer_norm_dtypes():
    x = np.linspace(-1, 1, 8)
    assert layer_norm(x.astype(np.float32), np.ones(8, np.float32), np.zeros(8, np.float32)).dtype == np.float32
    assert layer_norm(x.astype(BF16), np.ones(8, BF16), np.zeros(8, BF16)).dtype == np.float32
    assert layer_norm(x.astype(np.float16), np.ones(8, np.float32), None).dtype == np.float32
    assert layer_norm(x.astype(np.float32), np.ones(8), np.zeros(8, np.float32)).dtype == np.float64


def test_layer_norm_width_one_and_constant_rows():
    # a width-1 row normalises to 0, leaving only the bias
    assert layer_norm(np.array([[5.0], [-3.0]]), np.array([2.0]), np.array([0.25])).tolist() == [[0.25], [0.25]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer_norm(np.full((1, 4), 2.0), np.ones(4), np.zeros(4), eps=0.0)
    assert np.isnan(y).all()  # 0/0 with eps = 0, as IEEE says


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        ((np.ones((2, 4)), np.ones(3), np.zeros(4)), {}, "weight"),
        ((np.ones((2, 4)), np.ones((1, 4)), np.zeros(4)), {}, "weight"),
        ((np.ones((2, 4)), np.ones(4), np.zeros(5)), {}, "bias"),
        ((np.float64(1.0), np.ones(1), np.zeros(1)), {}, "x"),
        ((np.ones((2, 0)), np.ones(0), np.zeros(0)), {}, "x"),
        ((np.ones((2, 4)), np.ones(4), np.zeros(4)), {"eps": -1e-5}, "eps"),
        ((np.ones((2, 4)), np.ones(4), np.zeros(4)), {"eps": float("nan")}, "eps"),
        ((np.ones((2, 4)), np.ones(4), np.zeros(4)), {"eps": "1e-5"}, "eps"),
        ((np.ones((2, 4)), np.ones(4), np.zeros(4)), {"eps": True}, "eps"),
    ],
)
def test_layer_norm_bad_arguments(args, kwargs, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        layer_norm(*args, **kwargs)


# ---------------------------------------------------------------- rms_norm


@given(
    n=st.sampled_from(EDGE_SIZES),
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    eps=st.sampled_from([1e-5, 1e-6, 0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_rms_norm_matches_float64_loop(n, lead, eps, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(lead) + (n,)) * rng.uniform(0.01, 100)
    w = rng.standard_normal(n)
    y = rms_norm(x, w, eps=eps)
    assert y.dtype == np.float64 and y.shape == x.shape
    # float64 pairwise sum vs exactly rounded fsum, then 3 roundings: ~n ulps
    np.testing.assert_allclose(y, _rms_norm_loop(x, w, eps), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("n", EDGE_SIZES)
def test_rms_norm_float32_close_to_float64_loop(n):
    rng = np.random.default_rng(100 + n)
    x = rng.standard_normal((3, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    y = rms_norm(x, w)
    assert y.dtype == np.float32
    # float32 accumulation of <= 129 O(1) squares plus 3 roundings: well under 1e-5 relative
    np.testing.assert_allclose(y, _rms_norm_loop(x, w, 1e-5), rtol=1e-5, atol=1e-6)


def _rms_f32_chain(a, b, w0, w1, eps):
    """Width-2 RMSNorm done step by step in float32 scalars (a two-term sum has one rounding in any order)."""
    f = np.float32
    a, b = f(a), f(b)
    ms = (a * a + b * b) / f(2)
    s = np.sqrt(ms + f(eps))
    return [a / s * f(w0), b / s * f(w1)]


@given(
    a=st.floats(-100, 100, width=32),
    b=st.floats(-100, 100, width=32),
    eps=st.sampled_from([1e-5, 1e-6]),
)
def test_rms_norm_float32_accumulates_in_float32(a, b, eps):
    assume(abs(a) + abs(b) > 1e-3)
    x = np.array([a, b], np.float32)
    w = np.array([1.5, -0.75], np.float32)
    y = rms_norm(x, w, eps=eps)
    assert y.dtype == np.float32
    assert y.tolist() == [float(v) for v in _rms_f32_chain(a, b, 1.5, -0.75, eps)]


def test_rms_norm_float32_differs_from_float64_then_round():
    # a known input where float32 arithmetic and float64-rounded-to-float32 disagree by one ulp
    x = np.array([0.5163668, -0.5425471], np.float32)
    w = np.ones(2, np.float32)
    y32 = rms_norm(x, w)
    y64 = _rms_norm_loop(x, w, 1e-5).astype(np.float32)
    assert y32.tolist() == [float(v) for v in _rms_f32_chain(x[0], x[1], 1.0, 1.0, 1e-5)]
    assert y32.tolist() != y64.tolist()


def test_rms_norm_bf16_input_returns_float32_scaled_before_cast():
    rng = np.random.default_rng(4)
    xb = rng.standard_normal((5, 2)).astype(BF16)
    w = np.array([3.0, 0.1], np.float32)  # a scale that is not a power of two
    y = rms_norm(xb, w)
    assert y.dtype == np.float32
    for r in range(5):
        assert y[r].tolist() == [float(v) for v in _rms_f32_chain(float(xb[r, 0]), float(xb[r, 1]), 3.0, 0.1, 1e-5)]
    # results are not rounded back to bf16: some value is not representable in bf16
    assert not np.array_equal(y, y.astype(BF16).astype(np.float32))


def test_rms_norm_cast_before_scale_knob():
    rng = np.random.default_rng(6)
    xb = rng.standard_normal((8, 2)).astype(BF16)
    w = np.array([3.0, 0.1], np.float32)
    y = rms_norm(xb, w, cast_before_scale=True)
    assert y.dtype == np.float32
    for r in range(8):
        a, b = float(xb[r, 0]), float(xb[r, 1])
        f = np.float32
        s = np.sqrt((f(a) * f(a) + f(b) * f(b)) / f(2) + f(1e-5))
        t = [float(np.float32(f(a) / s).astype(BF16)), float(np.float32(f(b) / s).astype(BF16))]
        assert y[r].tolist() == [float(f(t[0]) * f(3.0)), float(f(t[1]) * f(0.1))]
    assert not np.array_equal(y, rms_norm(xb, w))
    # the knob changes nothing for float32 input
    x32 = xb.astype(np.float32)
    assert np.array_equal(rms_norm(x32, w, cast_before_scale=True), rms_norm(x32, w))


def test_rms_norm_properties():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 129)) * 50
    y = rms_norm(x, np.ones(129), eps=0.0)
    np.testing.assert_allclose(np.sqrt((y**2).mean(-1)), 1.0, rtol=1e-14)  # unit RMS with eps = 0
    np.testing.assert_allclose(rms_norm(-x, np.ones(129)), -rms_norm(x, np.ones(129)), rtol=0, atol=0)
    assert rms_norm(np.zeros((1, 4)), np.ones(4)).tolist() == [[0.0] * 4]  # zero row with eps > 0
    # batch of one equals batched (the op is row-wise)
    full = rms_norm(x.astype(np.float32), np.ones(129, np.float32))
    for i in range(4):
        assert np.array_equal(rms_norm(x[i : i + 1].astype(np.float32), np.ones(129, np.float32))[0], full[i])


def test_rms_norm_dtypes():
    x = np.linspace(-1, 1, 8)
    assert rms_norm(x.astype(np.float16), np.ones(8, np.float32)).dtype == np.float32
    assert rms_norm(x.astype(BF16), np.ones(8, BF16)).dtype == np.float32
    assert rms_norm(x.astype(np.float32), np.ones(8)).dtype == np.float64
    assert rms_norm(x, np.ones(8, np.float32)).dtype == np.float64


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        ((np.ones((2, 4)), np.ones(3)), {}, "weight"),
        ((np.ones((2, 4)), None), {}, "weight"),
        ((np.float32(1.0), np.ones(1)), {}, "x"),
        ((np.array(["a"]), np.ones(1)), {}, "x"),
        ((np.ones((2, 4)), np.ones(4)), {"eps": -1.0}, "eps"),
        ((np.ones((2, 4)), np.ones(4)), {"eps": float("inf")}, "eps"),
        ((np.ones((2, 4)), np.ones(4)), {"cast_before_scale": 1}, "cast_before_scale"),
    ],
)
def test_rms_norm_bad_arguments(args, kwargs, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        rms_norm(*args, **kwargs)


# ---------------------------------------------------------------- residual placements


def test_pre_and_post_norm_residual_hand_algebra():
    x = np.array([[1.0, -2.0, 0.5]])

    def norm(t):
        return 2.0 * t

    def sub(t):
        return t + 1.0

    # pre: x + sub(norm(x)) = x + 2x + 1 = 3x + 1;  post: norm(x + sub(x)) = 2(2x + 1) = 4x + 2
    assert pre_norm_residual(x, norm, sub).tolist() == (3 * x + 1).tolist()
    assert post_norm_residual(x, norm, sub).tolist() == (4 * x + 2).tolist()


def test_pre_norm_is_gpt2_block_shape():
    # GPT-2 block: h = x + f(LN(x)); the residual stream is not normalised, so adding a
    # constant to x shifts the output by that constant when f ignores its (shift-invariant) input
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 16))
    w, b = rng.standard_normal(16), rng.standard_normal(16)
    A = rng.standard_normal((16, 16))

    def ln(t):
        return layer_norm(t, w, b)

    def f(t):
        return t @ A

    pre = pre_norm_residual(x, ln, f)
    np.testing.assert_allclose(pre_norm_residual(x + 10.0, ln, f), pre + 10.0, rtol=0, atol=1e-9)
    # post-norm output is itself normalised: shifting x shifts nothing after the norm only if f is 0
    post = post_norm_residual(x, ln, f)
    np.testing.assert_allclose(post, _layer_norm_loop(x + x @ A, w, b, 1e-5), rtol=1e-12, atol=1e-12)
    assert not np.allclose(pre, post)


def test_residual_dtype():
    x = np.ones((2, 4), np.float32)
    assert pre_norm_residual(x, lambda t: t, lambda t: t).dtype == np.float32
    assert pre_norm_residual(x, lambda t: t, lambda t: t.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize(
    "norm, sub, name",
    [
        (None, lambda t: t, "norm"),
        (lambda t: t, 3.0, "sublayer"),
        (lambda t: t, lambda t: t[..., :2], "sublayer"),
        (lambda t: t, lambda t: "x", "sublayer"),
    ],
)
@pytest.mark.parametrize("fn", [pre_norm_residual, post_norm_residual])
def test_residual_bad_arguments(fn, norm, sub, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        fn(np.ones((2, 4)), norm, sub)


def test_residual_bad_x():
    with pytest.raises(ArgumentError, match="^x"):
        pre_norm_residual(np.float64(2.0), lambda t: t, lambda t: t)


# ------------------------------------------- found by mutation testing (spec/mutation.md)


def _overflow_rows():
    """float32 rows whose mean of squares overflows (rows 0, 1), and an ordinary row (2).

    Row 0: every x^2 (1e38) is finite but their sum is not; row 1: x^2 itself overflows. [3, 4]:
    rows != width, so a reduction over the wrong axis changes the shape or the values.
    """
    return np.array(
        [[1e19, -1e19, 1e19, 1e19], [3e25, -1e20, 5e24, 0.0], [0.5, -1.0, 2.0, 0.25]], np.float32
    )


def test_rms_norm_rows_whose_sum_of_squares_overflows_float32():
    # expected: the float64 loop (1e25^2 = 1e50 is finite there), rounded once to float32
    x, w = _overflow_rows(), np.array([1.0, 2.0, -0.5, 3.0], np.float32)
    y = rms_norm(x, w, eps=0.5)  # eps large enough that eps / max|x|^2 replaced by eps would show
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, _rms_norm_loop(x, w, 0.5), rtol=2e-6, atol=0)
    # the ordinary row is bit for bit what it is alone
    assert np.array_equal(y[2], rms_norm(x[2:], w, eps=0.5)[0])


def test_layer_norm_rows_whose_variance_overflows_float32():
    x = _overflow_rows()
    w = np.array([1.0, 2.0, -0.5, 3.0], np.float32)
    b = np.array([0.25, 0.0, -1.0, 0.5], np.float32)
    y = layer_norm(x, w, b, eps=0.5)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, _layer_norm_loop(x, w, b, 0.5), rtol=2e-6, atol=1e-6)
    assert np.array_equal(y[2], layer_norm(x[2:], w, b, eps=0.5)[0])


def test_norm_overflow_rows_in_a_batch():
    # [2, 3, 4]: the rescaling must work row by row under leading axes too
    x = np.stack([_overflow_rows(), _overflow_rows()[::-1]])
    w = np.ones(4, np.float32)
    np.testing.assert_allclose(rms_norm(x, w), _rms_norm_loop(x, w, 1e-5), rtol=2e-6, atol=0)
    np.testing.assert_allclose(layer_norm(x, w, None), _layer_norm_loop(x, w, None, 1e-5), rtol=2e-6, atol=1e-6)


def test_layer_norm_float64_in_any_argument_computes_in_float64():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8))
    w, b = rng.standard_normal(8), rng.standard_normal(8)
    ref = _layer_norm_loop(x.astype(np.float32), w.astype(np.float32), b, 1e-5)
    # only the bias is float64: still a float64 computation (float32 would be ~1e-7 off)
    y = layer_norm(x.astype(np.float32), w.astype(np.float32), b, eps=1e-5)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    # only x is float64
    y = layer_norm(x, w.astype(np.float32), b.astype(np.float32))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, _layer_norm_loop(x, w.astype(np.float32), b.astype(np.float32), 1e-5),
                               rtol=0, atol=1e-12)


def test_residual_sum_dtype_follows_both_operands():
    x32 = np.array([[1.0, 2.0, 3.0]], np.float32)
    x64 = np.array([[1.0, 2.0**-40, 3.0]])
    ident = lambda t: t  # noqa: E731
    ones32 = lambda t: np.ones_like(t, np.float32)  # noqa: E731
    # float64 x with a float32 sublayer output: the sum is float64 (1 + 2^-40 is 1.0 in float32)
    for fn in (pre_norm_residual, post_norm_residual):
        y = fn(x64, ident, ones32)
        assert y.dtype == np.float64 and y.tolist() == [[2.0, 1.0 + 2.0**-40, 4.0]]
        # float32 with float32: float32, not float64
        assert fn(x32, ident, ident).dtype == np.float32
        # float32 x with a float64 sublayer output: float64 too
        y = fn(x32, ident, lambda t: np.full(t.shape, 2.0**-40))
        assert y.dtype == np.float64 and y.tolist() == [[1.0 + 2.0**-40, 2.0 + 2.0**-40, 3.0 + 2.0**-40]]


def test_norm_overflow_row_beside_a_row_with_inf():
    # a row holding inf elsewhere in the batch must not stop the overflow row's rescaling
    x = np.array([[3e25, -1e20, 5e24, 0.0], [np.inf, 1.0, 2.0, 3.0]], np.float32)
    w = np.ones(4, np.float32)
    for fn, ref in ((rms_norm, _rms_norm_loop(x[:1], w, 1e-5)),
                    (layer_norm, _layer_norm_loop(x[:1], w, None, 1e-5))):
        args = (x, w) if fn is rms_norm else (x, w, None)
        with np.errstate(invalid="ignore"):
            y = fn(*args)
            alone = fn(*((x[1:], w) if fn is rms_norm else (x[1:], w, None)))
        np.testing.assert_allclose(y[:1], ref, rtol=2e-6, atol=1e-6)
        np.testing.assert_array_equal(y[1], alone[0])  # the inf row as it is alone (NaN where IEEE says)
