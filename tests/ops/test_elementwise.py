"""Tests for refimpl.ops.elementwise (spec/elementwise.md): round_to_storage, add, scale.

Added after mutation testing (spec/mutation.md) found no test in tests/ops reaching these ops.
Expected values are worked out by hand from the rounding rules (IEEE round to nearest, ties to
even; bfloat16 has 8 significant bits, float32 24) or from NumPy scalar arithmetic in the dtype the
rule names, never from refimpl.
"""

import ml_dtypes
import numpy as np
import pytest

from refimpl import ArgumentError
from refimpl.ops.elementwise import add, check_add, check_round_to_storage, check_scale, round_to_storage, scale

BF16 = np.dtype(ml_dtypes.bfloat16)


# ---------------------------------------------------------------- round_to_storage


def test_round_to_storage_float64_is_exact():
    x = np.array([1.0 + 2.0**-40, -3.5e300, 5e-320])
    y = round_to_storage(x, "float64")
    assert y.dtype == np.float64 and y.tolist() == x.tolist()


def test_round_to_storage_float32_nearest_ties_to_even_and_overflow():
    # 1 + 2^-24 is halfway between 1 and 1 + 2^-23: ties to even gives 1; 1 + 3*2^-24 -> 1 + 2^-22
    x = np.array([1.0 + 2.0**-24, 1.0 + 3 * 2.0**-24, 4e38, -4e38])
    y = round_to_storage(x, "float32")
    assert y.dtype == np.float32
    assert y.tolist() == [1.0, 1.0 + 2.0**-22, np.inf, -np.inf]


def test_round_to_storage_bfloat16_held_in_float32():
    # spacing at 1 is 2^-7: 1 + 2^-8 ties to even (1), 1 + 3*2^-8 ties to even (1 + 2^-6);
    # 3.4e38 is above bfloat16's largest finite (2 - 2^-7) 2^127 plus half a step: inf
    x = np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-8 + 2.0**-12, 3.4e38], np.float32)
    y = round_to_storage(x, "bfloat16")
    assert y.dtype == np.float32
    assert y.tolist() == [1.0, 1.0 + 2.0**-6, 1.0 + 2.0**-7, np.inf]


def test_round_to_storage_bfloat16_from_float64_rounds_through_float32():
    # 1 + 2^-8 + 2^-30: nearest bfloat16 is 1 + 2^-7 (above the tie), but float32 first drops 2^-30
    # (spacing 2^-23) and the tie then goes to even: 1.0 (the double rounding the spec states)
    y = round_to_storage(np.array([1.0 + 2.0**-8 + 2.0**-30]), "bfloat16")
    assert y.dtype == np.float32 and y.tolist() == [1.0]


def test_round_to_storage_bad_arguments():
    with pytest.raises(ArgumentError, match="^dtype"):
        round_to_storage(np.ones(2), "float16")
    with pytest.raises(ArgumentError, match="^x"):
        round_to_storage("a", "float32")
    assert check_round_to_storage(np.ones(2), "bfloat16") is None
    with pytest.raises(ArgumentError, match="^dtype"):
        check_round_to_storage(np.ones(2), "half")


# ---------------------------------------------------------------- add


def test_add_float32_rounds_once_in_float32():
    x = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    y = np.array([2.0**-24, 2.0**-22], np.float32)  # a bias row broadcast over the rows
    z = add(x, y)
    assert z.dtype == np.float32 and z.shape == (2, 2)
    # 1 + 2^-24 ties to 1; 2 + 2^-22 is exact (spacing 2^-22 at 2); 3 + 2^-24 is a quarter step: 3;
    # -1 + 2^-22 exact
    assert z.tolist() == [[1.0, 2.0 + 2.0**-22], [3.0, -1.0 + 2.0**-22]]


def test_add_float64_in_either_operand_gives_float64():
    x32 = np.array([1.0, 2.0], np.float32)
    y64 = np.array([2.0**-30, 0.5])
    for z in (add(x32, y64), add(x32.astype(np.float64), y64.astype(np.float32))):
        assert z.dtype == np.float64
    assert add(x32, y64).tolist() == [1.0 + 2.0**-30, 2.5]
    assert add(x32.astype(BF16), x32.astype(BF16)).dtype == np.float32


def test_add_overflow_is_inf():
    z = add(np.array([3e38], np.float32), np.array([3e38], np.float32))
    assert z.tolist() == [np.inf]


def test_add_bad_arguments():
    with pytest.raises(ArgumentError, match=r"^y: expected a shape broadcasting to \(3,\)"):
        add(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ArgumentError, match="^y"):
        add(np.ones(3), np.ones(2))
    with pytest.raises(ArgumentError, match="^y"):
        check_add(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ArgumentError, match="^x"):
        add("x", np.ones(2))
    assert check_add(np.ones((2, 3)), np.ones(3)) is None
    assert check_add(np.ones((2, 3)), np.ones((1, 3))) is None


# ---------------------------------------------------------------- scale


def test_scale_rounds_the_factor_to_the_compute_dtype_first():
    # f = 1 + 2^-24 + 2^-30 is above float32's tie at 1 + 2^-24: float32(f) = 1 + 2^-23. Then
    # 3 (1 + 2^-23) = 3 + 1.5 ulp (ulp 2^-22 at 3), a tie, to even: 3 + 2^-21. The float64 product
    # 3 f = 3 + 0.75 ulp + a little would round to 3 + 2^-22 instead.
    f = 1.0 + 2.0**-24 + 2.0**-30
    x = np.array([3.0, -3.0], np.float32)
    z = scale(x, f)
    assert z.dtype == np.float32
    assert z.tolist() == [3.0 + 2.0**-21, -(3.0 + 2.0**-21)]
    # float64 x: the factor stays float64 (3 f is exact there)
    z = scale(x.astype(np.float64), f)
    assert z.dtype == np.float64 and z.tolist() == [3 * f, -3 * f]


def test_scale_keeps_masked_scores_and_bf16_computes_in_float32():
    z = scale(np.array([-np.inf, 2.0], BF16), 0.125)
    assert z.dtype == np.float32 and z.tolist() == [-np.inf, 0.25]


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), "2", True, None])
def test_scale_bad_factor(factor):
    with pytest.raises(ArgumentError, match="^factor"):
        scale(np.ones(2), factor)
    with pytest.raises(ArgumentError, match="^factor"):
        check_scale(np.ones(2), factor)


def test_scale_bad_x():
    with pytest.raises(ArgumentError, match="^x"):
        scale("x", 2.0)
    assert check_scale(np.ones(2), 2) is None
