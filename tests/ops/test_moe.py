"""MoE routing, load-balancing loss and expert combination against independent formulations:
Python sorts, math.exp softmaxes, per-token loops, exact dyadic arithmetic, hand-worked cases."""

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.moe import (
    expert_choice,
    gpt_oss_experts,
    load_balancing_loss,
    moe_combine,
    router_softmax_topk,
    router_topk_softmax,
)
from refimpl.ops.mxfp4 import decode_mxfp4, encode_mxfp4

# float64 results compared with a float64 reformulation (different operation order): 1e-12 relative.
RTOL64 = 1e-12


def margin_logits(rng, shape, margin=0.25):
    """Logits whose values in each row are pairwise at least `margin` apart (no ties, no near-ties)."""
    *lead, e = shape
    perm = np.argsort(rng.random((*lead, e)), axis=-1)
    return perm * margin + rng.uniform(-2, 2, size=(*lead, 1)) + rng.uniform(0, margin / 4, size=(*lead, e))


def py_softmax(row):
    m = max(row)
    ex = [math.exp(v - m) for v in row]
    z = math.fsum(ex)
    return [v / z for v in ex]


def py_topk(row, k):
    """Python's sort is stable: among equal values the lower index comes first."""
    return sorted(range(len(row)), key=lambda i: -row[i])[:k]


sizes = st.tuples(st.integers(1, 40), st.integers(1, 9)).flatmap(
    lambda ek: st.tuples(st.just(ek[0]), st.integers(1, ek[0]), st.just(ek[1]))
)


# ---------------------------------------------------------------- token-choice routers


@given(st.integers(0, 2**32 - 1), sizes)
def test_topk_softmax_against_sort_and_math_softmax(seed, ekt):
    e, k, t = ekt
    rng = np.random.default_rng(seed)
    logits = margin_logits(rng, (t, e))
    w, idx = router_topk_softmax(logits, k)
    assert w.shape == (t, k) and idx.shape == (t, k)
    assert w.dtype == np.float64 and idx.dtype == np.int64
    for r in range(t):
        row = [float(v) for v in logits[r]]
        want_idx = py_topk(row, k)
        assert idx[r].tolist() == want_idx
        want_w = py_softmax([row[i] for i in want_idx])
        np.testing.assert_allclose(w[r], want_w, rtol=RTOL64, atol=0)
        assert abs(math.fsum(w[r]) - 1) <= 1e-12
        assert np.all(np.diff(w[r]) <= 0)


@given(st.integers(0, 2**32 - 1), sizes)
def test_topk_softmax_equals_renormalised_softmax_topk(seed, ekt):
    # Identity: exp(l_i) / sum_{j in S} exp(l_j) = p_i / sum_{j in S} p_j with p = softmax(l).
    e, k, t = ekt
    rng = np.random.default_rng(seed)
    logits = margin_logits(rng, (2, t, e))
    w1, i1 = router_topk_softmax(logits, k)
    w2, i2 = router_softmax_topk(logits, k)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(w1, w2, rtol=RTOL64, atol=0)
    w3, i3 = router_softmax_topk(logits, k, renormalize=False)
    np.testing.assert_array_equal(i3, i1)
    for pos in np.ndindex(2, t):
        p = py_softmax([float(v) for v in logits[pos]])
        np.testing.assert_allclose(w3[pos], [p[i] for i in i1[pos]], rtol=RTOL64, atol=0)
        if k < e:
            assert math.fsum(w3[pos]) < 1 - 1e-9  # the unselected experts keep probability mass
            assert np.all(w3[pos] < w1[pos])  # so the un-renormalised weights differ
        else:
            np.testing.assert_allclose(w3[pos], w1[pos], rtol=RTOL64)


def test_k_equals_e_is_full_sorted_softmax():
    logits = np.array([[0.5, -1.0, 2.0, 0.0]])
    w, idx = router_topk_softmax(logits, 4)
    assert idx.tolist() == [[2, 0, 3, 1]]
    p = py_softmax([0.5, -1.0, 2.0, 0.0])
    np.testing.assert_allclose(w[0], [p[2], p[0], p[3], p[1]], rtol=RTOL64)


