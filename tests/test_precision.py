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
from refimpl.precision import MODES, bfloat16, check_mode, compute_dtype, round_bf16, storage_dtype, to_mode


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


def test_to_mode_and_storage_dtype():
    x = np.array([1.0 + 2.0**-30, 1.0 + 2.0**-8, -2.5e-40, 1e300])
    r64 = to_mode(x, "float64")
    assert r64.dtype == np.float64 and r64.tolist() == x.tolist()
    r32 = to_mode(x, "float32")
    assert r32.dtype == np.float32
    # struct 'f' packing is an independent float64 -> float32 round-to-nearest-even
    assert r32[:3].tolist() == [struct.unpack("<f", struct.pack("<f", v))[0] for v in x[:3].tolist()]
    assert r32[3] == np.inf
    rb = to_mode(x, "bfloat16")
    assert rb.dtype == np.float32
    assert rb[:2].tolist() == [1.0, 1.0]
    assert storage_dtype("float64") == np.float64
    assert storage_dtype("float32") == np.float32
    assert storage_dtype("bfloat16") == bfloat16 == np.dtype(ml_dtypes.bfloat16)
    assert MODES == ("float64", "float32", "bfloat16")


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
def test_bad_mode(bad):
    with pytest.raises(ArgumentError, match="^dtype"):
        check_mode(bad)
    with pytest.raises(ArgumentError, match="^dtype"):
        storage_dtype(bad)
    with pytest.raises(ArgumentError, match="^dtype"):
        to_mode(np.zeros(1), bad)
