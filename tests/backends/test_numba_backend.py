"""The Numba backend (backends/numba) against the NumPy reference, op by op and on whole tiny models.

Every op is run on Hypothesis-drawn shapes crossing the edges (1, 31, 32, 33, 127, 128, 129, odd
widths), in float32 and float64, and judged by refimpl.conformance.compare against the reference on
the same inputs widened to float64 (the oracle) with the op's derived budget (spec/budgets.md); a
failure prints the report (worst coordinates, expected and actual values, ULPs, the budget, repro).
Every kernel variant the backend lists is run. The expected values always come from the reference
(refimpl.ops), never from the backend. The first call of each kernel compiles it (JIT), which
dominates this file's run time (see spec/backends-numba.md).
"""

import inspect

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'refimpl[numba]'): "
                                            "the Numba backend cannot be tested")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from refimpl.backends import BackendError, OpNotSupported, get_backend  # noqa: E402
from refimpl.backends.numba import NumbaBackend  # noqa: E402
from refimpl.backends.numba import _common  # noqa: E402
from canonical_tiny import tiny_config, tiny_weights  # noqa: E402
from refimpl import ArgumentError  # noqa: E402
from refimpl.api import Model  # noqa: E402
from refimpl.conformance import compare  # noqa: E402
from refimpl.model import forward  # noqa: E402
from refimpl.ops import OP_NAMES, ops  # noqa: E402
from refimpl.ops.mxfp4 import encode_mxfp4  # noqa: E402
from refimpl.precision import bfloat16  # noqa: E402

NB = get_backend("numba")
EDGE = [1, 2, 31, 32, 33, 127, 128, 129]
SMALL = [1, 2, 3, 5, 31, 32, 33]
DTYPES = [np.float32, np.float64]
IMPLEMENTED = {"rms_norm", "layer_norm", "gelu", "silu", "swiglu", "swiglu_oss", "apply_rope", "attention",
               "attention_online", "decode_mxfp4", "mxfp4_linear", "router_topk_softmax",
               "linear", "embedding", "dequantize_gguf", "gguf_linear", "gguf_embedding",  # test_numba_quant.py
               "swiglu_mlp", "gelu_mlp"}
from refimpl.backends.numba.host import HOST_OPS  # noqa: E402  (NumPy code on the same arrays: host.py)
IMPLEMENTED |= set(HOST_OPS)
TESTED_VARIANTS_HOST = {op: {"numpy"} for op in HOST_OPS}
TESTED_VARIANTS = {"attention": {"online", "naive"}, "mxfp4_linear": {"fused", "decode_matmul"}}


def _widen(v):
    if isinstance(v, np.ndarray) and (v.dtype.kind == "f" or v.dtype == bfloat16):
        return v.astype(np.float64)
    return v


def _dtypes(out):
    return tuple(np.asarray(o).dtype for o in out) if isinstance(out, tuple) else np.asarray(out).dtype


def check(op, inputs, backend=NB, seed=None):
    """Run `op` on the backend and compare with the reference's float64 oracle; also the dtype rule."""
    actual = getattr(backend.as_ops(fallback=False), op)(**inputs)
    expected = getattr(ops, op)(**{k: _widen(v) for k, v in inputs.items()})
    variant = backend.kernel_name(op)
    rep = compare(expected, actual, op=op, inputs=inputs,
                  context=dict(backend=backend.name, variant=variant, seed=seed))
    assert rep.ok, str(rep)
    same_inputs = getattr(ops, op)(**inputs)  # the reference on the very same inputs gives the dtype rule
    assert _dtypes(actual) == _dtypes(same_inputs), f"{op}: dtype {_dtypes(actual)}, reference {_dtypes(same_inputs)}"
    return actual, same_inputs


def rand(rng, shape, dt, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dt)


seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
leads = st.sampled_from([(), (1,), (3,), (2, 2)])


# ----------------------------------------------------------------------------- the backend as a whole


