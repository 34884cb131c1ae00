"""Tests for refimpl.ops.sampling (spec/sampling.md).

Expected values come from hand-worked cases, Python-scalar loops (math.exp, explicit sums),
or invariants; never from the functions under test.
"""

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.sampling import apply_temperature, greedy, sample, softmax, top_k_filter, top_p_filter

EDGE_V = [1, 2, 31, 32, 33, 127, 128, 129]


def py_softmax(row):
    """softmax of a list of floats by Python scalars (math.exp, math.fsum)."""
    m = max(row)
    e = [0.0 if x == -math.inf else math.exp(x - m) for x in row]
    s = math.fsum(e)
    return [x / s for x in e]


def py_rank(row):
    """Token indices ordered by value descending, ties by lower index first."""
    return sorted(range(len(row)), key=lambda i: (-row[i], i))


def kept(arr):
    return [i for i, x in enumerate(np.asarray(arr).tolist()) if x != -math.inf]


# ---------------------------------------------------------------- softmax


@given(st.lists(st.floats(-50, 50), min_size=1, max_size=40))
def test_softmax_matches_scalar_formula(row):
    got = softmax(np.array(row, dtype=np.float64))
    want = py_softmax(row)
    # float64 vs float64 reformulation (fsum vs pairwise sum): a few ulps.
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
    assert got.dtype == np.float64


def test_softmax_dtype_rule_and_masked_rows():
    x32 = np.array([[0.0, 1.0, -np.inf], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
    y = softmax(x32)
    assert y.dtype == np.float32
    assert np.all(y[1] == 0)  # fully masked row -> zeros, not NaN
    assert y[0, 2] == 0
    np.testing.assert_allclose(y[0, :2], [1 / (1 + math.e), math.e / (1 + math.e)], rtol=1e-6)  # float32 rounding
    assert softmax(x32.astype(ml_dtypes.bfloat16)).dtype == np.float32
    np.testing.assert_allclose(softmax(np.zeros((2, 3)), axis=0), np.full((2, 3), 0.5), rtol=0)


def test_softmax_bad_arguments():
    with pytest.raises(ArgumentError, match="^x"):
        softmax(np.float64(1.0))
    with pytest.raises(ArgumentError, match="^x"):
        softmax(np.array(["a", "b"]))
    with pytest.raises(ArgumentError, match="^axis"):
        softmax(np.zeros(3), axis=1)


# ---------------------------------------------------------------- greedy


def test_greedy_ties_take_lowest_index():
    assert greedy([1.0, 3.0, 3.0, 2.0]) == 1
    assert greedy([5.0, 5.0]) == 0
    assert greedy([-np.inf, -np.inf, -np.inf]) == 0
    assert greedy([0.0, np.inf, np.inf]) == 1
    assert greedy([7.0]) == 0
    out = greedy(np.array([[0.0, 2.0, 2.0], [4.0, 1.0, 4.0]], dtype=np.float32))
    assert out.dtype == np.int64 and out.tolist() == [1, 0]
    assert isinstance(greedy(np.array([1.0, 2.0])), int)


@pytest.mark.parametrize("v", EDGE_V)
def test_greedy_edge_sizes_with_duplicates(v):
    rng = np.random.default_rng(v)
    x = rng.integers(-3, 4, size=(3, v)).astype(np.float32)  # many ties
    want = []
    for row in x.tolist():
        best = 0
        for i, val in enumerate(row):
            if val > row[best]:
                best = i
        want.append(best)
    assert greedy(x).tolist() == want


def test_greedy_bfloat16_input():
    x = np.array([1.0, 1.00390625, 1.0078125], dtype=np.float32).astype(ml_dtypes.bfloat16)
    # 1.00390625 is not a bf16 value: it rounds (tie, to even) to 1.0, so the max is the last entry.
    assert greedy(x) == 2


def test_greedy_rejects_nan_and_bad_shapes():
    with pytest.raises(ArgumentError, match="^logits.*NaN"):
        greedy([0.0, np.nan, 1.0])
    with pytest.raises(ArgumentError, match="^logits"):
        greedy(np.float32(1.0))
    with pytest.raises(ArgumentError, match="^logits"):
        greedy(np.zeros((2, 0)))
    with pytest.raises(ArgumentError, match="^logits"):
        greedy([[1.0, 2.0], [3.0]])


# ---------------------------------------------------------------- temperature


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20), st.floats(1e-3, 1e3))
def test_temperature_is_one_division(row, t):
    got = apply_temperature(np.array(row, dtype=np.float64), t)
    assert got.dtype == np.float64
    assert got.tolist() == [x / t for x in row]  # IEEE division, bit-exact


