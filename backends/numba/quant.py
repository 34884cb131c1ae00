"""Packed GGUF weights: dequantize and fused dequantize-and-multiply kernels (refimpl.ops.quant).

Every weight is formed in float32 with gguf's own order of operations (spec/quant.md), so the
dequantized values equal `gguf.quants.dequantize` bit for bit (tested over random bytes):

    Q4_0  w = d * (q - 8)                  Q4_1  w = d * q + m        Q8_0  w = d * q
    Q4_K  w = (d * sc_s) * q - (dmin * m_s)                          Q6_K  w = (d * sc_s) * q

(every product and sum rounded to float32 as written, no fused multiply-add: `contract` is off.)
The half-precision fields are decoded exactly (`_f16`).

Decoders: LLVM vector code (numba intrinsics, below) turns a block into <16 x float> vectors with
separate IEEE multiplies and adds in that order; the scalar decoders (_row_*) are the readable
definition, and both are tested equal to gguf over random bytes.

gguf_linear, by token count T (spec/backends-numba.md has the measurements):
  T = 1, float32: gemv1_vec, fused decode-and-dot, two rows per pass sharing each load of x, 16
      partial sums per row with FMA (a summation-order / contraction difference inside linear's
      budget; the weights themselves stay exact). float64: gemv1_q* (lanes) or gemv.
  T < GEMM_MIN_TOKENS: gemv, ROWS rows decoded into a float32 tile, then four tokens per pass over
      each row (`reassoc` sums).
  T >= GEMM_MIN_TOKENS: the rows decoded (serially) CHUNK at a time into a reused float32 tile and
      multiplied by BLAS (np.matmul).
"""

import threading

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from refimpl.ops.quant import QTYPES

from ._common import JIT, enter, launch, leave, serial_twin

QCODE = {"Q4_0": 0, "Q4_1": 1, "Q8_0": 2, "Q4_K": 3, "Q6_K": 4}
ROWS = 16  # output rows per parallel work item
PREFETCH = 1024  # bytes ahead of the blocks being read that the fused products ask the cache for (see _make_dot)
GEMM_MIN_TOKENS = 32  # from this many tokens on, decode a tile (serially) and let BLAS multiply
# (below: the gemv kernel, all in Numba). Measured on 1 thread, [1536, 576] Q4_1: the kernel beats
# NumPy's float32 BLAS on already-dequantized weights up to T = 12, ties it at 16-32 (where decode +
# BLAS is ~20% slower), and BLAS wins from T = 64 on (bench/bench_ops.py --kernels).
# The tile is decoded serially because a Numba parallel region next to BLAS's own threads on 2 cores
# measured 8 ms for a 1 ms job (both thread pools spin-wait; spec/backends-numba.md).
CHUNK = 2048  # rows per decoded tile in the BLAS path (2048 x 576 float32 = 4.7 MB)

_SUM = dict(JIT, fastmath={"reassoc"})  # reassociation of the dot product only (no contraction, no NaN rules changed)


F16 = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)  # every half, exactly (NumPy's cast)
F16.setflags(write=False)


@njit(inline="always", **JIT)
def _f16(lo, hi):
    """IEEE half (little-endian bytes lo, hi) as float32, exact: one load from a 256 KiB table."""
    return F16[np.int32(lo) | (np.int32(hi) << 8)]


# ----------------------------------------------------------------------------- vector block decoders
# Blocks of every format are decoded by LLVM vector code written here (numba intrinsics), because
# numba's loop vectoriser gives up on the 16-iteration loops of a block (measured 0.25 ns/weight, ~2.4
# GB/s of Q4_1 blocks). A block of 32 weights is two <16 x float> vectors: lo = weights 0..15, hi =
# 16..31, from one unaligned 16-byte load of the quants (both nibbles of byte j: weights j and 16 + j;
# Q8_0: two loads of 16 signed bytes). Every weight is formed with separate IEEE fmul and fadd in
# gguf's order (no contraction: bit for bit the scalar decoders' values); the half-precision fields
# come from the same exact table F16. The dot products (_dot2_*, _dot1_*) accumulate
# x * w with llvm.fma into one <16 x float> per row (16 partial sums, added pairwise at the end): a
# summation-order and contraction difference inside gguf_linear's budget (gamma_(K+1)).