def test_registered_and_capabilities():
    assert isinstance(NB, NumbaBackend) and NB.name == "numba"
    cap = NB.capabilities()
    assert cap["ops"] == IMPLEMENTED
    assert cap["dtypes"] == {"float32", "float64", "bfloat16"} and cap["needs_gpu"] is False
    assert NB.unsupported_reason("attention", dtype=np.float32) is None
    assert "mask" in NB.unsupported_reason("attention", mask=True)
    assert "not implemented" in NB.unsupported_reason("dropout")
    with pytest.raises(OpNotSupported):
        NB.dropout(np.ones((4, 3)), 0.5)
    fallbacks = NB.as_ops().fallbacks
    assert set(fallbacks) == set(OP_NAMES) - IMPLEMENTED and "linear" not in fallbacks


def test_kernel_signatures_are_the_reference_signatures():
    for name in IMPLEMENTED:
        for kernel in NB.kernel_names(name):
            params = list(inspect.signature(NB.with_kernel(name, kernel).kernel(name)).parameters.values())
            assert params == list(inspect.signature(getattr(ops, name)).parameters.values()), (name, kernel)


def test_every_listed_variant_is_tested():
    for op in IMPLEMENTED:
        listed = set(NB.kernel_names(op))
        assert listed == TESTED_VARIANTS.get(op, TESTED_VARIANTS_HOST.get(op, {"default"})), op
    with pytest.raises(BackendError, match="kernels"):
        NB.with_kernel("attention", "flash")


# ----------------------------------------------------------------------------- norms


@given(seed=seeds, dt=dtypes, lead=leads, n=st.sampled_from(EDGE + [576]), eps=st.sampled_from([1e-5, 1e-6, 0.0]))
def test_rms_norm(seed, dt, lead, n, eps):
    rng = np.random.default_rng(seed)
    x = rand(rng, lead + (n,), dt, scale=rng.choice([1e-3, 1.0, 30.0]))
    check("rms_norm", dict(x=x, weight=rand(rng, (n,), dt), eps=eps), seed=seed)


@given(seed=seeds, dt=dtypes, lead=leads, n=st.sampled_from(EDGE + [576]), bias=st.booleans())
def test_layer_norm(seed, dt, lead, n, bias):
    rng = np.random.default_rng(seed)
    x = rand(rng, lead + (n,), dt) + dt(rng.choice([0.0, 3.0]))
    b = rand(rng, (n,), dt) if bias else None
    check("layer_norm", dict(x=x, weight=rand(rng, (n,), dt), bias=b), seed=seed)


def test_norms_bf16_input_cast_before_scale_and_zero_rows():
    rng = np.random.default_rng(0)
    xb = rand(rng, (3, 33), np.float32).astype(bfloat16)
    w = rand(rng, (33,), np.float32)
    for cbs in (False, True):
        actual, ref = check("rms_norm", dict(x=xb, weight=w, cast_before_scale=cbs))
        assert actual.dtype == np.float32
    # eps = 0 and a zero row: 0/0 = NaN in both (IEEE), and the NaN pattern is part of the comparison.
    z = np.zeros((2, 32))
    check("rms_norm", dict(x=z, weight=np.ones(32), eps=0.0))
    check("layer_norm", dict(x=z + 1.0, weight=np.ones(32), bias=None, eps=0.0))


# ----------------------------------------------------------------------------- activations


@given(seed=seeds, dt=dtypes, lead=leads, n=st.sampled_from(EDGE), approx=st.sampled_from(["tanh", "none"]))
def test_gelu(seed, dt, lead, n, approx):
    rng = np.random.default_rng(seed)
    check("gelu", dict(x=rand(rng, lead + (n,), dt, scale=4.0), approximate=approx), seed=seed)


@given(seed=seeds, dt=dtypes, lead=leads, n=st.sampled_from(EDGE))
def test_silu_and_swiglu(seed, dt, lead, n):
    rng = np.random.default_rng(seed)
    check("silu", dict(x=rand(rng, lead + (n,), dt, scale=10.0)), seed=seed)
    check("swiglu", dict(gate=rand(rng, lead + (n,), dt, scale=5.0), up=rand(rng, lead + (n,), dt)), seed=seed)


@given(seed=seeds, dt=dtypes, lead=leads, half=st.sampled_from(EDGE), layout=st.sampled_from(["interleaved", "halves"]),
       limit=st.sampled_from([7.0, 0.5, None]), alpha=st.sampled_from([1.702, 1.0]))
