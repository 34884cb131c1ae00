"""attention_scores, softmax_with_sinks and attention_values: attention split at the points where a
bfloat16 implementation stores a tensor (spec/attention.md, spec/precision.md rows 7-11).

Added after mutation testing (spec/mutation.md) found no test in tests/ops calling these three ops.
Every expected value is a Python loop over the formula in float64 (math.exp, math.fsum), never a
refimpl function.
"""

import math

import numpy as np
import pytest

from refimpl import ArgumentError
from refimpl.ops.attention import attention_scores, attention_values, softmax_with_sinks

NEG = -math.inf


def _loop_scores(q, k, *, scale, visible):
    """s[..., h, i, j] = scale * sum_d q[..., i, h, d] k[..., j, h // G, d], -inf where not visible(i, j)."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    *b, tq, hq, d = q.shape
    tk, hkv = k.shape[-3], k.shape[-2]
    out = np.zeros((*b, hq, tq, tk))
    for bi in np.ndindex(*b):
        for h in range(hq):
            for i in range(tq):
                for j in range(tk):
                    dot = math.fsum(q[bi + (i, h, t)] * k[bi + (j, h // (hq // hkv), t)] for t in range(d))
                    out[bi + (h, i, j)] = scale * dot if visible(i, j) else NEG
    return out


def _loop_softmax(s, sinks):
    s = np.asarray(s, np.float64)
    out = np.zeros_like(s)
    for idx in np.ndindex(*s.shape[:-1]):
        row = [float(v) for v in s[idx]]
        sink = NEG if sinks is None else float(sinks[idx[-2]])
        m = max(row + [sink])
        m = 0.0 if m == NEG else m
        e = [math.exp(v - m) for v in row]
        den = math.fsum(e) + math.exp(sink - m)
        out[idx] = [0.0 if den == 0 else v / den for v in e]
    return out


def _loop_values(p, v):
    p, v = np.asarray(p, np.float64), np.asarray(v, np.float64)
    *b, hq, tq, tk = p.shape
    hkv, dv = v.shape[-2], v.shape[-1]
    out = np.zeros((*b, tq, hq, dv))
    for bi in np.ndindex(*b):
        for h in range(hq):
            for i in range(tq):
                for c in range(dv):
                    out[bi + (i, h, c)] = math.fsum(p[bi + (h, i, j)] * v[bi + (j, h // (hq // hkv), c)]
                                                    for j in range(tk))
    return out


# ---------------------------------------------------------------- attention_scores


def test_attention_scores_grouped_heads_causal_window_and_mask():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 3, 4, 5))  # [B, Tq, Hq, D]
    k = rng.standard_normal((2, 6, 2, 5))  # [B, Tk, Hkv, D]: G = 2
    s = attention_scores(q, k, q_offset=2)
    assert s.dtype == np.float64 and s.shape == (2, 4, 3, 6)
    np.testing.assert_allclose(s, _loop_scores(q, k, scale=1 / math.sqrt(5), visible=lambda i, j: j <= 2 + i),
                               rtol=1e-13, atol=1e-13)
    # window 2: keys p - 1 .. p; scale 1.0 gives the plain dot products
    s = attention_scores(q, k, q_offset=3, window=2, scale=1.0)
    np.testing.assert_allclose(s, _loop_scores(q, k, scale=1.0, visible=lambda i, j: 3 + i - 2 < j <= 3 + i),
                               rtol=1e-13, atol=1e-13)
    # not causal, a mask: only the mask hides keys
    mask = np.ones((3, 6), bool)
    mask[1, 4] = mask[0, 0] = False
    s = attention_scores(q, k, causal=False, mask=mask, scale=0.5)
    np.testing.assert_allclose(s, _loop_scores(q, k, scale=0.5, visible=lambda i, j: mask[i, j]),
                               rtol=1e-13, atol=1e-13)


def test_attention_scores_float32_and_default_offset():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 2, 3)).astype(np.float32)
    k = rng.standard_normal((5, 1, 3)).astype(np.float32)
    s = attention_scores(q, k)  # default q_offset = Tk - Tq = 3 (the queries are the last tokens)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, _loop_scores(q, k, scale=1 / math.sqrt(3), visible=lambda i, j: j <= 3 + i),
                               rtol=1e-6, atol=1e-6)


def test_attention_scores_bad_arguments():
    with pytest.raises(ArgumentError, match="^k"):
        attention_scores(np.ones((2, 2, 3)), np.ones((2, 3, 3)))  # Hkv = 3 does not divide Hq = 2
    with pytest.raises(ArgumentError, match="^scale"):
        attention_scores(np.ones((2, 2, 3)), np.ones((2, 1, 3)), scale=float("nan"))


# ---------------------------------------------------------------- softmax_with_sinks


def test_softmax_with_sinks_rows_masked_and_large():
    s = np.array([
        [[0.5, -1.0, 2.0], [NEG, 3.0, NEG], [NEG, NEG, NEG]],
        [[1000.0, 999.0, NEG], [-2.0, -2.0, -2.0], [NEG, NEG, NEG]],
    ])  # [Hq=2, Tq=3, Tk=3]
    sinks = np.array([0.25, NEG])
    p = softmax_with_sinks(s, sinks)
    assert p.dtype == np.float64 and p.shape == s.shape
    np.testing.assert_allclose(p, _loop_softmax(s, sinks), rtol=1e-14, atol=1e-300)
    # row (0, 2): nothing visible but a sink: every probability 0 (the sink takes it all)
    assert p[0, 2].tolist() == [0.0, 0.0, 0.0]
    # without sinks: ordinary softmax; a row with nothing visible gives 0, not NaN
    p = softmax_with_sinks(s)
    np.testing.assert_allclose(p, _loop_softmax(s, None), rtol=1e-14, atol=1e-300)
    assert p[1, 2].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(p[0, 0].sum(), 1.0, rtol=1e-15)


def test_softmax_with_sinks_sink_above_every_score_and_dtype():
    s = np.array([[[-5.0, -6.0]]], np.float32)  # [1, 1, 2]
    p = softmax_with_sinks(s, np.array([4.0], np.float32))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, _loop_softmax(s, [4.0]), rtol=2e-6, atol=0)
    # a float64 sink makes the computation float64
    p = softmax_with_sinks(s, np.array([4.0]))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, _loop_softmax(s, [4.0]), rtol=1e-14, atol=0)


def test_softmax_with_sinks_batch_dims():
    rng = np.random.default_rng(2)
    s = rng.standard_normal((2, 3, 2, 4)) * 3  # [B, Hq, Tq, Tk]
    sinks = rng.standard_normal(3)
    np.testing.assert_allclose(softmax_with_sinks(s, sinks), _loop_softmax(s, sinks), rtol=1e-14, atol=0)


@pytest.mark.parametrize("scores, sinks, name", [
    (np.ones((2, 3)), None, "scores"),
    (np.ones((0, 2, 3)), None, "scores"),
    (np.ones((2, 1, 0)), None, "scores"),
    (np.ones((2, 1, 3)), np.ones(3), "sinks"),
    (np.ones((2, 1, 3)), np.array([0.0, np.nan]), "sinks"),
    (np.ones((2, 1, 3)), np.array([0.0, np.inf]), "sinks"),
])
def test_softmax_with_sinks_bad_arguments(scores, sinks, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        softmax_with_sinks(scores, sinks)


def test_softmax_with_sinks_accepts_minus_inf_sinks():
    p = softmax_with_sinks(np.zeros((2, 1, 2)), np.array([NEG, NEG]))
    assert p.tolist() == [[[0.5, 0.5]], [[0.5, 0.5]]]


# ---------------------------------------------------------------- attention_values


def test_attention_values_grouped_heads_and_batch():
    rng = np.random.default_rng(3)
    p = rng.random((2, 4, 3, 5))  # [B, Hq, Tq, Tk]
    v = rng.standard_normal((2, 5, 2, 3))  # [B, Tk, Hkv, Dv]
    o = attention_values(p, v)
    assert o.dtype == np.float64 and o.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(o, _loop_values(p, v), rtol=1e-13, atol=1e-13)
    o32 = attention_values(p.astype(np.float32), v.astype(np.float32))
    assert o32.dtype == np.float32
    np.testing.assert_allclose(o32, _loop_values(p.astype(np.float32), v.astype(np.float32)), rtol=1e-5, atol=1e-5)
    assert attention_values(p.astype(np.float32), v).dtype == np.float64


def test_attention_values_nonfinite_value_reaches_only_rows_that_see_it():
    # Hq = 2, Hkv = 1, Tq = Tk = 3, causal: key 2 holds NaN (head dim 0) and inf (dim 1)
    p = np.array([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]] * 2)
    v = np.array([[[1.0, 2.0]], [[3.0, -1.0]], [[np.nan, np.inf]]])  # [Tk, 1, 2]
    visible = np.tril(np.ones((3, 3), bool))
    o = attention_values(p, v, visible=visible)
    finite_part = _loop_values(p, np.nan_to_num(v, nan=0.0, posinf=0.0))
    # rows 0, 1 do not see key 2: their outputs are the finite sums
    np.testing.assert_allclose(o[:2], finite_part[:2], rtol=1e-15, atol=0)
    # row 2 sees it: NaN and +inf arrive there
    assert np.isnan(o[2, :, 0]).all() and (o[2, :, 1] == np.inf).all()
    # without `visible`, IEEE: 0 * NaN = NaN reaches every row
    with np.errstate(invalid="ignore"):
        assert np.isnan(attention_values(p, v)[:, :, 0]).all()
    # finite v: the same bits with or without visible
    vf = np.nan_to_num(v, nan=0.5, posinf=2.0)
    assert np.array_equal(attention_values(p, vf, visible=visible), attention_values(p, vf))


def test_attention_values_visible_broadcast_over_heads_and_batch():
    rng = np.random.default_rng(4)
    p = rng.random((2, 2, 2, 3))
    v = rng.standard_normal((2, 3, 1, 2))
    v[1, 0, 0, 1] = np.inf
    visible = np.array([[False, True, True], [True, True, True]])  # row 0 never sees key 0
    o = attention_values(p, v, visible=visible)
    assert np.isfinite(o[1, 0]).all() and o[1, 1, 0, 1] == np.inf
    vz = v.copy()
    vz[1, 0, 0, 1] = 0.0
    np.testing.assert_allclose(o[0], _loop_values(p, vz)[0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(o[1, 0], _loop_values(p, vz)[1, 0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("probs, v, visible, name", [
    (np.ones((2, 3)), np.ones((3, 1, 2)), None, "probs"),
    (np.ones((2, 0, 3)), np.ones((3, 1, 2)), None, "probs"),
    (np.ones((2, 1, 3)), np.ones((4, 1, 2)), None, "v"),
    (np.ones((2, 1, 3)), np.ones((3, 3, 2)), None, "v"),
    (np.ones((2, 1, 3)), np.ones((3, 1, 0)), None, "v"),
    (np.ones((2, 2, 1, 3)), np.ones((3, 3, 1, 2)), None, "v"),
    (np.ones((2, 1, 3)), np.ones((3, 1, 2)), np.ones((1, 3)), "visible"),
    (np.ones((2, 1, 3)), np.ones((3, 1, 2)), np.ones(3, bool), "visible"),
    (np.ones((2, 1, 3)), np.ones((3, 1, 2)), np.ones((2, 3), bool), "visible"),
])
def test_attention_values_bad_arguments(probs, v, visible, name):
    with pytest.raises(ArgumentError, match=f"^{name}"):
        attention_values(probs, v, visible=visible)


# ------------------------------------------- attention itself: survivors of mutation testing


def test_one_key_is_a_valid_size():
    # Tk = 1: the softmax over one visible key is 1, the output that key's value
    p = softmax_with_sinks(np.array([[[2.5]], [[-1.0]]]))  # [Hq=2, Tq=1, Tk=1]
    assert p.tolist() == [[[1.0]], [[1.0]]]
    o = attention_values(p, np.array([[[3.0, -4.0]]]))  # v [Tk=1, Hkv=1, Dv=2]
    assert o.tolist() == [[[3.0, -4.0], [3.0, -4.0]]]


def test_attention_refuses_empty_query_length():
    from refimpl.ops.attention import attention

    with pytest.raises(ArgumentError, match=r"^q: expected \[\.\.\., Tq, Hq, D\] with Tq, Hq, D >= 1"):
        attention(np.ones((0, 2, 4)), np.ones((3, 1, 4)), np.ones((3, 1, 4)), q_offset=0)


def test_attention_float64_keys_make_a_float64_computation():
    from refimpl.ops.attention import attention

    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 2, 3)).astype(np.float32)
    k = rng.standard_normal((2, 1, 3))
    v = rng.standard_normal((2, 1, 3)).astype(np.float32)
    o = attention(q, k, v)
    assert o.dtype == np.float64
    s = _loop_scores(q, k, scale=1 / math.sqrt(3), visible=lambda i, j: j <= i)
    np.testing.assert_allclose(o, _loop_values(_loop_softmax(s, None), v), rtol=1e-13, atol=1e-13)


def test_attention_nan_in_a_future_value_stays_in_the_future():
    # causal: query 0 never sees key 1, so a NaN in v[1] must not reach output row 0
    from refimpl.ops.attention import attention

    q = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # [Tq=2, Hq=1, D=2]
    k = np.array([[[1.0, 1.0]], [[0.5, -1.0]]])
    v = np.array([[[2.0, -3.0]], [[np.nan, 1.0]]])
    o = attention(q, k, v)
    assert o[0].tolist() == [[2.0, -3.0]]  # one visible key: its value, exactly
    assert np.isnan(o[1, 0, 0]) and np.isfinite(o[1, 0, 1])
