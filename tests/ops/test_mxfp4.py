"""MXFP4 decode/encode against independent sources: ml_dtypes' float4_e2m1fn and float8_e8m0fnu,
math.ldexp in float64, per-element Python loops, and brute-force nearest-value searches."""

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.mxfp4 import FP4_E2M1_VALUES, decode_e8m0, decode_mxfp4, encode_mxfp4, mxfp4_linear

F4 = ml_dtypes.float4_e2m1fn
E8M0 = ml_dtypes.float8_e8m0fnu
BF16 = np.dtype(ml_dtypes.bfloat16)

# The E2M1 table from ml_dtypes (an independent implementation), as float64.
ML_TABLE = np.arange(16, dtype=np.uint8).view(F4).astype(np.float64)


def pack(codes):
    """codes [..., 32 G] (0..15, element order) -> bytes [..., G, 16]: element 2i low nibble, 2i+1 high."""
    codes = np.asarray(codes, dtype=np.uint8)
    *lead, k = codes.shape
    c = codes.reshape(*lead, k // 32, 32)
    return (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)


def unpack_loop(blocks):
    """bytes [..., G, 16] -> codes [..., 32 G] by a per-element loop."""
    b = np.asarray(blocks)
    lead, g = b.shape[:-2], b.shape[-2]
    out = np.zeros((*lead, 32 * g), dtype=np.uint8)
    for pos in np.ndindex(*lead):
        for j in range(32 * g):
            byte = int(b[pos + (j // 32, (j % 32) // 2)])
            out[pos + (j,)] = byte & 0xF if j % 2 == 0 else byte >> 4
    return out


def expected_value(code, scale, bias=127):
    """Released semantics, independently: the scale is 2^(s-bias) formed in float32 (2^128 -> inf)."""
    t = float(ML_TABLE[code])
    p = scale - bias
    if p >= 128:
        return math.nan if t == 0 else math.copysign(math.inf, t)
    return math.ldexp(t, p)  # float64, exact


# ---------------------------------------------------------------- tables


def test_table_matches_ml_dtypes_bit_patterns():
    assert FP4_E2M1_VALUES.dtype == np.float32
    assert FP4_E2M1_VALUES.shape == (16,)
    np.testing.assert_array_equal(FP4_E2M1_VALUES.astype(np.float64), ML_TABLE)
    np.testing.assert_array_equal(np.signbit(FP4_E2M1_VALUES), np.signbit(ML_TABLE))


def test_table_matches_bit_fields():
    # sign bit 3, exponent bits 2..1 (bias 1; 0 = subnormal), mantissa bit 0.
    for c in range(16):
        sign = -1.0 if c & 8 else 1.0
        e, m = (c >> 1) & 3, c & 1
        mag = m * 0.5 if e == 0 else math.ldexp(1 + m / 2, e - 1)
        v = float(FP4_E2M1_VALUES[c])
        assert v == sign * mag and math.copysign(1, v) == sign


def test_decode_e8m0_matches_ml_dtypes_and_ldexp():
    s = np.arange(256, dtype=np.uint8)
    got = decode_e8m0(s)
    assert got.dtype == np.float32 and got.shape == (256,)
    ref = s[:255].view(E8M0).astype(np.float32)
    np.testing.assert_array_equal(got[:255], ref)
    for c in range(255):
        assert float(got[c]) == math.ldexp(1.0, c - 127)
    # 255 is not special-cased: 2^128 overflows float32 to +inf (ml_dtypes and the OCP spec say NaN).
    assert got[255] == np.inf
    assert np.isnan(np.array([255], np.uint8).view(E8M0).astype(np.float32)[0])


def test_decode_e8m0_bias_and_shape():
    s = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    got = decode_e8m0(s, bias=128)
    assert got.shape == (4, 8, 8)
    flat = got.ravel()
    for c in range(256):
        assert float(flat[c]) == math.ldexp(1.0, c - 128)  # 255 -> 2^127, finite
    assert decode_e8m0(np.uint8(127)).shape == ()


# ---------------------------------------------------------------- decode


@pytest.mark.parametrize("dtype", [np.float32, np.float64, BF16])
def test_decode_exhaustive_all_codes_all_scales(dtype):
    codes = np.tile(np.arange(16, dtype=np.uint8), 2)  # element order 0..15, 0..15
    blocks = np.broadcast_to(pack(codes), (256, 1, 16)).copy()
    scales = np.arange(256, dtype=np.uint8).reshape(256, 1)
    got = decode_mxfp4(blocks, scales, dtype=dtype)
    assert got.shape == (256, 32) and got.dtype == np.dtype(dtype)
    for s in range(256):
        for j in range(32):
            c = j % 16
            want = expected_value(c, s)
            g = float(got[s, j])
            if math.isnan(want):
                assert math.isnan(g), (s, c)
                continue
            with np.errstate(over="ignore"):
                want_d = float(np.array(want, dtype=np.float64).astype(dtype))  # rounding to dtype (overflow -> inf)
            assert want_d == float(want) or math.isinf(want_d)  # every finite value is exact
            assert g == want_d, (s, c, g, want_d)
            assert math.copysign(1, g) == math.copysign(1, want), (s, c)


def test_decode_overflow_points_float32():
    # scale 254: |t| <= 1.5 finite, |t| >= 2 overflows float32; float64 keeps them finite.
    blocks = pack(np.tile(np.arange(16), 2))[None]
    scales = np.array([[254]], np.uint8)
    f32 = decode_mxfp4(blocks, scales)[0, :16]
    f64 = decode_mxfp4(blocks, scales, dtype=np.float64)[0, :16]
    assert np.all(np.isfinite(f32[[0, 1, 2, 3, 8, 9, 10, 11]]))
    assert np.all(np.isinf(f32[[4, 5, 6, 7, 12, 13, 14, 15]]))
    assert np.all(np.isfinite(f64)) and f64[7] == 6 * 2.0**127


def test_nibble_order_hand_built_byte():
    b = np.zeros((1, 16), np.uint8)
    b[0, 0] = 0x21  # low nibble 1 -> 0.5, high nibble 2 -> 1.0
    b[0, 1] = 0x8F  # low nibble 15 -> -6, high nibble 8 -> -0
    s = np.array([127], np.uint8)
    got = decode_mxfp4(b, s)
    assert got.shape == (32,)
    assert list(got[:4]) == [0.5, 1.0, -6.0, 0.0] and np.signbit(got[3])
    assert list(got[4:]) == [0.0] * 28
    swapped = decode_mxfp4(b, s, nibble_order="high_first")
    assert list(swapped[:4]) == [1.0, 0.5, 0.0, -6.0] and np.signbit(swapped[2])


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]), st.sampled_from([1, 4, 5]))
def test_decode_layout_matches_element_loop(seed, g, rows):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(2, rows, g, 16), dtype=np.uint8)
    scales = rng.integers(100, 155, size=(2, rows, g), dtype=np.uint8)
    got = decode_mxfp4(blocks, scales, dtype=np.float64)
    assert got.shape == (2, rows, 32 * g)
    codes = unpack_loop(blocks)
    for pos in np.ndindex(2, rows):
        for j in range(32 * g):
            want = math.ldexp(float(ML_TABLE[codes[pos + (j,)]]), int(scales[pos + (j // 32,)]) - 127)
            assert got[pos + (j,)] == want


@given(st.integers(0, 2**32 - 1))
def test_scale_bias_128_halves_values(seed):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(3, 2, 16), dtype=np.uint8)
    scales = rng.integers(1, 255, size=(3, 2), dtype=np.uint8)
    a = decode_mxfp4(blocks, scales, dtype=np.float64)
    b = decode_mxfp4(blocks, scales, dtype=np.float64, scale_bias=128)
    np.testing.assert_array_equal(b * 2, a)


def test_decode_errors_name_the_argument():
    b = np.zeros((4, 2, 16), np.uint8)
    s = np.zeros((4, 2), np.uint8)
    with pytest.raises(ArgumentError, match="^blocks"):
        decode_mxfp4(b.astype(np.int64), s)
    with pytest.raises(ArgumentError, match="^blocks"):
        decode_mxfp4(b.astype(np.float32), s)
    with pytest.raises(ArgumentError, match="^blocks.*16"):
        decode_mxfp4(np.zeros((4, 2, 15), np.uint8), s)
    with pytest.raises(ArgumentError, match="^blocks"):
        decode_mxfp4(np.zeros(16, np.uint8), np.zeros((), np.uint8))
    with pytest.raises(ArgumentError, match=r"^scales.*\(4, 2\).*\(4, 3\)"):
        decode_mxfp4(b, np.zeros((4, 3), np.uint8))
    with pytest.raises(ArgumentError, match="^scales"):
        decode_mxfp4(b, np.zeros((2, 4), np.uint8))
    with pytest.raises(ArgumentError, match="^scales"):
        decode_mxfp4(b, s.astype(np.int32))
    with pytest.raises(ArgumentError, match="^nibble_order"):
        decode_mxfp4(b, s, nibble_order="low")
    with pytest.raises(ArgumentError, match="^dtype"):
        decode_mxfp4(b, s, dtype=np.float16)
    with pytest.raises(ArgumentError, match="^dtype"):
        decode_mxfp4(b, s, dtype="nonsense")
    with pytest.raises(ArgumentError, match="^scale_bias"):
        decode_mxfp4(b, s, scale_bias=127.0)
    with pytest.raises(ArgumentError, match="^scales"):
        decode_e8m0(np.array([1.0]))
    with pytest.raises(ArgumentError, match="^bias"):
        decode_e8m0(np.array([1], np.uint8), bias="127")


# ---------------------------------------------------------------- encode


def scale_exponent_reference(amax, rule):
    """The block exponent by search (no frexp): ceil = smallest e with amax <= 6 * 2^e;
    floor = largest e with 4 * 2^e <= amax. Zero -> code 0; code clamped to [0, 254]."""
    if amax == 0:
        return -127
    e = 200
    if rule == "ceil":
        while amax <= math.ldexp(6.0, e - 1):
            e -= 1
    else:
        while math.ldexp(4.0, e) > amax:
            e -= 1
    return min(max(e, -127), 127)


def nearest_code_reference(q, ties):
    """Brute force over the 8 magnitudes; ties to the even code or away from zero; sign from signbit."""
    mags = ML_TABLE[:8]
    d = np.abs(mags - abs(q))
    best = np.flatnonzero(d == d.min())
    if len(best) == 1:
        m = int(best[0])
    else:
        m = int(best[1]) if ties == "away" else int(best[best % 2 == 0][0])
    return m + (8 if math.copysign(1.0, q) < 0 else 0)


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([32, 128, 160]),
    st.sampled_from([1, 3, 31, 33]),
    st.sampled_from(["ceil", "floor"]),
    st.sampled_from(["even", "away"]),
)
def test_encode_matches_independent_scale_and_rounding(seed, k, rows, rule, ties):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, k)) * np.exp2(rng.integers(-20, 20, size=(rows, 1)))).astype(np.float32)
    w[0, :32] = 0.0  # an all-zero block
    if rows > 1:
        w[1, 5] = -0.0
    blocks, scales = encode_mxfp4(w, scale_rule=rule, ties=ties)
    assert blocks.shape == (rows, k // 32, 16) and blocks.dtype == np.uint8
    assert scales.shape == (rows, k // 32) and scales.dtype == np.uint8
    codes = unpack_loop(blocks)
    for r in range(rows):
        for g in range(k // 32):
            blk = w[r, 32 * g : 32 * g + 32].astype(np.float64)
            e = scale_exponent_reference(float(np.max(np.abs(blk))), rule)
            assert int(scales[r, g]) == e + 127
            for j in range(32):
                q = math.ldexp(float(blk[j]), -e)
                assert codes[r, 32 * g + j] == nearest_code_reference(q, ties), (r, g, j, q)


@given(st.integers(0, 2**32 - 1), st.sampled_from(["ceil", "floor"]))
def test_encode_ties_even_matches_ml_dtypes_cast(seed, rule):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 64)) * 3
    w[:, :8] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -6.0]  # every tie, amax 6 -> e = 0
    blocks, scales = encode_mxfp4(w, scale_rule=rule)
    e = scales.astype(np.int64) - 127
    q = np.ldexp(w.reshape(4, 2, 32), -e[..., None]).reshape(4, 64)
    ref = q.astype(F4).view(np.uint8)  # ml_dtypes: round to nearest even, saturating at 6
    np.testing.assert_array_equal(unpack_loop(blocks), ref)