def test_ties_go_to_the_lower_index():
    w, idx = router_topk_softmax(np.zeros((1, 6)), 3)
    assert idx.tolist() == [[0, 1, 2]] and np.all(w == np.float64(1) / 3)
    w, idx = router_topk_softmax(np.array([1.0, 3.0, 3.0, 0.0, 3.0]), 2)
    assert idx.tolist() == [1, 2] and w.tolist() == [0.5, 0.5]
    _, idx = router_softmax_topk(np.array([[2.0, 5.0, 2.0, 2.0]]), 3)
    assert idx.tolist() == [[1, 0, 2]]
    # +0 and -0 are equal logits.
    _, idx = router_topk_softmax(np.array([-1.0, 0.0, -0.0]), 2)
    assert idx.tolist() == [1, 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ml_dtypes.bfloat16, np.float16])
def test_router_dtypes(dtype):
    logits = np.array([[0.5, 1.5, -1.0, 3.0]]).astype(dtype)
    want = np.float64 if dtype == np.float64 else np.float32
    for fn in (router_topk_softmax, router_softmax_topk):
        w, idx = fn(logits, 2)
        assert w.dtype == want and idx.dtype == np.int64
        assert idx.tolist() == [[3, 1]]
    w, idx = expert_choice(logits.reshape(2, 2), 1)
    assert w.dtype == want and idx.dtype == np.int64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_routers_give_nan_weights_to_a_non_finite_row_only(bad):
    x = np.random.default_rng(3).standard_normal((3, 5))
    for fn in (router_topk_softmax, router_softmax_topk):
        w_ok, i_ok = fn(x, 2)
        y = x.copy()
        y[1, 3] = bad
        w, idx = fn(y, 2)
        assert np.isnan(w[1]).all() and idx[1].tolist() == [0, 1]  # the tie rule on all-zero logits
        np.testing.assert_array_equal(w[[0, 2]], w_ok[[0, 2]])
        np.testing.assert_array_equal(idx[[0, 2]], i_ok[[0, 2]])


def test_router_bad_arguments():
    x = np.zeros((3, 4))
    for fn in (router_topk_softmax, router_softmax_topk):
        for k in (0, 5, -1, 1.5, True, "2", None):
            with pytest.raises(ArgumentError, match="^k"):
                fn(x, k)
        with pytest.raises(ArgumentError, match="^logits"):
            fn(np.float64(1.0), 1)
        with pytest.raises(ArgumentError, match="^logits"):
            fn(np.zeros((3, 0)), 1)
        with pytest.raises(ArgumentError, match="^logits"):
            fn(np.array(["a", "b"]), 1)
    with pytest.raises(ArgumentError, match="^renormalize"):
        router_softmax_topk(x, 2, renormalize="yes")


# ---------------------------------------------------------------- expert choice


@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 40), st.data())
def test_expert_choice_picks_each_experts_top_tokens(seed, e, t, data):
    c = data.draw(st.integers(1, t))
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(t, e)) * 2
    gates, idx = expert_choice(logits, c)
    assert gates.shape == (e, c) and idx.shape == (e, c) and idx.dtype == np.int64
    probs = [py_softmax([float(v) for v in logits[tok]]) for tok in range(t)]
    for ex in range(e):
        col = [probs[tok][ex] for tok in range(t)]
        want = sorted(range(t), key=lambda tok: (-col[tok], tok))[:c]
        assert idx[ex].tolist() == want
        assert len(set(idx[ex].tolist())) == c
        np.testing.assert_allclose(gates[ex], [col[tok] for tok in want], rtol=RTOL64, atol=0)
        assert np.all(np.diff(gates[ex]) <= 0)


def test_expert_choice_ties_and_batch_dims():
    gates, idx = expert_choice(np.zeros((5, 3)), 2)
    assert idx.tolist() == [[0, 1]] * 3 and np.all(gates == np.float64(1) / 3)
    gates, idx = expert_choice(np.zeros((2, 7, 4)), 7)
    assert idx.shape == (2, 4, 7) and idx[1, 3].tolist() == list(range(7))


def test_expert_choice_bad_arguments():
    x = np.zeros((4, 3))
    for cap in (0, 5, 2.0, True, -1):
        with pytest.raises(ArgumentError, match="^capacity"):
            expert_choice(x, cap)
    with pytest.raises(ArgumentError, match="^logits"):
        expert_choice(np.zeros(3), 1)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ArgumentError, match="^logits"):
        expert_choice(bad, 1)


# ---------------------------------------------------------------- load balancing loss


