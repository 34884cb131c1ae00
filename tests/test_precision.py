"""Tests for refimpl.precision (spec/precision.md).

bf16 rounding is checked against an integer-arithmetic rounding of the float32 bit pattern
(no ml_dtypes): keep the top 16 bits, add one unit when the dropped 16 bits exceed half a unit,
or equal half a unit and the kept part is odd (ties to even).
"""

import math
import struct

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops import ops
from refimpl.precision import (DTYPES, Precision, bfloat16, check_dtype, compute_dtype, round_bf16, storage_dtype,
                               to_storage)


def expected_bf16_bits(u32):
    """Upper-16-bit pattern of the bf16 nearest to the float32 with bit pattern u32 (Python int)."""
    exp = (u32 >> 23) & 0xFF
    man = u32 & 0x7FFFFF
    assert not (exp == 0xFF and man != 0), "NaN handled separately"
    hi, lo = u32 >> 16, u32 & 0xFFFF
    if lo > 0x8000 or (lo == 0x8000 and hi & 1):
        hi += 1  # may carry into the exponent: largest finite values round to inf, as IEEE says
    return hi


def f32_from_bits(u):
    return struct.unpack("<f", struct.pack("<I", u))[0]


def got_bits(u32_list):
    x = np.array(u32_list, dtype=np.uint32).view(np.float32)
    r = round_bf16(x)
    assert r.dtype == np.float32
    rb = r.view(np.uint32)
    assert np.all((rb & 0xFFFF) == 0)  # a bf16 value sits in the top 16 bits
    return (rb >> 16).tolist()


SPECIAL = [
    0x00000000, 0x80000000,  # +-0
    0x00000001, 0x00008000, 0x00018000, 0x00007FFF, 0x007FFFFF, 0x807FFFFF,  # subnormals, incl. ties
    0x00800000, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,  # 1.0 and ties around it
    0xBF808000, 0xBF818000,  # negative ties
    0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7FFFFF,  # largest finite: round up overflows to +-inf
    0x7F800000, 0xFF800000,  # +-inf
    0x3F7FFFFF, 0x3F7F8000,  # just below 1: carry into the exponent
]


def test_round_bf16_special_patterns():
    want = [expected_bf16_bits(u) for u in SPECIAL]
    assert got_bits(SPECIAL) == want
    # spot-check the expectation itself by hand
    assert expected_bf16_bits(0x3F808000) == 0x3F80  # 1 + 2^-8 is a tie; 0x3F80 is even -> down
    assert expected_bf16_bits(0x3F818000) == 0x3F82  # tie, 0x3F81 odd -> up
    assert expected_bf16_bits(0x7F7FFFFF) == 0x7F80  # max float32 -> +inf


def test_round_bf16_nan_stays_nan_and_inf_stays_inf():
    nans = [0x7FC00000, 0x7F800001, 0xFFC00000, 0x7FFFFFFF, 0xFF800001, 0x7F80FFFF]
    r = round_bf16(np.array(nans, dtype=np.uint32).view(np.float32))
    assert np.all(np.isnan(r))
    r = round_bf16(np.array([np.inf, -np.inf], dtype=np.float32))
    assert r.tolist() == [math.inf, -math.inf]


def test_round_bf16_random_bit_patterns():
    rng = np.random.default_rng(2024)
    u = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    # force many exact ties and near-ties
    u[:50_000] = (u[:50_000] & 0xFFFF0000) | 0x8000
    u[50_000:60_000] = (u[50_000:60_000] & 0xFFFF0000) | 0x7FFF
    u[60_000:70_000] = (u[60_000:70_000] & 0xFFFF0000) | 0x8001
    exp = (u >> 23) & 0xFF
    man = u & 0x7FFFFF
    finite_or_inf = ~((exp == 0xFF) & (man != 0))
    u = u[finite_or_inf]
    hi = (u >> 16).astype(np.uint64)
    lo = u & 0xFFFF
    up = (lo > 0x8000) | ((lo == 0x8000) & ((hi & 1) == 1))
    want = (hi + up).tolist()
    # vectorised form of expected_bf16_bits, cross-checked on a slice against the scalar form
    assert want[:500] == [expected_bf16_bits(int(v)) for v in u[:500]]
    assert got_bits(u) == want


