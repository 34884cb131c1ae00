"""decode_mxfp4 and mxfp4_linear on kernels/mxfp4.cu.

mxfp4_linear kernels: "fused" (dequantize inside the product: the weight bytes are read once and
never written out as floats; the GPU default for decode) and "decode_matmul" (decode_mxfp4 to
float32, then the backend's linear).
"""

import numpy as np

from .args import I32, I64, as_array, check, f32, grid1, grid_rows, prod, require, storage, unsupported
from .linear import linear

NIBBLE_ORDERS = ("low_first", "high_first")


def _packed(rt, blocks, scales):
    b, s = rt.asarray(blocks), rt.asarray(scales)
    require(b.dtype == np.uint8, "blocks", "dtype uint8", str(b.dtype))
    require(s.dtype == np.uint8, "scales", "dtype uint8", str(s.dtype))
    require(b.ndim >= 2 and b.shape[-1] == 16, "blocks", "last dimension 16 (32 E2M1 codes, two per byte)",
            f"shape {b.shape}")
    require(s.shape == b.shape[:-1], "scales", f"shape {b.shape[:-1]} (the leading dimensions of blocks {b.shape})",
            f"shape {s.shape}")
    return rt.contiguous(b), rt.contiguous(s)


def _knobs(nibble_order, scale_bias):
    require(nibble_order in NIBBLE_ORDERS, "nibble_order", f"one of {NIBBLE_ORDERS}", repr(nibble_order))
    require(isinstance(scale_bias, (int, np.integer)) and not isinstance(scale_bias, bool), "scale_bias", "an integer",
            repr(scale_bias))
    require(-(2**30) < scale_bias < 2**30, "scale_bias", "an integer of magnitude below 2^30", repr(scale_bias))


def decode_mxfp4(rt, blocks, scales, *, dtype=np.float32, nibble_order="low_first", scale_bias=127):
    """Packed MXFP4 [..., G, 16] + scales [..., G] -> [..., G*32] in float32 or bfloat16."""
    check("decode_mxfp4", blocks, scales, dtype=dtype, nibble_order=nibble_order, scale_bias=scale_bias)
    b, s = _packed(rt, blocks, scales)
    _knobs(nibble_order, scale_bias)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    require(dt in (np.dtype(np.float32), np.dtype(np.float64), rt.host_bf16), "dtype",
            "one of float32, float64, bfloat16", repr(dtype))
    if dt == np.float64:
        raise unsupported("decode_mxfp4", "dtype float64 (the kernel decodes to float32 or bfloat16)")
    bf = dt != np.float32
    out = rt.empty(b.shape[:-2] + (b.shape[-2] * 32,), rt.bf16_dtype if bf else np.float32)
    n = prod(b.shape)
    if n:
        rt.launch("mxfp4", f"decode_mxfp4_{'bf16' if bf else 'f32'}", grid1(rt, n), rt.block, b, s, out, I64(n),
                  I32(nibble_order == "high_first"), I32(scale_bias))
    return out


def _linear_args(rt, x, blocks, scales, bias, nibble_order, scale_bias):
    x = as_array(rt, x, "x")
    require(x.ndim >= 1, "x", "at least 1 dimension [..., in]", f"shape {x.shape}")
    b, s = _packed(rt, blocks, scales)
    require(b.ndim == 3, "blocks", "3 dimensions [out, in/32, 16]", f"shape {b.shape}")
    require(b.shape[1] * 32 == x.shape[-1], "blocks",
            f"shape [out, {x.shape[-1] / 32:g}, 16] (in = last dimension of x = {x.shape[-1]}, 32 per block)",
            f"shape {b.shape}")
    bb = None
    if bias is not None:
        bb = as_array(rt, bias, "bias")
        require(bb.shape == (b.shape[0],), "bias", f"shape ({b.shape[0]},) (out = rows of blocks)", f"shape {bb.shape}")
    _knobs(nibble_order, scale_bias)
    return x, b, s, bb


def mxfp4_linear_fused(rt, x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127):
    """y = x @ decode(blocks, scales).T + bias, decoded inside the product, float32 (refimpl.ops.mxfp4_linear)."""
    check("mxfp4_linear", x, blocks, scales, bias, nibble_order=nibble_order, scale_bias=scale_bias)
    x, b, s, bb = _linear_args(rt, x, blocks, scales, bias, nibble_order, scale_bias)
    suf, (xs,) = storage(rt, x)
    bs = f32(rt, bb)
    M, N, G = prod(xs.shape[:-1]), b.shape[0], b.shape[1]
    y = rt.empty(xs.shape[:-1] + (N,), np.float32)
    if M * N:
        rt.launch("mxfp4", f"mxfp4_linear_{suf}", grid_rows(rt, N), rt.block, xs, b, s, bs, y, I32(M), I32(N), I32(G),
                  I32(nibble_order == "high_first"), I32(scale_bias))
    return y


def mxfp4_linear_decode_matmul(rt, x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127):
    """decode_mxfp4 to float32, then linear (two kernels; the weight is written out once as floats)."""
    check("mxfp4_linear", x, blocks, scales, bias, nibble_order=nibble_order, scale_bias=scale_bias)
    x, b, s, bb = _linear_args(rt, x, blocks, scales, bias, nibble_order, scale_bias)
    if x.dtype == np.float64 or (bb is not None and bb.dtype == np.float64):
        f32(rt, x if x.dtype == np.float64 else bb)  # raises Float64NotSupported
    w = decode_mxfp4(rt, b, s, dtype=np.float32, nibble_order=nibble_order, scale_bias=scale_bias)
    return linear(rt, x, w, bb)


KERNELS = {
    "decode_mxfp4": {"bytewise": decode_mxfp4},
    "mxfp4_linear": {"fused": mxfp4_linear_fused, "decode_matmul": mxfp4_linear_decode_matmul},
}