def loss_reference(logits, indices, e, per_assignment=False):
    """Python loops: N * sum_i f_i P_i, f_i = c_i / T (or / (T k)), P_i = mean softmax."""
    rows = logits.reshape(-1, e)
    idx = indices.reshape(rows.shape[0], -1)
    t, k = idx.shape
    probs = [py_softmax([float(v) for v in r]) for r in rows]
    total = 0.0
    for i in range(e):
        c = sum(1 for r in range(t) for j in range(k) if idx[r, j] == i)
        f = c / (t * k if per_assignment else t)
        p = math.fsum(pr[i] for pr in probs) / t
        total += f * p
    return e * total


def loss_onehot(logits, indices, e):
    """The transformers formulation, restated: mean over tokens of one_hot [T, k, E] -> [k, E], times P, summed, x E."""
    rows = logits.reshape(-1, e)
    p = np.exp(rows - rows.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.eye(e)[indices.reshape(rows.shape[0], -1)]  # [T, k, E]
    return e * np.sum(onehot.mean(0) * p.mean(0)[None])


@given(st.integers(0, 2**32 - 1), sizes)
def test_load_balancing_loss_against_loops(seed, ekt):
    e, k, t = ekt
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, t, e))
    _, idx = router_topk_softmax(logits, k)
    got = load_balancing_loss(logits, idx, e)
    assert got.shape == () and got.dtype == np.float64
    want = loss_reference(logits, idx, e)
    assert math.isclose(float(got), want, rel_tol=RTOL64)
    assert math.isclose(float(got), float(loss_onehot(logits, idx, e)), rel_tol=RTOL64)
    got_a = load_balancing_loss(logits, idx, e, fraction="per_assignment")
    assert math.isclose(float(got_a), loss_reference(logits, idx, e, per_assignment=True), rel_tol=RTOL64)
    assert math.isclose(float(got), k * float(got_a), rel_tol=RTOL64)


@pytest.mark.parametrize("e,k", [(1, 1), (4, 1), (4, 2), (8, 4), (32, 4)])
def test_balanced_routing_gives_k_per_token_and_1_per_assignment(e, k):
    t = 3 * e
    logits = np.zeros((t, e))  # P_i = 1/E
    idx = (np.arange(t)[:, None] + np.arange(k)[None, :]) % e  # every expert gets 3k slots
    assert load_balancing_loss(logits, idx, e) == k
    assert load_balancing_loss(logits, idx, e, fraction="per_assignment") == 1


def test_collapsed_routing_approaches_e():
    e = 8
    logits = np.zeros((10, e))
    logits[:, 0] = 50.0  # P_0 = 1 - 7 e^-50
    idx = np.zeros((10, 1), np.int64)
    got = float(load_balancing_loss(logits, idx, e))
    assert math.isclose(got, e * (1 / (1 + 7 * math.exp(-50))), rel_tol=RTOL64)


def test_load_balancing_loss_float32():
    got = load_balancing_loss(np.zeros((4, 2), np.float32), np.array([[0], [1], [0], [1]]), 2)
    assert got.dtype == np.float32 and got == 1


def test_load_balancing_loss_bad_arguments():
    x = np.zeros((4, 3))
    idx = np.zeros((4, 2), np.int64)
    with pytest.raises(ArgumentError, match="^router_logits"):
        load_balancing_loss(x, idx, 4)
    with pytest.raises(ArgumentError, match="^num_experts"):
        load_balancing_loss(x, idx, 0)
    with pytest.raises(ArgumentError, match="^indices"):
        load_balancing_loss(x, idx + 3, 3)
    with pytest.raises(ArgumentError, match="^indices"):
        load_balancing_loss(x, idx - 1, 3)
    with pytest.raises(ArgumentError, match="^indices"):
        load_balancing_loss(x, idx.astype(np.float64), 3)
    with pytest.raises(ArgumentError, match="^indices"):
        load_balancing_loss(x, idx[:3], 3)
    with pytest.raises(ArgumentError, match="^indices"):
        load_balancing_loss(x, np.zeros((4, 0), np.int64), 3)
    with pytest.raises(ArgumentError, match="^router_logits"):
        load_balancing_loss(np.zeros((0, 3)), np.zeros((0, 1), np.int64), 3)
    with pytest.raises(ArgumentError, match="^fraction"):
        load_balancing_loss(x, idx, 3, fraction="mean")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ArgumentError, match="^router_logits"):
        load_balancing_loss(bad, idx, 3)


# ---------------------------------------------------------------- combine