def test_swiglu_oss(seed, dt, lead, half, layout, limit, alpha):
    rng = np.random.default_rng(seed)
    h = rand(rng, lead + (2 * half,), dt, scale=6.0)
    check("swiglu_oss", dict(h=h, alpha=alpha, limit=limit, layout=layout), seed=seed)


def test_activation_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1000.0, -1000.0, 88.0, -88.0, 1e-40], dtype=np.float32)
    for dt in DTYPES:
        xd = x.astype(dt)
        check("gelu", dict(x=xd))
        check("gelu", dict(x=xd, approximate="none"))
        check("silu", dict(x=xd))
        check("swiglu", dict(gate=xd, up=xd[::-1].copy()))
        check("swiglu_oss", dict(h=xd))
        check("swiglu_oss", dict(h=xd, limit=None))
    check("silu", dict(x=x.astype(bfloat16)))  # bf16 in, float32 out


# ----------------------------------------------------------------------------- rope


@st.composite
def rope_case(draw):
    dt, seed = draw(dtypes), draw(seeds)
    rng = np.random.default_rng(seed)
    d = 2 * draw(st.sampled_from([1, 2, 16, 32, 33, 64]))
    r = draw(st.sampled_from([None, d, 2, 2 * max(1, d // 4)]))
    t, h = draw(st.sampled_from([1, 2, 31, 33])), draw(st.sampled_from([1, 3, 9]))
    lead = draw(st.sampled_from([(), (2,)]))
    clead = draw(st.sampled_from([(), (1,), lead] if lead else [()]))
    half = (d if r is None else r) // 2
    ang = rng.uniform(-50, 50, clead + (t, half))
    cdt = draw(st.sampled_from([dt, np.float64]))
    return dict(x=rand(rng, lead + (t, h, d), dt), cos=np.cos(ang).astype(cdt), sin=np.sin(ang).astype(cdt),
                pairing=draw(st.sampled_from(["half", "interleaved"])), rotary_dim=r), seed


@given(case=rope_case())
def test_apply_rope(case):
    inputs, seed = case
    actual, ref = check("apply_rope", inputs, seed=seed)
    # Two rounded products and a rounded sum, no fused multiply-add: the reference's bits exactly.
    np.testing.assert_array_equal(actual, ref)


# ----------------------------------------------------------------------------- attention


@st.composite
def attention_case(draw, *, online=False):
    dt, seed = draw(dtypes), draw(seeds)
    rng = np.random.default_rng(seed)
    hkv, g = draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 3]))
    d = draw(st.sampled_from([1, 7, 8, 16, 33, 64]))
    dv = draw(st.sampled_from([d, 5]))
    tk = draw(st.sampled_from(EDGE))
    tq = draw(st.sampled_from([1, 2, 31, 33]))
    causal = draw(st.booleans())
    window = draw(st.sampled_from([None, 1, 2, 31, 32, 33, 200]))
    off = draw(st.sampled_from(["default", 0, "last", "past"]))
    if off == "default":
        q_offset = None if (tq <= tk or (not causal and window is None)) else tk - 1
    else:
        q_offset = {0: 0, "last": max(tk - tq, 0), "past": tk + 3}[off]
    lead = draw(st.sampled_from([(), (2,)]))
    sink_kind = draw(st.sampled_from([None, "finite", "some -inf"]))
    sinks = None
    if sink_kind:
        sinks = rand(rng, (hkv * g,), dt, scale=2.0)
        if sink_kind == "some -inf":
            sinks[::2] = -np.inf
    scale = draw(st.sampled_from([None, 0.5]))
    qs = draw(st.sampled_from([1.0, 4.0]))
    inputs = dict(q=rand(rng, lead + (tq, hkv * g, d), dt, scale=qs), k=rand(rng, lead + (tk, hkv, d), dt),
                  v=rand(rng, lead + (tk, hkv, dv), dt), sinks=sinks, window=window, causal=causal,
                  q_offset=q_offset, scale=scale)
    if online:
        inputs["block_size"] = draw(st.sampled_from([1, 3, 32, 33, 200]))
    return inputs, seed


@pytest.mark.parametrize("variant", NB.kernel_names("attention"))
@settings(max_examples=30)
@given(case=attention_case())
def test_attention(variant, case):
    inputs, seed = case
    check("attention", inputs, backend=NB.with_kernel("attention", variant), seed=seed)


@settings(max_examples=20)
@given(case=attention_case(online=True))
def test_attention_online_any_block_size(case):
    inputs, seed = case
    check("attention_online", inputs, seed=seed)


@pytest.mark.parametrize("variant", NB.kernel_names("attention"))
def test_attention_special_values_follow_the_reference(variant):
    """NaN/Inf in a visible key's value propagate (p * v, IEEE), a masked key's never; rows with nothing visible are 0."""
    b = NB.with_kernel("attention", variant)
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, (4, 4, 8), np.float64), rand(rng, (40, 2, 8), np.float64), rand(rng, (40, 2, 8), np.float64)
    v[30, 1, 3] = np.nan  # masked for early queries (causal), visible for none with window 2
    v[2, 0, 5] = np.inf
    for kw in (dict(q_offset=0), dict(q_offset=36), dict(window=2, q_offset=10), dict(q_offset=60, window=3),
               dict(q_offset=60, window=3, sinks=np.array([0.5, -np.inf, 1.0, 2.0]))):
        check("attention", dict(q=q, k=k, v=v, **kw), backend=b)
    q2 = q.copy()
    q2[1, 2, 0] = np.inf
    check("attention", dict(q=q2, k=k, v=rand(rng, (40, 2, 8), np.float64), q_offset=5), backend=b)
    out = b.attention(q, k, rand(rng, (40, 2, 8), np.float64), q_offset=60, window=3)  # nothing visible, no sink
    assert np.array_equal(out, np.zeros_like(out))