@given(st.integers(0, 2**32 - 1))
def test_round_bf16_hypothesis(u):
    exp, man = (u >> 23) & 0xFF, u & 0x7FFFFF
    if exp == 0xFF and man != 0:
        assert math.isnan(float(round_bf16(np.array([u], dtype=np.uint32).view(np.float32))[0]))
        return
    assert got_bits([u]) == [expected_bf16_bits(u)]
    # nearest: no bf16 neighbour is strictly closer (checked in exact float64 arithmetic)
    x = f32_from_bits(u)
    r = f32_from_bits(expected_bf16_bits(u) << 16)
    if math.isfinite(r):
        for nb in (expected_bf16_bits(u) - 1, expected_bf16_bits(u) + 1):
            if 0 <= nb <= 0xFFFF:
                y = f32_from_bits(nb << 16)
                if math.isfinite(y) and math.copysign(1, y) == math.copysign(1, r):
                    assert abs(x - r) <= abs(x - y)


@given(st.floats(width=32, allow_nan=False))
def test_round_bf16_idempotent(x):
    a = round_bf16(np.float32(x))
    b = round_bf16(a)
    assert a.view(np.uint32) == b.view(np.uint32)


def test_round_bf16_monotone():
    rng = np.random.default_rng(5)
    x = np.sort(
        np.concatenate(
            [
                rng.standard_normal(100_000).astype(np.float32) * np.float32(1e3),
                np.array(np.random.default_rng(6).integers(0, 2**32, 50_000, dtype=np.uint64), dtype=np.uint32).view(np.float32),
                np.array([np.inf, -np.inf, 0.0, -0.0, 3.4028235e38, -3.4028235e38], dtype=np.float32),
            ]
        )
    )
    x = x[~np.isnan(x)]
    r = round_bf16(x)
    assert np.all(r[1:] >= r[:-1])