def test_temperature_float32_divides_by_rounded_t():
    x = np.array([1.0, -3.0, 1e-3], dtype=np.float32)
    got = apply_temperature(x, 0.7)
    assert got.dtype == np.float32
    assert got.tolist() == [float(np.float32(v) / np.float32(0.7)) for v in x.tolist()]


def test_temperature_to_zero_approaches_greedy():
    rng = np.random.default_rng(0)
    for v in EDGE_V[1:]:
        x = rng.standard_normal(v)
        x[rng.integers(v)] = x.max() + 0.1  # unique maximum with a gap >= 0.1
        g = int(np.argmax(x))
        for t, bound in [(1e-2, v * math.exp(-10)), (1e-3, v * math.exp(-100))]:
            q = softmax(apply_temperature(x, t))
            # every non-max prob <= exp(-gap / T); the max prob >= 1 - V exp(-gap / T)
            assert q[g] >= 1 - bound - 1e-15
        draws = [sample(x, temperature=1e-3, rng=np.random.default_rng(s)) for s in range(20)]
        assert draws == [g] * 20


def test_temperature_bad_arguments():
    for bad in [0.0, -1.0, math.inf, math.nan, True, "1", None]:
        with pytest.raises(ArgumentError, match="^temperature"):
            apply_temperature([1.0, 2.0], bad)
    with pytest.raises(ArgumentError, match="^logits"):
        apply_temperature([1.0, math.nan], 1.0)


# ---------------------------------------------------------------- top-k


@given(st.data())
def test_top_k_keeps_exactly_k_largest_distinct(data):
    v = data.draw(st.sampled_from(EDGE_V))
    k = data.draw(st.integers(1, v + 3))
    perm = data.draw(st.permutations(list(range(v))))
    row = [float(p) * 0.5 - 7.0 for p in perm]  # distinct values
    got = top_k_filter(np.array(row, dtype=np.float32), k)
    want = sorted(py_rank(row)[: min(k, v)])
    assert kept(got) == want
    for i in want:
        assert got[i] == np.float32(row[i])  # kept values unchanged


def test_top_k_ties_at_threshold_all_kept():
    row = [1.0, 2.0, 2.0, 3.0, 2.0]
    # 2nd largest value is 2.0 -> every 2.0 stays (HF rule: keep x >= k-th largest)
    assert kept(top_k_filter(row, 2)) == [1, 2, 3, 4]
    assert kept(top_k_filter(row, 1)) == [3]
    assert kept(top_k_filter(row, 5)) == [0, 1, 2, 3, 4]
    assert kept(top_k_filter([0.0, -np.inf, -np.inf], 2)) == [0]


def test_top_k_batch_and_dtype():
    x = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]], dtype=ml_dtypes.bfloat16)
    got = top_k_filter(x, 2)
    assert got.dtype == np.float32
    assert np.isneginf(got).tolist() == [[False, True, False], [True, False, False]]


def test_top_k_bad_arguments():
    for bad in [0, -1, 1.0, True, None]:
        with pytest.raises(ArgumentError, match="^k"):
            top_k_filter([1.0, 2.0], bad)
    with pytest.raises(ArgumentError, match="^logits"):
        top_k_filter([np.nan, 1.0], 1)


# ---------------------------------------------------------------- top-p


def _n_kept(row, p, **kw):
    return len(kept(top_p_filter(np.array(row, dtype=np.float64), p, **kw)))


def test_top_p_hand_worked_exact_boundaries():
    # [0, 0] -> probabilities exactly [0.5, 0.5]; rank-1 token has S_1 = 0.5, kept iff 0.5 < p.
    assert kept(top_p_filter([0.0, 0.0], 0.5)) == [0]
    assert kept(top_p_filter([0.0, 0.0], 0.5000001)) == [0, 1]
    # four equal logits -> exactly 0.25 each
    four = [0.0, 0.0, 0.0, 0.0]
    assert _n_kept(four, 0.25) == 1
    assert _n_kept(four, 0.2500001) == 2
    assert _n_kept(four, 0.5) == 2
    assert _n_kept(four, 0.75) == 3
    assert _n_kept(four, 0.7500001) == 4
    assert kept(top_p_filter(four, 0.5)) == [0, 1]  # ties by lower index


