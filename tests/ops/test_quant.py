"""refimpl.ops.quant: packed GGUF weights (spec/quant.md) against the gguf package's own routines.

The expected values come from `gguf.quants` (llama.cpp's NumPy reference), never from refimpl.
"""

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'refimpl[gguf]'): "
                                          "packed GGUF weights cannot be read")

from refimpl import ArgumentError  # noqa: E402
from refimpl.ops import ops  # noqa: E402
from refimpl.ops.quant import QTYPES, PackedGGUF, random_packed  # noqa: E402

QUANTIZABLE = ("Q4_0", "Q4_1", "Q8_0")  # gguf.quants can encode these (K-quants: decode only)


def test_block_sizes_are_gguf_s():
    for q, (bs, ts) in QTYPES.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[q]] == (bs, ts), q


@pytest.mark.parametrize("qtype", sorted(QTYPES))
def test_dequantize_is_gguf_bit_for_bit(qtype):
    rng = np.random.default_rng(1)
    shape = (5, QTYPES[qtype][0] * 3)
    b = random_packed(rng, qtype, shape)
    w = ops.dequantize_gguf(b, qtype, shape)
    expect = gguf.quants.dequantize(b, gguf.GGMLQuantizationType[qtype]).reshape(shape)
    assert w.dtype == np.float32 and np.isfinite(w).all()
    assert np.array_equal(w.view(np.uint32), expect.view(np.uint32))


@pytest.mark.parametrize("qtype", QUANTIZABLE)
def test_round_trip_through_gguf_quantize(qtype):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 64)).astype(np.float32)
    b = gguf.quants.quantize(w, gguf.GGMLQuantizationType[qtype])
    d = ops.dequantize_gguf(b, qtype, w.shape)
    # a 4-bit grid of 16 levels over each block's range, or 8 bits: within one step of the input
    step = (np.abs(w).max() * 2 / 15) if qtype != "Q8_0" else np.abs(w).max() / 127
    assert np.abs(d - w).max() <= step


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gguf_linear_is_linear_on_the_dequantized_weight(dtype):
    rng = np.random.default_rng(3)
    shape = (7, 256)
    b = random_packed(rng, "Q4_K", shape)
    x = rng.standard_normal((2, 3, 256)).astype(dtype)
    bias = rng.standard_normal(7).astype(dtype)
    y = ops.gguf_linear(x, b, "Q4_K", shape, bias)
    w = gguf.quants.dequantize(b, gguf.GGMLQuantizationType.Q4_K).reshape(shape)
    assert y.dtype == dtype and y.shape == (2, 3, 7)
    np.testing.assert_array_equal(y, ops.linear(x, w, bias))


def test_gguf_embedding_rows():
    rng = np.random.default_rng(4)
    shape = (9, 64)
    b = random_packed(rng, "Q8_0", shape)
    ids = np.array([[0, 8], [3, 3]])
    w = gguf.quants.dequantize(b, gguf.GGMLQuantizationType.Q8_0).reshape(shape)
    np.testing.assert_array_equal(ops.gguf_embedding(ids, b, "Q8_0", shape), w[ids])


@pytest.mark.parametrize("call, message", [
    (lambda b: ops.dequantize_gguf(b, "Q5_0", (3, 64)), "qtype: expected one of"),
    (lambda b: ops.dequantize_gguf(b, "Q4_1", (3, 48)), "shape: expected in = a multiple of 32"),
    (lambda b: ops.dequantize_gguf(b.astype(np.int8), "Q4_1", (3, 64)), "blocks: expected a uint8 array"),
    (lambda b: ops.dequantize_gguf(b[:, :-1], "Q4_1", (3, 64)), "blocks: expected shape (3, 40)"),
    (lambda b: ops.gguf_linear(np.ones((2, 32), np.float32), b, "Q4_1", (3, 64)), "x: expected shape [..., 64]"),
    (lambda b: ops.gguf_linear(np.ones((2, 64)), b, "Q4_1", (3, 64), np.ones(4)), "bias: expected shape (3,)"),
    (lambda b: ops.gguf_embedding([3], b, "Q4_1", (3, 64)), "ids: expected values in [0, 3)"),
])
def test_bad_arguments_are_named(call, message):
    b = random_packed(np.random.default_rng(5), "Q4_1", (3, 64))
    with pytest.raises(ArgumentError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        call(b)


def test_packed_weight_holds_the_bytes():
    b = random_packed(np.random.default_rng(6), "Q6_K", (2, 256))
    p = PackedGGUF(b, "Q6_K", (2, 256))
    assert p.blocks is b and p.nbytes == 2 * 210 and "Q6_K" in repr(p)
    with pytest.raises(ArgumentError):
        PackedGGUF(b, "Q6_K", (3, 256))
