"""embedding and learned_positions on kernels/embedding.cu: exact row gathers in the table's dtype."""

import numpy as np

from .args import I32, I64, check, grid_rows, prod, require


def _table(rt, weight, name):
    w = rt.asarray(weight)
    require(w.dtype.kind == "f" or rt.is_bf16(w), name, "a float table", f"dtype {w.dtype}")
    require(w.ndim == 2, name, "a 2-D table [rows, width]", f"shape {w.shape}")
    return rt.contiguous(w)


def _gather(rt, w, ids, n, offset):
    kind = {8: "b64", 4: "b32", 2: "b16"}[w.dtype.itemsize]
    d = w.shape[1]
    out = rt.empty((n, d), w.dtype)
    if n and d:
        rt.launch("embedding", f"gather_rows_{kind}", grid_rows(rt, n), rt.block, w, ids, out, I64(n), I32(d), I64(offset))
    return out


def embedding(rt, ids, weight):
    """out[..., :] = weight[ids[...], :] (ids checked: 0 <= id < V), exact, weight's dtype."""
    check("embedding", ids, weight)
    w = _table(rt, weight, "weight")
    i = rt.asarray(ids)
    require(i.dtype.kind in "iu", "ids", "an integer array", f"dtype {i.dtype}")
    vocab = w.shape[0]
    if i.size:
        lo, hi = int(i.min()), int(i.max())
        if lo < 0 or hi >= vocab:
            bad = lo if lo < 0 else hi
            where = tuple(int(v) for v in rt.to_host(rt.xp.argwhere(i == bad)[0]))
            require(False, "ids", f"values in [0, {vocab}) (vocab size {vocab} = rows of weight)", f"{bad} at index {where}")
    flat = rt.contiguous(i.reshape(-1).astype(np.int64))
    out = _gather(rt, w, flat, prod(i.shape), 0)
    return out.reshape(i.shape + (w.shape[1],))


def learned_positions(rt, wpe, length, *, offset=0):
    """wpe[offset : offset + length] (a copy, wpe's dtype)."""
    check("learned_positions", wpe, length, offset=offset)
    w = _table(rt, wpe, "wpe")
    for name, v in (("length", length), ("offset", offset)):
        require(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0, name, "an integer >= 0", repr(v))
    rows = w.shape[0]
    require(offset + length <= rows, "length", f"offset + length <= {rows} (rows of wpe)",
            f"offset {offset} + length {length} = {offset + length}")
    return _gather(rt, w, None, int(length), int(offset))


KERNELS = {"embedding": {"gather": embedding}, "learned_positions": {"gather": learned_positions}}