def test_top_p_hand_worked_05_03_02():
    row = [math.log(0.2), math.log(0.5), math.log(0.3)]  # ranks: index 1 (0.5), 2 (0.3), 0 (0.2)
    # Exclusive masses by rank: S = 0, 0.5, 0.8.  Keep rank r iff S_r < p.
    assert kept(top_p_filter(row, 0.3)) == [1]
    assert kept(top_p_filter(row, 0.5 - 1e-9)) == [1]  # p = 0.5 keeps 1 token (boundary: S_1 = 0.5 not < 0.5)
    assert kept(top_p_filter(row, 0.5 + 1e-9)) == [1, 2]
    assert kept(top_p_filter(row, 0.6)) == [1, 2]  # crossing token (0.3) kept
    assert kept(top_p_filter(row, 0.8 - 1e-9)) == [1, 2]
    assert kept(top_p_filter(row, 0.8 + 1e-9)) == [0, 1, 2]
    assert kept(top_p_filter(row, 1.0)) == [0, 1, 2]


def test_top_p_min_keep():
    row = [10.0, 0.0, 1.0, -1.0]
    assert kept(top_p_filter(row, 0.1)) == [0]
    assert kept(top_p_filter(row, 0.1, min_keep=3)) == [0, 1, 2]
    assert kept(top_p_filter(row, 0.1, min_keep=9)) == [0, 1, 2, 3]


@given(st.data())
def test_top_p_matches_scalar_walk(data):
    v = data.draw(st.sampled_from(EDGE_V))
    row = data.draw(st.lists(st.floats(-8, 8), min_size=v, max_size=v))
    p = data.draw(st.floats(0.01, 0.999))
    q = py_softmax(row)
    order = py_rank(row)
    want, acc = [], 0.0
    for i in order:
        # the walk stops at the first token whose exclusive mass reaches p
        assume(abs(acc - p) > 1e-9)  # skip cases within rounding of the boundary
        if acc >= p:
            break
        want.append(i)
        acc += q[i]
    assert kept(top_p_filter(np.array(row, dtype=np.float64), p)) == sorted(want)
    # invariants: kept mass >= p, mass without the lowest-ranked kept token < p
    assert math.fsum(q[i] for i in want) >= p - 1e-12
    assert math.fsum(q[i] for i in want[:-1]) < p + 1e-12


def test_top_p_edge_sizes_keep_prefix():
    for v in EDGE_V:
        x = np.random.default_rng(v).standard_normal((2, v)).astype(np.float32)
        got = top_p_filter(x, 0.9)
        assert got.dtype == np.float32
        for r in range(2):
            ks = set(kept(got[r]))
            ranks = py_rank(x[r].tolist())
            assert ks == set(ranks[: len(ks)])  # kept set is a prefix of the ranking
            assert 1 <= len(ks) <= v


def test_top_p_bad_arguments():
    for bad in [0.0, -0.1, 1.5, math.nan, None, True]:
        with pytest.raises(ArgumentError, match="^p"):
            top_p_filter([1.0, 2.0], bad)
    for bad in [0, -2, 1.5]:
        with pytest.raises(ArgumentError, match="^min_keep"):
            top_p_filter([1.0, 2.0], 0.5, min_keep=bad)
    with pytest.raises(ArgumentError, match="^logits"):
        top_p_filter([1.0, np.inf], 0.5)
    with pytest.raises(ArgumentError, match="^logits"):
        top_p_filter([-np.inf, -np.inf], 0.5)
    with pytest.raises(ArgumentError, match="^logits"):
        top_p_filter([np.nan, 1.0], 0.5)


# ---------------------------------------------------------------- sample


def py_draw(row, u):
    """The stated draw with Python scalars: smallest i with u * C_last < C_i."""
    m = max(row)
    c, acc = [], 0.0
    for x in row:
        acc += 0.0 if x == -math.inf else math.exp(x - m)
        c.append(acc)
    t = u * c[-1]
    return next(i for i, ci in enumerate(c) if t < ci)


def test_sample_temperature_zero_is_greedy_without_rng():
    assert sample([0.0, 2.0, 2.0, 1.0]) == 1
    assert sample([0.0, 2.0, 1.0], temperature=0.0, top_k=1, top_p=0.5) == 1
    assert sample([[0.0, 2.0], [3.0, 1.0]]).tolist() == [1, 0]