def test_encode_hand_cases():
    z = np.zeros(32)
    # amax 7: ceil -> e = 1 (7 <= 12), 7/2 = 3.5 is a tie -> 4 (even code 6) -> decodes to 8.
    w = z.copy()
    w[0] = 7.0
    b, s = encode_mxfp4(w)
    assert s.tolist() == [128] and b[0, 0] & 0xF == 6
    assert decode_mxfp4(b, s)[0] == 8.0
    b, s = encode_mxfp4(w, ties="away")
    assert b[0, 0] & 0xF == 6 and decode_mxfp4(b, s)[0] == 8.0  # 4 is both the even and the larger neighbour
    # floor: e = floor(log2 7) - 2 = 0; 7 saturates to 6.
    b, s = encode_mxfp4(w, scale_rule="floor")
    assert s.tolist() == [127] and decode_mxfp4(b, s)[0] == 6.0
    # all zero -> scale code 0, bytes 0; -0.0 -> code 8.
    b, s = encode_mxfp4(z)
    assert s.tolist() == [0] and not b.any()
    w = z.copy()
    w[1] = -0.0
    b, s = encode_mxfp4(w)
    assert b[0, 0] == 0x80
    # ties: 2.5 -> 2 (even), away -> 3; amax 6 keeps e = 0.
    w = z.copy()
    w[:3] = [6.0, 2.5, -0.25]
    b, s = encode_mxfp4(w)
    assert s.tolist() == [127] and b[0, 0] == 0x47 and b[0, 1] & 0xF == 8
    b, s = encode_mxfp4(w, ties="away")
    assert b[0, 0] == 0x57 and b[0, 1] & 0xF == 9
    # scale clamps: tiny block -> code 0; huge float64 block -> code 254 and saturation.
    w = z.copy()
    w[0] = 1e-45
    assert encode_mxfp4(w)[1].tolist() == [0]
    w[0] = 1e300
    b, s = encode_mxfp4(w)
    assert s.tolist() == [254] and b[0, 0] & 0xF == 7


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 3, 4]),
    st.sampled_from(["ceil", "floor"]),
    st.sampled_from(["even", "away"]),
    st.sampled_from([np.float32, np.float64]),
)
def test_round_trip_is_idempotent_on_decoded_values(seed, g, rule, ties, dtype):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(3, g, 16), dtype=np.uint8)
    hi = 254 if dtype == np.float64 else 252  # float32: 6 * 2^(252-127) = 1.5 * 2^127 is the largest finite
    scales = rng.integers(0, hi + 1, size=(3, g), dtype=np.uint8)
    scales[0, 0] = 0
    v = decode_mxfp4(blocks, scales, dtype=dtype)
    b2, s2 = encode_mxfp4(v, scale_rule=rule, ties=ties)
    v2 = decode_mxfp4(b2, s2, dtype=dtype)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(np.signbit(v2), np.signbit(v))


