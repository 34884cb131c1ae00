"""MXFP4 decode and the fused decode-and-multiply kernel (refimpl.ops.mxfp4).

Decode: value = E2M1[code] x 2^(scale code - bias), formed as one product in the output dtype of
the two exact factors (the E2M1 table and refimpl's decode_e8m0 table of the 256 scale codes), so
it is the correctly rounded exact product: the reference's result bit for bit, overflow to +-inf,
0 x inf = NaN and subnormals included. bfloat16 output: decoded in float64 (exact), then rounded
once, as the reference does.

mxfp4_linear "fused" (default): one parallel work item per output row. Each 32-weight block is
decoded into 16 even and 16 odd weights, and every token adds x_even . w_even + x_odd . w_odd into
16 partial sums (x split into even and odd positions once per call, so the nibbles of a byte meet
contiguous inputs); the partial sums are added at the end, then the bias. Blocks whose scale keeps
every E2M1 value a normal float32 (2^-125 .. 2^125) are decoded from bits, 32-bit integer work that
vectorises (`_e2m1`: the same bits as the table product); other scales (subnormal, overflowing,
code 255 = inf) use the table product E2M1[code] x 2^e in the compute dtype, as `decode_mxfp4`.
Every weight is exactly the reference's decoded weight and every product x*w is the reference's;
only the summation order differs (within the op's budget, gamma_(K+1) |x| |W|). The weight matrix
is never materialised. "decode_matmul": the decode kernel
builds the [out, in] matrix, then NumPy's matmul (BLAS) multiplies (better for many tokens).
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from refimpl.errors import ArgumentError
from refimpl.ops.mxfp4 import BLOCK_SIZE, FP4_E2M1_VALUES, decode_e8m0
from refimpl.precision import bfloat16, compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, count, per_dtype

_I32 = ir.IntType(32)


_TABLES = {}


def tables(dt, scale_bias):
    """(E2M1 values [16], 2^(s - scale_bias) for s = 0..255 [256]) in dtype dt; both exact. Kept per
    (dtype, bias)."""
    key = (np.dtype(dt), int(scale_bias))
    if key not in _TABLES:
        vals = FP4_E2M1_VALUES.astype(dt)  # [16]
        with np.errstate(over="ignore"):
            scl = decode_e8m0(np.arange(256, dtype=np.uint8), bias=scale_bias).astype(dt)  # [256]
        e = np.arange(256, dtype=np.int64) - int(scale_bias)  # [256] the scale exponents
        safe = (e >= -125) & (e <= 125)  # [256]: 0.5 x 2^e .. 6 x 2^e are normal float32 (_e2m1 exact)
        adj = (np.where(safe, e, 0) << 23).astype(np.int32)  # [256]: e in the float32 exponent field
        _TABLES[key] = vals, scl, safe, adj
    return _TABLES[key][:2]


def bit_tables(scale_bias):
    """(safe [256] bool, adj [256] int32) for `_e2m1`: which scale codes it decodes exactly, and their
    exponents shifted into the float32 exponent field."""
    tables(np.float32, scale_bias)
    return _TABLES[(np.dtype(np.float32), int(scale_bias))][2:]


def _make_decode(dt):
    @njit(parallel=True, **JIT)
    def kernel(nt, blocks, scales, vals, scl, high_first, out):  # blocks [R, G, 16]; scales [R, G]; out [R, G*32]
        old = enter(nt)
        R, G = scales.shape
        for r in prange(R):
            for g in range(G):
                sc = scl[scales[r, g]]
                base = 32 * g
                for i in range(16):
                    byte = np.int64(blocks[r, g, i])
                    lo, hi = byte & 15, byte >> 4
                    if high_first:
                        lo, hi = hi, lo
                    out[r, base + 2 * i] = vals[lo] * sc
                    out[r, base + 2 * i + 1] = vals[hi] * sc
        leave(old)

    return kernel


@intrinsic
def _e2m1(typingctx, byte, shift, adj):
    """The E2M1 code (byte >> shift) & 15 times 2^e as a float32, built from bits (adj = e << 23).

    Exact (the same bits as E2M1[code] x 2^e) when every nonzero magnitude 0.5 .. 6 times 2^e is a
    normal float32, i.e. -125 <= e <= 125 (`_safe`); other scales take the table product. All
    integer work is 32-bit, so LLVM vectorises it 8 lanes wide: magnitude m = code & 7 maps to
    exponent/mantissa bits (m << 22) + (126 << 23) for m >= 2, 126 << 23 (0.5) for m = 1, 0 for 0."""
    sig = types.float32(types.uint8, types.int32, types.int32)

    def codegen(context, builder, signature, args):
        b, sh, a = args
        c = builder.and_(builder.lshr(builder.zext(b, _I32), sh), ir.Constant(_I32, 15))
        mag = builder.and_(c, ir.Constant(_I32, 7))
        half = builder.add(ir.Constant(_I32, 126 << 23), a)  # 0.5 x 2^e
        bits = builder.add(builder.shl(mag, ir.Constant(_I32, 22)), half)
        bits = builder.select(builder.icmp_unsigned("==", mag, ir.Constant(_I32, 1)), half, bits)
        bits = builder.select(builder.icmp_unsigned("==", mag, ir.Constant(_I32, 0)), ir.Constant(_I32, 0), bits)
        bits = builder.or_(bits, builder.shl(builder.and_(c, ir.Constant(_I32, 8)), ir.Constant(_I32, 28)))
        return builder.bitcast(bits, ir.FloatType())

    return sig, codegen


def _make_fused(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, xe, xo, blocks, scales, adj, safe, vals, scl, sh_e, sh_o, bias, has_bias, out):
        # xe, xo [N, G*16]: the inputs at even and odd positions; blocks [O, G, 16]; scales [O, G]
        # adj [256] int32, safe [256] bool (per scale code); bias [O]; out [N, O]
        old = enter(nt)
        N = xe.shape[0]
        O, G = scales.shape
        for o in prange(O):
            for n in range(N):
                acc = np.zeros(16, dtype=xe.dtype)  # [16] partial sums
                xen, xon = xe[n], xo[n]  # [G*16]
                for g in range(G):
                    s = scales[o, g]
                    b = blocks[o, g]  # [16]
                    if safe[s]:
                        a = adj[s]
                        for i in range(16):
                            acc[i] += xen[16 * g + i] * _e2m1(b[i], sh_e, a) + xon[16 * g + i] * _e2m1(b[i], sh_o, a)
                    else:  # E2M1 x 2^e in the compute dtype (subnormal, overflowing or NaN scales)
                        sc = scl[s]
                        for i in range(16):
                            byte = np.int64(b[i])
                            acc[i] += (xen[16 * g + i] * (vals[(byte >> sh_e) & 15] * sc)
                                       + xon[16 * g + i] * (vals[(byte >> sh_o) & 15] * sc))
                y = F(0)
                for i in range(16):  # in a fixed order: the same bits whatever the thread count
                    y += acc[i]
                out[n, o] = y + bias[o] if has_bias else y
        leave(old)

    return kernel


decode_kernel = per_dtype(_make_decode)
fused_kernel = per_dtype(_make_fused)


def _decode(b, s, dt, nibble_order, scale_bias):
    """Checked blocks [..., G, 16], scales [..., G] -> [..., G*32] in dt (float32 or float64)."""
    lead, g = b.shape[:-2], b.shape[-2]
    bc = np.ascontiguousarray(b).reshape(count(lead), g, 16)  # [R, G, 16]
    sc = np.ascontiguousarray(s).reshape(count(lead), g)  # [R, G]
    vals, scl = tables(dt, scale_bias)
    out = np.empty((bc.shape[0], g * BLOCK_SIZE), dtype=dt)  # [R, G*32]
    launch(decode_kernel(dt), out.size, bc, sc, vals, scl, nibble_order == "high_first", out)
    return out.reshape(*lead, g * BLOCK_SIZE)  # [..., G*32]


def decode_mxfp4(blocks, scales, *, dtype=np.float32, nibble_order="low_first", scale_bias=127):
    """refimpl.ops.decode_mxfp4 (same contract, same bits)."""
    b, s, dt, scale_bias = np.asarray(blocks), np.asarray(scales), np.dtype(dtype), int(scale_bias)  # checked by the base
    if dt == bfloat16:
        with np.errstate(over="ignore", invalid="ignore"):
            return _decode(b, s, np.dtype(np.float64), nibble_order, scale_bias).astype(bfloat16)
    return _decode(b, s, dt, nibble_order, scale_bias)


def mxfp4_linear(x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127, variant="fused"):
    """refimpl.ops.mxfp4_linear (same contract): y = x @ decode(W).T + bias, bias added after the product."""
    xa, b, s = np.asarray(x), np.asarray(blocks), np.asarray(scales)  # checked by the backend base
    bb = None if bias is None else np.asarray(bias)
    dt, scale_bias = compute_dtype(xa, bb), int(scale_bias)
    if variant == "decode_matmul":
        wt = _decode(b, s, dt, nibble_order, scale_bias)  # [out, in]
        with np.errstate(all="ignore"):
            y = xa.astype(dt, copy=False) @ wt.T  # [..., out]
            if bb is not None:
                y = y + bb.astype(dt, copy=False)
        return y
    if variant != "fused":
        raise ArgumentError(f"variant: expected 'fused' or 'decode_matmul', found {variant!r}")
    n_out, k = b.shape[0], xa.shape[-1]
    xc = contiguous(xa, dt).reshape(count(xa.shape[:-1]), k)  # [N, in]
    xe, xo = np.ascontiguousarray(xc[:, 0::2]), np.ascontiguousarray(xc[:, 1::2])  # [N, in/2] each
    vals, scl = tables(dt, scale_bias)
    safe, adj = bit_tables(scale_bias)
    sh_e, sh_o = (np.int32(4), np.int32(0)) if nibble_order == "high_first" else (np.int32(0), np.int32(4))
    bc = contiguous(bb, dt) if bb is not None else np.zeros(1, dtype=dt)  # [out] (or unused)
    out = np.empty((xc.shape[0], n_out), dtype=dt)  # [N, out]
    launch(fused_kernel(dt), (xc.shape[0] + 1) * n_out * k, xe, xo, np.ascontiguousarray(b).reshape(n_out, -1, 16),
           np.ascontiguousarray(s).reshape(n_out, -1), adj, safe, vals, scl, sh_e, sh_o, bc, bb is not None, out)
    return out.reshape(*xa.shape[:-1], n_out)  # [..., out]
