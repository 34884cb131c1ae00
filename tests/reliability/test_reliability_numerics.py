"""Robust numerics: no NaN where the spec says a number.

Fully masked attention rows, logits of +-1e4 through softmax / sampling / routing / attention,
float16 and bfloat16 inputs near their range limits, the bfloat16 mode on large activations, YaRN at
position 131071, gpt-oss routing of all-equal router logits, RMSNorm / LayerNorm of all-zero rows and
of rows whose squares overflow float32. Expected values are worked by hand or in float64 / math.
"""

import math
import os
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import canonical_tiny as ct  # noqa: E402

from refimpl import Model  # noqa: E402
from refimpl.checkpoints.config_files import PRESETS  # noqa: E402
from refimpl.ops import ops  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
R = np.random.default_rng(0)


# ------------------------------------------------------------------------------- attention rows

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn", ["attention", "attention_online"])
def test_fully_masked_rows_are_zero_not_nan(dtype, fn):
    """Every key outside the window (q_offset far past Tk): zeros without sinks, zeros with sinks
    (the sink takes all the mass), and zero probabilities."""
    q, k, v = (R.standard_normal(s).astype(dtype) for s in ((3, 4, 8), (5, 2, 8), (5, 2, 8)))
    out = getattr(ops, fn)(q, k, v, q_offset=40, window=2)
    assert out.dtype == dtype and np.array_equal(out, np.zeros_like(out))
    out = getattr(ops, fn)(q, k, v, q_offset=40, window=2, sinks=np.array([0.5, -1.0, 3.0, -np.inf], dtype))
    assert np.array_equal(out, np.zeros_like(out))
    p = ops.attention_probs(q, k, q_offset=40, window=2)
    assert np.array_equal(p, np.zeros_like(p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_of_plus_minus_1e4_give_one_hot_attention(dtype):
    """q . k / sqrt(D) = +-1e4: exp never overflows (max subtracted), the row is one-hot on the largest."""
    D = 4
    q = np.zeros((1, 1, D), dtype)
    q[0, 0, 0] = 1e4 * math.sqrt(D)
    k = np.zeros((3, 1, D), dtype)
    k[:, 0, 0] = [-1.0, 1.0, 0.0]  # scores -1e4, +1e4, 0
    v = np.eye(3, D, dtype=dtype)[:, None, :]  # [3, 1, D]
    out = ops.attention(q, k, v, causal=False)
    np.testing.assert_array_equal(out[0, 0], v[1, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16])
def test_logits_of_plus_minus_1e4_through_softmax_sampling_routing(dtype):
    x = np.array([1e4, -1e4, 0.0, 1e4 - 1]).astype(dtype)  # 1e4 - 1 rounds to 1e4 in fp16 and bf16
    e = math.exp(float(x[3]) - float(x[0]))  # softmax over the two largest; the others underflow to 0
    p = ops.softmax(x)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [1 / (1 + e), 0, 0, e / (1 + e)], rtol=1e-6)  # float32 exp/sum rounding
    assert ops.greedy(x) == 0
    rng = np.random.default_rng(1)
    draws = [ops.sample(x, temperature=1.0, rng=rng) for _ in range(200)]
    assert set(draws) <= {0, 3}
    low_t = ops.sample(x, temperature=1e-3, rng=rng)  # 1e4 / 1e-3 = 1e7 stays finite
    assert low_t == 0 if x[3] < x[0] else low_t in (0, 3)  # a tie (fp16, bf16) may draw either
    w, idx = ops.router_topk_softmax(x[None], 2)
    assert idx.tolist() == [[0, 3]] and np.isfinite(w).all()
    w, idx = ops.router_softmax_topk(x[None], 2)
    assert idx.tolist() == [[0, 3]] and np.isfinite(w).all()
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)


def test_temperature_that_overflows_is_refused_not_nan():
    with pytest.raises(Exception, match="^temperature"):
        ops.sample(np.array([1e4, 0.0], np.float32), temperature=1e-40, rng=np.random.default_rng(0))


# ------------------------------------------------------------------------------- fp16 / bf16 ranges

