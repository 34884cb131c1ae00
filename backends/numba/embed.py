"""Token embedding: an exact row gather (refimpl.ops.embed.embedding), in the table's dtype."""

import numpy as np
from numba import njit

from ._common import JIT


@njit(**JIT)
def _gather(ids, w, out):  # ids [n]; w [V, d]; out [n, d]
    for i in range(ids.shape[0]):
        out[i, :] = w[ids[i]]


def embedding(ids, weight):
    """Same contract as refimpl.ops.embedding: weight[ids] (ids checked first by CHECKS["embedding"])."""
    w = np.asarray(weight)
    a = np.asarray(ids, dtype=np.int64)
    flat = a.reshape(-1)
    if w.dtype.kind != "f" or not w.flags.c_contiguous:  # bfloat16 tables and strided views: NumPy's gather
        return w[a]
    out = np.empty((flat.shape[0], w.shape[1]), w.dtype)
    _gather(flat, w, out)
    return out.reshape(*a.shape, w.shape[1])