def test_attention_mask_is_not_supported_but_still_checked():
    rng = np.random.default_rng(0)
    q, k = rand(rng, (3, 2, 4), np.float32), rand(rng, (3, 1, 4), np.float32)
    with pytest.raises(OpNotSupported, match="mask"):
        NB.attention(q, k, k, mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(ArgumentError, match="^mask"):
        NB.attention(q, k, k, mask=np.ones((3, 4), dtype=bool))
    with pytest.raises(OpNotSupported, match="mask"):
        NB.as_ops().attention_online(q, k, k, mask=np.ones((3, 3), dtype=bool))


# ----------------------------------------------------------------------------- mxfp4


def _same_bits(a, b):
    a, b = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    nan = np.isnan(a)
    return (a.shape == b.shape and np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan], b[~nan])
            and np.array_equal(np.signbit(a[~nan]), np.signbit(b[~nan])))


@given(seed=seeds, lead=st.sampled_from([(), (3,), (2, 3)]), g=st.sampled_from([1, 2, 3, 90]),
       dtype=st.sampled_from([np.float32, np.float64, bfloat16]), order=st.sampled_from(["low_first", "high_first"]),
       bias=st.sampled_from([127, 128, 0]))
def test_decode_mxfp4_bit_exact(seed, lead, g, dtype, order, bias):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, lead + (g, 16), dtype=np.uint8)
    scales = rng.integers(0, 256, lead + (g,), dtype=np.uint8)  # every code: subnormal, 0, inf, NaN products
    kw = dict(dtype=dtype, nibble_order=order, scale_bias=bias)
    actual, ref = NB.decode_mxfp4(blocks, scales, **kw), ops.decode_mxfp4(blocks, scales, **kw)
    assert actual.dtype == ref.dtype
    bad = np.argwhere(~np.isclose(actual.astype(np.float64), ref.astype(np.float64), rtol=0, atol=0, equal_nan=True))
    assert _same_bits(actual, ref), (f"first differing coordinates {bad[:5].tolist()}: expected "
                                     f"{[ref[tuple(i)] for i in bad[:5]]}, actual {[actual[tuple(i)] for i in bad[:5]]}")


@pytest.mark.parametrize("variant", NB.kernel_names("mxfp4_linear"))
@settings(max_examples=25)
@given(seed=seeds, dt=dtypes, n=st.sampled_from([1, 2, 3, 4, 5, 16, 33]), out=st.sampled_from([1, 8, 9, 31, 33]),
       g=st.sampled_from([1, 2, 3, 9, 17]), lead=st.sampled_from([(), (2,)]), bias=st.booleans(),
       order=st.sampled_from(["low_first", "high_first"]))
