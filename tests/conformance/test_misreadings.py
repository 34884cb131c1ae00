"""Known-wrong variants: each differs from the reference where it should, diagnose names it, and the
variants that have a closed form agree with an independent formulation of the wrong rule."""

import inspect
import math

import numpy as np
import pytest

from refimpl.backends import get_backend
from refimpl.conformance import MISREADINGS, compare, diagnose
from refimpl.conformance.ops.rope import GPT_OSS_YARN
from refimpl.ops import OP_NAMES, ops

NAMES = sorted(MISREADINGS)


def _f32(kw):
    return {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v) for k, v in kw.items()}


def test_at_least_twelve_variants_over_real_ops():
    assert len(MISREADINGS) >= 12
    for v in MISREADINGS.values():
        assert v.description and v.overrides and set(v.overrides) <= set(OP_NAMES), v.name
        for op, fn in v.overrides.items():
            ref = set(inspect.signature(getattr(ops, op)).parameters)
            got = inspect.signature(fn).parameters
            assert ref <= set(got) or any(p.kind is p.VAR_KEYWORD for p in got.values()), (v.name, op)


@pytest.mark.parametrize("name", NAMES)
def test_variant_differs_and_is_diagnosed(name):
    v = MISREADINGS[name]
    op, inputs = v.example()
    expected = getattr(ops, op)(**inputs)
    wrong = v.overrides[op](**inputs)
    rep = compare(expected, wrong, op=op, inputs=inputs)
    assert not rep.ok, f"{name} does not differ from the reference on its example"
    assert name in diagnose(op, inputs, wrong)
    # the suite run against the variant's backend fails too
    got = getattr(get_backend(f"misreading:{name}").as_ops(), op)(**inputs)
    assert not compare(expected, got, op=op, inputs=inputs).ok


@pytest.mark.parametrize("name", NAMES)
def test_diagnosis_of_a_float32_implementation(name):
    """A float32 implementation with the bug is named; a correct float32 one gets no diagnosis."""
    v = MISREADINGS[name]
    op, inputs = v.example()
    k32 = _f32(inputs)
    assert name in diagnose(op, k32, v.overrides[op](**k32))
    assert diagnose(op, k32, getattr(ops, op)(**k32)) == []


def test_window_off_by_one_sees_one_more_key():
    vis = MISREADINGS["window_off_by_one"].overrides["visibility_mask"](6, 6, window=2)
    assert vis.sum(axis=1).tolist() == [1, 2, 3, 3, 3, 3]  # query i sees keys i-2 .. i
    full = MISREADINGS["full_causal_on_sliding"].overrides["visibility_mask"](6, 6, window=2)
    assert full.sum(axis=1).tolist() == [1, 2, 3, 4, 5, 6]


def test_softmax_all_experts_is_not_renormalised():
    logits = np.array([[2.0, 0.5, 1.0, -1.0]])
    w, idx = MISREADINGS["softmax_all_experts"].overrides["router_topk_softmax"](logits, 2)
    total = sum(math.exp(v) for v in logits[0])
    assert idx.tolist() == [[0, 2]]
    assert w[0].tolist() == pytest.approx([math.exp(2.0) / total, math.exp(1.0) / total], rel=1e-14)


def test_layernorm_unbiased_variance_matches_ddof_1():
    g = np.random.default_rng(0)
    for n in (2, 3, 31, 128):
        x, w, b = g.standard_normal((3, n)), g.standard_normal(n), g.standard_normal(n)
        want = (x - x.mean(-1, keepdims=True)) / np.sqrt(np.var(x, axis=-1, ddof=1, keepdims=True) + 1e-5) * w + b
        got = MISREADINGS["layernorm_unbiased_variance"].overrides["layer_norm"](x, w, b, eps=1e-5)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # float64 reformulation