@pytest.mark.parametrize("v", EDGE_V)
def test_sample_matches_stated_draw(v):
    x = np.random.default_rng(100 + v).standard_normal(v) * 3
    for seed in range(30):
        got = sample(x, temperature=1.0, rng=np.random.default_rng(seed))
        u = np.random.default_rng(seed).random()
        assert got == py_draw(x.tolist(), u)


def test_sample_deterministic_and_batched_stream():
    x = np.random.default_rng(1).standard_normal((3, 4, 50)).astype(np.float32)
    a = sample(x, temperature=0.8, top_k=20, top_p=0.9, rng=np.random.default_rng(7))
    b = sample(x, temperature=0.8, top_k=20, top_p=0.9, rng=np.random.default_rng(7))
    assert a.shape == (3, 4) and a.dtype == np.int64
    assert np.array_equal(a, b)
    # rows consume uniforms in C order: one generator stepped row by row gives the same ids
    g = np.random.default_rng(7)
    rows = [sample(x[i, j], temperature=0.8, top_k=20, top_p=0.9, rng=g) for i in range(3) for j in range(4)]
    assert a.ravel().tolist() == rows


def test_sample_order_temperature_then_top_k_then_top_p():
    # Temperature changes the top-p cut, so applying top-p before temperature keeps a different set.
    x = np.array([math.log(0.45), math.log(0.35), math.log(0.2)])
    # after T = 0.5: probs proportional to 0.45^2, 0.35^2, 0.2^2 = 0.2025, 0.1225, 0.04 -> 0.555, 0.336, 0.110
    # top_p = 0.5 then keeps only token 0 (at T = 1 it would keep tokens 0 and 1).
    draws = {sample(x, temperature=0.5, top_p=0.5, rng=np.random.default_rng(s)) for s in range(200)}
    assert draws == {0}
    draws_t1 = {sample(x, temperature=1.0, top_p=0.5, rng=np.random.default_rng(s)) for s in range(200)}
    assert draws_t1 == {0, 1}
    # top-k before top-p: top_k=2 leaves probs [0.5625, 0.4375]; top_p=0.55 then keeps 1 token
    # (S_1 = 0.5625 >= 0.55). Top-p first would keep 2 (S_1 = 0.45 < 0.55), and top-k 2 keeps both.
    draws_k = {sample(x, temperature=1.0, top_k=2, top_p=0.55, rng=np.random.default_rng(s)) for s in range(200)}
    assert draws_k == {0}


def _binomial_ok(counts, probs, n):
    # each count within 5 binomial standard deviations (+1 for discreteness): false-alarm rate < 1e-5
    for c, p in zip(counts, probs):
        assert abs(c - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1, (c, n * p)


def test_sample_frequencies_match_softmax():
    x = np.array([1.0, 0.0, -1.0, 0.5, -2.0, 0.2])
    n = 20000
    g = np.random.default_rng(12345)
    draws = sample(np.broadcast_to(x, (n, x.size)), temperature=1.0, rng=g)
    counts = np.bincount(draws, minlength=x.size).tolist()
    probs = py_softmax(x.tolist())
    _binomial_ok(counts, probs, n)
    chi2 = sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs))
    assert chi2 < 32.0  # chi-square, 5 degrees of freedom: P(chi2 > 32) ~ 6e-6


def test_sample_frequencies_with_filters():
    x = np.array([2.0, 1.0, 0.0, -1.0, 1.5])
    n = 20000
    draws = sample(np.broadcast_to(x, (n, x.size)), temperature=2.0, top_k=3, rng=np.random.default_rng(9))
    counts = np.bincount(draws, minlength=x.size).tolist()
    assert counts[2] == 0 and counts[3] == 0
    e = [math.exp(v / 2.0) for v in (2.0, 1.0, 1.5)]
    probs = [e[0] / sum(e), e[1] / sum(e), 0.0, 0.0, e[2] / sum(e)]
    _binomial_ok(counts, probs, n)


def test_sample_never_draws_removed_tokens():
    x = np.array([-np.inf, 0.0, -np.inf, 0.0, -np.inf])
    draws = {sample(x, temperature=1.0, rng=np.random.default_rng(s)) for s in range(100)}
    assert draws == {1, 3}