def test_mxfp4_linear(variant, seed, dt, n, out, g, lead, bias, order):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (out, g, 16), dtype=np.uint8)
    scales = rng.integers(118, 136, (out, g), dtype=np.uint8)
    inputs = dict(x=rand(rng, lead + (n, 32 * g), dt), blocks=blocks, scales=scales,
                  bias=rand(rng, (out,), dt) if bias else None, nibble_order=order)
    check("mxfp4_linear", inputs, backend=NB.with_kernel("mxfp4_linear", variant), seed=seed)


@pytest.mark.parametrize("variant", NB.kernel_names("mxfp4_linear"))
def test_mxfp4_linear_encoded_weights_and_overflowing_scales(variant):
    b = NB.with_kernel("mxfp4_linear", variant)
    rng = np.random.default_rng(1)
    blocks, scales = encode_mxfp4(rng.standard_normal((33, 96)))
    for n in (1, 4, 7):
        check("mxfp4_linear", dict(x=rand(rng, (n, 96), np.float32), blocks=blocks, scales=scales), backend=b)
    # Scale code 255 is 2^128 (+-inf weights, NaN for zero codes) in every dtype; code 254 with |value| >= 2
    # overflows in float32 only, so that case is judged against the reference in float32 (the float64
    # oracle would not overflow): the NaN/Inf pattern must be the reference's, the rest within budget.
    scales = scales.copy()
    scales[3, 1] = 255
    check("mxfp4_linear", dict(x=rand(rng, (5, 96), np.float64), blocks=blocks, scales=scales), backend=b)
    scales[5, 0] = 254
    inputs = dict(x=rand(rng, (5, 96), np.float32), blocks=blocks, scales=scales)
    with np.errstate(invalid="ignore"):
        expected = ops.mxfp4_linear(**inputs)
    rep = compare(expected, b.mxfp4_linear(**inputs), op="mxfp4_linear", inputs=inputs)
    assert rep.ok and np.isnan(expected).any(), str(rep)


# ----------------------------------------------------------------------------- router


@given(seed=seeds, dt=dtypes, lead=leads, e=st.sampled_from([1, 2, 4, 31, 32, 33, 128]), data=st.data())
def test_router_topk_softmax(seed, dt, lead, e, data):
    rng = np.random.default_rng(seed)
    k = data.draw(st.integers(1, min(e, 8)))
    # distinct logits with a margin (0.25 apart), so the selection is well defined in both dtypes
    base = np.stack([rng.permutation(e) for _ in range(int(np.prod(lead, dtype=int)))]).reshape(lead + (e,))
    logits = (0.25 * base + rng.uniform(0, 0.01, lead + (e,))).astype(dt)
    check("router_topk_softmax", dict(logits=logits, k=k), seed=seed)


