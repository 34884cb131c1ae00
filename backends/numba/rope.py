"""Rotary embedding kernel (refimpl.ops.apply_rope), both pairings, partial rotary.

Each output is the reference's x_a c - x_b s or x_b c + x_a s: two rounded products and one rounded
sum (no fused multiply-add: fastmath is off), so the result equals the reference's bit for bit.
"""

import numpy as np
from numba import njit, prange

from refimpl.precision import compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, count, per_dtype


@njit(inline="always", **JIT)
def rope_pair(xa, xb, c, s):
    """The rotated pair (xa c - xb s, xb c + xa s): two rounded products and one rounded sum each."""
    return xa * c - xb * s, xb * c + xa * s


def _make_rope(dt):
    @njit(parallel=True, **JIT)
    def kernel(nt, x, c, s, interleaved, out):  # x, out [L, T, H, D]; c, s [L or 1, T, R/2]
        old = enter(nt)
        L, T, H, D = x.shape
        half = c.shape[2]
        shared = c.shape[0] == 1  # one table for every leading index
        for lt in prange(L * T):
            l, t = lt // T, lt % T
            lc = 0 if shared else l
            for h in range(H):
                for j in range(half):
                    if interleaved:
                        a, b = 2 * j, 2 * j + 1
                    else:
                        a, b = j, j + half
                    xa, xb = x[l, t, h, a], x[l, t, h, b]
                    cj, sj = c[lc, t, j], s[lc, t, j]
                    out[l, t, h, a], out[l, t, h, b] = rope_pair(xa, xb, cj, sj)
                for d in range(2 * half, D):
                    out[l, t, h, d] = x[l, t, h, d]
        leave(old)

    return kernel


rope_kernel = per_dtype(_make_rope)


def apply_rope(x, cos, sin, *, pairing="half", rotary_dim=None):
    """refimpl.ops.apply_rope (same contract); cos/sin are broadcast to x's leading dims first."""
    x, c, s = np.asarray(x), np.asarray(cos), np.asarray(sin)  # checked by the backend base
    dt = compute_dtype(x, c, s)
    n_lead = count(x.shape[:-3])
    xc = contiguous(x, dt).reshape(n_lead, *x.shape[-3:])  # [L, T, H, D]
    if count(c.shape[:-2]) == 1:  # one table [T, R/2] for every leading index: no broadcast copy
        cc = contiguous(c, dt).reshape(1, *c.shape[-2:])  # [1, T, R/2]
        sc = contiguous(s, dt).reshape(1, *c.shape[-2:])  # [1, T, R/2]
    else:
        table = x.shape[:-3] + c.shape[-2:]  # [..., T, R/2]
        cc = contiguous(np.broadcast_to(c, table), dt).reshape(n_lead, *c.shape[-2:])  # [L, T, R/2]
        sc = contiguous(np.broadcast_to(s, table), dt).reshape(n_lead, *c.shape[-2:])  # [L, T, R/2]
    out = np.empty(xc.shape, dtype=dt)  # [L, T, H, D]
    launch(rope_kernel(dt), xc.size, xc, cc, sc, pairing == "interleaved", out)
    return out.reshape(x.shape)  # [..., T, H, D]
