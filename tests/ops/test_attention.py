"""Tests for refimpl.ops.attention against independent formulations.

The oracle here is a per-element float64 loop (math.fsum, math.exp) written from the formula in
spec/attention.md; NumPy's vectorised code never produces an expected value.
"""

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.attention import attention, attention_online, attention_probs, repeat_kv, visibility_mask

EDGE_SIZES = (1, 31, 32, 33, 127, 128, 129)
BLOCK_SIZES = (1, 31, 32, 33, 128)


# ----------------------------------------------------------------------------- independent oracle


def loop_probs(q, k, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """p [..., Hq, Tq, Tk] by Python loops over every (batch, head, query, key), float64, math.exp."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    *batch, tq, hq, d = q.shape
    tk, hkv = k.shape[-3], k.shape[-2]
    group = hq // hkv
    off = tk - tq if q_offset is None else q_offset
    sc = 1.0 / math.sqrt(d) if scale is None else scale
    out = np.zeros((*batch, hq, tq, tk))
    for b in np.ndindex(*batch):
        for h in range(hq):
            kvh = h // group
            for i in range(tq):
                pos = off + i
                vis = [j for j in range(tk)
                       if (not causal or j <= pos) and (window is None or j > pos - window)
                       and (mask is None or mask[i][j])]
                s = {j: sc * math.fsum(float(q[b + (i, h, c)]) * float(k[b + (j, kvh, c)]) for c in range(d))
                     for j in vis}
                logits = list(s.values())
                if sinks is not None and sinks[h] != -math.inf:
                    logits.append(float(sinks[h]))
                if not logits:
                    continue
                m = max(logits)
                den = math.fsum(math.exp(x - m) for x in logits)
                for j in vis:
                    out[b + (h, i, j)] = math.exp(s[j] - m) / den
    return out


def loop_out(p, v):
    """o [..., Tq, Hq, Dv] = sum_j p[..., h, i, j] v[..., j, h // G, :] with math.fsum."""
    v = np.asarray(v, dtype=np.float64)
    *batch, hq, tq, tk = p.shape
    hkv, dv = v.shape[-2], v.shape[-1]
    group = hq // hkv
    o = np.zeros((*batch, tq, hq, dv))
    for b in np.ndindex(*batch):
        for h in range(hq):
            for i in range(tq):
                for c in range(dv):
                    o[b + (i, h, c)] = math.fsum(p[b + (h, i, j)] * v[b + (j, h // group, c)] for j in range(tk))
    return o


# ----------------------------------------------------------------------------- strategies


@st.composite
def configs(draw, max_t=8):
    hkv = draw(st.integers(1, 3))
    group = draw(st.integers(1, 3))
    hq = hkv * group
    tk = draw(st.integers(1, max_t))
    tq = draw(st.integers(1, tk))
    d = draw(st.integers(1, 4))
    dv = draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (2,)]))
    # windows below, at and above the number of keys
    window = draw(st.one_of(st.none(), st.integers(1, tk + 2)))
    kind = draw(st.sampled_from(["none", "finite", "extreme"]))
    if kind == "none":
        sinks = None
    elif kind == "finite":
        sinks = np.array(draw(st.lists(st.floats(-4, 4), min_size=hq, max_size=hq)))
    else:
        sinks = np.array(draw(st.lists(st.sampled_from([1e4, -1e4, -math.inf, 0.5]), min_size=hq, max_size=hq)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(*batch, tq, hq, d))
    k = rng.normal(size=(*batch, tk, hkv, d))
    v = rng.normal(size=(*batch, tk, hkv, dv))
    return dict(q=q, k=k, v=v, sinks=sinks, window=window)


def rand(rng, *shape):
    return rng.normal(size=shape)


# ----------------------------------------------------------------------------- against the loop oracle


@given(configs())
def test_probs_and_output_match_loop(c):
    p = attention_probs(c["q"], c["k"], sinks=c["sinks"], window=c["window"])
    want = loop_probs(c["q"], c["k"], sinks=c["sinks"], window=c["window"])
    # float64 vs float64 reformulation (different summation order): a few ulp of values <= 1
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-15)
    o = attention(c["q"], c["k"], c["v"], sinks=c["sinks"], window=c["window"])
    np.testing.assert_allclose(o, loop_out(want, c["v"]), rtol=1e-12, atol=1e-13)
    assert p.dtype == o.dtype == np.float64


@given(configs(), st.integers(0, 12), st.booleans())
def test_explicit_offset_and_noncausal_match_loop(c, extra, causal):
    tq, tk = c["q"].shape[-3], c["k"].shape[-3]
    off = max(0, tk - tq) + extra - 6 if extra >= 6 else extra  # offsets before, at and past the keys
    kw = dict(sinks=c["sinks"], window=c["window"], causal=causal, q_offset=off, scale=0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = attention_probs(c["q"], c["k"], **kw)
    np.testing.assert_allclose(p, loop_probs(c["q"], c["k"], **kw), rtol=1e-12, atol=1e-15)


def test_hand_worked_2x2():
    # D = 4, default scale 1/sqrt(4) = 0.5. Query 1 . key 1 = 2 ln 3 -> score ln 3; all other scores 0.
    q = np.zeros((2, 1, 4))
    q[1, 0, 0] = 1.0
    q[0, 0, 0] = 1.0
    k = np.zeros((2, 1, 4))
    k[1, 0, 0] = 2 * math.log(3)
    v = np.array([[[2.0]], [[6.0]]])  # [Tk=2, Hkv=1, Dv=1]
    # causal, no sink: row 0 sees key 0 only -> [1, 0]; row 1: exp([0, ln 3]) = [1, 3] -> [1/4, 3/4]
    np.testing.assert_allclose(attention_probs(q, k)[0], [[1, 0], [0.25, 0.75]], rtol=1e-15, atol=0)
    np.testing.assert_allclose(attention(q, k, v)[:, 0, 0], [2.0, 0.25 * 2 + 0.75 * 6], rtol=1e-15)
    # sink ln 4 (not scaled): row 0: 1 / (1 + 4) = 0.2; row 1: [1, 3] / (1 + 3 + 4) = [1/8, 3/8]
    s = np.array([math.log(4)])
    np.testing.assert_allclose(attention_probs(q, k, sinks=s)[0], [[0.2, 0], [0.125, 0.375]], rtol=1e-14, atol=0)
    np.testing.assert_allclose(attention(q, k, v, sinks=s)[:, 0, 0], [0.4, 2.5], rtol=1e-14)
    for bs in (1, 2):
        np.testing.assert_allclose(attention_online(q, k, v, sinks=s, block_size=bs)[:, 0, 0], [0.4, 2.5],
                                   rtol=1e-14)
    # a sink wrongly multiplied by the scale (0.5 ln 4 = ln 2) would give row 1 [1/6, 1/2]
    assert abs(attention_probs(q, k, sinks=s)[0, 1, 1] - 0.5) > 0.1


# ----------------------------------------------------------------------------- visibility


def test_visibility_mask_matches_gpt_oss_tril_formulation():
    # gpt-oss sdpa: -inf on triu(diagonal=1) plus -inf on tril(diagonal=-W); visible = neither.
    for t in EDGE_SIZES + (130,):
        for w in (1, 2, 127, 128, 129):
            ones = np.ones((t, t), dtype=bool)
            want = ~np.triu(ones, k=1) & ~np.tril(ones, k=-w)
            np.testing.assert_array_equal(visibility_mask(t, t, window=w), want)


def test_visibility_window_counts_the_query_itself():
    m = visibility_mask(130, 130, window=128)
    counts = m.sum(axis=1)
    np.testing.assert_array_equal(counts, [min(p + 1, 128) for p in range(130)])
    assert m[129, 2] and not m[129, 1] and m[129, 129]  # keys 2..129 for query 129
    # one decoding query at position 200 over 201 keys: keys 73..200
    row = visibility_mask(1, 201, window=128)[0]
    assert np.flatnonzero(row).tolist() == list(range(73, 201))


@given(st.integers(1, 20), st.integers(1, 20), st.integers(0, 30), st.one_of(st.none(), st.integers(1, 25)),
       st.booleans())
def test_visibility_mask_matches_inequalities(tq, tk, off, window, causal):
    m = visibility_mask(tq, tk, q_offset=off, window=window, causal=causal)
    assert m.shape == (tq, tk) and m.dtype == bool
    for i in range(tq):
        for j in range(tk):
            p = off + i
            assert m[i, j] == ((not causal or j <= p) and (window is None or p - window < j))


def test_visibility_default_offset_is_last_positions():
    np.testing.assert_array_equal(visibility_mask(2, 5), [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(visibility_mask(3, 3), np.tril(np.ones((3, 3), dtype=bool)))
    np.testing.assert_array_equal(visibility_mask(4, 2, causal=False), np.ones((4, 2), dtype=bool))


@given(configs())
def test_window_at_or_above_length_equals_plain_causal(c):
    tk = c["k"].shape[-3]
    full = attention(c["q"], c["k"], c["v"], sinks=c["sinks"])
    for w in (tk, tk + 1, tk + 100):
        # identical visibility, identical arithmetic: bit-exact
        np.testing.assert_array_equal(attention(c["q"], c["k"], c["v"], sinks=c["sinks"], window=w), full)


def test_window_below_length_differs():
    rng = np.random.default_rng(1)
    q, k, v = rand(rng, 33, 2, 4), rand(rng, 33, 2, 4), rand(rng, 33, 2, 3)
    full = attention(q, k, v)
    win = attention(q, k, v, window=32)
    np.testing.assert_array_equal(win[:32], full[:32])  # the first 32 queries see <= 32 keys anyway
    assert np.abs(win[32] - full[32]).max() > 1e-6  # query 32 loses key 0


@pytest.mark.parametrize("group", [1, 3])
def test_window_one_attends_to_self_only(group):
    rng = np.random.default_rng(2)
    q, k, v = rand(rng, 5, 2 * group, 4), rand(rng, 7, 2, 4), rand(rng, 7, 2, 3)
    o = attention(q, k, v, window=1)
    for i in range(5):
        for h in range(2 * group):
            np.testing.assert_array_equal(o[i, h], v[2 + i, h // group])  # p = exp(0) / exp(0) = 1 exactly
    p = attention_probs(q, k, window=1)
    np.testing.assert_array_equal(p, np.broadcast_to(np.eye(7)[2:], p.shape))


# ----------------------------------------------------------------------------- heads


@given(configs())
def test_gqa_equals_mha_with_explicit_repetition(c):
    q, k, v = c["q"], c["k"], c["v"]
    hq, hkv = q.shape[-2], k.shape[-2]
    g = hq // hkv
    k_rep = np.stack([k[..., h // g, :] for h in range(hq)], axis=-2)
    v_rep = np.stack([v[..., h // g, :] for h in range(hq)], axis=-2)
    kw = dict(sinks=c["sinks"], window=c["window"])
    # same per-element formula, different einsum grouping: float64 rounding
    np.testing.assert_allclose(attention(q, k, v, **kw), attention(q, k_rep, v_rep, **kw), rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(repeat_kv(k, g), k_rep)


def test_gqa_uses_contiguous_groups_not_modulo():
    rng = np.random.default_rng(3)
    hq, hkv = 6, 2
    q, k, v = rand(rng, 4, hq, 8), rand(rng, 4, hkv, 8), rand(rng, 4, hkv, 5)
    div = [h // 3 for h in range(hq)]  # 0 0 0 1 1 1
    mod = [h % hkv for h in range(hq)]  # 0 1 0 1 0 1
    o = attention(q, k, v)
    o_div = attention(q, k[:, div], v[:, div])
    o_mod = attention(q, k[:, mod], v[:, mod])
    np.testing.assert_allclose(o, o_div, rtol=1e-13, atol=1e-14)
    assert np.abs(o - o_mod).max() > 1e-3


def test_mha_and_mqa_per_head():
    rng = np.random.default_rng(4)
    q, v4, k4 = rand(rng, 6, 4, 8), rand(rng, 6, 4, 3), rand(rng, 6, 4, 8)
    o = attention(q, k4, v4)  # MHA: head h reads kv head h
    for h in range(4):
        np.testing.assert_allclose(o[:, h], attention(q[:, h:h + 1], k4[:, h:h + 1], v4[:, h:h + 1])[:, 0],
                                   rtol=1e-13, atol=1e-14)
    k1, v1 = k4[:, :1], v4[:, :1]
    o = attention(q, k1, v1)  # MQA: every head reads kv head 0
    for h in range(4):
        np.testing.assert_allclose(o[:, h], attention(q[:, h:h + 1], k1, v1)[:, 0], rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------------------- sinks


@given(configs())
def test_sinks_at_minus_inf_equal_no_sinks(c):
    hq = c["q"].shape[-2]
    none = np.full(hq, -np.inf)
    np.testing.assert_array_equal(attention_probs(c["q"], c["k"], sinks=none, window=c["window"]),
                                  attention_probs(c["q"], c["k"], window=c["window"]))
    np.testing.assert_array_equal(attention_online(c["q"], c["k"], c["v"], sinks=none, window=c["window"]),
                                  attention_online(c["q"], c["k"], c["v"], window=c["window"]))


@given(configs(), st.lists(st.floats(-3, 3), min_size=9, max_size=9))
def test_finite_sinks_row_sums(c, sink_vals):
    q, k = c["q"], c["k"]
    hq, d = q.shape[-2], q.shape[-1]
    sinks = np.array(sink_vals[:hq])
    p = attention_probs(q, k, sinks=sinks, window=c["window"])
    rows = p.sum(axis=-1)  # [..., Hq, Tq]
    assert np.all(rows < 1)
    # independent: 1 - exp(sink - m) / (sum_j exp(s_j - m) + exp(sink - m)) per row, math module
    tq, tk = q.shape[-3], k.shape[-3]
    vis = visibility_mask(tq, tk, window=c["window"])
    for b in np.ndindex(*q.shape[:-3]):
        for h in range(hq):
            for i in range(tq):
                s = [math.fsum(q[b + (i, h, x)] * k[b + (j, h // (hq // k.shape[-2]), x)] for x in range(d))
                     / math.sqrt(d) for j in range(tk) if vis[i, j]]
                m = max(s + [sinks[h]])
                den = math.fsum([math.exp(x - m) for x in s] + [math.exp(sinks[h] - m)])
                assert rows[b + (h, i)] == pytest.approx(1 - math.exp(sinks[h] - m) / den, rel=1e-12)


def test_sink_extremes():
    rng = np.random.default_rng(5)
    q, k, v = rand(rng, 3, 2, 4), rand(rng, 5, 2, 4), rand(rng, 5, 2, 3)
    p = attention_probs(q, k, sinks=np.array([1e4, -1e4]))
    np.testing.assert_array_equal(p[0], 0)  # sink 1e4 takes all the mass: exp(s - 1e4) underflows to 0
    np.testing.assert_allclose(p[1].sum(axis=-1), 1, rtol=1e-15)  # exp(-1e4 - m) = 0
    o = attention(q, k, v, sinks=np.array([1e4, -1e4]))
    np.testing.assert_array_equal(o[:, 0], 0)
    np.testing.assert_allclose(o[:, 1], attention(q, k, v)[:, 1], rtol=1e-14)


# ----------------------------------------------------------------------------- online softmax


@given(configs(max_t=10), st.sampled_from(BLOCK_SIZES + (2, 3)))
def test_online_equals_plain_small(c, bs):
    kw = dict(sinks=c["sinks"], window=c["window"])
    a = attention(c["q"], c["k"], c["v"], **kw)
    b = attention_online(c["q"], c["k"], c["v"], block_size=bs, **kw)
    # both are convex combinations of v computed in a different order: float64 rounding of ~Tk terms
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-13 * (1 + np.abs(c["v"]).max()))


@settings(max_examples=20)
@given(st.sampled_from(EDGE_SIZES), st.sampled_from(BLOCK_SIZES), st.sampled_from([None, 1, 31, 32, 33, 128]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_online_equals_plain_edge_lengths(tk, bs, window, with_sinks, seed):
    rng = np.random.default_rng(seed)
    tq = min(tk, 3)
    q, k, v = rand(rng, tq, 4, 8) * 3, rand(rng, tk, 2, 8) * 3, rand(rng, tk, 2, 5)
    sinks = rng.normal(size=4) if with_sinks else None
    a = attention(q, k, v, sinks=sinks, window=window)
    b = attention_online(q, k, v, sinks=sinks, window=window, block_size=bs)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-13 * (1 + np.abs(v).max()))


# ----------------------------------------------------------------------------- batching and cached decoding


@given(configs())
def test_batch_of_one_equals_batched(c):
    q, k, v = c["q"], c["k"], c["v"]
    kw = dict(sinks=c["sinks"], window=c["window"])
    if q.ndim == 3:
        q, k, v = np.stack([q, q * 0.5]), np.stack([k, -k]), np.stack([v, v + 1])
    o = attention(q, k, v, **kw)
    on = attention_online(q, k, v, **kw)
    for b in range(q.shape[0]):
        np.testing.assert_allclose(attention(q[b], k[b], v[b], **kw), o[b], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(attention(q[b:b + 1], k[b:b + 1], v[b:b + 1], **kw)[0], o[b],
                                   rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(attention_online(q[b], k[b], v[b], **kw), on[b], rtol=1e-14, atol=1e-15)


@given(configs(max_t=9), st.integers(0, 8))
def test_cached_decoding_matches_full_causal_rows(c, start):
    k, v, sinks, w = c["k"], c["v"], c["sinks"], c["window"]
    t = k.shape[-3]
    q = np.random.default_rng(start).normal(size=(*k.shape[:-3], t, c["q"].shape[-2], k.shape[-1]))
    full = attention(q, k, v, sinks=sinks, window=w)  # prefill: Tq == Tk
    start = min(start, t - 1)
    tq = t - start
    # the last Tq queries over all keys (default offset Tk - Tq)
    tail = attention(q[..., start:, :, :], k, v, sinks=sinks, window=w)
    np.testing.assert_allclose(tail, full[..., start:, :, :], rtol=1e-13, atol=1e-14)
    # explicit offset: queries start..start+Tq-1 over the keys 0..start+Tq-1
    mid = attention(q[..., start:start + 1, :, :], k[..., :start + 1, :, :], v[..., :start + 1, :, :],
                    sinks=sinks, window=w)
    np.testing.assert_allclose(mid, full[..., start:start + 1, :, :], rtol=1e-13, atol=1e-14)
    mid2 = attention(q[..., start:start + 1, :, :], k, v, sinks=sinks, window=w, q_offset=start)
    np.testing.assert_allclose(mid2, full[..., start:start + 1, :, :], rtol=1e-13, atol=1e-14)
    assert tq >= 1


# ----------------------------------------------------------------------------- special values


@pytest.mark.parametrize("sinks", [None, np.array([0.3, -np.inf]), np.array([-np.inf, -np.inf])])
@pytest.mark.parametrize("window", [1, 3])
def test_fully_masked_rows_give_zeros_without_warnings(sinks, window):
    rng = np.random.default_rng(6)
    q, k, v = rand(rng, 2, 2, 4), rand(rng, 5, 1, 4), rand(rng, 5, 1, 3)
    off = 5 + window - 1  # first query position whose window (p - w, p] holds no key 0..4
    assert not visibility_mask(2, 5, q_offset=off, window=window).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = attention_probs(q, k, sinks=sinks, window=window, q_offset=off)
        o = attention(q, k, v, sinks=sinks, window=window, q_offset=off)
        for bs in (1, 2, 32):
            on = attention_online(q, k, v, sinks=sinks, window=window, q_offset=off, block_size=bs)
            np.testing.assert_array_equal(on, 0)
    np.testing.assert_array_equal(p, 0)
    np.testing.assert_array_equal(o, 0)
    # one query earlier, the last key becomes visible
    assert visibility_mask(1, 5, q_offset=off - 1, window=window)[0, 4]


def test_explicit_mask_knob():
    rng = np.random.default_rng(7)
    q, k, v = rand(rng, 3, 2, 4), rand(rng, 4, 2, 4), rand(rng, 4, 2, 3)
    mask = np.array([[False] * 4, [True, False, True, True], [False, True, True, True]])
    sinks = np.array([0.1, -np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = attention_probs(q, k, sinks=sinks, mask=mask)
        o = attention(q, k, v, sinks=sinks, mask=mask)
        on = attention_online(q, k, v, sinks=sinks, mask=mask, block_size=1)
    want = loop_probs(q, k, sinks=sinks, mask=mask)  # ANDed with causal (default offset 1)
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(p[:, 0], 0)  # row 0 fully masked
    np.testing.assert_allclose(o, loop_out(want, v), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(on, o, atol=1e-14)
    # a per-batch mask [B, 1, Tq, Tk] broadcasts over heads
    qb, kb, vb = np.stack([q, q]), np.stack([k, k]), np.stack([v, v])
    mb = np.stack([mask, np.ones_like(mask)])[:, None]
    ob = attention(qb, kb, vb, sinks=sinks, mask=mb)
    np.testing.assert_allclose(ob[0], o, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ob[1], attention(q, k, v, sinks=sinks), rtol=1e-14, atol=1e-15)


def test_logits_of_1e4_scale_are_finite():
    # D = 1, scale 1: scores are q * k directly, about +-1e4
    q = np.array([[[1.0]], [[-1.0]], [[0.5]]])  # [Tq=3, H=1, D=1]
    k = np.array([[[1e4]], [[-1e4]], [[9999.0]]])
    v = np.array([[[1.0]], [[2.0]], [[3.0]]])
    for sinks in (None, np.array([1e4]), np.array([-1e4])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = attention_probs(q, k, sinks=sinks, scale=1.0)
            o = attention(q, k, v, sinks=sinks, scale=1.0)
            on = attention_online(q, k, v, sinks=sinks, scale=1.0, block_size=1)
        assert np.all(np.isfinite(p)) and np.all(np.isfinite(o)) and np.all(np.isfinite(on))
        want = loop_probs(q, k, sinks=sinks, scale=1.0)
        np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(on, o, rtol=1e-14)
    # row 2 (causal, scores 5000, -5000, 4999.5): p = [1, 0, e^-0.5] / (1 + e^-0.5)
    p = attention_probs(q, k, scale=1.0)
    e = math.exp(-0.5)
    np.testing.assert_allclose(p[0, 2], [1 / (1 + e), 0, e / (1 + e)], rtol=1e-14)


# ----------------------------------------------------------------------------- dtypes


def test_dtypes():
    rng = np.random.default_rng(8)
    q, k, v = rand(rng, 4, 4, 8), rand(rng, 4, 2, 8), rand(rng, 4, 2, 3)
    f32 = [x.astype(np.float32) for x in (q, k, v)]
    bf = [x.astype(ml_dtypes.bfloat16) for x in (q, k, v)]
    assert attention(*f32).dtype == np.float32
    assert attention_online(*f32).dtype == np.float32
    assert attention_probs(*bf).dtype == np.float32
    assert attention(*f32, sinks=np.zeros(4)).dtype == np.float64  # float64 sinks -> float64
    assert attention(*f32, sinks=np.zeros(4, np.float32)).dtype == np.float32
    # float32 vs float64 of the same (float32-representable) inputs: float32 rounding, ~1e-6 relative
    f64 = [x.astype(np.float64) for x in f32]
    np.testing.assert_allclose(attention(*f32), attention(*f64), rtol=2e-5, atol=2e-6)


def test_repeat_kv():
    k = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)  # [T=2, Hkv=3, D=2]
    r = repeat_kv(k, 2)
    assert r.shape == (2, 6, 2)
    for h in range(6):
        np.testing.assert_array_equal(r[:, h], k[:, h // 2])
    with pytest.raises(ArgumentError, match="^n_rep"):
        repeat_kv(k, 0)


# ----------------------------------------------------------------------------- bad arguments


def _qkv(tq=3, tk=3, hq=4, hkv=2, d=8, dv=8):
    rng = np.random.default_rng(9)
    return rand(rng, tq, hq, d), rand(rng, tk, hkv, d), rand(rng, tk, hkv, dv)


@pytest.mark.parametrize("fn", [attention, attention_online])
def test_bad_arguments(fn):
    q, k, v = _qkv()
    with pytest.raises(ArgumentError, match="^k.*num_kv_heads"):
        fn(q, _qkv(hkv=3)[1], _qkv(hkv=3)[2])
    with pytest.raises(ArgumentError, match="^k"):
        fn(q, _qkv(d=4)[1], v)  # head_dim mismatch
    with pytest.raises(ArgumentError, match="^k"):
        fn(q, k[None], v[None])  # ndim mismatch
    with pytest.raises(ArgumentError, match="^v"):
        fn(q, k, v[:2])
    with pytest.raises(ArgumentError, match="^v"):
        fn(q, k, None)
    with pytest.raises(ArgumentError, match="^q"):
        fn(q[0], k, v)
    with pytest.raises(ArgumentError, match="^q_offset"):
        fn(*_qkv(tq=4, tk=3))  # more queries than keys, causal, default offset
    with pytest.raises(ArgumentError, match="^q_offset"):
        fn(*_qkv(tq=4, tk=3), causal=False, window=2)
    with pytest.raises(ArgumentError, match="^q_offset"):
        fn(q, k, v, q_offset=-1)
    for w in (0, -1, 1.5, True, "128"):
        with pytest.raises(ArgumentError, match="^window"):
            fn(q, k, v, window=w)
    for s in (np.zeros(2), np.zeros((4, 1)), np.array([0, 0, np.nan, 0]), np.array([0, np.inf, 0, 0])):
        with pytest.raises(ArgumentError, match="^sinks"):
            fn(q, k, v, sinks=s)
    for sc in (0, -1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(ArgumentError, match="^scale"):
            fn(q, k, v, scale=sc)
    with pytest.raises(ArgumentError, match="^causal"):
        fn(q, k, v, causal="yes")
    with pytest.raises(ArgumentError, match="^mask"):
        fn(q, k, v, mask=np.ones((3, 3)))  # not bool
    with pytest.raises(ArgumentError, match="^mask"):
        fn(q, k, v, mask=np.ones((3, 2), dtype=bool))
    with pytest.raises(ArgumentError, match="^mask"):
        fn(q, k, v, mask=np.ones((3, 3, 3), dtype=bool))  # 3 does not broadcast to Hq = 4
    # more queries than keys is fine without causality or window
    assert fn(*_qkv(tq=4, tk=3), causal=False).shape == (4, 4, 8)


def test_bad_arguments_probs_and_mask():
    q, k, _ = _qkv()
    with pytest.raises(ArgumentError, match="^k.*num_kv_heads"):
        attention_probs(q, _qkv(hkv=3)[1])
    for bs in (0, -1, 2.0, None):
        with pytest.raises(ArgumentError, match="^block_size"):
            attention_online(*_qkv(), block_size=bs)
    with pytest.raises(ArgumentError, match="^q_len"):
        visibility_mask(0, 3)
    with pytest.raises(ArgumentError, match="^k_len"):
        visibility_mask(1, 2.0)
    with pytest.raises(ArgumentError, match="^window"):
        visibility_mask(3, 3, window=0)
    with pytest.raises(ArgumentError, match="^q_offset"):
        visibility_mask(3, 3, q_offset=-2)
    with pytest.raises(ArgumentError, match="^q_offset"):
        visibility_mask(4, 3)