def test_router_ties_take_the_lower_expert_first():
    logits = np.array([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    w, idx = NB.router_topk_softmax(logits, 3)
    np.testing.assert_array_equal(idx, [[1, 2, 4], [0, 1, 2]])
    np.testing.assert_array_equal(idx, ops.router_topk_softmax(logits, 3)[1])
    np.testing.assert_allclose(w, np.full((2, 3), 1 / 3), rtol=2e-7)  # exp(0) / 3, one rounding each


# ----------------------------------------------------------------------------- bad arguments


def _bad_calls():
    f = np.ones((2, 4), dtype=np.float32)
    q, k = np.ones((3, 4, 8)), np.ones((3, 2, 8))
    blocks, scales = np.zeros((4, 2, 16), np.uint8), np.zeros((4, 2), np.uint8)
    return [
        ("rms_norm", dict(x=f, weight=np.ones(3)), "weight"),
        ("rms_norm", dict(x=f, weight=np.ones(4), eps=-1.0), "eps"),
        ("rms_norm", dict(x=f, weight=np.ones(4), cast_before_scale=1), "cast_before_scale"),
        ("rms_norm", dict(x=np.ones(4, dtype=np.int8).astype(object), weight=np.ones(4)), "x"),
        ("layer_norm", dict(x=f, weight=np.ones(4), bias=np.ones(5)), "bias"),
        ("layer_norm", dict(x=np.ones((2, 0)), weight=np.ones(0), bias=None), "x"),
        ("gelu", dict(x=f, approximate="erf"), "approximate"),
        ("silu", dict(x="abc"), "x"),
        ("swiglu", dict(gate=f, up=np.ones((2, 5))), "up"),
        ("swiglu_oss", dict(h=np.ones((2, 3))), "h"),
        ("swiglu_oss", dict(h=f, alpha=0.0), "alpha"),
        ("swiglu_oss", dict(h=f, limit=np.inf), "limit"),
        ("swiglu_oss", dict(h=f, layout="split"), "layout"),
        ("apply_rope", dict(x=np.ones((3, 2, 5)), cos=np.ones((3, 2)), sin=np.ones((3, 2))), "x"),
        ("apply_rope", dict(x=np.ones((3, 2, 4)), cos=np.ones((3, 2)), sin=np.ones((3, 2)), pairing="gptj"), "pairing"),
        ("apply_rope", dict(x=np.ones((3, 2, 4)), cos=np.ones((3, 2)), sin=np.ones((3, 2)), rotary_dim=3), "rotary_dim"),
        ("apply_rope", dict(x=np.ones((3, 2, 4)), cos=np.ones((4, 2)), sin=np.ones((4, 2))), "cos"),
        ("apply_rope", dict(x=np.ones((3, 2, 4)), cos=np.ones((3, 2)), sin=np.ones((3, 1))), "sin"),
        ("attention", dict(q=q, k=np.ones((3, 3, 8)), v=k), "k"),
        ("attention", dict(q=q, k=k, v=np.ones((2, 2, 8))), "v"),
        ("attention", dict(q=q, k=k, v=k, window=0), "window"),
        ("attention", dict(q=q, k=k, v=k, causal=None), "causal"),
        ("attention", dict(q=q, k=k, v=k, q_offset=-1), "q_offset"),
        ("attention", dict(q=np.ones((5, 4, 8)), k=k, v=k), "q_offset"),
        ("attention", dict(q=q, k=k, v=k, scale=0.0), "scale"),
        ("attention", dict(q=q, k=k, v=k, sinks=np.ones(3)), "sinks"),
        ("attention", dict(q=q, k=k, v=k, sinks=np.array([0, 0, np.nan, 0])), "sinks"),
        ("attention", dict(q=q, k=k, v=k, mask=np.ones((3, 3))), "mask"),
        ("attention_online", dict(q=q, k=k, v=k, block_size=0), "block_size"),
        ("decode_mxfp4", dict(blocks=blocks.astype(np.int8), scales=scales), "blocks"),
        ("decode_mxfp4", dict(blocks=blocks, scales=scales[:, :1]), "scales"),
        ("decode_mxfp4", dict(blocks=blocks, scales=scales, dtype=np.float16), "dtype"),
        ("decode_mxfp4", dict(blocks=blocks, scales=scales, nibble_order="msb"), "nibble_order"),
        ("decode_mxfp4", dict(blocks=blocks, scales=scales, scale_bias=1.5), "scale_bias"),
        ("mxfp4_linear", dict(x=np.ones((2, 32)), blocks=blocks, scales=scales), "blocks"),
        ("mxfp4_linear", dict(x=np.ones((2, 64)), blocks=blocks, scales=scales, bias=np.ones(3)), "bias"),
        ("mxfp4_linear", dict(x=np.ones((2, 64)), blocks=blocks, scales=scales, nibble_order="x"), "nibble_order"),
        ("router_topk_softmax", dict(logits=f, k=5), "k"),
        ("router_topk_softmax", dict(logits=np.zeros((2, 0)), k=1), "logits"),  # no expert (NaN rows are routed)
    ]


@pytest.mark.parametrize("op,kwargs,name", _bad_calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_raise_the_reference_error(op, kwargs, name):
    with pytest.raises(ArgumentError, match=f"^{name}") as ref:
        getattr(ops, op)(**kwargs)
    with pytest.raises(ArgumentError, match=f"^{name}") as got:
        getattr(NB, op)(**kwargs)
    assert str(got.value) == str(ref.value)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    rng = np.random.default_rng(5)
    q, k, v = rand(rng, (64, 6, 32), np.float32), rand(rng, (64, 2, 32), np.float32), rand(rng, (64, 2, 32), np.float32)
    blocks, scales = encode_mxfp4(rng.standard_normal((40, 64)))
    x = rand(rng, (6, 64), np.float32)
    calls = [lambda: NB.attention(q, k, v), lambda: NB.with_kernel("attention", "naive").attention(q, k, v),
             lambda: NB.mxfp4_linear(x, blocks, scales), lambda: NB.rms_norm(x, x[0]),
             lambda: NB.router_topk_softmax(x, 3)[0]]
    monkeypatch.setattr(_common, "SERIAL_BELOW", 0)  # always the parallel path
    old = numba.get_num_threads()
    try:
        outs = {}
        for nt in (1, 2):
            numba.set_num_threads(nt)
            outs[nt] = [c() for c in calls]
    finally:
        numba.set_num_threads(old)
    for a, b in zip(outs[1], outs[2]):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- whole tiny models

# float64: both sides are backward-stable float64 computations of O(10) logits that differ only in
# summation order (tens of terms per dot product, ~30 ops deep); each op's float64 budget is
# ~gamma_K |x||W| ~ 1e-14, amplified at most ~100x through norms and softmax over two layers:
# 1e-10 absolute leaves ~1e3x room and is ~1e6 float64 ulps of 10.
TOL64 = 1e-10
# float32 (the ops run in float32, the model rounds every op output to float32): the same chain at
# u = 2^-24 gives ~1e-5 on O(10) logits; 1e-3 absolute is 100x that and 2^-7 relative to 10.
TOL32 = 1e-3
ARCHS = [("gpt2", False), ("llama", False), ("qwen3", False), ("mistral", False), ("mixtral", False),
         ("gpt_oss", False), ("gpt_oss", True)]


@pytest.mark.parametrize("arch,mxfp4", ARCHS, ids=[a + ("-mxfp4" if m else "") for a, m in ARCHS])
@pytest.mark.parametrize("mode,tol", [("float64", TOL64), ("float32", TOL32)])
def test_whole_tiny_model_matches_the_reference(arch, mxfp4, mode, tol):
    cfg = tiny_config(arch)
    m = Model(cfg, tiny_weights(cfg, mxfp4=mxfp4), dtype=mode)
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, 13)
    nb_ops = NB.as_ops()
    ref = forward(m.config, m.weights, ids, dtype=mode)
    got = forward(m.config, m.weights, ids, dtype=mode, ops=nb_ops)
    assert got.dtype == ref.dtype
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    assert err.max() <= tol, (f"{arch} {mode}: max |numba - reference| = {err.max():.3g} > {tol:g} at {worst}: "
                              f"expected {ref[worst]!r}, actual {got[worst]!r}; fallbacks {nb_ops.fallbacks}")
    # cached decoding (T=1 queries at q_offset = position) through the backend equals the full pass
    cache = m.new_cache()
    parts = [forward(m.config, m.weights, ids[:6], cache=cache, dtype=mode, ops=nb_ops)]
    parts += [forward(m.config, m.weights, ids[t:t + 1], cache=cache, dtype=mode, ops=nb_ops) for t in range(6, 13)]
    np.testing.assert_allclose(np.concatenate(parts), ref, rtol=0, atol=tol)


def test_no_kernel_closure_holds_a_compiled_function():
    """numba's disk cache keys a closure's kernel by its pickled cells, and a compiled function
    (Dispatcher) pickles differently in every process: such a kernel misses the cache and compiles in
    every process (measured: the first SmolLM2 prompt 5.4 s instead of 0.8 s). Helpers a kernel calls
    are module-level functions, so that only constants (the dtype's type) sit in closures."""
    import importlib
    import pkgutil

    from numba.core.dispatcher import Dispatcher

    import refimpl.backends.numba as pkg

    checked, bad = 0, []
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            kernels = [obj] if isinstance(obj, Dispatcher) else []
            if callable(obj) and hasattr(obj, "built"):  # a per_dtype factory: build both dtypes
                for dt in (np.float32, np.float64):
                    built = obj(dt)
                    kernels += [k for k in (built if isinstance(built, tuple) else (built,)) if isinstance(k, Dispatcher)]
            for k in kernels:
                checked += 1
                cells = [c.cell_contents for c in (k.py_func.__closure__ or ())]
                if any(isinstance(c, Dispatcher) for c in cells):
                    bad.append(f"{info.name}.{name} ({k.py_func.__qualname__})")
    assert checked > 20, checked
    assert not bad, f"kernels whose closure holds a compiled function (never cached on disk): {bad}"