@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 4), st.sampled_from([1, 31, 33]))
def test_moe_combine_equals_per_token_loop_exactly(seed, e, k, t):
    # Integer matrices and dyadic weights: every product and sum is exact in float64,
    # so grouping by expert must reproduce the per-token loop bit for bit.
    rng = np.random.default_rng(seed)
    d_in, d_out = 5, 3
    a = rng.integers(-4, 5, size=(e, d_out, d_in)).astype(np.float64)
    c = rng.integers(-4, 5, size=(e, d_out)).astype(np.float64)
    x = rng.integers(-4, 5, size=(2, t, d_in)).astype(np.float64)
    idx = rng.integers(0, e, size=(2, t, k))
    w = rng.integers(-8, 9, size=(2, t, k)) / 8.0
    calls = []

    def fn(ex, rows):
        calls.append((ex, rows.shape[0]))
        return rows @ a[ex].T + c[ex]

    got = moe_combine(x, w, idx, fn)
    assert got.shape == (2, t, d_out) and got.dtype == np.float64
    want = np.zeros((2, t, d_out))
    for pos in np.ndindex(2, t):
        for j in range(k):
            ex = idx[pos + (j,)]
            want[pos] += w[pos + (j,)] * (a[ex] @ x[pos] + c[ex])
    np.testing.assert_array_equal(got, want)
    used = sorted(set(idx.ravel().tolist()))
    assert [ex for ex, _ in calls] == used  # once per used expert, ascending
    assert [n for _, n in calls] == [int(np.sum(idx == ex)) for ex in used]


def test_moe_combine_rows_in_token_order_and_duplicates():
    x = np.arange(4.0)[:, None]  # token t has value t
    idx = np.array([[1, 0], [1, 1], [0, 2], [2, 1]])
    w = np.ones((4, 2))
    seen = {}

    def fn(ex, rows):
        seen[ex] = rows[:, 0].tolist()
        return rows * 10 + ex

    out = moe_combine(x, w, idx, fn)
    assert seen == {0: [0.0, 2.0], 1: [0.0, 1.0, 1.0, 3.0], 2: [2.0, 3.0]}
    assert out[:, 0].tolist() == [0 + 1 + 0, 11 + 11, 20 + 22, 32 + 31]


def test_moe_combine_dtype_and_bad_arguments():
    x = np.ones((3, 2), np.float32)
    idx = np.zeros((3, 1), np.int64)
    w = np.ones((3, 1), np.float32)
    assert moe_combine(x, w, idx, lambda e, r: r.astype(np.float64)).dtype == np.float32
    assert moe_combine(x, w.astype(np.float64), idx, lambda e, r: r).dtype == np.float64
    with pytest.raises(ArgumentError, match="^weights"):
        moe_combine(x, np.ones((3, 2)), idx, lambda e, r: r)
    with pytest.raises(ArgumentError, match="^indices"):
        moe_combine(x, w, idx[:2], lambda e, r: r)
    with pytest.raises(ArgumentError, match="^indices"):
        moe_combine(x, w, idx - 1, lambda e, r: r)
    with pytest.raises(ArgumentError, match="^indices"):
        moe_combine(x, w, idx.astype(np.float64), lambda e, r: r)
    with pytest.raises(ArgumentError, match="^expert_fn"):
        moe_combine(x, w, idx, "not callable")
    with pytest.raises(ArgumentError, match="^expert_fn"):
        moe_combine(x, w, idx, lambda e, r: r[:1])
    with pytest.raises(ArgumentError, match="^expert_fn"):
        moe_combine(x, w, np.array([[0], [1], [0]]), lambda e, r: np.ones((len(r), 2 + e)))


# ---------------------------------------------------------------- gpt-oss experts


