"""Tests for refimpl.ops.rope: frequency rules, cos/sin tables, rotation."""

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import ArgumentError
from refimpl.ops.rope import (
    apply_rope,
    inv_freq_default,
    inv_freq_linear,
    inv_freq_llama3,
    inv_freq_yarn,
    rope_cos_sin,
    rope_frequencies,
    yarn_correction_range,
)

SIZES = (1, 31, 32, 33, 127, 128, 129)
head_dims = st.integers(1, 128).map(lambda k: 2 * k)  # even 2 .. 256
bases = st.sampled_from([10000.0, 150000.0, 500000.0, 100000.0, 2.0, 1e6])

GPT_OSS = dict(base=150000.0, factor=32.0, beta_fast=32.0, beta_slow=1.0, original_max_position_embeddings=4096)


def rel_close(a, b, rtol):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=0)


# ---------------------------------------------------------------- independent formulations (math module, loops)


def math_default(d, base):
    return [1.0 / math.pow(base, (2 * j) / d) for j in range(d // 2)]


def math_llama3(d, base, factor, lff, hff, l0):
    out = []
    for inv in math_default(d, base):
        wl = 2 * math.pi / inv
        if wl < l0 / hff:
            out.append(inv)
        elif wl > l0 / lff:
            out.append(inv / factor)
        else:
            s = (l0 / wl - lff) / (hff - lff)
            out.append((1 - s) * inv / factor + s * inv)
    return out


def math_yarn(d, base, factor, beta_fast, beta_slow, l0, truncate):
    half = d / 2
    lo = half * math.log(l0 / (beta_fast * 2 * math.pi)) / math.log(base)
    hi = half * math.log(l0 / (beta_slow * 2 * math.pi)) / math.log(base)
    if truncate:
        lo, hi = max(math.floor(lo), 0), min(math.ceil(hi), d - 1)
    out = []
    for j in range(d // 2):
        freq = math.pow(base, 2 * j / d)
        ramp = min(max((j - lo) / (hi - lo), 0.0), 1.0)
        out.append((1 / freq) * (1 - ramp) + (1 / (factor * freq)) * ramp)
    return out


def rotate_matrix_loop(x, cos, sin, pairs):
    """x [T, H, D]; applies each 2x2 rotation [[c, -s], [s, c]] to the pair (a, b) with a loop."""
    out = np.array(x, dtype=np.float64, copy=True)
    for t in range(x.shape[0]):
        for h in range(x.shape[1]):
            for j, (a, b) in enumerate(pairs):
                c, s = cos[t, j], sin[t, j]
                xa, xb = x[t, h, a], x[t, h, b]
                out[t, h, a] = c * xa - s * xb
                out[t, h, b] = s * xa + c * xb
    return out


def half_pairs(r):
    return [(j, j + r // 2) for j in range(r // 2)]


def interleaved_pairs(r):
    return [(2 * j, 2 * j + 1) for j in range(r // 2)]


def rng_x(seed, shape, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- frequency rules


@given(d=head_dims, base=bases)
def test_default_matches_math(d, base):
    inv = inv_freq_default(d, base=base)
    assert inv.shape == (d // 2,) and inv.dtype == np.float64
    assert inv[0] == 1.0
    # float64 pow vs math.pow, then a division: a few ulp.
    rel_close(inv, math_default(d, base), 1e-14)


@given(d=head_dims, base=bases, factor=st.floats(0.05, 64.0))
def test_linear_is_default_over_factor(d, base, factor):
    rel_close(inv_freq_linear(d, base=base, factor=factor), [v / factor for v in math_default(d, base)], 1e-14)


@given(d=head_dims, base=bases)
def test_factor_one_equals_default(d, base):
    ref = inv_freq_default(d, base=base)
    np.testing.assert_array_equal(inv_freq_linear(d, base=base, factor=1.0), ref)
    # llama3 with factor 1: (1 - s) inv + s inv is inv up to rounding of the blend (2 ulp).
    rel_close(
        inv_freq_llama3(d, base=base, factor=1.0, low_freq_factor=1.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192),
        ref, 4e-16 * 2,
    )
    inv, scale = inv_freq_yarn(d, base=base, factor=1.0, original_max_position_embeddings=4096)
    np.testing.assert_array_equal(inv, ref)
    assert scale == 1.0
    inv, scale = inv_freq_yarn(d, base=base, factor=1.0, truncate=True)
    np.testing.assert_array_equal(inv, ref)
    assert scale == 1.0


def test_llama31_config_matches_loop():
    # LLaMA 3.1 8B: head_dim 128, rope_theta 500000, factor 8, 1, 4, 8192.
    args = dict(base=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=8192)
    inv = inv_freq_llama3(128, **args)
    ref = math_llama3(128, 500000.0, 8.0, 1.0, 4.0, 8192)
    rel_close(inv, ref, 1e-14)  # same branches; float64 reformulation
    default = inv_freq_default(128, base=500000.0)
    wl = 2 * np.pi / default
    kept, scaled = wl < 2048, wl > 8192
    np.testing.assert_array_equal(inv[kept], default[kept])
    rel_close(inv[scaled], default[scaled] / 8, 1e-15)
    medium = ~kept & ~scaled
    assert kept.sum() > 0 and scaled.sum() > 0 and medium.sum() > 0
    ratio = inv[medium] / default[medium]
    assert np.all((ratio > 1 / 8) & (ratio < 1))


@given(
    d=head_dims, base=bases, factor=st.floats(1.0, 64.0), lff=st.floats(0.5, 4.0),
    gap=st.floats(0.1, 8.0), l0=st.integers(16, 1 << 17),
)
def test_llama3_matches_loop(d, base, factor, lff, gap, l0):
    got = inv_freq_llama3(d, base=base, factor=factor, low_freq_factor=lff, high_freq_factor=lff + gap,
                          original_max_position_embeddings=l0)
    # Same branch tests on the same float64 wavelengths; the blend differs only in rounding.
    rel_close(got, math_llama3(d, base, factor, lff, lff + gap, l0), 1e-13)


def test_llama3_hand_worked_boundaries():
    # head_dim 2: inv_freq = [1], wavelength 2 pi = 6.283185307...
    wl = 2 * math.pi
    common = dict(base=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0)
    # L0 = 4: low_freq_wavelen 4 < 2 pi -> divided by factor.
    assert inv_freq_llama3(2, original_max_position_embeddings=4, **common)[0] == 1.0 / 8
    # L0 = 32: high_freq_wavelen 8 > 2 pi -> unchanged.
    assert inv_freq_llama3(2, original_max_position_embeddings=32, **common)[0] == 1.0
    # L0 = 8: high 2 <= 2 pi <= low 8 -> s = (8 / 2pi - 1) / 3 = 0.0910798..., blend.
    s = (8 / wl - 1) / 3
    got = inv_freq_llama3(2, original_max_position_embeddings=8, **common)[0]
    assert got == pytest.approx((1 - s) / 8 + s, rel=1e-15)
    assert got == pytest.approx(0.2046949, abs=1e-7)  # hand value: 0.125 + 0.875 * 0.0910798
    # Continuity: approaching each boundary from the medium side gives the outer branch's value.
    # wavelength 2 pi equals low_freq_wavelen when low_freq_factor = L0 / (2 pi).
    l0 = 64
    at_low = inv_freq_llama3(2, base=10000.0, factor=8.0, low_freq_factor=l0 / wl * (1 + 1e-12),
                             high_freq_factor=100.0, original_max_position_embeddings=l0)[0]
    assert at_low == pytest.approx(1 / 8, rel=1e-9)
    at_high = inv_freq_llama3(2, base=10000.0, factor=8.0, low_freq_factor=1.0,
                              high_freq_factor=l0 / wl * (1 - 1e-12), original_max_position_embeddings=l0)[0]
    assert at_high == pytest.approx(1.0, rel=1e-9)


def test_yarn_gpt_oss_published_numbers():
    lo, hi = yarn_correction_range(64, base=150000.0, beta_fast=32.0, beta_slow=1.0,
                                   original_max_position_embeddings=4096)
    # Independent: math module.
    assert lo == pytest.approx(32 * math.log(4096 / (32 * 2 * math.pi)) / math.log(150000), rel=1e-15)
    assert hi == pytest.approx(32 * math.log(4096 / (2 * math.pi)) / math.log(150000), rel=1e-15)
    # Published (reference/released-models.md), 7-8 significant digits.
    assert lo == pytest.approx(8.0927791, abs=5e-8)
    assert hi == pytest.approx(17.3980245, abs=5e-8)
    inv, conc = inv_freq_yarn(64, **GPT_OSS)
    assert inv.shape == (32,) and inv.dtype == np.float64
    assert inv[0] == 1.0
    assert inv[31] == pytest.approx(1 / (32 * 150000 ** (62 / 64)), rel=1e-14)
    assert inv[31] == pytest.approx(3.023511e-7, abs=5e-14)
    assert conc == pytest.approx(0.1 * math.log(32) + 1, rel=1e-15)
    assert conc == pytest.approx(1.3465736, abs=5e-8)
    assert conc**2 == pytest.approx(1.8132604, abs=5e-8)
    rel_close(inv, math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 4096, False), 1e-14)
    # Side check: pairs 0..8 keep 1/freq (extrapolation), pairs 18..31 are divided by the factor.
    default = inv_freq_default(64, base=150000.0)
    np.testing.assert_array_equal(inv[:9], default[:9])
    rel_close(inv[18:], default[18:] / 32, 1e-15)


@given(d=st.integers(8, 128).map(lambda k: 2 * k), factor=st.floats(1.5, 64.0), truncate=st.booleans(),
       base=st.sampled_from([10000.0, 150000.0, 500000.0]), l0=st.sampled_from([2048, 4096, 8192, 32768]))
def test_yarn_matches_loop(d, factor, truncate, base, l0):
    try:
        got, scale = inv_freq_yarn(d, base=base, factor=factor, original_max_position_embeddings=l0, truncate=truncate)
    except ArgumentError as exc:
        # Only the gpt-oss range check may refuse, and only without truncation.
        assert not truncate and str(exc).startswith("head_dim")
        return
    rel_close(got, math_yarn(d, base, factor, 32.0, 1.0, l0, truncate), 1e-13)
    assert scale == pytest.approx(0.1 * math.log(factor) + 1, rel=1e-15)


def test_yarn_truncate_differs_for_gpt_oss_dims():
    assert yarn_correction_range(64, base=150000.0, truncate=True) == (8.0, 18.0)
    a, _ = inv_freq_yarn(64, **GPT_OSS, truncate=False)
    b, _ = inv_freq_yarn(64, **GPT_OSS, truncate=True)
    differ = np.flatnonzero(~np.isclose(a, b, rtol=1e-12, atol=0))
    # Ramps (j - 8.09)/9.31 vs (j - 8)/10 differ on j = 9..17 only (j <= 8 both 0 / 0.0; j >= 18 both 1).
    assert list(differ) == list(range(9, 18))
    rel_close(b, math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 4096, True), 1e-14)


def test_yarn_truncate_degenerate_range():
    # L0 = 2: corr(beta) < 0 for both betas, so HF's truncation gives low = high = 0 and
    # then high = 0.001: pair 0 keeps its frequency, every other pair is divided by the factor.
    inv, _ = inv_freq_yarn(8, base=10000.0, factor=4.0, original_max_position_embeddings=2, truncate=True)
    ref = math_default(8, 10000.0)
    rel_close(inv, [ref[0]] + [v / 4 for v in ref[1:]], 1e-15)


def test_yarn_attention_scaling_variants():
    _, s = inv_freq_yarn(64, **GPT_OSS, attention_factor=0.7)
    assert s == 0.7
    # DeepSeek-style mscale 0.707 / mscale_all_dim 0.707 -> ratio 1.
    _, s = inv_freq_yarn(64, base=10000.0, factor=40.0, mscale=0.707, mscale_all_dim=0.707, truncate=True)
    assert s == pytest.approx(1.0, rel=1e-15)
    _, s = inv_freq_yarn(64, base=10000.0, factor=40.0, mscale=1.0, mscale_all_dim=0.5, truncate=True)
    expect = (0.1 * math.log(40) + 1) / (0.05 * math.log(40) + 1)
    assert s == pytest.approx(expect, rel=1e-15)
    # Only one of the two given -> plain get_mscale.
    _, s = inv_freq_yarn(64, base=10000.0, factor=40.0, mscale=1.0, truncate=True)
    assert s == pytest.approx(0.1 * math.log(40) + 1, rel=1e-15)


def test_yarn_gpt_oss_range_check():
    # head_dim 4 with the gpt-oss constants: high = 2 ln(4096/2pi)/ln(150000) = 1.087 > head_dim/2 - 1 = 1.
    with pytest.raises(ArgumentError, match=r"^head_dim.*original_max_position_embeddings"):
        inv_freq_yarn(4, **GPT_OSS)
    inv_freq_yarn(8, **GPT_OSS)  # smallest tiny-config head_dim that passes
    inv_freq_yarn(16, **GPT_OSS)
    # HF truncation mode clamps instead of refusing.
    inv, _ = inv_freq_yarn(4, **GPT_OSS, truncate=True)
    rel_close(inv, math_yarn(4, 150000.0, 32.0, 32.0, 1.0, 4096, True), 1e-14)


# ---------------------------------------------------------------- dispatcher


def test_rope_frequencies_dispatch():
    d, b = 64, 10000.0
    inv, s = rope_frequencies(d, base=b)
    rel_close(inv, math_default(d, b), 1e-14)
    assert s == 1.0
    inv, s = rope_frequencies(d, base=b, rope_scaling={"rope_type": "default"})
    rel_close(inv, math_default(d, b), 1e-14)
    inv, s = rope_frequencies(d, base=b, rope_scaling={"type": "linear", "factor": 4.0})  # legacy key
    rel_close(inv, [v / 4 for v in math_default(d, b)], 1e-14)
    assert s == 1.0
    l3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}
    inv, s = rope_frequencies(128, base=500000.0, rope_scaling=l3)
    rel_close(inv, math_llama3(128, 500000.0, 8.0, 1.0, 4.0, 8192), 1e-14)
    assert s == 1.0
    # gpt-oss HF config.json rope_scaling.
    oss = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
           "original_max_position_embeddings": 4096, "truncate": False}
    inv, s = rope_frequencies(64, base=150000.0, rope_scaling=oss)
    rel_close(inv, math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 4096, False), 1e-14)
    assert s == pytest.approx(1.3465736, abs=5e-8)
    # Without "truncate", HF truncates.
    no_trunc_key = {k: v for k, v in oss.items() if k != "truncate"}
    inv, _ = rope_frequencies(64, base=150000.0, rope_scaling=no_trunc_key)
    rel_close(inv, math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 4096, True), 1e-14)
    # Without original_max_position_embeddings, HF falls back to max_position_embeddings (the pitfall).
    fallback = {"rope_type": "yarn", "factor": 32.0, "truncate": False}
    inv, _ = rope_frequencies(64, base=150000.0, rope_scaling=fallback, max_position_embeddings=131072)
    ref_wrong = math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 131072, False)
    rel_close(inv, ref_wrong, 1e-14)
    assert not np.allclose(inv, math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 4096, False), rtol=1e-6)


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "dynamic", "factor": 2.0},
        {"rope_type": "longrope", "factor": 2.0},
        {"rope_type": "yarnn", "factor": 2.0},
        {"factor": 2.0},
        {"rope_type": "linear"},
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
        {"rope_type": "yarn", "factor": 32.0},
        {"rope_type": "linear", "factor": 0.0},
        {"rope_type": "yarn", "factor": -2.0, "original_max_position_embeddings": 4096},
        "yarn",
        [("rope_type", "default")],
    ],
)
def test_rope_frequencies_bad_scaling(scaling):
    with pytest.raises(ArgumentError, match="^rope_scaling"):
        rope_frequencies(64, base=150000.0, rope_scaling=scaling)


