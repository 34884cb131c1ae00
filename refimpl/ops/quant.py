"""GGUF block-quantized weights kept packed: dequantize, gather rows, multiply (spec/quant.md).

A packed GGUF matrix is its file bytes, uint8 ``blocks [out, row_bytes]``: every row of the
``[out, in]`` weight (torch ``Linear`` layout) is ``in / block_size`` consecutive blocks of
``type_size`` bytes (``QTYPES``). The meaning of a block is whatever the ``gguf`` package's own
``gguf.quants.dequantize`` says (llama.cpp's NumPy reference, float32 out): refimpl never decodes
the formats by hand in the reference, so these ops are exactly "what gguf reads", then the
reference ``linear`` / ``embedding``. Backends (backends/numba/quant.py) must reproduce the float32
weights bit for bit (every weight is formed in float32 in gguf's order of operations); only the
summation order of the product may differ.
"""

import numpy as np

from .._validate import as_float_array, as_int_array, require
from ..errors import RefimplError
from .linear import linear

__all__ = ["dequantize_gguf", "gguf_linear", "gguf_embedding"]  # the ops; check_<op> are their validators

# qtype name -> (elements per block, bytes per block), as gguf.GGML_QUANT_SIZES (checked in tests).
QTYPES = {
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q8_0": (32, 34),
    "Q4_K": (256, 144),
    "Q6_K": (256, 210),
}


class PackedGGUF:
    """One packed GGUF matrix as the loader keeps it: ``blocks`` uint8 [out, row_bytes] (often a
    read-only memory map of the file), ``qtype`` a name of ``QTYPES``, ``shape`` (out, in).

    The forward pass sends it to ``gguf_linear`` / ``gguf_embedding`` (spec/quant.md); it is never
    converted to a dense array unless an op asks for it (``dequantize_gguf``).
    """

    __slots__ = ("blocks", "qtype", "shape")

    def __init__(self, blocks, qtype, shape):
        check_dequantize_gguf(blocks, qtype, shape)
        self.blocks, self.qtype, self.shape = blocks, str(qtype), (int(shape[0]), int(shape[1]))

    @property
    def nbytes(self):
        return int(self.blocks.nbytes)

    def __repr__(self):
        return f"PackedGGUF({self.qtype}, shape={self.shape}, {self.nbytes} bytes)"


def _gguf():
    try:
        import gguf
    except ImportError:
        raise RefimplError("packed GGUF weights need the `gguf` package: pip install 'refimpl[gguf]'") from None
    return gguf


def row_bytes(qtype, n_in):
    """Bytes of one packed row of n_in weights."""
    bs, ts = QTYPES[qtype]
    return n_in // bs * ts