def test_sample_bad_arguments():
    with pytest.raises(ArgumentError, match="^rng"):
        sample([1.0, 2.0], temperature=1.0)
    with pytest.raises(ArgumentError, match="^rng"):
        sample([1.0, 2.0], temperature=1.0, rng=np.random.RandomState(0))
    for bad in [-1.0, math.inf, math.nan, "0"]:
        with pytest.raises(ArgumentError, match="^temperature"):
            sample([1.0, 2.0], temperature=bad, rng=np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="^temperature"):
        sample(np.array([3e38, 0.0], dtype=np.float32), temperature=0.01, rng=np.random.default_rng(0))
    for bad in [0, -1, 2.5, True]:
        with pytest.raises(ArgumentError, match="^top_k"):
            sample([1.0, 2.0], temperature=1.0, top_k=bad, rng=np.random.default_rng(0))
    for bad in [0.0, 1.01, -0.5, math.nan]:
        with pytest.raises(ArgumentError, match="^top_p"):
            sample([1.0, 2.0], temperature=1.0, top_p=bad, rng=np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="^logits"):
        sample([1.0, np.nan], temperature=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="^logits"):
        sample([1.0, np.inf], temperature=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="^logits"):
        sample([[1.0, 0.0], [-np.inf, -np.inf]], temperature=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="^logits"):
        sample(np.zeros(0), temperature=1.0, rng=np.random.default_rng(0))


class _FixedUniform(np.random.Generator):
    """A Generator whose random() returns a chosen uniform, to probe the draw's boundaries."""

    def __init__(self, u):
        super().__init__(np.random.PCG64(0))
        self.u = u

    def random(self, size=None):
        return np.full(() if size is None else size, self.u)


def test_sample_draw_boundaries():
    # weights [1, 1]: C = [1, 2]; token 0 iff u * 2 < 1, so u = 0.5 exactly picks token 1
    assert sample([0.0, 0.0], temperature=1.0, rng=_FixedUniform(0.5)) == 1
    assert sample([0.0, 0.0], temperature=1.0, rng=_FixedUniform(np.nextafter(0.5, 0))) == 0
    # u = 0 never picks a leading zero-weight (removed) token
    assert sample([-np.inf, -np.inf, 0.0, 0.0], temperature=1.0, rng=_FixedUniform(0.0)) == 2
    # largest uniform picks the last positive-weight token, never a trailing removed one
    top = np.nextafter(1.0, 0)
    assert sample([0.0, 0.0, -np.inf], temperature=1.0, rng=_FixedUniform(top)) == 1
    # four equal weights: C = [1, 2, 3, 4]; u = 0.75 -> target 3 = C_2, so the strict < picks token 3
    assert sample([0.0, 0.0, 0.0, 0.0], temperature=1.0, rng=_FixedUniform(0.75)) == 3
    assert sample([0.0, 0.0, 0.0, 0.0], temperature=1.0, rng=_FixedUniform(0.7499999)) == 2


def test_top_p_ties_by_index_at_large_vocab():
    # 129 equal logits: 1/129 each; rank r kept iff r/129 < 0.5, i.e. r <= 64 -> indices 0..64
    assert kept(top_p_filter(np.zeros(129), 0.5)) == list(range(65))
    x = np.zeros(129)
    x[100] = 1.0
    got = kept(top_p_filter(x, 0.3))
    assert got[-1] == 100 and got[:-1] == list(range(len(got) - 1))


# ------------------------------------------- found by mutation testing (spec/mutation.md)


def test_softmax_shifts_each_row_by_its_own_max():
    # rows of very different scale: shifting by one max for the whole array would underflow row 0
    x = np.array([[0.0, -1.0], [1000.0, 999.0]])
    e = 1.0 / (1.0 + math.exp(-1.0))  # exp(0) / (exp(0) + exp(-1))
    np.testing.assert_allclose(softmax(x), [[e, 1 - e], [e, 1 - e]], rtol=1e-15, atol=0)
    np.testing.assert_allclose(softmax(x.T, axis=0), [[e, e], [1 - e, 1 - e]], rtol=1e-15, atol=0)


def test_greedy_on_all_minus_inf_is_the_first_index():
    # -inf is an ordinary value for greedy: every entry ties, the lowest index wins
    assert greedy(np.array([-np.inf, -np.inf, -np.inf])) == 0
    assert sample(np.array([-np.inf, -np.inf]), temperature=0.0) == 0


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_sample_with_temperature_refuses_rows_with_nothing_finite(t):
    with pytest.raises(ArgumentError, match="^logits"):
        sample(np.array([[0.0, 1.0], [-np.inf, -np.inf]]), temperature=t, rng=np.random.default_rng(0))