# ---------------------------------------------------------------- cos/sin tables


def test_cos_sin_matches_math_and_dtype():
    inv, conc = inv_freq_yarn(64, **GPT_OSS)
    pos = np.array([0, 1, 2, 4095, 4096, 131071, 1 << 20, (1 << 24) + 1, -5])  # 2^24 + 1: not a float32
    cos, sin = rope_cos_sin(inv, pos, attention_scaling=conc)
    assert cos.shape == sin.shape == (9, 32) and cos.dtype == sin.dtype == np.float64
    for t, p in enumerate(pos):
        for j in range(32):
            a = float(p) * float(inv[j])  # float64 product, as the op states
            # math.cos vs np.cos on the same double angle: both within 1 ulp of the true value.
            assert cos[t, j] == pytest.approx(math.cos(a) * conc, rel=1e-14, abs=1e-15)
            assert sin[t, j] == pytest.approx(math.sin(a) * conc, rel=1e-14, abs=1e-15)
    # Position 0: cos = scaling, sin = 0 exactly.
    assert np.all(cos[0] == conc) and np.all(sin[0] == 0.0)
    # float32 inv_freq -> float32 tables.
    c32, _ = rope_cos_sin(inv.astype(np.float32), pos)
    assert c32.dtype == np.float32


def test_cos_sin_float32_angles_lose_accuracy():
    inv = inv_freq_default(64, base=150000.0)
    pos = np.arange(131000, 131072)
    c64, _ = rope_cos_sin(inv, pos)
    c32, _ = rope_cos_sin(inv, pos, angle_dtype=np.float32)
    err = np.abs(c64 - c32).max()
    # float32 angles at position ~1.3e5 are off by up to ~1e-2 rad: far above float32 cos rounding (6e-8).
    assert 1e-5 < err < 5e-2


