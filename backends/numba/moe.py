"""gpt-oss router kernel (refimpl.ops.router_topk_softmax): top-k by repeated scans, then softmax over k.

Selection: k scans of the E logits; each takes the largest not yet taken, the lowest expert index
among equals (strict >), which is the reference's stable descending sort. Softmax: exp(l_j - l_0),
summed in order j = 0..k-1, then divided. Indices are exact; weights differ from the reference's by
the summation order of k terms at most.
"""

import numpy as np
from numba import njit, prange

from refimpl.precision import compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, count, per_dtype


def _make_router(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, a, k, w, idx):  # a [N, E]; w [N, k]; idx [N, k] int64
        old = enter(nt)
        N, E = a.shape
        for r in prange(N):
            taken = np.zeros(E, dtype=np.bool_)  # [E]
            for j in range(k):
                best = -1
                for e in range(E):
                    if not taken[e] and (best < 0 or a[r, e] > a[r, best]):
                        best = e
                taken[best] = True
                idx[r, j] = best
            top = a[r, idx[r, 0]]
            den = F(0)
            for j in range(k):
                ej = np.exp(a[r, idx[r, j]] - top)
                w[r, j] = ej
                den += ej
            for j in range(k):
                w[r, j] = w[r, j] / den
        leave(old)

    return kernel


router_kernel = per_dtype(_make_router)


def router_topk_softmax(logits, k):
    """refimpl.ops.router_topk_softmax (same contract): (weights [..., k], indices [..., k] int64)."""
    a = np.asarray(logits)  # checked by the backend base (refimpl.ops.check_router_topk_softmax)
    dt, k = compute_dtype(a), int(k)
    e = a.shape[-1]
    ac = contiguous(a, dt).reshape(count(a.shape[:-1]), e)  # [N, E]
    w = np.empty((ac.shape[0], k), dtype=dt)  # [N, k]
    idx = np.empty((ac.shape[0], k), dtype=np.int64)  # [N, k]
    launch(router_kernel(dt), ac.size * k, ac, k, w, idx)
    return w.reshape(*a.shape[:-1], k), idx.reshape(*a.shape[:-1], k)  # [..., k]
