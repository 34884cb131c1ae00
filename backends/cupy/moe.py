"""router_topk_softmax, router_softmax_topk, moe_combine and gpt_oss_experts on kernels/moe.cu.

moe_combine calls expert_fn once per distinct expert in ascending order with that expert's rows
(token order), as the reference does; the weighted sum over slots is one kernel.
"""

import numpy as np

from .activations import swiglu_oss
from .args import I32, I64, as_array, check, f32, grid1, prod, require, storage


def _router(rt, op, logits, k, mode, renorm):
    a = as_array(rt, logits, "logits")
    require(a.ndim >= 1 and a.shape[-1] >= 1, "logits", "at least one expert (last dimension >= 1)", f"shape {a.shape}")
    e = a.shape[-1]
    require(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 1 <= k <= e, "k",
            f"an integer in [1, {e}] (the number of experts)", repr(k))
    suf, (xs,) = storage(rt, a)
    require(bool(rt.xp.isfinite(rt.to_f32(xs)).all()), "logits", "finite values", "NaN or Inf")
    rows = prod(xs.shape[:-1])
    w = rt.empty(xs.shape[:-1] + (int(k),), np.float32)
    idx = rt.empty(xs.shape[:-1] + (int(k),), np.int64)
    if rows:
        rt.launch("moe", f"router_{suf}", grid1(rt, rows), rt.block, xs, w, idx, I64(rows), I32(e), I32(k),
                  I32(mode), I32(renorm))
    return w, idx


def router_topk_softmax(rt, logits, k):
    """gpt-oss routing: top-k logits (ties: lower expert first), softmax over those k; (weights, indices)."""
    check("router_topk_softmax", logits, k)
    return _router(rt, "router_topk_softmax", logits, k, 0, 0)


def router_softmax_topk(rt, logits, k, *, renormalize=True):
    """Mixtral routing: softmax over all experts, the top k, renormalised if asked; (weights, indices)."""
    check("router_softmax_topk", logits, k, renormalize=renormalize)
    require(isinstance(renormalize, (bool, np.bool_)), "renormalize", "True or False", repr(renormalize))
    return _router(rt, "router_softmax_topk", logits, k, 1, int(bool(renormalize)))


def moe_combine(rt, x, weights, indices, expert_fn):
    """out[t] = sum_j weights[t, j] * expert_fn(indices[t, j], x[t]) (refimpl.ops.moe_combine)."""
    check("moe_combine", x, weights, indices, expert_fn)
    xp = rt.xp
    xa = as_array(rt, x, "x")
    w = as_array(rt, weights, "weights")
    idx = rt.asarray(indices)
    require(idx.dtype.kind in "iu", "indices", "an integer array", str(idx.dtype))
    require(callable(expert_fn), "expert_fn", "a callable expert_fn(e, rows)", type(expert_fn).__name__)
    require(xa.ndim >= 1 and idx.ndim >= 1 and idx.shape[:-1] == xa.shape[:-1], "indices",
            f"leading dims {xa.shape[:-1]} (those of x)", f"shape {idx.shape}")
    require(w.shape == idx.shape, "weights", f"shape {idx.shape} (shape of indices)", f"shape {w.shape}")
    if idx.size:
        require(int(idx.min()) >= 0, "indices", "values >= 0", f"minimum {int(idx.min())}")
    lead = xa.shape[:-1]
    n, k = prod(lead), idx.shape[-1]
    if x.dtype == np.float64 or w.dtype == np.float64:
        f32(rt, x if x.dtype == np.float64 else w)  # raises Float64NotSupported
    xf = rt.to_f32(xa).reshape(n, xa.shape[-1])
    idf = idx.reshape(n, k).astype(np.int64)
    ys = None
    d_out = None
    for e in (int(v) for v in rt.to_host(xp.unique(idf))):
        rows, slots = xp.nonzero(idf == e)
        y = rt.asarray(expert_fn(e, xf[rows]))
        require(y.ndim == 2 and y.shape[0] == len(rows) and (d_out is None or y.shape[1] == d_out), "expert_fn",
                f"an output [{len(rows)}, d_out] for expert {e}", f"shape {y.shape}")
        y = rt.to_f32(y)
        if ys is None:
            d_out = y.shape[1]
            ys = rt.zeros((n, k, d_out), np.float32)
        ys[rows, slots] = y
    if ys is None:
        return rt.zeros(lead + (xa.shape[-1],), np.float32)
    suf, (ws,) = storage(rt, w.reshape(n, k))
    out = rt.empty((n, d_out), np.float32)
    if n * d_out:
        rt.launch("moe", f"moe_combine_{suf}", grid1(rt, n * d_out), rt.block, rt.contiguous(ys), ws, out, I64(n),
                  I32(k), I32(d_out))
    return out.reshape(lead + (d_out,))


def gpt_oss_experts(rt, t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, *, alpha=1.702,
                    limit=7.0):
    """gpt-oss expert block: moe_combine of W2 swiglu_oss(W1 t + b1) + b2 per chosen expert."""
    from .linear import linear

    check("gpt_oss_experts", t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, alpha=alpha,
          limit=limit)
    b1, b2 = as_array(rt, mlp1_bias, "mlp1_bias"), as_array(rt, mlp2_bias, "mlp2_bias")
    require(b1.ndim == 2 and b1.shape[1] % 2 == 0, "mlp1_bias", "shape [E, 2I] (even width)", f"shape {b1.shape}")
    e_count, two_i = b1.shape
    ta = as_array(rt, t, "t")
    require(ta.ndim >= 1, "t", "at least 1 dimension [..., d]", f"shape {ta.shape}")
    d = ta.shape[-1]
    require(b2.shape == (e_count, d), "mlp2_bias", f"shape ({e_count}, {d}) [E, d]", f"shape {b2.shape}")
    idx = rt.asarray(indices)
    if idx.size:
        require(int(idx.min()) >= 0 and int(idx.max()) < e_count, "indices", f"values in [0, {e_count})",
                f"range [{int(idx.min())}, {int(idx.max())}]")

    def weight(wt, name, e, shape):
        m = rt.asarray(wt(e)) if callable(wt) else None
        if m is None:
            a = as_array(rt, wt, name)
            require(a.shape == (e_count, *shape), name, f"shape {(e_count, *shape)} [E, out, in]", f"shape {a.shape}")
            m = a[e]
        require(m.shape == shape, name, f"a matrix of shape {shape} for expert {e}", f"shape {m.shape}")
        return m

    def expert(e, rows):
        u = linear(rt, rows, weight(mlp1_weight, "mlp1_weight", e, (two_i, d)), b1[e])
        a = swiglu_oss(rt, u, alpha=alpha, limit=limit)
        return linear(rt, a, weight(mlp2_weight, "mlp2_weight", e, (d, two_i // 2)), b2[e])

    return moe_combine(rt, ta, weights, idx, expert)


KERNELS = {
    "router_topk_softmax": {"rowthread": router_topk_softmax},
    "router_softmax_topk": {"rowthread": router_softmax_topk},
    "moe_combine": {"slotsum": moe_combine},
    "gpt_oss_experts": {"composed": gpt_oss_experts},
}