@pytest.mark.parametrize("t", SIZES)
def test_cos_sin_offset_is_a_slice(t):
    inv, conc = inv_freq_yarn(64, **GPT_OSS)
    full_c, full_s = rope_cos_sin(inv, np.arange(300), attention_scaling=conc)
    for off in (0, 1, 100, 300 - t):
        c, s = rope_cos_sin(inv, np.arange(off, off + t), attention_scaling=conc)
        np.testing.assert_array_equal(c, full_c[off:off + t])  # same double arithmetic element by element
        np.testing.assert_array_equal(s, full_s[off:off + t])


def test_cos_sin_batched_positions():
    inv = inv_freq_default(32)
    pos = np.array([[0, 1, 2, 3], [7, 8, 9, 10], [100, 101, 102, 103]])
    c, s = rope_cos_sin(inv, pos, attention_scaling=2.0)
    assert c.shape == (3, 4, 16)
    for bi in range(3):
        cb, sb = rope_cos_sin(inv, pos[bi], attention_scaling=2.0)
        np.testing.assert_array_equal(c[bi], cb)
        np.testing.assert_array_equal(s[bi], sb)
    c1, _ = rope_cos_sin(inv, pos)
    rel_close(c, 2.0 * c1, 1e-15)  # multiplication by 2 is exact


