"""Packed GGUF weights: dequantize and fused dequantize-and-multiply kernels (refimpl.ops.quant).

Every weight is formed in float32 with gguf's own order of operations (spec/quant.md), so the
dequantized values equal `gguf.quants.dequantize` bit for bit (tested over random bytes):

    Q4_0  w = d * (q - 8)                  Q4_1  w = d * q + m        Q8_0  w = d * q
    Q4_K  w = (d * sc_s) * q - (dmin * m_s)                          Q6_K  w = (d * sc_s) * q

(every product and sum rounded to float32 as written, no fused multiply-add: `contract` is off.)
The half-precision fields are decoded exactly (`_f16`).

gguf_linear: each parallel work item owns ROWS output rows; per row it decodes the packed row
into a float32 buffer (L1-resident, in = up to a few thousand weights) and then, for every token,
sums x[t, k] * w[k] in the compute dtype with the `reassoc` fast-math flag only, so LLVM vectorises
the sum (several partial sums; a summation-order difference, inside linear's budget). Many tokens
(prefill, T >= GEMM_MIN_TOKENS): the rows are decoded chunk by chunk into a float32 tile
[CHUNK, in] and multiplied by BLAS (np.matmul), which is faster there.
"""

import math

import numpy as np
from numba import njit, prange

from refimpl.ops.quant import QTYPES

from ._common import JIT, enter, launch, leave

QCODE = {"Q4_0": 0, "Q4_1": 1, "Q8_0": 2, "Q4_K": 3, "Q6_K": 4}
ROWS = 16  # output rows per parallel work item
GEMM_MIN_TOKENS = 8  # from this many tokens on, decode a tile and let BLAS multiply
CHUNK = 2048  # rows per decoded tile in the BLAS path (2048 x 576 float32 = 4.7 MB)

_SUM = dict(JIT, fastmath={"reassoc"})  # reassociation of the dot product only (no contraction, no NaN rules changed)


F16 = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)  # every half, exactly (NumPy's cast)
F16.setflags(write=False)


@njit(inline="always", **JIT)
def _f16(lo, hi):
    """IEEE half (little-endian bytes lo, hi) as float32, exact: one load from a 256 KiB table."""
    return F16[np.int32(lo) | (np.int32(hi) << 8)]


# Row decoders: out[32 b + j] (or [256 b + ...]) for every block b of one packed row. The inner
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
    if qt == 0:
        _row_q4_0(row, out, nb, h)
    elif qt == 1:
        _row_q4_1(row, out, nb, h)
    elif qt == 2:
        _row_q8_0(row, out, nb, h)
    elif qt == 3:
        _row_q4_k(row, out, nb, h)
    else:
        _row_q6_k(row, out, nb, h)


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
    Each row is decoded once into a float32 buffer, then summed against every token."""
    old = enter(nt)
    N = blocks.shape[0]
    T, K = x.shape
    for c in prange((N + ROWS - 1) // ROWS):
        buf = np.empty(K, np.float32)
        for n in range(c * ROWS, min(N, (c + 1) * ROWS)):
            _row(qt, blocks[n], buf, nb, h)
            for t in range(T):
                acc = zero  # 0 in the compute dtype
                for k in range(K):
                    acc += x[t, k] * buf[k]
                if has_bias:
                    acc = acc + bias[n]
                y[t, n] = acc
    leave(old)


# Fused decode-and-dot for one token (decode): lanes[j] accumulates the products of in-block
# position j (and j + h) over all blocks, an elementwise loop that vectorises without
# reassociation; the row's sum is then lanes[0] + ... + lanes[h-1] in order.

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
        tile = np.empty((min(CHUNK, out_n), n_in), np.float32)
        for r0 in range(0, out_n, CHUNK):
            r = min(CHUNK, out_n - r0)
            launch(dequantize_rows, r * n_in * 4, qt, bl, nb, r0, tile[:r], 16)
            w = tile[:r] if dt == np.float32 else tile[:r].astype(dt)
            np.matmul(x2, w.T, out=y[:, r0:r0 + r])
        if b is not None:
            y += b
        return y.reshape(*lead, out_n)
    y = np.empty((T, out_n), dt)
    bz = b if b is not None else np.zeros(1, dt)
    work = T * out_n * n_in * 2
    if T == 1 and qt in _GEMV1:
        bs, ts = QTYPES[qtype]
        launch(_GEMV1[qt], work, bl.reshape(out_n, nb, ts), x2.reshape(nb, bs), bz, b is not None, dt.type(0), y[0], 16)
    else:
        launch(gemv, work, qt, bl, nb, x2, bz, b is not None, dt.type(0), y, 16)
    return y.reshape(*lead, out_n)
