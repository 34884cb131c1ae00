"""The Numba backend's packed-GGUF, linear and embedding kernels, and whole models on packed weights.

Expected values come from the reference (refimpl.ops, which dequantizes with the gguf package's own
routines) or from gguf itself, never from the backend. Budgets: refimpl.conformance.compare.
"""

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'refimpl[numba]'): "
                                            "the Numba backend cannot be tested")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'refimpl[gguf]'): "
                                          "packed GGUF weights cannot be read")

from canonical_tiny import tiny_config, tiny_weights  # noqa: E402
from refimpl.api import Model  # noqa: E402
from refimpl.backends import get_backend  # noqa: E402
from refimpl.conformance import compare  # noqa: E402
from refimpl.ops import ops  # noqa: E402
from refimpl.ops.quant import QTYPES, PackedGGUF, random_packed  # noqa: E402

NB = get_backend("numba")
NBO = NB.as_ops(fallback=False)


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("qtype", sorted(QTYPES))
def test_dequantize_bit_for_bit_over_random_bytes(qtype):
    """Every byte pattern, half-precision scales included (subnormal, inf, NaN): gguf's values exactly."""
    rng = np.random.default_rng(10)
    bs, ts = QTYPES[qtype]
    shape = (40, 2 * bs)
    raw = rng.integers(0, 256, size=(shape[0], shape[1] // bs * ts), dtype=np.uint8)
    with np.errstate(all="ignore"):
        expect = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]).reshape(shape)
    assert _same_bits(NBO.dequantize_gguf(raw, qtype, shape), expect)
    ids = np.array([[39, 0], [7, 7]])
    assert _same_bits(NBO.gguf_embedding(ids, raw, qtype, shape), expect[ids])


@pytest.mark.parametrize("qtype", sorted(QTYPES))
@pytest.mark.parametrize("t", [1, 3, 33])  # 1: fused decode kernel; 3: few-token kernel; 33: tiles + BLAS
# (the thresholds are backends/numba/quant.py's GEMM_MIN_TOKENS = 32 and the fused kernels at T = 1)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gguf_linear_within_budget(qtype, t, dtype):
    rng = np.random.default_rng(11)
    shape = (37, 2 * QTYPES[qtype][0])
    inputs = dict(x=rng.standard_normal((t, shape[1])).astype(dtype), blocks=random_packed(rng, qtype, shape),
                  qtype=qtype, shape=shape, bias=rng.standard_normal(shape[0]).astype(dtype) if t != 3 else None)
    actual = NBO.gguf_linear(**inputs)
    expected = ops.gguf_linear(**{k: (v.astype(np.float64) if k in ("x", "bias") and v is not None else v)
                                  for k, v in inputs.items()})
    rep = compare(expected, actual, op="gguf_linear", inputs=inputs, context=dict(backend="numba", t=t))
    assert rep.ok, str(rep)
    assert actual.dtype == dtype


def _where(rep, case):
    """One line naming the case and the worst element's coordinates (llm.c dev/cuda style)."""
    return (f"{case}: {rep.n_over} of {rep.n_elements} over budget; worst at {rep.worst_index}: expected "
            f"{rep.worst_expected!r}, actual {rep.worst_actual!r}, bound {rep.worst_bound!r}")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request, monkeypatch):
    """1: every kernel's serial twin. 2: the parallel kernels, even on small shapes (launch's
    serial threshold set to 0), so both compiled forms are checked."""
    from refimpl.backends.numba import _common

    if request.param > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s) here; 2 are needed")
    old = numba.get_num_threads()
    numba.set_num_threads(request.param)
    monkeypatch.setattr(_common, "SERIAL_BELOW", 0)
    yield request.param
    numba.set_num_threads(old)