def test_rmsnorm_eps_outside_by_loops():
    x = np.array([[1e-3, -2e-3, 3e-3]])
    w = np.array([1.0, 2.0, -1.0])
    rms = math.sqrt(sum(v * v for v in x[0]) / 3)
    want = [x[0, i] / (rms + 1e-5) * w[i] for i in range(3)]
    got = MISREADINGS["rmsnorm_eps_outside"].overrides["rms_norm"](x, w, eps=1e-5)
    assert got[0].tolist() == pytest.approx(want, rel=1e-14)


def test_swiglu_no_plus_one_by_loops():
    h = np.array([[0.5, -0.25, 9.0, 8.0, -3.0, -9.0]])  # interleaved (gate, lin) pairs
    got = MISREADINGS["swiglu_no_plus_one"].overrides["swiglu_oss"](h)
    want = []
    for gte, lin in ((0.5, -0.25), (9.0, 8.0), (-3.0, -9.0)):
        gte, lin = min(gte, 7.0), max(min(lin, 7.0), -7.0)
        want.append(gte / (1 + math.exp(-1.702 * gte)) * lin)
    assert got[0].tolist() == pytest.approx(want, rel=1e-14)


def test_mxfp4_scale_bias_128_halves_every_weight():
    g = np.random.default_rng(1)
    blocks = g.integers(0, 256, size=(2, 3, 16), dtype=np.uint8)
    scales = g.integers(100, 150, size=(2, 3), dtype=np.uint8)
    got = MISREADINGS["mxfp4_scale_bias_128"].overrides["decode_mxfp4"](blocks, scales)
    np.testing.assert_array_equal(got * 2, ops.decode_mxfp4(blocks, scales))  # exact: powers of two


def test_mxfp4_nibbles_swapped_swaps_pairs():
    g = np.random.default_rng(2)
    blocks = g.integers(0, 256, size=(1, 1, 16), dtype=np.uint8)
    scales = np.array([[127]], np.uint8)
    got = MISREADINGS["mxfp4_nibbles_swapped"].overrides["decode_mxfp4"](blocks, scales)
    ref = ops.decode_mxfp4(blocks, scales)
    np.testing.assert_array_equal(got.reshape(16, 2), ref.reshape(16, 2)[:, ::-1])


def test_mask_minus_1e10_against_an_additive_mask():
    """float64: adding -1e10 to masked scores, then a plain softmax, is what the variant returns."""
    g = np.random.default_rng(3)
    q, k, v = g.standard_normal((4, 2, 8)), g.standard_normal((4, 2, 8)), g.standard_normal((4, 2, 8))
    mask = np.ones((4, 4), bool)
    mask[1] = False  # query 1 sees nothing
    causal = np.tril(np.ones((4, 4), bool))
    s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(8) + np.where(mask & causal, 0.0, -1e10)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = np.einsum("hqk,khd->qhd", p, v)
    got = MISREADINGS["mask_minus_1e10"].overrides["attention"](q, k, v, mask=mask)
    # s - 1e10 is rounded to float64 spacing 2^-19 near 1e10: each score is off by <= 2^-20, p by a relative
    # 2 * 2^-20, so o by <= 2 * 2^-20 * max|v| (first order)
    np.testing.assert_allclose(got, want, rtol=0, atol=2 * 2.0**-20 * np.abs(v).max())
    np.testing.assert_array_equal(ops.attention(q, k, v, mask=mask)[1], 0.0)


def test_gqa_tiled_heads_by_loops():
    g = np.random.default_rng(4)
    q, k, v = g.standard_normal((3, 4, 2)), g.standard_normal((3, 2, 2)), g.standard_normal((3, 2, 2))
    got = MISREADINGS["gqa_tiled_heads"].overrides["attention"](q, k, v, causal=False)
    for h in range(4):
        kv = h % 2
        for i in range(3):
            sc = [sum(q[i, h, d] * k[j, kv, d] for d in range(2)) / math.sqrt(2) for j in range(3)]
            m = max(sc)
            e = [math.exp(x - m) for x in sc]
            o = [sum(e[j] * v[j, kv, d] for j in range(3)) / sum(e) for d in range(2)]
            assert got[i, h].tolist() == pytest.approx(o, rel=1e-12)