_F32, _I8, _I16, _I32, _I64 = ir.FloatType(), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V16F, _V16B, _V16I = ir.VectorType(_F32, 16), ir.VectorType(_I8, 16), ir.VectorType(_I32, 16)
_BLOCK = {0: (32, 18), 1: (32, 20), 2: (32, 34), 3: (256, 144), 4: (256, 210)}  # QCODE -> (weights, bytes) per block


def _c64(v):
    return ir.Constant(_I64, v)


def _splat(b, v, vt):
    one = b.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(_I32, 0))
    return b.shuffle_vector(one, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(_I32, vt.count), [0] * vt.count))


def _vconst(vt, v):
    return ir.Constant(vt, [ir.Constant(vt.element, v)] * vt.count)


def _ir_half(b, p, tab):
    """The half at byte pointer p as float32, looked up in F16 (tab: float*)."""
    h = b.load(b.bitcast(p, _I16.as_pointer()), align=1)
    return b.load(b.gep(tab, [b.zext(h, _I64)]))


def _ir_load16(b, p):
    return b.load(b.bitcast(p, _V16B.as_pointer()), align=1)


def _ir_byte(b, p, k):
    """The byte at p + k as int32 (zero-extended)."""
    return b.zext(b.load(b.gep(p, [_c64(k)])), _I32)


def _ir_nibbles(b, p, shift):
    """<16 x i32>: (byte >> shift) & 15 for the 16 bytes at p."""
    q = _ir_load16(b, p)
    if shift:
        q = b.lshr(q, _vconst(_V16B, shift))
    return b.zext(b.and_(q, _vconst(_V16B, 15)), _V16I)