def check_dequantize_gguf(blocks, qtype, shape):
    """ArgumentError unless blocks is uint8 [out, in/block_size*type_size] for this qtype and shape (out, in)."""
    spec = QTYPES.get(qtype) if isinstance(qtype, str) else None
    if spec is None:
        require(False, "qtype", f"one of {tuple(QTYPES)}", repr(qtype))
    ok = (isinstance(shape, (tuple, list)) and len(shape) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in shape))
    if not ok:
        require(False, "shape", "(out, in), two integers >= 1", repr(shape))
    out, n_in = int(shape[0]), int(shape[1])
    bs, ts = spec
    if n_in % bs:
        require(False, "shape", f"in = a multiple of {bs} ({qtype} blocks hold {bs} weights)", repr(tuple(shape)))
    dt = getattr(blocks, "dtype", None)
    if dt is None or dt != np.uint8:
        require(False, "blocks", "a uint8 array (the file's bytes)", str(dt) if dt is not None else type(blocks).__name__)
    want = (out, n_in // bs * ts)
    if tuple(blocks.shape) != want:
        require(False, "blocks", f"shape {want} ({out} rows of {n_in // bs} {qtype} blocks of {ts} bytes)",
                f"shape {tuple(blocks.shape)}")


def check_gguf_linear(x, blocks, qtype, shape, bias=None):
    """ArgumentError unless gguf_linear's arguments fit together (x [..., in], bias [out] or None)."""
    check_dequantize_gguf(blocks, qtype, shape)
    xs = getattr(x, "shape", None)
    if xs is None or len(xs) < 1 or xs[-1] != shape[1]:
        require(False, "x", f"shape [..., {shape[1]}] (in = shape[1])",
                f"shape {tuple(xs) if xs is not None else type(x).__name__}")
    if bias is not None:
        bs = getattr(bias, "shape", None)
        if bs is None or tuple(bs) != (shape[0],):
            require(False, "bias", f"shape ({shape[0]},) (out = shape[0])",
                    f"shape {tuple(bs) if bs is not None else type(bias).__name__}")


def check_gguf_embedding(ids, blocks, qtype, shape):
    """ArgumentError unless the packed table is valid and every id is in [0, out)."""
    check_dequantize_gguf(blocks, qtype, shape)
    a = as_int_array(ids, "ids")
    bad = (a < 0) | (a >= shape[0])
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        require(False, "ids", f"values in [0, {shape[0]}) (rows of the table)", f"{int(a[where])} at index {where}")


def dequantize_gguf(blocks, qtype, shape):
    """The float32 weight [out, in] that ``gguf.quants.dequantize`` makes of the packed rows.

    blocks: uint8 [out, row_bytes]; qtype: "Q4_0", "Q4_1", "Q8_0", "Q4_K" or "Q6_K"; shape (out, in).
    Exactly gguf's values (its float32 arithmetic, spec/quant.md); no other rounding.
    """
    check_dequantize_gguf(blocks, qtype, shape)
    gguf = _gguf()
    w = gguf.quants.dequantize(np.asarray(blocks), gguf.GGMLQuantizationType[qtype])
    return np.ascontiguousarray(w, dtype=np.float32).reshape(int(shape[0]), int(shape[1]))


def gguf_linear(x, blocks, qtype, shape, bias=None):
    """``y = x @ dequantize_gguf(blocks, qtype, shape).T + bias``: linear on a packed GGUF weight.

    x: [..., in]; blocks uint8 [out, row_bytes]; bias [out] or None. The weight is gguf's float32
    dequantization (exact); the product follows ``linear``'s dtype rule (compute_dtype(x, bias):
    float32, or float64 if x or bias is float64, the float32 weights widening exactly).
    Returns [..., out].
    """
    check_gguf_linear(x, blocks, qtype, shape, bias)
    xa = as_float_array(x, "x", min_ndim=1)
    return linear(xa, dequantize_gguf(blocks, qtype, shape), bias)


def gguf_embedding(ids, blocks, qtype, shape):
    """Rows ``ids`` of a packed GGUF table, dequantized: ``dequantize_gguf(...)[ids]`` (float32).

    ids: integer array of any shape, every id in [0, out). Only the gathered rows are decoded.
    Returns ids.shape + (in,) float32 (exact, as gguf dequantizes them).
    """
    check_gguf_embedding(ids, blocks, qtype, shape)
    a = as_int_array(ids, "ids")
    rows = np.asarray(blocks)[a.reshape(-1)]  # [n, row_bytes]
    w = dequantize_gguf(rows, qtype, (rows.shape[0], int(shape[1]))) if rows.shape[0] else \
        np.zeros((0, int(shape[1])), np.float32)
    return w.reshape(*a.shape, int(shape[1]))


# Byte offsets of the float16 fields inside one block (d, and m / dmin where the format has one).
HALF_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q8_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,)}


def random_packed(rng, qtype, shape, *, scale=0.05):
    """Random packed rows for tests and strategies: uint8 [out, row_bytes] whose quant bytes are
    uniform and whose float16 scale fields are finite (|N(0, scale)| for d, N(0, scale) for m),
    so that every dequantized weight is finite. Not an op."""
    out, n_in = int(shape[0]), int(shape[1])
    bs, ts = QTYPES[qtype]
    nb = n_in // bs
    raw = rng.integers(0, 256, size=(out, nb, ts), dtype=np.uint8)
    for k, off in enumerate(HALF_FIELDS[qtype]):
        v = rng.standard_normal((out, nb)) * scale
        v = np.abs(v) if k == 0 else v
        raw[:, :, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(out, nb, 2)
    return raw.reshape(out, nb * ts)