def test_yarn_variants_on_gpt_oss():
    ref_inv, ref_scale = ops.rope_frequencies(64, base=150000.0, rope_scaling=GPT_OSS_YARN)
    inv, scale = MISREADINGS["yarn_missing"].overrides["rope_frequencies"](64, base=150000.0, rope_scaling=GPT_OSS_YARN)
    assert scale == 1.0 and inv[-1] == pytest.approx(150000.0 ** (-62 / 64), rel=1e-14)
    inv, scale = MISREADINGS["yarn_no_concentration"].overrides["rope_frequencies"](64, base=150000.0, rope_scaling=GPT_OSS_YARN)
    assert scale == 1.0 and ref_scale == pytest.approx(0.1 * math.log(32) + 1, rel=1e-14)
    np.testing.assert_array_equal(inv, ref_inv)
    inv, _ = MISREADINGS["yarn_wrong_original_length"].overrides["rope_frequencies"](
        64, base=150000.0, rope_scaling=GPT_OSS_YARN, max_position_embeddings=131072)
    want, _ = ops.inv_freq_yarn(64, base=150000.0, factor=32.0, original_max_position_embeddings=131072)
    np.testing.assert_array_equal(inv, want)
    assert not np.allclose(inv, ref_inv, rtol=1e-6)


# the variants that change a knob of the bfloat16-mode pieces: their pieces compose to their attention
COMPOSED = ("window_off_by_one", "full_causal_on_sliding", "gqa_tiled_heads", "sinks_ignored", "mask_minus_1e10")


def _compose(o, q, k, v, sinks=None, **kw):
    s = o.attention_scores(q, k, **kw)  # [Hq, Tq, Tk]
    return o.attention_values(o.softmax_with_sinks(s, sinks), v)  # [Tq, Hq, Dv]; values finite: visible not needed


@pytest.mark.parametrize("name", COMPOSED)
def test_variant_pieces_compose_to_its_attention(name):
    """attention_values(softmax_with_sinks(attention_scores(...))) through a variant's ops equals the variant's
    attention, and differs from the reference there: a backend built from the variant stays consistent."""
    g = np.random.default_rng(7)
    q, k, v = g.standard_normal((8, 4, 8)), g.standard_normal((8, 2, 8)), g.standard_normal((8, 2, 8))
    dead = np.ones((8, 8), bool)
    dead[5] = False  # query 5 sees no key
    configs = [dict(window=3, sinks=np.array([2.0, -1.0, 0.5, -np.inf])), dict(mask=dead)]
    o = MISREADINGS[name].ops()
    differs = False
    for kw in configs:
        want = o.attention(q, k, v, **kw)
        got = _compose(o, q, k, v, **kw)
        # float64 both ways; mask_minus_1e10 rounds s - 1e10 to a float64 spacing of 2^-19 (a score off by
        # <= 2^-20, p by a relative 2 * 2^-20), the others are the same float64 operations reordered (1e-12)
        atol = 2 * 2.0**-20 * np.abs(v).max() if name == "mask_minus_1e10" else 1e-12
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        differs |= not np.allclose(got, ops.attention(q, k, v, **kw), rtol=0, atol=1e-6)
    assert differs, f"{name}: the pieces do not differ from the reference"


def test_reference_pieces_compose_to_attention():
    g = np.random.default_rng(8)
    q, k, v = g.standard_normal((8, 4, 8)), g.standard_normal((8, 2, 8)), g.standard_normal((8, 2, 8))
    sinks = np.array([2.0, -1.0, 0.5, -np.inf])
    np.testing.assert_array_equal(_compose(ops, q, k, v, sinks=sinks, window=3),
                                  ops.attention(q, k, v, sinks=sinks, window=3))  # same operations, bit for bit
