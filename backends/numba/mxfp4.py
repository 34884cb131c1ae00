"""MXFP4 decode and the fused decode-and-multiply kernel (refimpl.ops.mxfp4).

Decode: value = E2M1[code] x 2^(scale code - bias), formed as one product in the output dtype of
the two exact factors (the E2M1 table and refimpl's decode_e8m0 table of the 256 scale codes), so
it is the correctly rounded exact product: the reference's result bit for bit, overflow to +-inf,
0 x inf = NaN and subnormals included. bfloat16 output: decoded in float64 (exact), then rounded
once, as the reference does.

mxfp4_linear "fused" (default): each parallel work item owns TILE_ROWS = 32 output rows; it decodes
them TILE_GROUPS blocks (256 inputs) at a time into a transposed tile [256, 32] (L1-resident), then
for every token adds x[n, k] * tile[k, :] into 32 running sums, the inner loop across the 32 output
rows (vectorised without reassociation). Each output is summed sequentially over k, whatever N;
the weight matrix is never materialised. "decode_matmul": the decode kernel
builds the [out, in] matrix, then NumPy's matmul (BLAS) multiplies (better for many tokens).
"""

import numpy as np
from numba import njit, prange

from refimpl.errors import ArgumentError
from refimpl.ops.mxfp4 import BLOCK_SIZE, FP4_E2M1_VALUES, decode_e8m0
from refimpl.precision import bfloat16, compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, count, per_dtype

TILE_ROWS = 32  # output rows per parallel work item (the vectorised inner loop runs across them)
TILE_GROUPS = 8  # 32-weight blocks per decoded tile: a tile is [256, 32] values (32 KiB in float32)


def tables(dt, scale_bias):
    """(E2M1 values [16], 2^(s - scale_bias) for s = 0..255 [256]) in dtype dt; both exact."""
    vals = FP4_E2M1_VALUES.astype(dt)  # [16]
    with np.errstate(over="ignore"):
        scl = decode_e8m0(np.arange(256, dtype=np.uint8), bias=scale_bias).astype(dt)  # [256]
    return vals, scl


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


def _make_fused(dt):
    F = dt.type
    R, GC = TILE_ROWS, TILE_GROUPS

    @njit(parallel=True, **JIT)
    def kernel(nt, x, blocks, scales, vals, scl, high_first, bias, has_bias, out):
        # x [N, K]; blocks [O, G, 16]; scales [O, G]; bias [O]; out [N, O]
        old = enter(nt)
        N = x.shape[0]
        O, G = scales.shape
        zero = F(0)
        for item in prange((O + R - 1) // R):
            o0 = item * R
            nr = min(R, O - o0)
            wt = np.zeros((32 * GC, R), dtype=x.dtype)  # [32 GC, R]: a decoded tile, transposed
            acc = np.zeros((N, R), dtype=x.dtype)  # [N, R]
            for c in range(0, G, GC):
                gc = min(GC, G - c)
                for r in range(nr):
                    for gg in range(gc):
                        sc = scl[scales[o0 + r, c + gg]]
                        for i in range(16):
                            byte = np.int64(blocks[o0 + r, c + gg, i])
                            lo, hi = byte & 15, byte >> 4
                            if high_first:
                                lo, hi = hi, lo
                            wt[32 * gg + 2 * i, r] = vals[lo] * sc
                            wt[32 * gg + 2 * i + 1, r] = vals[hi] * sc
                for n in range(N):
                    a = acc[n]  # [R]
                    xr = x[n, 32 * c:32 * (c + gc)]  # [32 gc]
                    for kk in range(32 * gc):
                        xv = xr[kk]
                        wr = wt[kk]  # [R]
                        for r in range(nr):  # a run-time trip count: vectorised with an alias check
                            a[r] += xv * wr[r]
            for n in range(N):
                for r in range(nr):
                    y = acc[n, r]
                    if has_bias:
                        y = y + bias[o0 + r]
                    out[n, o0 + r] = y
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
    vals, scl = tables(dt, scale_bias)
    bc = contiguous(bb, dt) if bb is not None else np.zeros(n_out, dtype=dt)  # [out]
    out = np.empty((xc.shape[0], n_out), dtype=dt)  # [N, out]
    launch(fused_kernel(dt), (xc.shape[0] + 1) * n_out * k, xc, np.ascontiguousarray(b), np.ascontiguousarray(s), vals, scl, nibble_order == "high_first",
                     bc, bb is not None, out)
    return out.reshape(*xa.shape[:-1], n_out)  # [..., out]
