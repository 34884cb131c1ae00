"""Tests for refimpl.ops.dropout (spec/dropout.md)."""

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.dropout import dropout

BF16 = np.dtype(ml_dtypes.bfloat16)


def _state(rng):
    return rng.bit_generator.state


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_inference_is_identity_and_draws_nothing(p):
    x = np.random.default_rng(0).standard_normal((3, 33))
    rng = np.random.default_rng(1)
    before = _state(rng)
    y = dropout(x, p, rng=rng, training=False)
    assert np.array_equal(y, x) and y.dtype == np.float64
    assert _state(rng) == before
    assert np.array_equal(dropout(x, p, training=False), x)  # no rng needed at inference


def test_p_zero_training_is_identity_without_draws():
    x = np.arange(10.0, dtype=np.float32)
    rng = np.random.default_rng(2)
    before = _state(rng)
    y = dropout(x, 0.0, rng=rng)
    assert np.array_equal(y, x) and y.dtype == np.float32
    assert _state(rng) == before
    assert np.array_equal(dropout(x, 0, rng=None, training=True), x)


@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    p=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_mask_follows_documented_draw(shape, p, seed):
    shape = tuple(shape)
    x = np.random.default_rng(seed ^ 1).standard_normal(shape)
    y = dropout(x, p, rng=np.random.default_rng(seed))
    u = np.random.default_rng(seed).random(shape)  # the same draws, taken independently
    for idx in np.ndindex(*shape):
        want = x[idx] / (1.0 - p) if u[idx] >= p else 0.0
        assert y[idx] == pytest.approx(want, rel=1e-15, abs=0)


def test_tie_u_equal_p_is_kept():
    # keep iff u >= p: choose p equal to the first uniform the generator will produce
    u0 = float(np.random.default_rng(99).random(1)[0])
    y = dropout(np.ones(1), u0, rng=np.random.default_rng(99))
    assert y.tolist() == [1.0 / (1.0 - u0)]
    # and the next representable p above u0 drops it
    y = dropout(np.ones(1), math.nextafter(u0, 1.0), rng=np.random.default_rng(99))
    assert y.tolist() == [0.0]


def test_deterministic_given_seed():
    x = np.ones((4, 128), np.float32)
    a = dropout(x, 0.1, rng=np.random.default_rng(1234))
    b = dropout(x, 0.1, rng=np.random.default_rng(1234))
    c = dropout(x, 0.1, rng=np.random.default_rng(1235))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # consecutive calls on one generator draw fresh masks
    rng = np.random.default_rng(7)
    assert not np.array_equal(dropout(x, 0.5, rng=rng), dropout(x, 0.5, rng=rng))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_statistics_within_binomial_bound(p):
    n = 200_000
    x = np.full(n, 2.5)
    y = dropout(x, p, rng=np.random.default_rng(42))
    kept = int(np.count_nonzero(y))
    # kept ~ Binomial(n, 1 - p); 6 standard deviations (fixed seed, so not flaky either way)
    sd = math.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) < 6 * sd
    # every kept value is x / (1 - p); the mean is preserved within the same bound
    assert np.allclose(y[y != 0], 2.5 / (1 - p), rtol=1e-15)
    assert abs(y.mean() - 2.5) < 6 * sd / n * 2.5 / (1 - p)


def test_dtypes_and_special_values():
    rng = np.random.default_rng(3)
    assert dropout(np.ones(8, BF16), 0.5, rng=rng).dtype == np.float32
    assert dropout(np.ones(8, np.float16), 0.5, rng=rng).dtype == np.float32
    assert dropout(np.ones(8, np.float32), 0.5, rng=rng, training=False).dtype == np.float32
    # float32: kept values are x / float32(1 - p)
    y = dropout(np.full(64, 3.0, np.float32), 0.1, rng=np.random.default_rng(4))
    assert set(y.tolist()) == {0.0, float(np.float32(3.0) / np.float32(0.9))}
    # a dropped inf is 0 * inf = NaN (IEEE); no warning escapes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = dropout(np.full(64, np.inf), 0.5, rng=np.random.default_rng(5))
    u = np.random.default_rng(5).random(64)
    assert np.all(np.isnan(z[u < 0.5])) and np.all(z[u >= 0.5] == np.inf)
    assert dropout(np.float64(2.0), 0.5, rng=np.random.default_rng(0)).shape == ()


def test_input_not_modified():
    x = np.ones(16)
    dropout(x, 0.5, rng=np.random.default_rng(0))
    y = dropout(x, 0.5, rng=np.random.default_rng(0), training=False)
    y[:] = 0
    assert np.all(x == 1)


@pytest.mark.parametrize("p", [1.0, 1, -0.1, 1.5, float("nan"), float("inf"), True, "0.1", None])
def test_bad_p(p):
    with pytest.raises(ArgumentError, match="^p"):
        dropout(np.ones(4), p, rng=np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="^p"):
        dropout(np.ones(4), p, training=False)


@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0), "seed"])
def test_bad_rng_when_training(rng):
    with pytest.raises(ArgumentError, match="^rng"):
        dropout(np.ones(4), 0.1, rng=rng)


def test_bad_training_and_x():
    with pytest.raises(ArgumentError, match="^training"):
        dropout(np.ones(4), 0.1, rng=np.random.default_rng(0), training="yes")
    with pytest.raises(ArgumentError, match="^training"):
        dropout(np.ones(4), 0.1, rng=np.random.default_rng(0), training=1)
    with pytest.raises(ArgumentError, match="^x"):
        dropout(np.array(["a"]), 0.1, rng=np.random.default_rng(0))