def oss_reference(t, w, idx, w1, b1, w2, b2, alpha=1.702, limit=7.0):
    """Per token, per slot, per unit, in Python floats."""
    out = np.zeros((t.shape[0], w2.shape[1]))
    for r in range(t.shape[0]):
        for j in range(idx.shape[1]):
            ex = int(idx[r, j])
            u = [math.fsum(w1[ex, o] * t[r]) + b1[ex, o] for o in range(w1.shape[1])]
            act = []
            for i in range(len(u) // 2):
                g = min(u[2 * i], limit)
                lin = min(max(u[2 * i + 1], -limit), limit)
                act.append(g / (1 + math.exp(-alpha * g)) * (lin + 1))
            y = [math.fsum(w2[ex, o] * np.array(act)) + b2[ex, o] for o in range(w2.shape[1])]
            out[r] += w[r, j] * np.array(y)
    return out


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 4, 33]))
def test_gpt_oss_experts_against_loop(seed, t):
    rng = np.random.default_rng(seed)
    e, k, d, inter = 6, 3, 8, 4
    x = rng.normal(size=(t, d))
    w1 = rng.normal(size=(e, 2 * inter, d)) * 2  # large enough that both clamps act
    b1 = rng.normal(size=(e, 2 * inter))
    w2 = rng.normal(size=(e, d, inter))
    b2 = rng.normal(size=(e, d))
    logits = margin_logits(rng, (t, e))
    w, idx = router_topk_softmax(logits, k)
    got = gpt_oss_experts(x, w, idx, w1, b1, w2, b2)
    assert got.shape == (t, d) and got.dtype == np.float64
    np.testing.assert_allclose(got, oss_reference(x, w, idx, w1, b1, w2, b2), rtol=1e-10, atol=1e-12)
    # float64 matmul + exp vs math.fsum + math.exp: a few ulp per term; atol for outputs near 0.
    got_l = gpt_oss_experts(x, w, idx, w1, b1, w2, b2, alpha=1.0, limit=0.5)
    np.testing.assert_allclose(
        got_l, oss_reference(x, w, idx, w1, b1, w2, b2, alpha=1.0, limit=0.5), rtol=1e-10, atol=1e-12
    )


def test_gpt_oss_bias_is_added_per_expert_before_weighting():
    # W1 = 0, b1 = 0 -> u = 0 -> activation 0 -> y_e = b2_e; out = sum_j w_j b2_{e_j}.
    e, d, inter = 4, 3, 2
    b2 = np.array([[1.0, 2, 3], [10, 20, 30], [100, 200, 300], [0, 0, 0]])
    w = np.array([[0.75, 0.25], [0.5, 0.5]])
    idx = np.array([[2, 0], [1, 3]])
    out = gpt_oss_experts(
        np.ones((2, d)), w, idx, np.zeros((e, 2 * inter, d)), np.zeros((e, 2 * inter)), np.zeros((e, d, inter)), b2
    )
    assert out.tolist() == [[75.25, 150.5, 225.75], [5.0, 10.0, 15.0]]


def test_gpt_oss_callable_mxfp4_weights_decode_only_used_experts():
    rng = np.random.default_rng(0)
    e, k, d, inter, t = 5, 2, 64, 32, 6
    blocks1, scales1 = encode_mxfp4(rng.normal(size=(e, 2 * inter, d)))
    blocks2, scales2 = encode_mxfp4(rng.normal(size=(e, d, inter)))
    b1, b2 = rng.normal(size=(e, 2 * inter)), rng.normal(size=(e, d))
    x = rng.normal(size=(t, d))
    idx = np.array([[0, 3]] * t)
    w = np.full((t, k), 0.5)
    decoded = []

    def mlp1(ex):
        decoded.append(ex)
        return decode_mxfp4(blocks1[ex], scales1[ex], dtype=np.float64)

    dense1 = decode_mxfp4(blocks1, scales1, dtype=np.float64)
    dense2 = decode_mxfp4(blocks2, scales2, dtype=np.float64)
    got = gpt_oss_experts(x, w, idx, mlp1, b1, lambda ex: dense2[ex], b2)
    assert sorted(decoded) == [0, 3]
    np.testing.assert_array_equal(got, gpt_oss_experts(x, w, idx, dense1, b1, dense2, b2))


def test_gpt_oss_experts_bad_arguments():
    e, d, inter = 3, 4, 2
    args = dict(
        mlp1_weight=np.zeros((e, 2 * inter, d)),
        mlp1_bias=np.zeros((e, 2 * inter)),
        mlp2_weight=np.zeros((e, d, inter)),
        mlp2_bias=np.zeros((e, d)),
    )
    x, w, idx = np.zeros((2, d)), np.ones((2, 1)), np.zeros((2, 1), np.int64)
    with pytest.raises(ArgumentError, match="^indices"):
        gpt_oss_experts(x, w, idx + 3, **args)
    with pytest.raises(ArgumentError, match="^mlp1_weight"):
        gpt_oss_experts(x, w, idx, **{**args, "mlp1_weight": np.zeros((e, 2 * inter, d + 1))})
    with pytest.raises(ArgumentError, match="^mlp1_weight"):
        gpt_oss_experts(x, w, idx, **{**args, "mlp1_weight": lambda ex: np.zeros((2 * inter, d + 1))})
    with pytest.raises(ArgumentError, match="^mlp2_weight"):
        gpt_oss_experts(x, w, idx, **{**args, "mlp2_weight": np.zeros((e, d, inter + 1))})
    with pytest.raises(ArgumentError, match="^mlp2_bias"):
        gpt_oss_experts(x, w, idx, **{**args, "mlp2_bias": np.zeros((e, d + 1))})
    with pytest.raises(ArgumentError, match="^mlp1_bias"):
        gpt_oss_experts(x, w, idx, **{**args, "mlp1_bias": np.zeros((e, 3))})
    with pytest.raises(ArgumentError, match="^alpha"):
        gpt_oss_experts(x, w, idx, **args, alpha=-1.0)
    with pytest.raises(ArgumentError, match="^limit"):
        gpt_oss_experts(x, w, idx, **args, limit=float("nan"))