def _ir_block(b, qt, p, tab):
    """The block at byte pointer p as a list of (lo, hi) <16 x float> pairs, 32 consecutive weights
    each (weights 32 g + 0..15 and 32 g + 16..31), formed with gguf's operations in its order."""
    if qt == 0:  # Q4_0: d * (q - 8)
        d = _splat(b, _ir_half(b, p, tab), _V16F)
        q = _ir_load16(b, b.gep(p, [_c64(2)]))
        lo = b.sub(b.zext(b.and_(q, _vconst(_V16B, 15)), _V16I), _vconst(_V16I, 8))
        hi = b.sub(b.zext(b.lshr(q, _vconst(_V16B, 4)), _V16I), _vconst(_V16I, 8))
        return [(b.fmul(d, b.sitofp(lo, _V16F)), b.fmul(d, b.sitofp(hi, _V16F)))]
    if qt == 1:  # Q4_1: d * q + m
        d = _splat(b, _ir_half(b, p, tab), _V16F)
        m = _splat(b, _ir_half(b, b.gep(p, [_c64(2)]), tab), _V16F)
        q = _ir_load16(b, b.gep(p, [_c64(4)]))
        lo = b.sitofp(b.zext(b.and_(q, _vconst(_V16B, 15)), _V16I), _V16F)
        hi = b.sitofp(b.zext(b.lshr(q, _vconst(_V16B, 4)), _V16I), _V16F)
        return [(b.fadd(b.fmul(d, lo), m), b.fadd(b.fmul(d, hi), m))]
    if qt == 2:  # Q8_0: q * d, q the byte as two's complement
        d = _splat(b, _ir_half(b, p, tab), _V16F)
        lo = b.sitofp(b.sext(_ir_load16(b, b.gep(p, [_c64(2)])), _V16I), _V16F)
        hi = b.sitofp(b.sext(_ir_load16(b, b.gep(p, [_c64(18)])), _V16I), _V16F)
        return [(b.fmul(lo, d), b.fmul(hi, d))]
    out = []
    if qt == 3:  # Q4_K: (d * sc) * q - (dmin * m), six-bit sc, m per 32 weights (as _row_q4_k)
        d, dmin = _ir_half(b, p, tab), _ir_half(b, b.gep(p, [_c64(2)]), tab)
        sb = [_ir_byte(b, p, 4 + k) for k in range(12)]
        c63, c15, c6, c4 = (ir.Constant(_I32, v) for v in (63, 15, 6, 4))
        for sub in range(8):
            if sub < 4:
                sc, mn = b.and_(sb[sub], c63), b.and_(sb[sub + 4], c63)
            else:
                sc = b.or_(b.and_(sb[sub + 4], c15), b.shl(b.lshr(sb[sub - 4], c6), c4))
                mn = b.or_(b.lshr(sb[sub + 4], c4), b.shl(b.lshr(sb[sub], c6), c4))
            ds = _splat(b, b.fmul(d, b.sitofp(sc, _F32)), _V16F)
            dm = _splat(b, b.fmul(dmin, b.sitofp(mn, _F32)), _V16F)
            q = b.gep(p, [_c64(16 + 32 * (sub // 2))])
            shift = 4 * (sub % 2)
            lo = b.sitofp(_ir_nibbles(b, q, shift), _V16F)
            hi = b.sitofp(_ir_nibbles(b, b.gep(q, [_c64(16)]), shift), _V16F)
            out.append((b.fsub(b.fmul(ds, lo), dm), b.fsub(b.fmul(ds, hi), dm)))
        return out
    d = _ir_half(b, b.gep(p, [_c64(208)]), tab)  # Q6_K: (d * sc) * (q - 32), signed 8-bit sc per 16 weights
    for half in range(2):
        for quarter in range(4):
            pair = []
            for part in range(2):  # weights l = 16 part + 0..15 of this group of 32
                s8 = b.load(b.gep(p, [_c64(192 + 8 * half + 2 * quarter + part)]))
                dsc = _splat(b, b.fmul(d, b.sitofp(b.sext(s8, _I32), _F32)), _V16F)
                ql = _ir_load16(b, b.gep(p, [_c64(64 * half + 32 * (quarter % 2) + 16 * part)]))
                qh = _ir_load16(b, b.gep(p, [_c64(128 + 32 * half + 16 * part)]))
                if quarter >= 2:
                    ql = b.lshr(ql, _vconst(_V16B, 4))
                if quarter:
                    qh = b.lshr(qh, _vconst(_V16B, 2 * quarter))
                q8 = b.or_(b.and_(ql, _vconst(_V16B, 15)), b.shl(b.and_(qh, _vconst(_V16B, 3)), _vconst(_V16B, 4)))
                q = b.sub(b.zext(q8, _V16I), _vconst(_V16I, 32))
                pair.append(b.fmul(dsc, b.sitofp(q, _V16F)))
            out.append(tuple(pair))
    return out


def _ir_ptr(context, b, ty, val, elem):
    return b.bitcast(context.make_array(ty)(context, b, val).data, elem.as_pointer())


def _make_decode(qt):
    """Intrinsic decode(row uint8[nb * bytes], out float32[bs nb], nb, tab): out = the row's weights."""
    bs, ts = _BLOCK[qt]

    @intrinsic
    def decode(typingctx, row, out, nb, tab):
        def codegen(context, b, sig, args):
            rp = _ir_ptr(context, b, sig.args[0], args[0], _I8)
            op = _ir_ptr(context, b, sig.args[1], args[1], _F32)
            tp = _ir_ptr(context, b, sig.args[3], args[3], _F32)
            with cgutils.for_range(b, args[2]) as loop:
                i = loop.index
                groups = _ir_block(b, qt, b.gep(rp, [b.mul(i, _c64(ts))]), tp)
                for g, (lo, hi) in enumerate(groups):
                    o = b.gep(op, [b.add(b.mul(i, _c64(bs)), _c64(32 * g))])
                    b.store(lo, b.bitcast(o, _V16F.as_pointer()), align=4)
                    b.store(hi, b.bitcast(b.gep(o, [_c64(16)]), _V16F.as_pointer()), align=4)
            return context.get_dummy_value()

        return types.void(row, out, nb, tab), codegen

    return decode


def _hsum(b, v):
    vals = [b.extract_element(v, ir.Constant(_I32, i)) for i in range(16)]
    while len(vals) > 1:
        vals = [b.fadd(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
    return vals[0]


def _make_dot(qt, R):
    """Intrinsic dot(blocks uint8[N, row bytes], n0, x float32[bs nb], nb, tab) -> R float32:
    sum_k x[k] w[n0 + r, k] for r < R (R rows share each load of x)."""
    bs, ts = _BLOCK[qt]

    @intrinsic
    def dot(typingctx, blocks, n0, x, nb, tab):
        def codegen(context, b, sig, args):
            arr = context.make_array(sig.args[0])(context, b, args[0])
            stride = cgutils.unpack_tuple(b, arr.strides, 2)[0]
            base = b.bitcast(arr.data, _I8.as_pointer())
            rows = [b.gep(base, [b.mul(b.add(args[1], _c64(r)), stride)]) for r in range(R)]
            xp = _ir_ptr(context, b, sig.args[2], args[2], _F32)
            tp = _ir_ptr(context, b, sig.args[4], args[4], _F32)
            fma = cgutils.get_or_insert_function(b.module, ir.FunctionType(_V16F, [_V16F] * 3), "llvm.fma.v16f32")
            accs = [cgutils.alloca_once_value(b, _vconst(_V16F, 0.0)) for _ in range(R)]
            # llvm.prefetch (read, keep in all levels) of the last row's bytes PREFETCH ahead, one per block:
            # the weights stream from memory once per token (a model > L3); it changes no value
            prefetch = cgutils.get_or_insert_function(
                b.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]), "llvm.prefetch.p0i8")
            with cgutils.for_range(b, args[3]) as loop:
                i = loop.index
                off = b.mul(i, _c64(ts))
                b.call(prefetch, [b.gep(rows[R - 1], [b.add(off, _c64(PREFETCH))]), ir.Constant(_I32, 0),
                                  ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
                blocks_r = [_ir_block(b, qt, b.gep(rows[r], [off]), tp) for r in range(R)]
                acc = [b.load(a) for a in accs]
                for g in range(bs // 32):
                    xb = b.gep(xp, [b.add(b.mul(i, _c64(bs)), _c64(32 * g))])
                    xlo = b.load(b.bitcast(xb, _V16F.as_pointer()), align=4)
                    xhi = b.load(b.bitcast(b.gep(xb, [_c64(16)]), _V16F.as_pointer()), align=4)
                    for r in range(R):
                        lo, hi = blocks_r[r][g]
                        acc[r] = b.call(fma, [hi, xhi, b.call(fma, [lo, xlo, acc[r]])])
                for r in range(R):
                    b.store(acc[r], accs[r])
            outs = [_hsum(b, b.load(a)) for a in accs]
            return context.make_tuple(b, sig.return_type, outs)

        return types.UniTuple(types.float32, R)(blocks, n0, x, nb, tab), codegen

    return dot


_decode_q4_0, _decode_q4_1, _decode_q8_0, _decode_q4_k, _decode_q6_k = (_make_decode(q) for q in range(5))
_dot2_q4_0, _dot2_q4_1, _dot2_q8_0, _dot2_q4_k, _dot2_q6_k = (_make_dot(q, 2) for q in range(5))
_dot1_q4_0, _dot1_q4_1, _dot1_q8_0, _dot1_q4_k, _dot1_q6_k = (_make_dot(q, 1) for q in range(5))


# Scalar row decoders: out[32 b + j] (or [256 b + ...]) for every block b of one packed row: the
# readable definition the vector decoders reproduce (run by `scalar_rows` in the tests). The inner
# loops run to a trip count `h` passed at run time (16 or 32), so that LLVM vectorises them rather
# than unrolling them (numba runs no SLP vectoriser).

@njit(inline="always", **JIT)
def _row_q4_0(row, out, nb, h):
    for b in range(nb):
        o = 18 * b
        d = _f16(row[o], row[o + 1])
        qs = row[o + 2:o + 2 + h]
        lo = out[32 * b:32 * b + h]
        hi = out[32 * b + h:32 * b + 2 * h]
        for j in range(h):
            byte = np.int32(qs[j])
            lo[j] = d * np.float32((byte & 15) - 8)
            hi[j] = d * np.float32((byte >> 4) - 8)


@njit(inline="always", **JIT)
def _row_q4_1(row, out, nb, h):
    for b in range(nb):
        o = 20 * b
        d = _f16(row[o], row[o + 1])
        m = _f16(row[o + 2], row[o + 3])
        qs = row[o + 4:o + 4 + h]
        lo = out[32 * b:32 * b + h]
        hi = out[32 * b + h:32 * b + 2 * h]
        for j in range(h):
            byte = qs[j]
            lo[j] = d * np.float32(byte & np.uint8(15)) + m
            hi[j] = d * np.float32(byte >> np.uint8(4)) + m


@njit(inline="always", **JIT)
def _row_q8_0(row, out, nb, h):
    for b in range(nb):
        o = 34 * b
        d = _f16(row[o], row[o + 1])
        qs = row[o + 2:o + 2 + 2 * h]
        w = out[32 * b:32 * b + 2 * h]
        for j in range(2 * h):
            w[j] = np.float32(np.int8(qs[j])) * d  # the byte read as two's complement


@njit(inline="always", **JIT)
def _row_q4_k(row, out, nb, h):
    for b in range(nb):
        o = 144 * b
        d = _f16(row[o], row[o + 1])
        dmin = _f16(row[o + 2], row[o + 3])
        s = o + 4  # 12 bytes: 8 six-bit scales and 8 six-bit mins
        for sub in range(8):
            if sub < 4:
                sc = np.int32(row[s + sub]) & 63
                mn = np.int32(row[s + sub + 4]) & 63
            else:
                sc = (np.int32(row[s + sub + 4]) & 15) | ((np.int32(row[s + sub - 4]) >> 6) << 4)
                mn = (np.int32(row[s + sub + 4]) >> 4) | ((np.int32(row[s + sub]) >> 6) << 4)
            ds = d * np.float32(sc)
            dm = dmin * np.float32(mn)
            qs = row[o + 16 + 32 * (sub // 2):o + 16 + 32 * (sub // 2) + 2 * h]
            w = out[256 * b + 32 * sub:256 * b + 32 * sub + 2 * h]
            shift = np.uint8(4 * (sub % 2))
            for j in range(2 * h):
                w[j] = ds * np.float32((qs[j] >> shift) & np.uint8(15)) - dm


@njit(inline="always", **JIT)
def _row_q6_k(row, out, nb, h):
    for b in range(nb):
        o = 210 * b
        d = _f16(row[o + 208], row[o + 209])
        for half in range(2):
            for quarter in range(4):  # elements 128 half + 32 quarter + l, l < 32
                ql = row[o + 64 * half + 32 * (quarter % 2):o + 64 * half + 32 * (quarter % 2) + 2 * h]
                qh = row[o + 128 + 32 * half:o + 128 + 32 * half + 2 * h]
                s_lo = np.int32(row[o + 192 + 8 * half + 2 * quarter])
                s_hi = np.int32(row[o + 192 + 8 * half + 2 * quarter + 1])
                d_lo = d * np.float32(s_lo - 256 if s_lo >= 128 else s_lo)  # scale of elements l < 16
                d_hi = d * np.float32(s_hi - 256 if s_hi >= 128 else s_hi)  # l >= 16
                lshift = np.uint8(4 * (quarter // 2))
                hshift = np.uint8(2 * quarter)
                w = out[256 * b + 128 * half + 32 * quarter:256 * b + 128 * half + 32 * quarter + 2 * h]
                for l in range(h):
                    q = np.int32(((ql[l] >> lshift) & np.uint8(15)) | (((qh[l] >> hshift) & np.uint8(3)) << np.uint8(4))) - 32
                    w[l] = d_lo * np.float32(q)
                for l in range(h, 2 * h):
                    q = np.int32(((ql[l] >> lshift) & np.uint8(15)) | (((qh[l] >> hshift) & np.uint8(3)) << np.uint8(4))) - 32
                    w[l] = d_hi * np.float32(q)


@njit(inline="always", **JIT)
def _row(qt, row, out, nb, h):
    """out[:] = the weights of one packed row (the vector decoders)."""
    if qt == 0:
        _decode_q4_0(row, out, nb, F16)
    elif qt == 1:
        _decode_q4_1(row, out, nb, F16)
    elif qt == 2:
        _decode_q8_0(row, out, nb, F16)
    elif qt == 3:
        _decode_q4_k(row, out, nb, F16)
    else:
        _decode_q6_k(row, out, nb, F16)


@njit(**JIT)
def scalar_rows(qt, blocks, nb, out):
    """out[i, :] = row i decoded by the scalar decoders (tests compare them with gguf and the vector ones)."""
    for i in range(out.shape[0]):
        if qt == 0:
            _row_q4_0(blocks[i], out[i], nb, 16)
        elif qt == 1:
            _row_q4_1(blocks[i], out[i], nb, 16)
        elif qt == 2:
            _row_q8_0(blocks[i], out[i], nb, 16)
        elif qt == 3:
            _row_q4_k(blocks[i], out[i], nb, 16)
        else:
            _row_q6_k(blocks[i], out[i], nb, 16)


@njit(parallel=True, **JIT)
def dequantize_rows(nt, qt, blocks, nb, r0, out, h):
    """out[i, :] = the float32 weights of packed row r0 + i (out [R, in]); h = 16."""
    old = enter(nt)
    for i in prange(out.shape[0]):
        _row(qt, blocks[r0 + i], out[i], nb, h)
    leave(old)


@njit(parallel=True, **_SUM)
def gemv(nt, qt, blocks, nb, x, bias, has_bias, zero, y, h):
    """y[t, n] = sum_k x[t, k] w[n, k] (+ bias[n]); x [T, in], y [T, out] in the compute dtype.
    A work item decodes its ROWS rows once into a float32 tile [ROWS, in] (L1/L2-resident), then
    takes the tokens four at a time: one pass over a row's weights feeds four sums (each weight
    loaded once for four tokens), the leftover tokens one at a time."""
    old = enter(nt)
    N = blocks.shape[0]
    T, K = x.shape
    for c in prange((N + ROWS - 1) // ROWS):
        n0 = c * ROWS
        r = min(N, n0 + ROWS) - n0
        buf = np.empty((ROWS, K), np.float32)
        for i in range(r):
            _row(qt, blocks[n0 + i], buf[i], nb, h)
        t = 0
        while t + 4 <= T:
            x0, x1, x2, x3 = x[t], x[t + 1], x[t + 2], x[t + 3]
            for i in range(r):
                w = buf[i]
                a0, a1, a2, a3 = zero, zero, zero, zero  # 0 in the compute dtype
                for k in range(K):
                    wk = w[k]
                    a0 += x0[k] * wk
                    a1 += x1[k] * wk
                    a2 += x2[k] * wk
                    a3 += x3[k] * wk
                if has_bias:
                    a0, a1, a2, a3 = a0 + bias[n0 + i], a1 + bias[n0 + i], a2 + bias[n0 + i], a3 + bias[n0 + i]
                y[t, n0 + i], y[t + 1, n0 + i], y[t + 2, n0 + i], y[t + 3, n0 + i] = a0, a1, a2, a3
            t += 4
        while t < T:
            for i in range(r):
                acc = zero
                for k in range(K):
                    acc += x[t, k] * buf[i, k]
                y[t, n0 + i] = acc + bias[n0 + i] if has_bias else acc
            t += 1
    leave(old)


@njit(inline="always", **JIT)
def gemv1_rows(qt, blocks, x, nb, tab, bias, has_bias, y, n, end):
    """y[n:end] of gemv1_vec (one work item): two rows per pass sharing each load of x, then the odd row."""
    while n < end:
        if n + 1 < end:
            if qt == 0:
                r = _dot2_q4_0(blocks, n, x, nb, tab)
            elif qt == 1:
                r = _dot2_q4_1(blocks, n, x, nb, tab)
            elif qt == 2:
                r = _dot2_q8_0(blocks, n, x, nb, tab)
            elif qt == 3:
                r = _dot2_q4_k(blocks, n, x, nb, tab)
            else:
                r = _dot2_q6_k(blocks, n, x, nb, tab)
            y[n] = r[0] + bias[n] if has_bias else r[0]
            y[n + 1] = r[1] + bias[n + 1] if has_bias else r[1]
            n += 2
        else:
            if qt == 0:
                r1 = _dot1_q4_0(blocks, n, x, nb, tab)
            elif qt == 1:
                r1 = _dot1_q4_1(blocks, n, x, nb, tab)
            elif qt == 2:
                r1 = _dot1_q8_0(blocks, n, x, nb, tab)
            elif qt == 3:
                r1 = _dot1_q4_k(blocks, n, x, nb, tab)
            else:
                r1 = _dot1_q6_k(blocks, n, x, nb, tab)
            y[n] = r1[0] + bias[n] if has_bias else r1[0]
            n += 1


@njit(parallel=True, **JIT)
def gemv1_vec(nt, qt, blocks, x, nb, tab, bias, has_bias, y):
    """y[n] = sum_k x[k] w[n, k] (+ bias[n]) for one float32 token: blocks [N, row bytes] (any
    QCODE format), x float32 [32 nb], y float32 [N]. Work items of ROWS rows (gemv1_rows)."""
    old = enter(nt)
    N = blocks.shape[0]
    for c in prange((N + ROWS - 1) // ROWS):
        gemv1_rows(qt, blocks, x, nb, tab, bias, has_bias, y, c * ROWS, min(N, (c + 1) * ROWS))
    leave(old)


# Fused decode-and-dot for one float64 token (and the portable baseline bench/bench_ops.py compares
# the vector kernel with): lanes[j] accumulates the products of in-block position j (and j + h) over
# all blocks, an elementwise loop that vectorises without reassociation; the row's sum is then
# lanes[0] + ... + lanes[h-1] in order.

@njit(parallel=True, **JIT)
def gemv1_q4_0(nt, blocks, x, bias, has_bias, zero, y, h):  # blocks [N, nb, 18]; x [nb, 32]; y [N]
    old = enter(nt)
    N, nb = blocks.shape[0], blocks.shape[1]
    for c in prange((N + ROWS - 1) // ROWS):
        lanes = np.empty(h, y.dtype)
        for n in range(c * ROWS, min(N, (c + 1) * ROWS)):
            lanes[:] = zero
            for b in range(nb):
                blk = blocks[n, b]
                d = _f16(blk[0], blk[1])
                xb = x[b]
                for j in range(h):
                    byte = np.int32(blk[2 + j])
                    lanes[j] += (d * np.float32((byte & 15) - 8)) * xb[j] + (d * np.float32((byte >> 4) - 8)) * xb[h + j]
            acc = zero
            for j in range(h):
                acc += lanes[j]
            y[n] = acc + bias[n] if has_bias else acc
    leave(old)


@njit(parallel=True, **JIT)
def gemv1_q4_1(nt, blocks, x, bias, has_bias, zero, y, h):  # blocks [N, nb, 20]; x [nb, 32]; y [N]
    old = enter(nt)
    N, nb = blocks.shape[0], blocks.shape[1]
    for c in prange((N + ROWS - 1) // ROWS):
        lanes = np.empty(h, y.dtype)
        for n in range(c * ROWS, min(N, (c + 1) * ROWS)):
            lanes[:] = zero
            for b in range(nb):
                blk = blocks[n, b]
                d = _f16(blk[0], blk[1])
                m = _f16(blk[2], blk[3])
                xb = x[b]
                for j in range(h):
                    byte = blk[4 + j]
                    lanes[j] += (d * np.float32(byte & np.uint8(15)) + m) * xb[j] \
                        + (d * np.float32(byte >> np.uint8(4)) + m) * xb[h + j]
            acc = zero
            for j in range(h):
                acc += lanes[j]
            y[n] = acc + bias[n] if has_bias else acc
    leave(old)


@njit(parallel=True, **JIT)
def gemv1_q8_0(nt, blocks, x, bias, has_bias, zero, y, h):  # blocks [N, nb, 34]; x [nb, 32]; y [N]
    old = enter(nt)
    N, nb = blocks.shape[0], blocks.shape[1]
    for c in prange((N + ROWS - 1) // ROWS):
        lanes = np.empty(2 * h, y.dtype)
        for n in range(c * ROWS, min(N, (c + 1) * ROWS)):
            lanes[:] = zero
            for b in range(nb):
                blk = blocks[n, b]
                d = _f16(blk[0], blk[1])
                xb = x[b]
                for j in range(2 * h):
                    lanes[j] += (np.float32(np.int8(blk[2 + j])) * d) * xb[j]
            acc = zero
            for j in range(2 * h):
                acc += lanes[j]
            y[n] = acc + bias[n] if has_bias else acc
    leave(old)


_GEMV1 = {0: gemv1_q4_0, 1: gemv1_q4_1, 2: gemv1_q8_0}




def dequantize_gguf(blocks, qtype, shape):
    """Same contract as refimpl.ops.quant.dequantize_gguf (float32 [out, in], gguf's values bit for bit)."""
    out_n, n_in = int(shape[0]), int(shape[1])
    out = np.empty((out_n, n_in), np.float32)
    nb = n_in // QTYPES[qtype][0]
    launch(dequantize_rows, out_n * n_in * 4, QCODE[qtype], np.asarray(blocks), nb, 0, out, 16)
    return out


def gguf_embedding(ids, blocks, qtype, shape):
    """Same contract as refimpl.ops.quant.gguf_embedding: the rows ids, dequantized (float32)."""
    a = np.asarray(ids, dtype=np.int64)
    flat = a.reshape(-1)
    n_in = int(shape[1])
    out = np.empty((flat.shape[0], n_in), np.float32)
    nb = n_in // QTYPES[qtype][0]
    _gather(QCODE[qtype], np.asarray(blocks), nb, flat, out)  # serial: a few rows
    return out.reshape(*a.shape, n_in)


@njit(**JIT)
def _gather(qt, blocks, nb, ids, out):
    for i in range(ids.shape[0]):
        _row(qt, blocks[ids[i]], out[i], nb, 16)


_LOCAL = threading.local()


def _scratch(n):
    """A float32 buffer of n elements kept per thread: a fresh multi-MB np.empty per call costs its page
    faults (measured ~0.5 ms for 3.5 MB, as much as the decode)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.shape[0] < n:
        buf = _LOCAL.buf = np.empty(n, np.float32)
    return buf[:n]


def gguf_linear(x, blocks, qtype, shape, bias=None):
    """Same contract as refimpl.ops.quant.gguf_linear; the fused kernel (few tokens) or tile + BLAS (many)."""
    from refimpl.precision import compute_dtype

    xa = np.asarray(x)
    dt = compute_dtype(xa, bias)
    out_n, n_in = int(shape[0]), int(shape[1])
    lead = xa.shape[:-1]
    x2 = np.ascontiguousarray(xa, dtype=dt).reshape(-1, n_in)  # [T, in]
    T = x2.shape[0]
    qt = QCODE[qtype]
    nb = n_in // QTYPES[qtype][0]
    bl = np.asarray(blocks)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=dt)
    if T >= GEMM_MIN_TOKENS:
        y = np.empty((T, out_n), dt)
        tile = _scratch(min(CHUNK, out_n) * n_in).reshape(-1, n_in)
        deq = serial_twin(dequantize_rows)  # serial: see GEMM_MIN_TOKENS
        for r0 in range(0, out_n, CHUNK):
            r = min(CHUNK, out_n - r0)
            deq(1, qt, bl, nb, r0, tile[:r], 16)
            w = tile[:r] if dt == np.float32 else tile[:r].astype(dt)
            np.matmul(x2, w.T, out=y[:, r0:r0 + r])
        if b is not None:
            y += b
        return y.reshape(*lead, out_n)
    y = np.empty((T, out_n), dt)
    bz = b if b is not None else np.zeros(1, dt)
    work = T * out_n * n_in * 2
    if T == 1 and dt == np.float32:
        launch(gemv1_vec, work, qt, bl, x2[0], nb, F16, bz, b is not None, y[0])
    elif T == 1 and qt in _GEMV1:
        bs, ts = QTYPES[qtype]
        launch(_GEMV1[qt], work, bl.reshape(out_n, nb, ts), x2.reshape(nb, bs), bz, b is not None, dt.type(0), y[0], 16)
    else:
        launch(gemv, work, qt, bl, nb, x2, bz, b is not None, dt.type(0), y, 16)
    return y.reshape(*lead, out_n)
