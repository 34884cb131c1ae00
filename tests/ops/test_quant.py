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


# ------------------------------------------- found by mutation testing (spec/mutation.md)


@pytest.mark.parametrize("shape", [(0, 32), (3, 32, 1), (3,), (True, 32), ("3", 32), (3, 32.0), 3, (3, -32)])
def test_bad_shapes_are_named(shape):
    b = np.zeros((3, 18), np.uint8)  # one Q4_0 block per row: 2 + 16 bytes
    with pytest.raises(ArgumentError, match=r"^shape: expected \(out, in\), two integers >= 1"):
        ops.dequantize_gguf(b, "Q4_0", shape)


def test_smallest_shapes_and_list_shapes_are_accepted():
    # shape (1, 32): one row of one Q4_0 block; d = 1.0 (float16 0x3C00), quants all 0x88 -> (8 - 8) * d = 0
    b = np.zeros((1, 18), np.uint8)
    b[0, :2] = np.array([1.0], np.float16).view(np.uint8)
    b[0, 2:] = 0x88
    w = ops.dequantize_gguf(b, "Q4_0", [1, 32])
    assert w.dtype == np.float32 and w.shape == (1, 32) and not w.any()
    assert PackedGGUF(np.zeros((2, 36), np.uint8), "Q4_0", (2, 64)).shape == (2, 64)


@pytest.mark.parametrize("qtype", [5, None, b"Q4_0"])
def test_non_string_qtype_is_named(qtype):
    with pytest.raises(ArgumentError, match="^qtype"):
        ops.dequantize_gguf(np.zeros((3, 18), np.uint8), qtype, (3, 32))


def test_blocks_that_are_not_an_array_are_named():
    with pytest.raises(ArgumentError, match="^blocks: expected a uint8 array .*found list"):
        ops.dequantize_gguf([[0] * 18] * 3, "Q4_0", (3, 32))


def _q8_0_table(rows, n_in):
    """Q8_0 rows with d = 0.5 and quants q[i] = (r * 7 + i) % 256 as int8: weight = 0.5 * q."""
    nb = n_in // 32
    b = np.zeros((rows, nb, 34), np.uint8)
    b[:, :, :2] = np.array([0.5], np.float16).view(np.uint8)
    q = ((np.arange(rows)[:, None] * 7 + np.arange(n_in)[None, :]) % 256).astype(np.uint8)
    b[:, :, 2:] = q.reshape(rows, nb, 32)
    w = 0.5 * q.view(np.int8).astype(np.float64)  # the Q8_0 rule worked by hand: d * int8
    return b.reshape(rows, nb * 34), w


def test_gguf_linear_one_dimensional_x_without_bias():
    b, w = _q8_0_table(3, 64)
    x = np.linspace(-1, 1, 64)
    y = ops.gguf_linear(x, b, "Q8_0", (3, 64))
    assert y.shape == (3,) and y.dtype == np.float64
    np.testing.assert_allclose(y, w @ x, rtol=1e-12, atol=1e-12)
    # with a bias given as a float64 row
    y = ops.gguf_linear(x, b, "Q8_0", (3, 64), np.array([1.0, -2.0, 0.5]))
    np.testing.assert_allclose(y, w @ x + [1.0, -2.0, 0.5], rtol=1e-12, atol=1e-12)


def test_gguf_linear_x_and_bias_without_shape_are_named():
    b, _ = _q8_0_table(3, 64)
    with pytest.raises(ArgumentError, match=r"^x: expected shape \[\.\.\., 64\].*found shape list"):
        ops.gguf_linear([0.0] * 64, b, "Q8_0", (3, 64))
    with pytest.raises(ArgumentError, match=r"^x: expected shape \[\.\.\., 64\]"):
        ops.gguf_linear(np.float64(1.0), b, "Q8_0", (3, 64))
    with pytest.raises(ArgumentError, match=r"^bias: expected shape \(3,\) \(out = shape\[0\]\).*found shape list"):
        ops.gguf_linear(np.ones(64), b, "Q8_0", (3, 64), [1.0, 2.0, 3.0])


def test_gguf_embedding_empty_and_nested_ids():
    b, w = _q8_0_table(4, 32)
    e = ops.gguf_embedding(np.zeros((0,), np.int64), b, "Q8_0", (4, 32))
    assert e.shape == (0, 32) and e.dtype == np.float32
    e = ops.gguf_embedding(np.zeros((2, 0), np.int64), b, "Q8_0", (4, 32))
    assert e.shape == (2, 0, 32) and e.dtype == np.float32
    ids = np.array([[[3], [0]], [[1], [3]]])
    e = ops.gguf_embedding(ids, b, "Q8_0", (4, 32))
    assert e.shape == (2, 2, 1, 32) and e.dtype == np.float32
    np.testing.assert_array_equal(e, w[ids].astype(np.float32))