def _py_log_softmax(row):
    m = max(row)
    if m == -math.inf:
        return [-math.inf] * len(row)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def test_log_softmax_values_masked_entries_and_all_masked_rows():
    from refimpl.ops.sampling import log_softmax

    x = np.array([[1.0, -2.0, 0.5, -np.inf], [-np.inf] * 4, [1000.0, -1000.0, 999.0, 0.0]])
    y = log_softmax(x)
    assert y.dtype == np.float64
    for r in range(3):
        np.testing.assert_allclose(y[r], _py_log_softmax(x[r].tolist()), rtol=1e-14, atol=1e-12)
    assert y[0, 3] == -np.inf and (y[1] == -np.inf).all()
    # far below the max: no underflow to log 0 (exp(-2000) is 0 in float64, its log is not -inf)
    assert y[2, 1] == pytest.approx(-2000.0 - math.log1p(math.exp(-1.0)), rel=1e-15)
    # another axis; float32 in, float32 out
    np.testing.assert_allclose(log_softmax(x[[0, 2]].T, axis=0).T, y[[0, 2]], rtol=1e-14, atol=1e-12)
    y32 = log_softmax(x[[0, 2]].astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y[[0, 2]], rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("x, axis", [(np.ones(3), 1), (np.ones((2, 3)), -3), (np.ones(3), 0.0), (np.ones(3), True),
                                     (np.float64(1.0), -1)])
def test_log_softmax_bad_arguments(x, axis):
    from refimpl.ops.sampling import log_softmax

    with pytest.raises(ArgumentError):
        log_softmax(x, axis)


def test_check_functions_agree_with_their_ops_on_minus_inf_rows():
    from refimpl.ops.sampling import check_greedy, check_sample

    row = np.array([[0.0, 1.0], [-np.inf, -np.inf]])
    assert check_greedy(row) is None  # greedy accepts a row with nothing finite
    assert check_sample(row, temperature=0.0) is None
    for t in (0.5, 1.0, 3.0):  # with temperature, a row needs a finite maximum
        with pytest.raises(ArgumentError, match="^logits"):
            check_sample(row, temperature=t, rng=np.random.default_rng(0))


def test_sampling_draw_shifts_each_row_by_its_own_max():
    # row 0's logits are 995 below row 1's: shifted by row 1's max, row 0 would weigh nothing and
    # its draw would land on the -inf token
    x = np.array([[5.0, -np.inf], [1000.0, -np.inf]])
    for seed in range(3):
        assert sample(x, temperature=1.0, rng=np.random.default_rng(seed)).tolist() == [0, 0]


def test_sample_returns_a_python_int_for_one_row():
    t = sample(np.array([0.0, 3.0, 1.0]), temperature=0.7, rng=np.random.default_rng(1))
    assert type(t) is int and 0 <= t < 3
    assert type(sample(np.array([0.0, 3.0]))) is int


def test_top_p_one_keeps_every_token_even_when_the_sum_rounds_to_one_early():
    # float32 probabilities 1, 9e-14, 9e-14: the running sum is 1.0 after the first token, yet
    # p == 1 means no filtering at all
    x = np.array([0.0, -30.0, -30.0], np.float32)
    assert top_p_filter(x, 1.0).tolist() == x.tolist()


def test_softmax_of_an_all_minus_inf_row_is_zeros():
    assert softmax(np.array([[-np.inf, -np.inf], [0.0, 0.0]])).tolist() == [[0.0, 0.0], [0.5, 0.5]]


def test_log_softmax_one_dimensional():
    from refimpl.ops.sampling import log_softmax

    np.testing.assert_allclose(log_softmax(np.array([0.0, 1.0])), _py_log_softmax([0.0, 1.0]), rtol=1e-15)


def test_check_sample_and_check_greedy_on_plus_inf_and_defaults():
    from refimpl.ops.sampling import check_greedy, check_sample

    pos = np.array([np.inf, 0.0])
    assert check_greedy(pos) is None  # +inf is an ordinary value for greedy
    assert check_sample(pos) is None  # default temperature 0: greedy, no rng needed
    assert check_sample(pos, temperature=0.0) is None
    with pytest.raises(ArgumentError, match="^logits"):
        check_sample(pos, temperature=1.0, rng=np.random.default_rng(0))
    assert check_sample(np.zeros(3), temperature=1.0, top_p=1.0, rng=np.random.default_rng(0)) is None