@pytest.mark.parametrize("qtype", sorted(QTYPES))
def test_vector_decoders_equal_scalar_decoders_and_gguf(qtype):
    """The LLVM vector decoders (dequantize_gguf, the fused kernels) against the scalar definition and
    gguf, over random bytes (every half pattern, NaN and inf included), odd row and block counts."""
    from refimpl.backends.numba import quant

    rng = np.random.default_rng(20)
    bs, ts = QTYPES[qtype]
    for rows, blocks in ((1, 1), (3, 5), (33, 7)) if bs == 32 else ((1, 1), (5, 3)):
        raw = rng.integers(0, 256, size=(rows, blocks * ts), dtype=np.uint8)
        with np.errstate(all="ignore"):
            expect = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]).reshape(rows, blocks * bs)
        scalar = np.empty_like(expect)
        quant.scalar_rows(quant.QCODE[qtype], raw, blocks, scalar)
        vector = NBO.dequantize_gguf(raw, qtype, (rows, blocks * bs))
        for name, got in (("scalar", scalar), ("vector", vector)):
            bad = ~((got.view(np.uint32) == expect.view(np.uint32)) | (np.isnan(got) & np.isnan(expect)))
            assert not bad.any(), (f"{qtype} {name} decoder, rows {rows} blocks {blocks}: first difference at "
                                   f"{tuple(int(v) for v in np.argwhere(bad)[0])}: {got[bad][0]!r} != gguf {expect[bad][0]!r}")


@pytest.mark.parametrize("qtype", sorted(QTYPES))
def test_gguf_linear_many_shapes(qtype, threads):
    """Every path of gguf_linear (fused T=1, few-token kernel, tile + BLAS from GEMM_MIN_TOKENS on)
    against the reference, odd row counts, T = 1..20 and around GEMM_MIN_TOKENS, with and without
    bias, float32 and float64."""
    from refimpl.backends.numba import quant

    rng = np.random.default_rng(21)
    bs = QTYPES[qtype][0]
    edges = (quant.GEMM_MIN_TOKENS - 1, quant.GEMM_MIN_TOKENS, quant.GEMM_MIN_TOKENS + 1)
    tokens = (*range(1, 21), *edges) if threads == 1 else (1, 2, 5, *edges)  # 2 threads: the same code, parallel
    for out in (1, 2, 3, 17, 34) if threads == 1 else (1, 3, 34):
        for blocks in ((1, 3) if bs == 32 else (1, 2)):
            shape = (out, blocks * bs)
            packed = random_packed(rng, qtype, shape)
            for t in tokens:
                for dtype in (np.float32, np.float64):
                    with_bias = (t + out) % 2 == 0
                    inputs = dict(x=rng.standard_normal((t, shape[1])).astype(dtype), blocks=packed, qtype=qtype,
                                  shape=shape, bias=rng.standard_normal(out).astype(dtype) if with_bias else None)
                    actual = NBO.gguf_linear(**inputs)
                    expected = ops.gguf_linear(**{k: (v.astype(np.float64) if k in ("x", "bias") and v is not None else v)
                                                  for k, v in inputs.items()})
                    rep = compare(expected, actual, op="gguf_linear", inputs=inputs)
                    case = f"{qtype} shape {shape} T={t} {np.dtype(dtype).name} bias={with_bias} threads={threads}"
                    assert rep.ok and actual.dtype == dtype, _where(rep, case)


def test_linear_bfloat16_weights_many_shapes(threads):
    """A bfloat16 weight stays bfloat16 (gemv_bf16, or chunks widened for BLAS): the reference linear on
    the exactly widened weight, within linear's budget; float32 weights at T = 1 too."""
    from refimpl.precision import bfloat16

    from refimpl.backends.numba import linear as numba_linear

    rng = np.random.default_rng(22)
    for out, k in ((1, 1), (3, 7), (17, 64), (33, 129)):
        w16 = rng.standard_normal((out, k)).astype(bfloat16)
        w32 = rng.standard_normal((out, k)).astype(np.float32)
        for t in range(1, 21):
            for dtype in (np.float32, np.float64):
                for w in (w16, w32) if t == 1 else (w16,):
                    with_bias = (t + out) % 2 == 0
                    inputs = dict(x=rng.standard_normal((t, k)).astype(dtype), weight=w,
                                  bias=rng.standard_normal(out).astype(dtype) if with_bias else None)
                    actual = numba_linear.linear(**inputs)
                    expected = ops.linear(inputs["x"].astype(np.float64), w.astype(np.float64),
                                          None if inputs["bias"] is None else inputs["bias"].astype(np.float64))
                    rep = compare(expected, actual, op="linear", inputs=inputs)
                    case = f"weight {w.dtype.name} [{out}, {k}] T={t} x {np.dtype(dtype).name} bias={with_bias} threads={threads}"
                    assert rep.ok and actual.dtype == dtype, _where(rep, case)
    assert NBO.linear(np.ones((1, 3), np.float32), np.ones((2, 3), bfloat16)).dtype == np.float32  # through the backend


