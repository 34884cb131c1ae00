"""rms_norm, layer_norm and the fused residual variants on kernels/norms.cu (one block per row)."""

import numpy as np

from .args import F32, I32, as_array, check, grid_rows, prod, require, storage, unsupported


def _rows_and_vector(rt, x, vectors):
    x = as_array(rt, x, "x")
    require(x.ndim >= 1 and x.shape[-1] >= 1, "x", "an array [..., n] with n >= 1", f"shape {x.shape}")
    n = x.shape[-1]
    out = []
    for name, v in vectors:
        if v is None:
            out.append(None)
            continue
        v = as_array(rt, v, name)
        require(v.shape == (n,), name, f"shape ({n},) (last dimension of x)", f"shape {v.shape}")
        out.append(v)
    return x, n, out


def _eps(eps):
    ok = isinstance(eps, (int, float, np.integer, np.floating)) and not isinstance(eps, bool) and np.isfinite(eps) and eps >= 0
    require(ok, "eps", "a finite number >= 0", repr(eps))
    return F32(eps)


def rms_norm(rt, x, weight, *, eps=1e-5, cast_before_scale=False):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis, float32 (refimpl.ops.rms_norm)."""
    check("rms_norm", x, weight, eps=eps, cast_before_scale=cast_before_scale)
    x, n, (w,) = _rows_and_vector(rt, x, [("weight", weight)])
    require(isinstance(cast_before_scale, bool), "cast_before_scale", "a bool", repr(cast_before_scale))
    cbs = bool(cast_before_scale) and rt.is_bf16(x)
    if cast_before_scale and x.dtype == np.float16:
        raise unsupported("rms_norm", "cast_before_scale with float16 x (the kernel rounds to bfloat16 only)")
    suf, (xs, ws) = storage(rt, x, w)
    rows = prod(xs.shape) // n
    y = rt.empty(xs.shape, np.float32)
    if rows:
        rt.launch("norms", f"rms_norm_{suf}", grid_rows(rt, rows), rt.block, xs, ws, y, I32(rows), I32(n), _eps(eps),
                  I32(cbs))
    return y


def layer_norm(rt, x, weight, bias, *, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis, float32 (refimpl.ops.layer_norm)."""
    check("layer_norm", x, weight, bias, eps=eps)
    x, n, (w, b) = _rows_and_vector(rt, x, [("weight", weight), ("bias", bias)])
    suf, (xs, ws, bs) = storage(rt, x, w, b)
    rows = prod(xs.shape) // n
    y = rt.empty(xs.shape, np.float32)
    if rows:
        rt.launch("norms", f"layer_norm_{suf}", grid_rows(rt, rows), rt.block, xs, ws, bs, y, I32(rows), I32(n), _eps(eps))
    return y


def residual_rms_norm(rt, x, residual, weight, *, eps=1e-5):
    """(s, rms_norm(s, weight)) with s = x + residual, both float32, in one kernel (the fused block step)."""
    x, n, (w,) = _rows_and_vector(rt, x, [("weight", weight)])
    r = as_array(rt, residual, "residual")
    require(r.shape == x.shape, "residual", f"shape {x.shape} (shape of x)", f"shape {r.shape}")
    xs, rs, ws = rt.to_f32(x), rt.to_f32(r), rt.to_f32(w)
    rows = prod(xs.shape) // n
    s, y = rt.empty(xs.shape, np.float32), rt.empty(xs.shape, np.float32)
    if rows:
        rt.launch("norms", "residual_rms_norm_f32", grid_rows(rt, rows), rt.block, xs, rs, ws, s, y, I32(rows), I32(n),
                  _eps(eps))
    return s, y


def residual_layer_norm(rt, x, residual, weight, bias, *, eps=1e-5):
    """(s, layer_norm(s, weight, bias)) with s = x + residual, both float32, in one kernel."""
    x, n, (w, b) = _rows_and_vector(rt, x, [("weight", weight), ("bias", bias)])
    r = as_array(rt, residual, "residual")
    require(r.shape == x.shape, "residual", f"shape {x.shape} (shape of x)", f"shape {r.shape}")
    xs, rs, ws = rt.to_f32(x), rt.to_f32(r), rt.to_f32(w)
    bs = None if b is None else rt.to_f32(b)
    rows = prod(xs.shape) // n
    s, y = rt.empty(xs.shape, np.float32), rt.empty(xs.shape, np.float32)
    if rows:
        rt.launch("norms", "residual_layer_norm_f32", grid_rows(rt, rows), rt.block, xs, rs, ws, bs, s, y, I32(rows),
                  I32(n), _eps(eps))
    return s, y


KERNELS = {
    "rms_norm": {"rowblock": rms_norm},
    "layer_norm": {"rowblock": layer_norm},
}