def test_float16_and_bfloat16_inputs_compute_in_float32_without_overflow():
    """Values near float16's max (65504): sums of products exceed float16 but not float32."""
    x = np.full((2, 64), 60000, dtype=np.float16)
    w = np.full((3, 64), 2, dtype=np.float16)
    y = ops.linear(x, w)
    assert y.dtype == np.float32 and np.array_equal(y, np.full((2, 3), 60000.0 * 2 * 64, np.float32))
    r = ops.rms_norm(x, np.ones(64, np.float16))
    assert r.dtype == np.float32 and np.allclose(r, 1.0, rtol=1e-6)  # 60000^2 overflows float16, not float32
    b = np.full((1, 8), 3e38, dtype=BF16)  # near bfloat16's (and float32's) max
    r = ops.rms_norm(b, np.ones(8, np.float32))
    assert np.isfinite(r).all() and np.allclose(r, 1.0, rtol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_oss"])
def test_bfloat16_mode_on_large_activations_stays_finite(arch):
    """Token embeddings scaled by 1e15 (residual stream ~1e15, squares ~1e30, within float32's and
    bfloat16's range): the bfloat16 mode gives finite logits; each norm brings its input back to unit
    scale."""
    cfg = ct.tiny_config(arch)
    W = ct.tiny_weights(cfg, seed=3)
    W["tok_embed"] = W["tok_embed"] * 1e15
    if "lm_head" not in W:
        W["lm_head"] = W["tok_embed"] / 1e15  # keep the tied head's scale ordinary
        cfg = ct.tiny_config(arch, tie_word_embeddings=False)
    m = Model(cfg, W, dtype="bfloat16")
    out = m.logits(np.arange(6))
    assert np.isfinite(out).all()


# ------------------------------------------------------------------------------------- norms

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norms_of_zero_rows_are_zero(dtype):
    z = np.zeros((2, 8), dtype)
    w = np.linspace(0.5, 2, 8).astype(dtype)
    assert np.array_equal(ops.rms_norm(z, w, eps=1e-6), z)
    assert np.array_equal(ops.layer_norm(z, w, None, eps=1e-5), z)
    assert np.isnan(ops.rms_norm(z, w, eps=0.0)).all()  # 0/0, as documented for eps = 0


@pytest.mark.parametrize("scale", [1e19, 1e25, 1e30, 3e38])
def test_rms_and_layer_norm_of_huge_float32_rows_do_not_overflow(scale):
    """|x| > 1.8e19 squares to inf in float32: the row is rescaled, not normalised to zeros. Expected
    values: the same row at unit scale in float64 (eps is negligible at both scales)."""
    base = np.array([[1.0, -2.0, 0.5, 0.25, 1.0, -1.0, 0.75, 0.0]])
    x = (base * scale).astype(np.float32)
    xs = x.astype(np.float64) / scale
    want_rms = xs / np.sqrt((xs * xs).mean())
    c = xs - xs.mean()
    want_ln = c / np.sqrt((c * c).mean())
    w = np.ones(8, np.float32)
    # float32 rescaling: a few float32 roundings of the unit-scale values
    np.testing.assert_allclose(ops.rms_norm(x, w, eps=1e-5), want_rms, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ops.layer_norm(x, w, None, eps=1e-5), want_ln, rtol=1e-6, atol=1e-6)


@given(st.floats(-30, 30), st.integers(1, 40))
def test_rms_norm_ordinary_rows_unchanged_by_the_overflow_guard(log_scale, n):
    """Rows that do not overflow are computed exactly as before (formula in float32, no rescale)."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((3, n)) * 10.0 ** (log_scale / 3)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    ms = (x * x).mean(axis=-1, keepdims=True)
    want = x / np.sqrt(ms + np.float32(1e-5)) * w
    np.testing.assert_array_equal(ops.rms_norm(x, w, eps=1e-5), want)


# -------------------------------------------------------------------------------------- YaRN

@pytest.mark.parametrize("position", [0, 4095, 4096, 131071])
def test_yarn_at_long_context_is_finite_and_preserves_norm(position):
    """gpt-oss YaRN (factor 32, original 4096, head_dim 64): at position 131071 cos/sin are finite,
    cos^2 + sin^2 = attention_scaling^2, and a rotated vector's norm is scaling * its norm."""
    cfg = PRESETS["gpt-oss-20b"]
    inv, scaling = ops.rope_frequencies(cfg.head_dim, base=cfg.rope_theta, rope_scaling=cfg.rope_scaling)
    assert scaling == pytest.approx(0.1 * math.log(32) + 1, rel=1e-15)  # YaRN's mscale
    cos, sin = ops.rope_cos_sin(inv, np.array([position]), attention_scaling=scaling)
    assert np.isfinite(cos).all() and np.isfinite(sin).all()
    np.testing.assert_allclose(cos ** 2 + sin ** 2, scaling ** 2, rtol=1e-14)  # float64 sin/cos
    x = np.random.default_rng(position).standard_normal((1, 2, cfg.head_dim))
    y = ops.apply_rope(x, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), scaling * np.linalg.norm(x, axis=-1), rtol=1e-13)
    # float32 angles (the torch reference's): still finite and norm-preserving to float32 rounding
    c32, s32 = ops.rope_cos_sin(inv, np.array([position]), attention_scaling=scaling, angle_dtype=np.float32)
    assert np.isfinite(c32).all()
    np.testing.assert_allclose(c32 ** 2 + s32 ** 2, scaling ** 2, rtol=1e-6)