@pytest.mark.parametrize("t", [1, 2, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_and_embedding(t, dtype):
    rng = np.random.default_rng(12)
    inputs = dict(x=rng.standard_normal((t, 33)).astype(dtype), weight=rng.standard_normal((129, 33)).astype(dtype),
                  bias=rng.standard_normal(129).astype(dtype))
    rep = compare(ops.linear(**{k: v.astype(np.float64) for k, v in inputs.items()}), NBO.linear(**inputs),
                  op="linear", inputs=inputs)
    assert rep.ok, str(rep)
    table = rng.standard_normal((11, 7)).astype(dtype)
    ids = np.array([[3, 10, 0]])
    np.testing.assert_array_equal(NBO.embedding(ids, table), table[ids])


def test_attention_reads_a_strided_cache_view_as_a_copy():
    """The KV cache layout: per layer a buffer [Hkv, Tmax, D]; attention gets the view [T, Hkv, D]."""
    rng = np.random.default_rng(13)
    Hq, Hkv, D, Tmax, T = 6, 2, 16, 40, 23
    kbuf = rng.standard_normal((Hkv, Tmax, D)).astype(np.float32)
    vbuf = rng.standard_normal((Hkv, Tmax, D)).astype(np.float32)
    k, v = kbuf[:, :T].transpose(1, 0, 2), vbuf[:, :T].transpose(1, 0, 2)  # [T, Hkv, D], not contiguous
    assert not k.flags.c_contiguous
    q = rng.standard_normal((1, Hq, D)).astype(np.float32)
    strided = NBO.attention(q, k, v, q_offset=T - 1)
    copied = NBO.attention(q, np.ascontiguousarray(k), np.ascontiguousarray(v), q_offset=T - 1)
    assert _same_bits(strided, copied)
    rep = compare(ops.attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), q_offset=T - 1),
                  strided, op="attention", inputs=dict(q=q, k=k, v=v, q_offset=T - 1))
    assert rep.ok, str(rep)


def _packed_tiny(qtypes=("Q8_0", "Q4_1", "Q4_0")):
    cfg = tiny_config("llama")
    W = tiny_weights(cfg, seed=3)
    out, i = {}, 0
    for name, w in W.items():
        a = np.asarray(w)
        if a.ndim == 2 and name != "tok_embed" and a.shape[1] % 32 == 0 and name != "lm_head":
            q = qtypes[i % len(qtypes)]
            i += 1
            out[name] = PackedGGUF(gguf.quants.quantize(a.astype(np.float32), gguf.GGMLQuantizationType[q]), q, a.shape)
        else:
            out[name] = w
    return cfg, out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_whole_tiny_model_on_packed_weights(dtype):
    cfg, W = _packed_tiny()
    ids = np.array([1, 5, 9, 2, 7, 3])
    ref = Model(cfg, W, dtype=dtype).logits(ids)
    m = Model(cfg, W, dtype=dtype, ops=NB.as_ops())
    got = m.logits(ids)
    tol = 1e-10 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())
    # decode with the KV cache: the same greedy tokens as the reference
    assert m.generate(ids, max_new_tokens=6, stop_ids=()) == Model(cfg, W, dtype=dtype).generate(ids, 6, stop_ids=())
    assert not {"linear", "gguf_linear", "embedding", "rms_norm", "attention", "swiglu", "apply_rope"} & set(m.ops.fallbacks)


def test_smollm2_greedy_tokens_match_the_reference():
    from refimpl.fetch import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except Exception as exc:  # no network and no cached file
        pytest.skip(f"SmolLM2 GGUF not available here and not downloadable ({exc})")
    from refimpl.api import load

    ids = np.array([504, 3575, 282, 4649, 314])  # "The capital of France is"
    packed = load(str(path), backend="numba")
    assert packed.weights["layers.0.mlp.gate_up.weight"].__class__ is PackedGGUF  # stacked at load, still packed
    ref = load(str(path))  # the reference: dequantized once at load
    assert packed.generate(ids, max_new_tokens=8, stop_ids=()) == ref.generate(ids, max_new_tokens=8, stop_ids=())

