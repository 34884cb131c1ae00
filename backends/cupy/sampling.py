"""softmax, greedy, apply_temperature, top_k_filter, top_p_filter and sample on kernels/sampling.cu.

The random draw's uniform numbers come from the caller's numpy Generator on the host (one float64
per row, rng.random(size=batch_shape), as the reference draws them) and are copied to the device.
"""

import math
import numbers

import numpy as np

from .args import F32, F64, I32, I64, as_array, check, grid1, grid_rows, prod, require, storage


def _logits(rt, logits, *, allow_pos_inf=True, need_finite_max=False):
    a = as_array(rt, logits, "logits")
    require(a.ndim >= 1 and a.shape[-1] >= 1, "logits", "a vocabulary axis of length >= 1", f"shape {a.shape}")
    suf, (xs,) = storage(rt, a)
    x32 = xs if suf == "f32" else rt.to_f32(xs)
    xp = rt.xp
    if bool(xp.isnan(x32).any()):
        require(False, "logits", "no NaN", f"NaN at index {rt.to_host(xp.argwhere(xp.isnan(x32))[0]).tolist()}")
    if not allow_pos_inf and bool(xp.isposinf(x32).any()):
        require(False, "logits", "no +inf", f"+inf at index {rt.to_host(xp.argwhere(xp.isposinf(x32))[0]).tolist()}")
    if need_finite_max:
        bad = xp.all(xp.isneginf(x32), axis=-1)
        if bool(bad.any()):
            where = rt.to_host(xp.argwhere(bad)[0]).tolist() if bad.ndim else []
            require(False, "logits", "at least one entry > -inf in every row", f"a row of only -inf at batch index {where}")
    return suf, xs


def _real(v, name):
    require(isinstance(v, numbers.Real) and not isinstance(v, bool), name, "a real number", repr(v))
    v = float(v)
    require(math.isfinite(v), name, "a finite number", repr(v))
    return v


def _rows(xs):
    v = xs.shape[-1]
    return prod(xs.shape[:-1]), v


def softmax(rt, x, axis=-1):
    """Stable softmax along `axis`, float32; an all -inf slice gives zeros (refimpl.ops.softmax)."""
    check("softmax", x, axis=axis)
    a = as_array(rt, x, "x")
    require(a.ndim >= 1, "x", "at least 1 dimension", f"shape {a.shape}")
    require(isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and -a.ndim <= axis < a.ndim,
            "axis", f"an integer in [{-a.ndim}, {a.ndim})", repr(axis))
    moved = rt.xp.moveaxis(a, axis, -1)
    suf, (xs,) = storage(rt, moved)
    rows, v = _rows(xs)
    y = rt.empty(xs.shape, np.float32)
    if rows * v:
        rt.launch("sampling", f"softmax_rows_{suf}", grid_rows(rt, rows), rt.block, xs, y, I64(rows), I32(v))
    return rt.contiguous(rt.xp.moveaxis(y, -1, axis))


def _argmax(rt, suf, xs):
    rows, v = _rows(xs)
    out = rt.empty(xs.shape[:-1], np.int64)
    if rows:
        rt.launch("sampling", f"argmax_{suf}", grid_rows(rt, rows), rt.block, xs, out, I64(rows), I32(v))
    return out


def greedy(rt, logits):
    """Index of the first maximum along the last axis (int for 1-D logits, else int64 array)."""
    check("greedy", logits)
    suf, xs = _logits(rt, logits)
    out = _argmax(rt, suf, xs)
    return int(out) if xs.ndim == 1 else out


def apply_temperature(rt, logits, temperature):
    """logits / temperature (one float32 division), float32."""
    check("apply_temperature", logits, temperature)
    suf, xs = _logits(rt, logits)
    t = _real(temperature, "temperature")
    require(t > 0, "temperature", "a number > 0", repr(temperature))
    return _div(rt, suf, xs, t)


def _div(rt, suf, xs, t):
    n = prod(xs.shape)
    y = rt.empty(xs.shape, np.float32)
    if n:
        rt.launch("activations", f"scale_div_{suf}", grid1(rt, n), rt.block, xs, y, I64(n), F32(t))
    return y


def _topk(rt, suf, xs, k):
    rows, v = _rows(xs)
    y = rt.empty(xs.shape, np.float32)
    if rows:
        rt.launch("sampling", f"topk_filter_{suf}", grid_rows(rt, rows), rt.block, xs, y, I64(rows), I32(v), I32(min(k, v)))
    return y