@given(st.integers(0, 2**32 - 1), st.sampled_from(["ceil", "floor"]))
def test_blocks_with_max_4_or_6_reencode_to_identical_bytes(seed, rule):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, size=(5, 64)).astype(np.uint8)
    codes[:, 0] = rng.choice([6, 7, 14, 15], size=5)  # |value| 4 or 6: the block max
    codes[:, 32] = rng.choice([6, 7, 14, 15], size=5)  # every other value is <= 6, so the max is 4 or 6
    blocks = pack(codes)
    scales = rng.integers(0, 254, size=(5, 2), dtype=np.uint8)
    v = decode_mxfp4(blocks, scales, dtype=np.float64)
    b2, s2 = encode_mxfp4(v, scale_rule=rule)
    np.testing.assert_array_equal(s2, scales)
    np.testing.assert_array_equal(b2, blocks)


@given(st.integers(0, 2**32 - 1))
def test_ceil_rule_never_clips(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 64)) * 10
    b, s = encode_mxfp4(w)
    d = decode_mxfp4(b, s, dtype=np.float64)
    step = np.repeat(np.ldexp(1.0, s.astype(np.int64) - 127), 32, axis=-1)
    # |q| <= 6, so the error is at most half the widest gap (2, between 4 and 6): 1 * 2^e.
    assert np.all(np.abs(d - w) <= step)
    amax = np.abs(w.reshape(8, 2, 32)).max(-1)
    assert np.all(amax <= 6 * step[:, ::32])


