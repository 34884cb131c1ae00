"""Tests for refimpl.ops.embed and refimpl.ops.linear (spec/embeddings.md, spec/linear.md)."""

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.embed import embedding, learned_positions
from refimpl.ops.linear import linear

BF16 = np.dtype(ml_dtypes.bfloat16)
EDGE_SIZES = [1, 31, 32, 33, 127, 128, 129]


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


# ---------------------------------------------------------------- embedding


@given(
    vocab=st.integers(1, 40),
    width=st.sampled_from(EDGE_SIZES),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_embedding_matches_row_loop(vocab, width, shape, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((vocab, width))
    ids = rng.integers(0, vocab, size=tuple(shape))
    out = embedding(ids, w)
    assert out.shape == tuple(shape) + (width,)
    assert out.dtype == w.dtype
    flat_ids = ids.reshape(-1)
    flat_out = out.reshape(-1, width)
    for k, i in enumerate(flat_ids.tolist()):
        # a gather is exact: bit-identical rows
        assert _bits(flat_out[k]).tolist() == _bits(w[i]).tolist()


@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)])
def test_embedding_keeps_dtype_exactly(dtype):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((7, 33)).astype(dtype)
    ids = np.array([[6, 0, 3], [3, 3, 1]])
    out = embedding(ids, w)
    assert out.dtype == dtype
    for r in range(2):
        for c in range(3):
            assert np.array_equal(_bits(out[r, c]), _bits(w[ids[r, c]]))


def test_embedding_scalar_and_empty_ids():
    w = np.arange(12.0).reshape(4, 3)
    assert embedding(2, w).tolist() == [6.0, 7.0, 8.0]
    assert embedding(np.array([], dtype=np.int64), w).shape == (0, 3)
    assert embedding(np.uint8(3), w).tolist() == [9.0, 10.0, 11.0]


def test_embedding_last_row_is_valid():
    w = np.arange(10.0).reshape(5, 2)
    assert embedding([4], w).tolist() == [[8.0, 9.0]]


@pytest.mark.parametrize("bad", [5, -1, 1000, -5])
def test_embedding_out_of_range_ids(bad):
    w = np.zeros((5, 2))
    with pytest.raises(ArgumentError, match="^ids") as ei:
        embedding(np.array([0, bad, 1]), w)
    msg = str(ei.value)
    assert str(bad) in msg and "5" in msg  # the bad value and the vocab size


@pytest.mark.parametrize("ids", [np.array([0.0, 1.0]), np.array([True, False]), "abc", [[0, 1], [2]]])
def test_embedding_bad_ids_dtype(ids):
    with pytest.raises(ArgumentError, match="^ids"):
        embedding(ids, np.zeros((5, 2)))


@pytest.mark.parametrize("w", [np.zeros(5), np.zeros((2, 3, 4)), np.array(["a", "b"]), np.float32(1.0)])
def test_embedding_bad_weight(w):
    with pytest.raises(ArgumentError, match="^weight"):
        embedding([0], w)


# ---------------------------------------------------------------- learned_positions


@given(rows=st.integers(1, 40), length=st.integers(0, 40), offset=st.integers(0, 40))
def test_learned_positions_rows(rows, length, offset):
    wpe = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3)
    if offset + length > rows:
        with pytest.raises(ArgumentError, match="^length"):
            learned_positions(wpe, length, offset=offset)
        return
    out = learned_positions(wpe, length, offset=offset)
    assert out.shape == (length, 3)
    for t in range(length):
        # row t is position offset + t; wpe[p] = [3p, 3p+1, 3p+2]
        p = offset + t
        assert out[t].tolist() == [3.0 * p, 3.0 * p + 1, 3.0 * p + 2]


def test_learned_positions_cached_decoding_consistent():
    rng = np.random.default_rng(3)
    wpe = rng.standard_normal((1024, 16)).astype(BF16)
    full = learned_positions(wpe, 1024)
    assert full.dtype == BF16
    assert np.array_equal(_bits(full), _bits(wpe))
    # prefill 1000 then decode one token at a time until the table is full
    for pos in range(1000, 1024):
        step = learned_positions(wpe, 1, offset=pos)
        assert np.array_equal(_bits(step), _bits(full[pos : pos + 1]))
    with pytest.raises(ArgumentError, match="^length") as ei:
        learned_positions(wpe, 1, offset=1024)
    assert "1024" in str(ei.value) and "1025" in str(ei.value)


def test_learned_positions_returns_a_copy():
    wpe = np.zeros((4, 2))
    out = learned_positions(wpe, 2)
    out[:] = 7.0
    assert not wpe.any()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(length=-1), "length"),
        (dict(length=2.0), "length"),
        (dict(length=True), "length"),
        (dict(length=2, offset=-1), "offset"),
        (dict(length=2, offset=1.5), "offset"),
        (dict(length=2, offset=None), "offset"),
        (dict(length=9), "length"),
    ],
)
def test_learned_positions_bad_arguments(kwargs, name):
    wpe = np.zeros((8, 2))
    length = kwargs.pop("length")
    with pytest.raises(ArgumentError, match=f"^{name}"):
        learned_positions(wpe, length, **kwargs)