# ------------------------------------------- found by mutation testing (spec/mutation.md)


def test_ties_among_many_experts_keep_index_order():
    # 65 experts, values 3 at 1, 2, 3, 6, 7, 8, ...: the six largest in the spec's order (lower
    # index first among equals) are 1, 2, 3, 6, 7, 8 (an unstable sort of 65 entries reorders them)
    logits = np.array([1.0, 3, 3, 3, 0] * 13)
    for fn in (router_topk_softmax, router_softmax_topk):
        _, idx = fn(logits, 6)
        assert idx.tolist() == [1, 2, 3, 6, 7, 8]


def test_check_expert_choice_refuses_what_expert_choice_refuses():
    from refimpl.ops.moe import check_expert_choice

    x = np.zeros((4, 3))
    assert check_expert_choice(x, 2) is None
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ArgumentError, match="^logits"):
        check_expert_choice(bad, 1)
    with pytest.raises(ArgumentError, match="^logits"):
        check_expert_choice(np.zeros(3), 1)
    with pytest.raises(ArgumentError, match="^capacity"):
        check_expert_choice(x, 5)


def test_moe_combine_one_token_and_no_tokens():
    x = np.array([1.0, -2.0], np.float32)  # one token [d]
    out = moe_combine(x, np.array([0.75, 0.25], np.float32), np.array([2, 0]),
                      lambda e, r: r * (e + 1))  # expert e scales by e + 1
    assert out.shape == (2,) and out.dtype == np.float32
    assert out.tolist() == [0.75 * 3 * 1.0 + 0.25 * 1.0, 0.75 * 3 * -2.0 + 0.25 * -2.0]
    # no tokens: zeros [0, d] in the compute dtype, no expert called
    out = moe_combine(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32), np.zeros((0, 2), np.int64),
                      lambda e, r: 1 / 0)
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_gpt_oss_experts_float32_and_batch_dims():
    rng = np.random.default_rng(12)
    e, k, d, inter = 4, 2, 6, 3
    x = rng.normal(size=(2, 3, d))  # [B, T, d]
    w1, b1 = rng.normal(size=(e, 2 * inter, d)), rng.normal(size=(e, 2 * inter))
    w2, b2 = rng.normal(size=(e, d, inter)), rng.normal(size=(e, d))
    w, idx = router_topk_softmax(margin_logits(rng, (2, 3, e)), k)
    got = gpt_oss_experts(x, w, idx, w1, b1, w2, b2)
    assert got.shape == (2, 3, d) and got.dtype == np.float64
    for b in range(2):
        np.testing.assert_allclose(got[b], oss_reference(x[b], w[b], idx[b], w1, b1, w2, b2), rtol=1e-10, atol=1e-12)
    f = np.float32
    got32 = gpt_oss_experts(x.astype(f), w.astype(f), idx, w1.astype(f), b1.astype(f), w2.astype(f), b2.astype(f))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, got, rtol=1e-4, atol=1e-4)


def test_check_gpt_oss_experts_checks_alpha_and_limit():
    from refimpl.ops.moe import check_gpt_oss_experts

    e, d, inter = 3, 4, 2
    args = (np.zeros((2, d)), np.ones((2, 1)), np.zeros((2, 1), np.int64), np.zeros((e, 2 * inter, d)),
            np.zeros((e, 2 * inter)), np.zeros((e, d, inter)), np.zeros((e, d)))
    assert check_gpt_oss_experts(*args) is None
    assert check_gpt_oss_experts(*args, limit=None) is None
    for kw, name in (({"limit": -1.0}, "limit"), ({"limit": float("nan")}, "limit"), ({"alpha": 0.0}, "alpha")):
        with pytest.raises(ArgumentError, match=f"^{name}"):
            check_gpt_oss_experts(*args, **kw)