def test_round_bf16_agrees_with_ml_dtypes_cast_from_float32():
    x = np.random.default_rng(8).standard_normal(1000).astype(np.float32)
    assert np.array_equal(round_bf16(x), x.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_round_bf16_from_float64_goes_through_float32():
    # Documented double rounding (as ml_dtypes and torch's c10::BFloat16, which converts from float):
    # 1 + 2^-8 + 2^-30 is above the bf16 tie 1 + 2^-8, but float32 rounds it onto the tie,
    # which then goes to even (1.0). A direct float64 -> bf16 rounding would give 1 + 2^-7.
    assert float(round_bf16(np.float64(1.0 + 2.0**-8 + 2.0**-30))) == 1.0


def test_to_storage_and_storage_dtype():
    x = np.array([1.0 + 2.0**-30, 1.0 + 2.0**-8, -2.5e-40, 1e300])
    r64 = to_storage(x, "float64")
    assert r64.dtype == np.float64 and r64.tolist() == x.tolist()
    r32 = to_storage(x, "float32")
    assert r32.dtype == np.float32
    # struct 'f' packing is an independent float64 -> float32 round-to-nearest-even
    assert r32[:3].tolist() == [struct.unpack("<f", struct.pack("<f", v))[0] for v in x[:3].tolist()]
    assert r32[3] == np.inf
    rb = to_storage(x, "bfloat16")
    assert rb.dtype == np.float32
    assert rb[:2].tolist() == [1.0, 1.0]
    assert storage_dtype("float64") == np.float64
    assert storage_dtype("float32") == np.float32
    assert storage_dtype("bfloat16") == bfloat16 == np.dtype(ml_dtypes.bfloat16)
    assert DTYPES == ("float64", "float32", "bfloat16")
    for dt in DTYPES:  # the op is the same rule
        np.testing.assert_array_equal(ops.round_to_storage(x, dt), to_storage(x, dt))


def test_precision_object():
    p = Precision.of("bfloat16")
    assert (p.dtype, p.compute, p.storage, p.rounds_each_step, p.angle_dtype) == (
        "bfloat16", np.float32, bfloat16, True, np.float32)
    assert Precision.of(p) is p
    p = Precision.of("float64")
    assert (p.compute, p.storage, p.rounds_each_step, p.angle_dtype) == (np.float64, np.float64, False, np.float64)
    assert Precision.of("float32").compute == np.float32


def test_compute_dtype_rule():
    f64 = np.zeros(2)
    f32 = np.zeros(2, np.float32)
    f16 = np.zeros(2, np.float16)
    b16 = np.zeros(2, ml_dtypes.bfloat16)
    assert compute_dtype(f64) == np.float64
    assert compute_dtype(f32, f64) == np.float64
    assert compute_dtype(b16, None, f64) == np.float64
    assert compute_dtype(f32) == np.float32
    assert compute_dtype(b16) == np.float32
    assert compute_dtype(f16, b16) == np.float32
    assert compute_dtype(None, f32) == np.float32


@pytest.mark.parametrize("bad", ["fp32", "bf16", None, "float16"])
def test_bad_dtype(bad):
    with pytest.raises(ArgumentError, match="^dtype"):
        check_dtype(bad)
    with pytest.raises(ArgumentError, match="^dtype"):
        Precision.of(bad)
    with pytest.raises(ArgumentError, match="^dtype"):
        storage_dtype(bad)
    with pytest.raises(ArgumentError, match="^dtype"):
        to_storage(np.zeros(1), bad)


# ----------------------------------------------------------------------------- bf16 rounding points
# The "bfloat16" dtype splits RoPE, attention and the gpt-oss SwiGLU at the points where the torch
# reference stores a bf16 tensor (spec/precision.md rows 5-11, 17). The building blocks must
# recompose to the fused ops bit for bit (so float32/float64 results do not depend on the split),
# and each must follow its own formula.

from refimpl.ops.attention import (attention, attention_scores, attention_values, softmax_with_sinks,  # noqa: E402
                                   visibility_mask)
from refimpl.ops.rope import apply_rope, rope_terms  # noqa: E402


def _rand(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("pairing", ["half", "interleaved"])
@pytest.mark.parametrize("t, rotary", [(1, None), (33, None), (32, 4)])
def test_rope_terms_sum_is_apply_rope(dt, pairing, t, rotary):
    rng = np.random.default_rng(t)
    x = _rand(rng, (t, 3, 8), dt)
    r = 8 if rotary is None else rotary
    cos, sin = _rand(rng, (t, r // 2), dt), _rand(rng, (t, r // 2), dt)
    a, b = rope_terms(x, cos, sin, pairing=pairing, rotary_dim=rotary)
    assert a.dtype == b.dtype == np.dtype(dt) and a.shape == b.shape == x.shape
    # a + b is apply_rope bit for bit (x - y is x + (-y) in IEEE arithmetic)
    np.testing.assert_array_equal(a + b, apply_rope(x, cos, sin, pairing=pairing, rotary_dim=rotary))
    # each entry is one product: an element loop with Python floats (float64 products, exact for float32 data)
    for ti in range(t):
        for h in range(3):
            for j in range(r // 2):
                ia, ib = (j, j + r // 2) if pairing == "half" else (2 * j, 2 * j + 1)
                xa, xb, c, s = float(x[ti, h, ia]), float(x[ti, h, ib]), float(cos[ti, j]), float(sin[ti, j])
                assert a[ti, h, ia] == dt(xa * c) and b[ti, h, ia] == dt(-(xb * s))
                assert a[ti, h, ib] == dt(xb * c) and b[ti, h, ib] == dt(xa * s)
            assert np.all(a[ti, h, r:] == x[ti, h, r:]) and np.all(b[ti, h, r:] == 0)


def test_rope_rounding_each_product_differs_from_rounding_the_sum():
    """Hand-worked: x1 = cos = 1 + 2^-7, x2 = -2^-8, sin = 1. x1 cos = 1 + 2^-6 + 2^-14 rounds to 1 + 2^-6;
    adding 2^-8 gives an exact tie, which goes to the even 1 + 2^-6. The unsplit sum
    1 + 2^-6 + 2^-8 + 2^-14 is past the tie and rounds up to 1 + 2^-6 + 2^-7."""
    x = np.array([[[1 + 2**-7, -(2**-8)]]], dtype=np.float32)  # [T=1, H=1, D=2]
    cos = np.array([[1 + 2**-7]], dtype=np.float32)
    sin = np.array([[1.0]], dtype=np.float32)
    a, b = rope_terms(x, cos, sin)
    split = round_bf16(round_bf16(a) + round_bf16(b))
    fused = round_bf16(apply_rope(x, cos, sin))
    assert split[0, 0, 0] == 1 + 2**-6
    assert fused[0, 0, 0] == 1 + 2**-6 + 2**-7


def _loop_scores(q, k, group):
    tq, hq, d = q.shape
    tk = k.shape[0]
    s = np.zeros((hq, tq, tk))
    for h in range(hq):
        for i in range(tq):
            for j in range(tk):
                s[h, i, j] = math.fsum(float(q[i, h, e]) * float(k[j, h // group, e]) for e in range(d))
    return s


@pytest.mark.parametrize("tq, tk, window", [(1, 1, None), (31, 31, 4), (1, 33, None), (5, 33, 3)])
def test_attention_scores_formula(tq, tk, window):
    rng = np.random.default_rng(tq * 100 + tk)
    q, k = _rand(rng, (tq, 4, 8), np.float64), _rand(rng, (tk, 2, 8), np.float64)
    off = tk - tq
    s = attention_scores(q, k, window=window, q_offset=off, scale=1.0)
    ref = _loop_scores(q, k, 2)
    for i in range(tq):
        for j in range(tk):
            p = off + i
            visible = j <= p and (window is None or j > p - window)
            if visible:  # float64 dot product vs an exactly summed one: 1e-13 relative to sum |q k|
                assert abs(s[:, i, j] - ref[:, i, j]).max() <= 1e-13 * 8 * 3
            else:
                assert np.all(s[:, i, j] == -np.inf)
    scaled = attention_scores(q, k, window=window, q_offset=off)  # default scale 1/sqrt(8), applied after the dot
    np.testing.assert_array_equal(scaled, s * (1 / math.sqrt(8)))


def test_softmax_with_sinks_formula():
    rng = np.random.default_rng(3)
    s = rng.standard_normal((3, 2, 4, 5)) * 4  # [B, Hq, Tq, Tk]
    s[0, 0, 1, 2:] = -np.inf
    s[1, 1, 2, :] = -np.inf  # a fully masked row: the sink takes all the mass
    sinks = np.array([0.5, -1.25])
    p = softmax_with_sinks(s, sinks)
    for b, h, i in np.ndindex(3, 2, 4):
        row = [float(v) for v in s[b, h, i]] + [float(sinks[h])]
        m = max(row)
        den = math.fsum(math.exp(v - m) for v in row)
        for j in range(5):  # float64 vs math.exp / fsum: 1e-14 relative
            assert abs(p[b, h, i, j] - math.exp(row[j] - m) / den) <= 1e-14
    assert np.all(p[1, 1, 2] == 0)
    q = softmax_with_sinks(np.full((1, 2, 3), -np.inf, dtype=np.float32))  # no sink, nothing visible
    assert q.dtype == np.float32 and np.all(q == 0)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("tq, tk, window, sinks", [(1, 1, None, True), (32, 32, 4, True), (33, 33, None, False),
                                                  (1, 129, 128, True)])
def test_attention_building_blocks_recompose_attention(dt, tq, tk, window, sinks):
    rng = np.random.default_rng(tk)
    q, k, v = _rand(rng, (2, tq, 4, 8), dt), _rand(rng, (2, tk, 2, 8), dt), _rand(rng, (2, tk, 2, 6), dt)
    snk = _rand(rng, (4,), dt) if sinks else None
    kw = dict(window=window, q_offset=tk - tq)
    p = softmax_with_sinks(attention_scores(q, k, **kw), snk)
    o = attention_values(p, v)
    assert o.dtype == np.dtype(dt) and o.shape == (2, tq, 4, 6)
    np.testing.assert_array_equal(o, attention(q, k, v, sinks=snk, **kw))
    vis = visibility_mask(tq, tk, **kw)
    np.testing.assert_array_equal(attention_values(p, v, visible=vis), o)
    # attention_values against a loop (float64 sums of float64 products; 1e-12 relative to sum |p v|)
    if dt is np.float64 and tq <= 32:
        for bb, i, h in np.ndindex(2, tq, 4):
            ref = [math.fsum(float(p[bb, h, i, j]) * float(v[bb, j, h // 2, e]) for j in range(tk)) for e in range(6)]
            assert np.abs(o[bb, i, h] - ref).max() <= 1e-12 * max(1.0, np.abs(v).max())
    # a NaN in the last key's value: with visible=, only rows that see that key are NaN, as in attention
    v[:, -1, 0, 0] = np.nan
    with np.errstate(invalid="ignore"):
        got = attention_values(p, v, visible=vis)
        np.testing.assert_array_equal(got, attention(q, k, v, sinks=snk, **kw))
    assert np.isnan(got[:, -1, 0, 0]).all()
    if tq > 1:
        assert not np.isnan(got[:, :-1]).any()


def test_bf16_building_blocks_bad_arguments():
    q, k, v = np.zeros((3, 4, 8)), np.zeros((3, 2, 8)), np.zeros((3, 2, 8))
    with pytest.raises(ArgumentError, match="^scores"):
        softmax_with_sinks(np.zeros((3, 4)))
    with pytest.raises(ArgumentError, match="^sinks"):
        softmax_with_sinks(np.zeros((4, 3, 3)), np.zeros(3))
    with pytest.raises(ArgumentError, match="^sinks"):
        softmax_with_sinks(np.zeros((4, 3, 3)), np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ArgumentError, match="^probs"):
        attention_values(np.zeros((3, 3)), v)
    with pytest.raises(ArgumentError, match="^v"):
        attention_values(np.zeros((4, 3, 5)), v)  # Tk 5 vs 3 keys
    with pytest.raises(ArgumentError, match="^v"):
        attention_values(np.zeros((4, 3, 3)), np.zeros((3, 3, 8)))  # 3 kv heads do not divide 4
    with pytest.raises(ArgumentError, match="^visible"):
        attention_values(np.zeros((4, 3, 3)), v, visible=np.ones((3, 3)))  # not bool
    with pytest.raises(ArgumentError, match="^visible"):
        attention_values(np.zeros((4, 3, 3)), v, visible=np.ones((3, 4), dtype=bool))  # Tk 4 vs 3
    with pytest.raises(ArgumentError, match="^window"):
        attention_scores(q, k, window=0)
    with pytest.raises(ArgumentError, match="^k"):
        attention_scores(q, np.zeros((3, 3, 8)))
    with pytest.raises(ArgumentError, match="^pairing"):
        rope_terms(q, np.zeros((3, 4)), np.zeros((3, 4)), pairing="rotate")
    with pytest.raises(ArgumentError, match="^cos"):
        rope_terms(q, np.zeros((3, 3)), np.zeros((3, 3)))


def test_swiglu_oss_bf16_rounds_every_step():
    """The bfloat16 dtype's gpt-oss SwiGLU (the op swiglu_oss_bf16) against the same steps done in ml_dtypes bfloat16 arithmetic
    (each bf16 ufunc computes in float32 and rounds its result), with alpha kept in float32 as torch keeps
    a Python scalar; and it differs from rounding the fused op once."""
    rng = np.random.default_rng(7)
    u = (rng.standard_normal((33, 64)) * 4).astype(ml_dtypes.bfloat16)  # bf16 mlp1 outputs, some past the limit
    bf = ml_dtypes.bfloat16
    g = np.minimum(u[:, 0::2], bf(7.0))
    lin = np.minimum(np.maximum(u[:, 1::2], bf(-7.0)), bf(7.0))  # (np.clip would widen to float32)
    z = (g.astype(np.float32) * np.float32(1.702)).astype(bf)
    sig = (1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.float32).astype(bf)
    ref = (g * sig) * (lin + bf(1))
    assert ref.dtype == bf
    got = ops.swiglu_oss_bf16(u.astype(np.float32), alpha=1.702, limit=7.0)
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    from refimpl.ops.activations import swiglu_oss
    fused = round_bf16(swiglu_oss(u.astype(np.float32), alpha=1.702, limit=7.0))
    assert np.mean(fused != got) > 0.05  # the step roundings matter