# ---------------------------------------------------------------- rotation


@pytest.mark.parametrize("pairing, pairs", [("half", half_pairs), ("interleaved", interleaved_pairs)])
@pytest.mark.parametrize("d", [2, 8, 64])
def test_apply_matches_rotation_matrix_loop(pairing, pairs, d):
    x = rng_x(d, (5, 3, d))
    cos, sin = rope_cos_sin(inv_freq_default(d), np.arange(3, 8))
    got = apply_rope(x, cos, sin, pairing=pairing)
    assert got.dtype == np.float64 and got.shape == x.shape
    # Same products and one add per element: equal up to 1 ulp of the terms.
    np.testing.assert_allclose(got, rotate_matrix_loop(x, cos, sin, pairs(d)), rtol=1e-14, atol=1e-15)


def test_apply_matches_rotate_half_and_complex_forms():
    d = 64
    x = rng_x(1, (2, 33, 4, d))
    inv, conc = inv_freq_yarn(d, **GPT_OSS)
    cos, sin = rope_cos_sin(inv, np.arange(33), attention_scaling=conc)
    # HF form: x * [cos, cos] + rotate_half(x) * [sin, sin], rotate_half(x) = [-x2, x1].
    cc = np.concatenate([cos, cos], -1)[:, None, :]
    ss = np.concatenate([sin, sin], -1)[:, None, :]
    rh = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
    np.testing.assert_allclose(apply_rope(x, cos, sin), x * cc + rh * ss, rtol=1e-13, atol=1e-14)
    # Meta LLaMA form: adjacent pairs as complex numbers times conc * e^{i angle}.
    z = x[..., 0::2] + 1j * x[..., 1::2]
    w = (cos + 1j * sin)[:, None, :]
    zr = z * w
    ref = np.stack([zr.real, zr.imag], -1).reshape(x.shape)
    np.testing.assert_allclose(apply_rope(x, cos, sin, pairing="interleaved"), ref, rtol=1e-13, atol=1e-14)