def test_gpt_oss_model_at_the_end_of_its_context():
    """A tiny gpt-oss with the released YaRN setting and max_position_embeddings 131072, continuing a
    cache holding 131070 (zero) keys: finite logits at positions 131070 and 131071; one more refused."""
    from refimpl.errors import ArgumentError
    from refimpl.model import forward

    cfg = ct.tiny_config("gpt_oss", max_position_embeddings=131072)
    m = Model(cfg, ct.tiny_weights(cfg, seed=4), dtype="float32")
    cache = m.new_cache()
    zeros = np.zeros((131070, cfg.num_kv_heads, cfg.head_dim), np.float32)
    for L in range(cfg.num_layers):
        cache.append(L, zeros, zeros)
    out = forward(cfg, m.weights, np.array([1, 2]), cache=cache, dtype="float32")
    assert np.isfinite(out).all()
    with pytest.raises(ArgumentError, match="^ids.*131072.*131073"):
        forward(cfg, m.weights, np.array([3]), cache=cache, dtype="float32")


# ------------------------------------------------------------------------------------- routing

@pytest.mark.parametrize("k", [1, 2, 4])
def test_all_equal_router_logits_pick_the_lowest_experts_with_equal_weights(k):
    """Tie rule: among equal logits the lower expert index wins; the k weights are exactly 1/k."""
    logits = np.zeros((3, 4), np.float32) + np.float32(0.7)
    for fn in (ops.router_topk_softmax, ops.router_softmax_topk):
        w, idx = fn(logits, k)
        assert idx.tolist() == [list(range(k))] * 3
        np.testing.assert_array_equal(w, np.full((3, k), 1 / k, np.float32))


def test_gpt_oss_model_with_all_equal_router_logits():
    """Router weights and biases zero: every token goes to experts 0..k-1 with weight 1/k, and the MoE
    output equals the mean of those experts' outputs computed one by one."""
    cfg = ct.tiny_config("gpt_oss")
    W = ct.tiny_weights(cfg, seed=5)
    for L in range(cfg.num_layers):
        W[f"layers.{L}.moe.router.weight"] = np.zeros_like(W[f"layers.{L}.moe.router.weight"])
        W[f"layers.{L}.moe.router.bias"] = np.zeros_like(W[f"layers.{L}.moe.router.bias"])
    m = Model(cfg, W, dtype="float64")
    tr = m.trace(np.arange(5))
    k = cfg.experts_per_token
    assert (tr["layers.0.moe.experts"] == np.arange(k)).all()
    np.testing.assert_array_equal(tr["layers.0.moe.expert_weights"], np.full((5, k), 1 / k))
    h = tr["layers.0.mlp_norm"]
    ys = []
    for e in range(k):
        u = h @ W["layers.0.moe.mlp1.weight"][e].T + W["layers.0.moe.mlp1.bias"][e]
        a = ops.swiglu_oss(u, alpha=cfg.swiglu_alpha, limit=cfg.swiglu_limit)
        ys.append(a @ W["layers.0.moe.mlp2.weight"][e].T + W["layers.0.moe.mlp2.bias"][e])
    # float64, k terms re-associated: a few ulps
    np.testing.assert_allclose(tr["layers.0.mlp.out"], sum(ys) / k, rtol=1e-12, atol=1e-12)


def test_nonfinite_hidden_state_in_a_moe_model_gives_nan_not_an_error():
    """A NaN token in a MoE model reaches the router: that token's MoE output is NaN, other tokens are
    routed as usual, and the forward pass does not stop with a router error."""
    cfg = ct.tiny_config("mixtral")
    W = ct.tiny_weights(cfg, seed=6)
    W["tok_embed"] = W["tok_embed"].copy()
    W["tok_embed"][9, 1] = np.nan
    m = Model(cfg, W, dtype="float64")
    out = m.logits(np.array([3, 4, 9, 5]))
    assert np.isfinite(out[:2]).all() and np.isnan(out[2]).all()