def top_k_filter(rt, logits, k):
    """Keep every logit >= the k-th largest of its row (repeats counted), the rest -inf; float32."""
    check("top_k_filter", logits, k)
    suf, xs = _logits(rt, logits)
    require(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1, "k", "an integer >= 1", repr(k))
    return _topk(rt, suf, xs, int(k))


def _topp(rt, suf, xs, p, min_keep):
    rows, v = _rows(xs)
    if p == 1.0:
        return rt.to_f32(xs).copy()
    q = rt.empty(xs.shape, np.float32)
    rt.launch("sampling", f"softmax_rows_{suf}", grid_rows(rt, rows), rt.block, xs, q, I64(rows), I32(v))
    grid = grid_rows(rt, rows)
    keys = rt.empty((rows, 2, v), np.uint32)  # ping-pong buffers of the radix sort
    idx = rt.empty((rows, 2, v), np.int32)
    counts = rt.empty((grid[0], 16, rt.block), np.uint32)  # per block: digit x thread
    y = rt.empty(xs.shape, np.float32)
    rt.launch("sampling", f"topp_filter_{suf}", grid, rt.block, xs, q, keys, idx, counts, y, I64(rows), I32(v), F64(p),
              I32(min_keep))
    return y


def top_p_filter(rt, logits, p, *, min_keep=1):
    """Nucleus filter: keep the most probable prefix (stable order) whose exclusive mass is < p; float32."""
    check("top_p_filter", logits, p, min_keep=min_keep)
    suf, xs = _logits(rt, logits, allow_pos_inf=False, need_finite_max=True)
    p = _real(p, "p")
    require(0 < p <= 1, "p", "a number in (0, 1]", repr(p))
    require(isinstance(min_keep, (int, np.integer)) and not isinstance(min_keep, bool) and min_keep >= 1, "min_keep",
            "an integer >= 1", repr(min_keep))
    return _topp(rt, suf, xs, p, int(min_keep))


def sample(rt, logits, *, temperature=0.0, top_k=None, top_p=None, rng=None):
    """One token id per row: greedy at temperature 0, else temperature, top-k, top-p and the float64 draw."""
    check("sample", logits, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
    t = _real(temperature, "temperature")
    require(t >= 0, "temperature", "a number >= 0", repr(temperature))
    suf, xs = _logits(rt, logits, allow_pos_inf=(t == 0), need_finite_max=(t > 0))
    if top_k is not None:
        require(isinstance(top_k, (int, np.integer)) and not isinstance(top_k, bool) and top_k >= 1, "top_k",
                "an integer >= 1", repr(top_k))
    if top_p is not None:
        tp = _real(top_p, "top_p")
        require(0 < tp <= 1, "top_p", "a number in (0, 1] or None", repr(top_p))
    if t == 0:
        out = _argmax(rt, suf, xs)
        return int(out) if xs.ndim == 1 else out
    require(isinstance(rng, np.random.Generator), "rng", "a numpy.random.Generator when temperature > 0",
            type(rng).__name__)
    x = _div(rt, suf, xs, t)
    require(not bool(rt.xp.isposinf(x).any()), "temperature", "a value for which logits / temperature stays finite",
            f"{temperature!r} (logits / temperature overflows to +inf)")
    if top_k is not None:
        x = _topk(rt, "f32", x, int(top_k))
    if top_p is not None:
        x = _topp(rt, "f32", x, float(top_p), 1)
    rows, v = _rows(x)
    u = rt.asarray(np.ascontiguousarray(rng.random(size=x.shape[:-1]), dtype=np.float64).reshape(-1))
    out = rt.empty(x.shape[:-1], np.int64)
    rt.launch("sampling", "sample_draw_f32", grid1(rt, rows), rt.block, x, u, out, I64(rows), I32(v))
    return int(out) if x.ndim == 1 else out


KERNELS = {
    "softmax": {"rowblock": softmax},
    "greedy": {"rowblock": greedy},
    "apply_temperature": {"elementwise": apply_temperature},
    "top_k_filter": {"radix_select": top_k_filter},
    "top_p_filter": {"radix_sort": top_p_filter},
    "sample": {"composed": sample},
}