@given(d=head_dims, t=st.sampled_from(SIZES), pairing=st.sampled_from(["half", "interleaved"]), seed=st.integers(0, 99))
def test_apply_keeps_norms(d, t, pairing, seed):
    x = rng_x(seed, (t, 2, d))
    pos = np.random.default_rng(seed).integers(0, 1 << 17, size=t)
    cos, sin = rope_cos_sin(inv_freq_default(d, base=10000.0), pos)
    y = apply_rope(x, cos, sin, pairing=pairing)
    # Orthogonal 2x2 rotations in float64 keep the norm to ~D ulp.
    rel_close(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), 1e-13)
    # Pair by pair, too.
    a, b = zip(*(half_pairs(d) if pairing == "half" else interleaved_pairs(d)))
    a, b = list(a), list(b)
    np.testing.assert_allclose(y[..., a] ** 2 + y[..., b] ** 2, x[..., a] ** 2 + x[..., b] ** 2, rtol=1e-12, atol=1e-13)


@given(d=head_dims, i=st.integers(0, 5000), j=st.integers(0, 5000), shift=st.integers(-4000, 60000),
       pairing=st.sampled_from(["half", "interleaved"]), seed=st.integers(0, 99))
def test_scores_depend_only_on_distance(d, i, j, shift, pairing, seed):
    i2, j2 = i + shift, j + shift
    q = rng_x(seed, (1, 1, d))
    k = rng_x(seed + 1000, (1, 1, d))
    inv = inv_freq_default(d, base=150000.0)

    def rot(v, p):
        c, s = rope_cos_sin(inv, np.array([p]))
        return apply_rope(v, c, s, pairing=pairing)[0, 0]

    s1 = rot(q, i) @ rot(k, j)
    s2 = rot(q, i2) @ rot(k, j2)
    # Angles up to 6.5e4 rad carry ~1e-11 absolute error in float64; scores are O(|q||k|).
    scale = np.linalg.norm(q) * np.linalg.norm(k)
    assert abs(s1 - s2) <= 1e-9 * scale


@pytest.mark.parametrize("t", SIZES)
def test_position_zero_is_identity(t):
    x = rng_x(t, (t, 3, 64))
    inv, _ = inv_freq_yarn(64, **GPT_OSS)
    cos, sin = rope_cos_sin(inv, np.zeros(t, dtype=np.int64))
    for pairing in ("half", "interleaved"):
        np.testing.assert_array_equal(apply_rope(x, cos, sin, pairing=pairing), x)  # x*1 - y*0 is exact


@given(d=head_dims, t=st.sampled_from(SIZES), seed=st.integers(0, 99))
def test_half_and_interleaved_related_by_permutation(d, t, seed):
    h = d // 2
    perm = np.empty(d, dtype=np.int64)
    perm[0::2] = np.arange(h)  # interleaved slot 2j holds half-layout dim j
    perm[1::2] = np.arange(h) + h  # interleaved slot 2j+1 holds half-layout dim j + D/2
    x = rng_x(seed, (t, 2, d))
    cos, sin = rope_cos_sin(inv_freq_default(d), np.arange(t) + seed)
    a = apply_rope(x[..., perm], cos, sin, pairing="interleaved")
    b = apply_rope(x, cos, sin, pairing="half")[..., perm]
    np.testing.assert_allclose(a, b, rtol=1e-15, atol=0)  # the same products per element
    # And the two pairings really differ (catches a pairing knob that is ignored).
    if d >= 4 and t > 1:
        assert not np.allclose(apply_rope(x, cos, sin, pairing="interleaved"), apply_rope(x, cos, sin))


def test_partial_rotary():
    d, r = 64, 16
    x = rng_x(3, (33, 2, d))
    cos, sin = rope_cos_sin(inv_freq_default(r), np.arange(33))
    for pairing, pairs in (("half", half_pairs), ("interleaved", interleaved_pairs)):
        y = apply_rope(x, cos, sin, pairing=pairing, rotary_dim=r)
        np.testing.assert_array_equal(y[..., r:], x[..., r:])
        np.testing.assert_allclose(y[..., :r], rotate_matrix_loop(x[..., :r], cos, sin, pairs(r)), rtol=1e-14, atol=1e-15)