@pytest.mark.parametrize("wpe", [np.zeros(8), np.zeros((1, 8, 2)), np.array([["x"]])])
def test_learned_positions_bad_table(wpe):
    with pytest.raises(ArgumentError, match="^wpe"):
        learned_positions(wpe, 1)


# ---------------------------------------------------------------- linear


def _linear_loop(x, w, b):
    """float64 reference: every output is an fsum of exact float64 products."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    lead = x.shape[:-1]
    xf = x.reshape(-1, x.shape[-1])
    out = np.empty((xf.shape[0], w.shape[0]))
    for r in range(xf.shape[0]):
        for o in range(w.shape[0]):
            terms = [float(xf[r, i]) * float(w[o, i]) for i in range(w.shape[1])]
            if b is not None:
                terms.append(float(b[o]))
            out[r, o] = math.fsum(terms)
    return out.reshape(lead + (w.shape[0],))


@given(
    n_in=st.sampled_from(EDGE_SIZES),
    n_out=st.sampled_from([1, 3, 32, 33]),
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_float64_matches_fsum(n_in, n_out, lead, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(lead) + (n_in,))
    w = rng.standard_normal((n_out, n_in))
    b = rng.standard_normal(n_out) if with_bias else None
    y = linear(x, w, b)
    assert y.dtype == np.float64 and y.shape == tuple(lead) + (n_out,)
    ref = _linear_loop(x, w, b)
    # float64 dot of n_in <= 129 terms vs exactly-rounded fsum: error <= n * 2^-53 * sum|terms|
    bound = (n_in + 2) * 2.0**-52 * (np.abs(x)[..., None, :] * np.abs(w)).sum(-1) + 1e-300
    assert np.all(np.abs(y - ref) <= bound)


@pytest.mark.parametrize("n_in", EDGE_SIZES)
def test_linear_float32_close_to_exact(n_in):
    rng = np.random.default_rng(n_in)
    x = rng.standard_normal((2, 5, n_in)).astype(np.float32)
    w = rng.standard_normal((7, n_in)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    y = linear(x, w, b)
    assert y.dtype == np.float32
    ref = _linear_loop(x, w, b)
    # float32 accumulation of n_in products: error <= (n_in + 2) * 2^-23 * sum|terms| (loose, worst case)
    bound = (n_in + 2) * 2.0**-23 * ((np.abs(x.astype(np.float64))[..., None, :] * np.abs(w)).sum(-1) + np.abs(b))
    assert np.all(np.abs(y - ref) <= bound)


def test_linear_layout_is_out_by_in_exact_integers():
    # small integers: every product and sum is exact, so the layout is checked exactly
    x = np.array([[1.0, 2.0, 3.0]])  # [1, in=3]
    w = np.array([[1.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 100.0], [1.0, 1.0, 1.0]])  # [out=4, in=3]
    b = np.array([0.5, 0.25, 0.0, -6.0])
    assert linear(x, w, b).tolist() == [[1.5, 20.25, 300.0, 0.0]]
    assert linear(x, w).tolist() == [[1.0, 20.0, 300.0, 6.0]]


def test_linear_dtype_rule():
    x32 = np.ones((2, 4), np.float32)
    wb = np.ones((3, 4), BF16)
    assert linear(x32, wb).dtype == np.float32
    assert linear(x32.astype(BF16), wb).dtype == np.float32
    assert linear(x32.astype(np.float16), wb).dtype == np.float32
    assert linear(x32, wb, np.ones(3)).dtype == np.float64
    assert linear(x32.astype(np.float64), wb).dtype == np.float64
    # bf16 weights widen exactly: result equals the float32 computation on widened weights
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 4)).astype(BF16)
    x = rng.standard_normal((2, 4)).astype(np.float64)
    # float64 dot of 4 terms vs exactly-rounded fsum: a few ulps
    np.testing.assert_allclose(linear(x, w), _linear_loop(x, w.astype(np.float64), None), rtol=1e-14, atol=1e-15)


def test_linear_batch_of_one_equals_batched():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 33)).astype(np.float32)
    w = rng.standard_normal((5, 33)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    full = linear(x, w, b)
    for i in range(4):
        # same float32 values; BLAS may block differently, so allow a few ulps
        np.testing.assert_allclose(linear(x[i : i + 1], w, b)[0], full[i], rtol=1e-5, atol=1e-5)


def test_linear_empty_batch():
    assert linear(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)


@pytest.mark.parametrize(
    "x, w, b, name",
    [
        (np.ones((2, 4)), np.ones((3, 5)), None, "weight"),
        (np.ones((2, 4)), np.ones(4), None, "weight"),
        (np.ones((2, 4)), np.ones((1, 3, 4)), None, "weight"),
        (np.ones((2, 4)), np.ones((4, 3)), None, "weight"),
        (np.ones((2, 4)), np.ones((3, 4)), np.ones(4), "bias"),
        (np.ones((2, 4)), np.ones((3, 4)), np.ones((1, 3)), "bias"),
        (np.float64(1.0), np.ones((3, 1)), None, "x"),
        (np.array(["a", "b"]), np.ones((3, 2)), None, "x"),
        (np.ones((2, 4)), "w", None, "weight"),
    ],
)
def test_linear_bad_arguments(x, w, b, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        linear(x, w, b)
