"""apply_rope and rope_terms on kernels/rope.cu (tables given: cos, sin [..., T, R/2]).

float32 compute for float32 / bf16 inputs; float64 compute when any input is float64 (the model's
float64 tables in float32 mode), as the reference's compute dtype says.
"""

import numpy as np

from .args import I32, I64, as_array, check, grid1, prod, require, storage

PAIRINGS = ("half", "interleaved")


def _args(rt, x, cos, sin, pairing, rotary_dim):
    x = as_array(rt, x, "x")
    require(x.ndim >= 3, "x", "at least 3 dimensions [..., T, H, D]", f"shape {x.shape}")
    d = x.shape[-1]
    require(d >= 2 and d % 2 == 0, "x", "an even head_dim >= 2 as last dimension", f"shape {x.shape}")
    require(pairing in PAIRINGS, "pairing", f"one of {PAIRINGS}", repr(pairing))
    r = d if rotary_dim is None else rotary_dim
    require(isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 2 and r % 2 == 0 and r <= d,
            "rotary_dim", f"an even integer <= head_dim={d}", repr(rotary_dim))
    c, s = as_array(rt, cos, "cos"), as_array(rt, sin, "sin")
    require(c.ndim >= 2 and c.shape[-1] == r // 2, "cos", f"last dimension {r // 2} (rotary_dim/2)", f"shape {c.shape}")
    require(s.shape == c.shape, "sin", f"the shape of cos {c.shape}", f"shape {s.shape}")
    t = x.shape[-3]
    require(c.shape[-2] == t, "cos", f"T={t} (axis -3 of x {x.shape}) at axis -2", f"shape {c.shape}")
    lead = x.shape[:-3]
    try:
        ok = np.broadcast_shapes(c.shape[:-2], lead) == lead
    except ValueError:
        ok = False
    require(ok, "cos", f"leading dimensions broadcasting to x's {lead}", f"shape {c.shape}")
    full = lead + c.shape[-2:]
    c, s = rt.xp.broadcast_to(c, full), rt.xp.broadcast_to(s, full)
    if any(a.dtype == np.float64 for a in (x, c, s)):
        # float64 tables (rope_cos_sin's default): the reference computes in float64, so does the kernel
        return "f64", *(rt.xp.ascontiguousarray(a, dtype=np.float64) for a in (rt.to_f32(x) if rt.is_bf16(x) else x,
                                                                              c, s)), int(r)
    suf, (xs, cs, ss) = storage(rt, x, c, s)
    return suf, xs, cs, ss, int(r)


def _launch(rt, suf, xs, cs, ss, r, pairing, mode):
    *lead, t, h, d = xs.shape
    rows = prod(lead) * t
    dt = np.float64 if suf == "f64" else np.float32
    out = rt.empty(xs.shape, dt)
    out2 = rt.empty(xs.shape, dt) if mode else None
    n = rows * h * d
    if n:
        rt.launch("rope", f"rope_{suf}", grid1(rt, n), rt.block, xs, cs, ss, out, out2, I64(rows), I32(h), I32(d),
                  I32(r), I32(pairing == "interleaved"), I32(mode))
    return out, out2


def apply_rope(rt, x, cos, sin, *, pairing="half", rotary_dim=None):
    """Rotate pairs of x by the given angles (half or interleaved pairing, partial rotary), float32."""
    check("apply_rope", x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)
    suf, xs, cs, ss, r = _args(rt, x, cos, sin, pairing, rotary_dim)
    return _launch(rt, suf, xs, cs, ss, r, pairing, 0)[0]


def rope_terms(rt, x, cos, sin, *, pairing="half", rotary_dim=None):
    """apply_rope's two products (a, b), a + b = apply_rope, float32 (refimpl.ops.rope_terms)."""
    check("rope_terms", x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)
    suf, xs, cs, ss, r = _args(rt, x, cos, sin, pairing, rotary_dim)
    return _launch(rt, suf, xs, cs, ss, r, pairing, 1)


KERNELS = {"apply_rope": {"elementwise": apply_rope}, "rope_terms": {"elementwise": rope_terms}}