@pytest.mark.parametrize("k", [0, 1, 31, 33, 127, 129])
def test_encode_rejects_k_not_multiple_of_32(k):
    with pytest.raises(ArgumentError, match="^w"):
        encode_mxfp4(np.ones((2, k)))


def test_encode_errors_name_the_argument():
    w = np.ones((2, 32))
    w[1, 3] = np.nan
    with pytest.raises(ArgumentError, match="^w.*finite"):
        encode_mxfp4(w)
    with pytest.raises(ArgumentError, match="^w.*finite"):
        encode_mxfp4(np.full(32, np.inf))
    with pytest.raises(ArgumentError, match="^w"):
        encode_mxfp4(np.float32(1.0))
    with pytest.raises(ArgumentError, match="^scale_rule"):
        encode_mxfp4(np.ones(32), scale_rule="round")
    with pytest.raises(ArgumentError, match="^ties"):
        encode_mxfp4(np.ones(32), ties="odd")
    for k in (32, 128):
        b, s = encode_mxfp4(np.ones((1, k)))
        assert b.shape == (1, k // 32, 16)


# ---------------------------------------------------------------- linear


@given(st.integers(0, 2**32 - 1), st.sampled_from([32, 128]), st.sampled_from([1, 7, 33]))
def test_mxfp4_linear_equals_exact_dense_product(seed, n_in, n_out):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n_out, n_in // 32, 16), dtype=np.uint8)
    scales = rng.integers(124, 131, size=(n_out, n_in // 32), dtype=np.uint8)
    x = rng.integers(-8, 9, size=(2, 3, n_in)).astype(np.float64)
    bias = rng.integers(-4, 5, size=n_out).astype(np.float64)
    # Dense weight by the element loop; every product and sum is a small dyadic number, so exact.
    codes = unpack_loop(blocks)
    wd = np.ldexp(ML_TABLE[codes], np.repeat(scales.astype(np.int64) - 127, 32, axis=-1))
    want = np.zeros((2, 3, n_out))
    for i in np.ndindex(2, 3):
        for o in range(n_out):
            want[i + (o,)] = math.fsum(x[i] * wd[o]) + bias[o]
    got = mxfp4_linear(x, blocks, scales, bias)
    assert got.dtype == np.float64 and got.shape == (2, 3, n_out)
    np.testing.assert_array_equal(got, want)
    got32 = mxfp4_linear(x.astype(np.float32), blocks, scales)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32, (want - bias).astype(np.float32))


def test_mxfp4_linear_errors():
    b = np.zeros((4, 2, 16), np.uint8)
    s = np.zeros((4, 2), np.uint8)
    with pytest.raises(ArgumentError, match="^blocks"):
        mxfp4_linear(np.ones(63), b, s)
    with pytest.raises(ArgumentError, match="^blocks"):
        mxfp4_linear(np.ones(64), b[None], s[None])
    with pytest.raises(ArgumentError, match="^bias"):
        mxfp4_linear(np.ones(64), b, s, np.ones(5))
    with pytest.raises(ArgumentError, match="^scales"):
        mxfp4_linear(np.ones(64), b, s[:3])
    with pytest.raises(ArgumentError, match="^x"):
        mxfp4_linear(np.float64(1.0), b, s)


# ------------------------------------------- found by mutation testing (spec/mutation.md)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, BF16])
@pytest.mark.parametrize("order", ["low_first", "high_first"])
def test_every_byte_decodes_with_a_freshly_built_table(dtype, order):
    # decode_mxfp4 builds its byte -> (element, element) table once per process and keeps it; a test
    # that only ever sees the kept table cannot tell whether building it is right, so empty it first
    from refimpl.ops import mxfp4

    mxfp4._PAIRS.clear()
    blocks = np.arange(256, dtype=np.uint8).reshape(16, 16)[:, None, :]  # [16 rows, G=1, 16 bytes]
    scales = np.full((16, 1), 128, np.uint8)  # 2^1
    got = decode_mxfp4(blocks, scales, dtype=dtype, nibble_order=order)
    codes = unpack_loop(blocks)  # element order, low nibble first
    if order == "high_first":
        codes = codes.reshape(16, 16, 2)[..., ::-1].reshape(16, 32)
    assert got.shape == (16, 32)
    np.testing.assert_array_equal(np.asarray(got, np.float64), ML_TABLE[codes] * 2.0)


def test_check_encode_mxfp4_defaults_are_valid():
    from refimpl.ops.mxfp4 import check_encode_mxfp4

    assert check_encode_mxfp4(np.ones((2, 32))) is None
    with pytest.raises(ArgumentError, match="^ties"):
        check_encode_mxfp4(np.ones((2, 32)), ties="odd")
    with pytest.raises(ArgumentError, match="^w"):
        check_encode_mxfp4(np.ones((2, 31)))


def _weight_by_hand(blocks, scales, order, bias):
    """[out, in] from ml_dtypes' E2M1 table and 2^(scale - bias), float64."""
    codes = unpack_loop(blocks)  # [out, in], low nibble first
    if order == "high_first":
        codes = codes.reshape(codes.shape[0], -1, 2)[..., ::-1].reshape(codes.shape)
    return ML_TABLE[codes] * np.exp2(np.repeat(scales.astype(np.float64) - bias, 32, axis=-1))


@pytest.mark.parametrize("order, scale_bias", [("low_first", 127), ("high_first", 127), ("low_first", 120)])
def test_mxfp4_linear_passes_nibble_order_and_scale_bias_to_the_decode(order, scale_bias):
    rng = np.random.default_rng(13)
    blocks = rng.integers(0, 256, (3, 2, 16), dtype=np.uint8)
    scales = rng.integers(120, 134, (3, 2), dtype=np.uint8)
    x = rng.standard_normal((2, 64))
    y = mxfp4_linear(x, blocks, scales, nibble_order=order, scale_bias=scale_bias)
    np.testing.assert_allclose(y, x @ _weight_by_hand(blocks, scales, order, scale_bias).T, rtol=1e-12, atol=1e-12)


def test_mxfp4_linear_float64_from_x_or_bias_and_scales_beyond_float32():
    blocks = np.full((2, 1, 16), 0x77, np.uint8)  # every element code 7: +6.0
    scales = np.array([[253], [127]], np.uint8)  # 2^126 (6 * 2^126 overflows float32) and 2^0
    w = _weight_by_hand(blocks, scales, "low_first", 127)  # [2, 32], finite in float64
    x64 = np.full(32, 2.0**-100)
    y = mxfp4_linear(x64, blocks, scales)
    assert y.dtype == np.float64 and np.isfinite(y).all()
    np.testing.assert_allclose(y, w @ x64, rtol=1e-15)
    # float32 x with a float64 bias: float64 too
    y = mxfp4_linear(x64.astype(np.float32), blocks, scales, np.array([0.0, 2.0**-40]))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, w @ x64 + [0.0, 2.0**-40], rtol=1e-15)
    # all float32: the first row overflows float32
    y32 = mxfp4_linear(x64.astype(np.float32), blocks, scales)
    assert y32.dtype == np.float32 and y32[0] == np.inf and y32[1] == np.float32(32 * 6.0 * 2.0**-100)