def test_batch_broadcast_and_dtypes():
    x = rng_x(4, (2, 5, 3, 8), np.float32)
    pos = np.array([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    inv = inv_freq_default(8)
    c, s = rope_cos_sin(inv.astype(np.float32), pos)
    y = apply_rope(x, c, s)
    assert y.dtype == np.float32 and y.shape == x.shape
    for bi in range(2):
        np.testing.assert_array_equal(y[bi], apply_rope(x[bi], c[bi], s[bi]))
    # One table [T, D/2] broadcast over the batch axis.
    c0, s0 = rope_cos_sin(inv.astype(np.float32), pos[0])
    np.testing.assert_array_equal(apply_rope(x, c0, s0)[1], apply_rope(x[1], c0, s0))
    # bfloat16 x with float32 tables computes in float32; float64 tables make it float64.
    xb = x.astype(ml_dtypes.bfloat16)
    assert apply_rope(xb, c, s).dtype == np.float32
    c64, s64 = rope_cos_sin(inv, pos)
    assert apply_rope(x, c64, s64).dtype == np.float64
    # float32 result is the float64 result to float32 accuracy (products of O(1) values: 1e-6).
    np.testing.assert_allclose(y, apply_rope(x.astype(np.float64), c64, s64), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("d", [0, 1, 3, 63, -2, 2.0, True, "64"])
def test_bad_head_dim(d):
    for fn, kw in (
        (inv_freq_default, {}),
        (inv_freq_linear, {"base": 1e4, "factor": 2.0}),
        (inv_freq_llama3, {"base": 1e4, "factor": 2.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192}),
        (inv_freq_yarn, {"base": 1e4, "factor": 2.0}),
        (rope_frequencies, {}),
    ):
        with pytest.raises(ArgumentError, match="^head_dim"):
            fn(d, **kw)


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf"), None, "2"])
def test_bad_factor(factor):
    with pytest.raises(ArgumentError, match="^factor"):
        inv_freq_linear(64, base=1e4, factor=factor)
    with pytest.raises(ArgumentError, match="^factor"):
        inv_freq_llama3(64, base=1e4, factor=factor, low_freq_factor=1.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192)
    with pytest.raises(ArgumentError, match="^factor"):
        inv_freq_yarn(64, base=1e4, factor=factor)


def test_bad_frequency_arguments():
    with pytest.raises(ArgumentError, match="^factor"):
        inv_freq_yarn(64, base=1e4, factor=0.5)  # YaRN needs factor >= 1
    for b in (1.0, 0.5, 0.0, -10.0, float("inf"), float("nan")):
        with pytest.raises(ArgumentError, match="^base"):
            inv_freq_default(64, base=b)
    with pytest.raises(ArgumentError, match="^high_freq_factor"):
        inv_freq_llama3(64, base=1e4, factor=8.0, low_freq_factor=4.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192)
    with pytest.raises(ArgumentError, match="^low_freq_factor"):
        inv_freq_llama3(64, base=1e4, factor=8.0, low_freq_factor=0.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192)
    with pytest.raises(ArgumentError, match="^original_max_position_embeddings"):
        inv_freq_llama3(64, base=1e4, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                        original_max_position_embeddings=0)
    with pytest.raises(ArgumentError, match="^original_max_position_embeddings"):
        inv_freq_yarn(64, base=1e4, factor=8.0, original_max_position_embeddings=4096.5)
    with pytest.raises(ArgumentError, match="^beta_fast"):
        inv_freq_yarn(64, base=1e4, factor=8.0, beta_fast=1.0, beta_slow=1.0)
    with pytest.raises(ArgumentError, match="^beta_slow"):
        inv_freq_yarn(64, base=1e4, factor=8.0, beta_slow=0.0)
    with pytest.raises(ArgumentError, match="^truncate"):
        inv_freq_yarn(64, base=1e4, factor=8.0, truncate="no")
    with pytest.raises(ArgumentError, match="^attention_factor"):
        inv_freq_yarn(64, base=1e4, factor=8.0, attention_factor=-1.0)


def test_bad_cos_sin_arguments():
    inv = inv_freq_default(8)
    with pytest.raises(ArgumentError, match="^positions"):
        rope_cos_sin(inv, np.arange(4.0))
    with pytest.raises(ArgumentError, match="^positions"):
        rope_cos_sin(inv, np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(ArgumentError, match="^positions"):
        rope_cos_sin(inv, 3)
    with pytest.raises(ArgumentError, match="^inv_freq"):
        rope_cos_sin(inv[None], np.arange(4))
    with pytest.raises(ArgumentError, match="^inv_freq"):
        rope_cos_sin(np.array([1.0, np.nan]), np.arange(4))
    with pytest.raises(ArgumentError, match="^attention_scaling"):
        rope_cos_sin(inv, np.arange(4), attention_scaling=float("nan"))
    with pytest.raises(ArgumentError, match="^angle_dtype"):
        rope_cos_sin(inv, np.arange(4), angle_dtype=np.float16)
    with pytest.raises(ArgumentError, match="^angle_dtype"):
        rope_cos_sin(inv, np.arange(4), angle_dtype="bogus")


def test_bad_apply_arguments():
    x = rng_x(0, (4, 2, 8))
    cos, sin = rope_cos_sin(inv_freq_default(8), np.arange(4))
    with pytest.raises(ArgumentError, match="^x.*head_dim"):
        apply_rope(rng_x(0, (4, 2, 7)), cos[:, :3], sin[:, :3])
    with pytest.raises(ArgumentError, match="^x"):
        apply_rope(x[0], cos, sin)  # no head axis
    with pytest.raises(ArgumentError, match="^cos"):
        apply_rope(x, cos[:, :3], sin[:, :3])  # D/2 mismatch
    with pytest.raises(ArgumentError, match="^cos"):
        apply_rope(x, cos[:3], sin[:3])  # T mismatch
    with pytest.raises(ArgumentError, match="^cos"):
        apply_rope(x, np.stack([cos] * 3), np.stack([sin] * 3))  # leading dims not broadcasting to x's
    with pytest.raises(ArgumentError, match="^cos"):
        apply_rope(x, cos[0], sin[0])
    with pytest.raises(ArgumentError, match="^sin"):
        apply_rope(x, cos, sin[:3])
    for bad in ("halfsplit", "neox", None, 1):
        with pytest.raises(ArgumentError, match="^pairing"):
            apply_rope(x, cos, sin, pairing=bad)
    for r in (0, 3, 10, -2, 4.0):
        with pytest.raises(ArgumentError, match="^rotary_dim"):
            apply_rope(x, cos, sin, rotary_dim=r)


# ------------------------------------------- found by mutation testing (spec/mutation.md)


def _terms_by_hand(x, cos, sin, pairing, r):
    """(a, b) of rope_terms by loops over the docstring's rule, float64."""
    x = np.asarray(x, np.float64)
    T, H, D = x.shape
    a, b = x.copy(), np.zeros_like(x)
    for t in range(T):
        for h in range(H):
            for j in range(r // 2):
                ia, ib = (j, j + r // 2) if pairing == "half" else (2 * j, 2 * j + 1)
                c, s = float(cos[t, j]), float(sin[t, j])
                a[t, h, ia], b[t, h, ia] = x[t, h, ia] * c, -(x[t, h, ib] * s)
                a[t, h, ib], b[t, h, ib] = x[t, h, ib] * c, x[t, h, ia] * s
    return a, b


@pytest.mark.parametrize("pairing", ["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [None, 4])
def test_rope_terms_are_the_two_products(pairing, rotary_dim):
    from refimpl.ops.rope import rope_terms

    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 8))  # [T, H, D]
    r = 8 if rotary_dim is None else rotary_dim
    ang = rng.uniform(-3, 3, (3, r // 2))
    cos, sin = np.cos(ang), np.sin(ang)
    a, b = rope_terms(x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)
    ea, eb = _terms_by_hand(x, cos, sin, pairing, r)
    assert a.shape == b.shape == x.shape and a.dtype == b.dtype == np.float64
    assert np.array_equal(a, ea) and np.array_equal(b, eb)  # one product each: exact
    # float32: the same products rounded once to float32
    a32, b32 = rope_terms(x.astype(np.float32), cos.astype(np.float32), sin.astype(np.float32),
                          pairing=pairing, rotary_dim=rotary_dim)
    assert a32.dtype == np.float32
    ea32, eb32 = _terms_by_hand(x.astype(np.float32), cos.astype(np.float32), sin.astype(np.float32), pairing, r)
    assert np.array_equal(a32, ea32.astype(np.float32)) and np.array_equal(b32, eb32.astype(np.float32))


def test_rope_terms_bad_arguments():
    from refimpl.ops.rope import rope_terms

    x, c = np.ones((2, 1, 4)), np.ones((2, 2))
    with pytest.raises(ArgumentError, match="^pairing"):
        rope_terms(x, c, c, pairing="neox")
    with pytest.raises(ArgumentError, match="^rotary_dim"):
        rope_terms(x, c, c, rotary_dim=3)
    with pytest.raises(ArgumentError, match="^cos"):
        rope_terms(x, np.ones((2, 3)), np.ones((2, 3)))  # R/2 = 3 for D = 4
    with pytest.raises(ArgumentError, match="^sin"):
        rope_terms(x, c, np.ones((2, 3)))


def test_rope_frequencies_forwards_every_yarn_key():
    # beta_fast/beta_slow other than the defaults, and each attention-scaling key, through the dict
    r = {"rope_type": "yarn", "factor": 16.0, "beta_fast": 16.0, "beta_slow": 2.0,
         "original_max_position_embeddings": 2048, "truncate": True}
    inv, s = rope_frequencies(64, base=10000.0, rope_scaling=r)
    rel_close(inv, math_yarn(64, 10000.0, 16.0, 16.0, 2.0, 2048, True), 1e-13)
    assert s == pytest.approx(0.1 * math.log(16.0) + 1.0, rel=1e-15)
    # mscale / mscale_all_dim: (0.1 * 1.0 * ln 16 + 1) / (0.1 * 0.5 * ln 16 + 1)
    _, s = rope_frequencies(64, base=10000.0, rope_scaling={**r, "mscale": 1.0, "mscale_all_dim": 0.5})
    assert s == pytest.approx((0.1 * math.log(16.0) + 1) / (0.05 * math.log(16.0) + 1), rel=1e-15)
    _, s = rope_frequencies(64, base=10000.0, rope_scaling={**r, "mscale": 0.5, "mscale_all_dim": 1.0})
    assert s == pytest.approx((0.05 * math.log(16.0) + 1) / (0.1 * math.log(16.0) + 1), rel=1e-15)
    _, s = rope_frequencies(64, base=10000.0, rope_scaling={**r, "attention_factor": 0.625})
    assert s == 0.625


def test_rope_frequencies_default_base_and_explicit_default_scaling():
    inv, s = rope_frequencies(8)
    rel_close(inv, math_default(8, 10000.0), 1e-15)
    _, s = rope_frequencies(8, rope_scaling={"rope_type": "default"})
    assert s == 1.0


def test_yarn_defaults_are_the_documented_ones():
    # beta_fast 32, beta_slow 1, original_max_position_embeddings 4096, truncate False
    lo = 32 * math.log(4096 / (2 * math.pi * 32)) / math.log(150000.0)
    hi = 32 * math.log(4096 / (2 * math.pi * 1)) / math.log(150000.0)
    low, high = yarn_correction_range(64, base=150000.0)
    assert low == pytest.approx(lo, rel=1e-14) and high == pytest.approx(hi, rel=1e-14)
    inv, _ = inv_freq_yarn(64, base=150000.0, factor=32.0)
    rel_close(inv, math_yarn(64, 150000.0, 32.0, 32.0, 1.0, 4096, False), 1e-13)


def test_yarn_truncate_clamps_high_to_head_dim_minus_one_and_widens_a_point_range():
    # L0 = 10^8, d = 8: high = 4 ln(10^8 / 2 pi) / ln(10^4) = 7.2 -> ceil 8 -> clamped to d - 1 = 7
    lo = 4 * math.log(1e8 / (2 * math.pi * 32)) / math.log(1e4)
    assert yarn_correction_range(8, base=1e4, original_max_position_embeddings=10**8, truncate=True) == (
        float(max(math.floor(lo), 0)), 7.0)
    # L0 = 2: low = floor(-2.0) -> 0, high = ceil(-0.497) = 0: equal, so high = 0 + 0.001
    assert yarn_correction_range(8, base=1e4, original_max_position_embeddings=2, truncate=True) == (0.0, 0.001)
    # L0 = 4856594800: low = floor(7.38) = 7, high = min(ceil(8.89), 7) = 7: equal above 0 -> (7, 7.001)
    assert yarn_correction_range(8, base=1e4, original_max_position_embeddings=4856594800, truncate=True) == (
        7.0, 7.001)


def test_yarn_gpt_oss_range_check_accepts_low_below_one():
    # d = 8, base 150000, L0 = 1000: low = 4 ln(1000 / 64 pi) / ln(150000) = 0.54, high = 1.70 < 3
    inv, _ = inv_freq_yarn(8, base=150000.0, factor=32.0, original_max_position_embeddings=1000)
    rel_close(inv, math_yarn(8, 150000.0, 32.0, 32.0, 1.0, 1000, False), 1e-13)


@pytest.mark.parametrize("fn", ["apply_rope", "rope_terms"])
def test_rope_partial_rotary_when_heads_equal_rotary_dim(fn):
    # H == rotary_dim < D: the pass-through dimensions must still be there (shape [T, H, D])
    from refimpl.ops import rope as rope_mod

    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 8))
    ang = rng.uniform(-3, 3, (2, 2))
    out = getattr(rope_mod, fn)(x, np.cos(ang), np.sin(ang), rotary_dim=4)
    y = out if fn == "apply_rope" else out[0] + out[1]
    assert y.shape == (2, 4, 8)
    assert np.array_equal(y[..., 4:], x[..., 4:])
    ea, eb = _terms_by_hand(x, np.cos(ang), np.sin(ang), "half", 4)
    np.testing.assert_allclose(y, ea + eb, rtol=1e-15, atol=1e-15)


def test_rope_rotary_dim_equal_to_head_dim_is_accepted():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 2, 6))
    ang = rng.uniform(-3, 3, (3, 3))
    assert np.array_equal(apply_rope(x, np.cos(ang), np.sin(ang), rotary_dim=6), apply_rope(x, np.cos(ang), np.sin(ang)))
    ea, eb = _terms_by_hand(x, np.cos(ang), np.sin(ang), "half", 6)
    np.testing.assert_allclose(apply_rope(x, np.cos(ang), np.sin(ang), rotary_dim=6), ea + eb, rtol=1e-15, atol=1e-15)


def test_rope_cos_sin_float32_angles_and_scaling_checks():
    # angle_dtype float32: the product position * inv_freq is formed in float32 (rounded), not float64
    inv = np.array([1.0, 0.1])
    pos = np.array([100003, 7])
    cos, sin = rope_cos_sin(inv, pos, angle_dtype=np.float32)
    ang = [[np.float32(p) * np.float32(f) for f in inv] for p in pos]  # one float32 product each
    assert cos.dtype == np.float64
    np.testing.assert_array_equal(cos, [[np.cos(a) for a in row] for row in ang])
    np.testing.assert_array_equal(sin, [[np.sin(a) for a in row] for row in ang])
    for bad in (0.0, -1.0):
        with pytest.raises(ArgumentError, match="^attention_scaling"):
            rope_cos_sin(inv, pos, attention_scaling=bad)


def test_inv_freq_default_base_is_10000():
    rel_close(inv_freq_default(6), math_default(6, 10000.0), 1e-15)


def test_apply_rope_dtype_follows_x_cos_and_sin():
    x = np.array([[[1.0, 2.0]]])  # [T=1, H=1, D=2]
    c, s = np.array([[0.5]]), np.array([[0.25]])
    f = np.float32
    for args in ((x.astype(f), c, s.astype(f)), (x.astype(f), c.astype(f), s), (x, c.astype(f), s.astype(f))):
        y = apply_rope(*args)
        assert y.dtype == np.float64
        assert y.tolist() == [[[1.0 * 0.5 - 2.0 * 0.25, 2.0 * 0.5 + 1.0 * 0.25]]]
    assert apply_rope(x.astype(f), c.astype(f), s.astype(f)).dtype == np.float32
