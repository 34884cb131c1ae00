"""gpt-oss on the Numba backend: bfloat16 weights kept as stored, and the MXFP4 decode-path kernels.

Expected values come from the NumPy reference (refimpl.ops / the reference forward), never from the
backend; each op is judged by refimpl.conformance.compare with its budget (spec/budgets.md).
"""

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'refimpl[numba]'): "
                                            "the Numba backend cannot be tested")

from canonical_tiny import tiny_config, tiny_weights  # noqa: E402
from refimpl.api import Model  # noqa: E402
from refimpl.backends import get_backend  # noqa: E402
from refimpl.backends.numba import _common, bf16  # noqa: E402
from refimpl.conformance import compare  # noqa: E402
from refimpl.ops import ops  # noqa: E402
from refimpl.precision import bfloat16  # noqa: E402

NB = get_backend("numba")


def _widen(v):
    if isinstance(v, np.ndarray) and (v.dtype.kind == "f" or v.dtype == bfloat16):
        return v.astype(np.float64)
    return v


def check(op, inputs, backend=NB):
    """The backend's op against the reference's float64 oracle (budget), and the reference's dtype rule."""
    actual = getattr(backend.as_ops(fallback=False), op)(**inputs)
    expected = getattr(ops, op)(**{k: _widen(v) for k, v in inputs.items()})
    rep = compare(expected, actual, op=op, inputs=inputs, context=dict(backend=backend.name))
    assert rep.ok, str(rep)
    assert np.asarray(actual).dtype == np.asarray(getattr(ops, op)(**inputs)).dtype
    return actual


# ----------------------------------------------------------------------------- linear, bfloat16 weight

@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("t", [1, 3, 16, 17])  # the GEMV (T < 16) and the widened-chunk BLAS path
@pytest.mark.parametrize("n_out,k", [(1, 1), (33, 15), (17, 16), (40, 50), (3, 2880)])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_bf16_weight(dt, t, n_out, k, bias):
    rng = np.random.default_rng(n_out * 1000 + k + t)
    w = rng.standard_normal((n_out, k)).astype(bfloat16)
    inputs = dict(x=rng.standard_normal((2, t, k)).astype(dt), weight=w,
                  bias=rng.standard_normal(n_out).astype(dt) if bias else None)
    check("linear", inputs)


def test_linear_bf16_nonfinite_weights_and_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((70, 33)).astype(bfloat16)
    w[5, 7], w[9, 0], w[60, 32] = np.inf, -np.inf, np.nan
    monkeypatch.setattr(bf16, "CHUNK", 16)  # several widened chunks, the last one partial
    for t in (1, 17):
        with np.errstate(invalid="ignore"):
            check("linear", dict(x=rng.standard_normal((t, 33)).astype(np.float32), weight=w))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_bf16_linear_does_not_depend_on_the_thread_count(monkeypatch):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((300, 2880)).astype(bfloat16)
    x = rng.standard_normal((2, 2880)).astype(np.float32)
    monkeypatch.setattr(_common, "SERIAL_BELOW", 0)  # the parallel kernel whenever there are 2 threads
    old = numba.get_num_threads()
    try:
        outs = []
        for nt in (1, 2):
            numba.set_num_threads(nt)
            outs.append(NB.linear(x, w))
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(outs[0], outs[1])


# ----------------------------------------------------------------------------- mxfp4_linear, every scale code

@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("order", ["low_first", "high_first"])
def test_mxfp4_linear_every_scale_code(n, order):
    """Scale codes 0..255: subnormal and zero powers of two, the normal range the bit decode covers
    (2^-125 .. 2^125) and beyond it, code 255 (+inf: NaN for zero codes)."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, (256, 3, 16), dtype=np.uint8)
    scales = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=1)  # row r: scale code r
    rng.shuffle(scales, axis=1)
    x64 = rng.standard_normal((n, 96))
    with np.errstate(invalid="ignore", over="ignore"):
        check("mxfp4_linear", dict(x=x64, blocks=blocks, scales=scales, nibble_order=order))
        # float32: codes whose values overflow float32 (|E2M1| x 2^e >= 2^128: 254, 255) are judged against
        # the reference in float32 (the float64 oracle would not overflow): same NaN/Inf pattern, rest in
        # budget. Codes 241..253 are left out here: their finite products (up to 6 x 2^126) overflow or not
        # in a float32 sum depending on the summation order, which no budget covers.
        s32 = np.where((scales > 240) & (scales < 254), np.uint8(127), scales)
        inputs = dict(x=x64.astype(np.float32), blocks=blocks, scales=s32, nibble_order=order)
        expected = ops.mxfp4_linear(**inputs)
        rep = compare(expected, NB.as_ops(fallback=False).mxfp4_linear(**inputs), op="mxfp4_linear", inputs=inputs)
    assert rep.ok, str(rep)


# ----------------------------------------------------------------------------- whole tiny models, bf16 kept

def _as_bf16(weights):
    """Every floating matrix (2-D and up) of a canonical weight dict stored as bfloat16."""
    out = {}
    for name, w in weights.items():
        a = np.asarray(w)
        out[name] = a.astype(bfloat16) if a.dtype.kind == "f" and a.ndim >= 2 else w
    return out


@pytest.mark.parametrize("arch,mxfp4", [("gpt_oss", True), ("llama", False)])
@pytest.mark.parametrize("mode,tol", [("float64", 1e-10), ("float32", 1e-3)])
def test_tiny_model_with_bf16_weights_kept(arch, mxfp4, mode, tol):
    cfg = tiny_config(arch)
    w = _as_bf16(tiny_weights(cfg, mxfp4=mxfp4))
    ref_model = Model(cfg, w, dtype=mode)  # the NumPy reference: bfloat16 matrices widened once at load
    nb_model = Model(cfg, w, dtype=mode, backend="numba")  # kept bfloat16 (NumbaBackend.keeps_bf16)
    assert nb_model.weights["layers.0.attn.o.weight"].dtype == bfloat16
    assert ref_model.weights["layers.0.attn.o.weight"].dtype == np.dtype(mode)
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, 11)
    ref = ref_model.logits(ids)
    got = nb_model.logits(ids)
    assert got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    cache = nb_model.new_cache()
    parts = [nb_model._to_host(nb_model._forward(ids[:5], cache=cache))]
    parts += [nb_model._to_host(nb_model._forward(ids[t:t + 1], cache=cache)) for t in range(5, 11)]
    np.testing.assert_allclose(np.concatenate(parts), ref, rtol=0, atol=tol)
    assert Model(cfg, w, dtype=mode, backend="numba", keep_bf16=False).weights[
        "layers.0.attn.o.weight"].dtype == np.dtype(mode)
