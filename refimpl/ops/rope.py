"""Rotary position embeddings: frequency rules, cos/sin tables, rotation (spec/rope.md)."""

import math
from collections.abc import Mapping

import numpy as np

from .._validate import as_float_array, as_int_array, host_values, positive_int, real, require
from ..errors import ArgumentError
from ..precision import compute_dtype

__all__ = [
    "inv_freq_default",
    "inv_freq_linear",
    "inv_freq_llama3",
    "inv_freq_yarn",
    "yarn_correction_range",
    "rope_frequencies",
    "rope_cos_sin",
    "apply_rope",
    "rope_terms",
] + [f"check_{n}" for n in ("inv_freq_default", "inv_freq_linear", "inv_freq_llama3", "inv_freq_yarn",
                            "yarn_correction_range", "rope_frequencies", "rope_cos_sin", "apply_rope", "rope_terms")]

PAIRINGS = ("half", "interleaved")
ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def _head_dim(head_dim):
    d = positive_int(head_dim, "head_dim")
    require(d % 2 == 0, "head_dim", "an even integer (dimensions rotate in pairs)", d)
    return d


def _base(base):
    return real(base, "base", low=1.0)


def _default(d, base):
    j = np.arange(d // 2, dtype=np.float64)  # [D/2]
    return 1.0 / np.power(base, 2.0 * j / d)  # [D/2]


def inv_freq_default(head_dim, *, base=10000.0):
    """Plain RoPE inverse frequencies.

    inv_freq_j = 1 / base^(2j / head_dim), j = 0 .. head_dim/2 - 1, computed in
    float64 (returned float64, shape [head_dim/2]). inv_freq_0 = 1.

    head_dim: even integer >= 2 (the rotated width). base: finite, > 1
    (config ``rope_theta``: 10000 GPT-NeoX/LLaMA 1-2, 500000 LLaMA 3,
    150000 gpt-oss, 100000 SmolLM2-135M).
    """
    d = _head_dim(head_dim)
    return _default(d, _base(base))


def inv_freq_linear(head_dim, *, base, factor):
    """Position interpolation (HF rope_type "linear").

    inv_freq_j = inv_freq_default_j / factor  (equivalently positions / factor).
    factor: finite, > 0 (factor 1 returns the default frequencies exactly).
    Float64, shape [head_dim/2].
    """
    d = _head_dim(head_dim)
    b = _base(base)
    f = real(factor, "factor", low=0.0)
    return _default(d, b) / f


def inv_freq_llama3(head_dim, *, base, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """LLaMA 3.1 frequency rule (HF rope_type "llama3"); float64 [head_dim/2].

    With inv_j = inv_freq_default_j, wavelen_j = 2 pi / inv_j, L0 = original_max_position_embeddings:
      wavelen_j <  L0 / high_freq_factor   -> inv_j                       (kept)
      wavelen_j >  L0 / low_freq_factor    -> inv_j / factor              (interpolated)
      otherwise (both ends inclusive)      -> (1 - s_j) inv_j / factor + s_j inv_j,
      s_j = (L0 / wavelen_j - low_freq_factor) / (high_freq_factor - low_freq_factor),
    which is continuous at both ends. Requires factor > 0,
    0 < low_freq_factor < high_freq_factor, and L0 an integer >= 1.
    """
    d = _head_dim(head_dim)
    b = _base(base)
    f = real(factor, "factor", low=0.0)
    lff = real(low_freq_factor, "low_freq_factor", low=0.0)
    hff = real(high_freq_factor, "high_freq_factor", what=f"a finite number > low_freq_factor={lff}")
    require(hff > lff, "high_freq_factor", f"a finite number > low_freq_factor={lff}", repr(high_freq_factor))
    l0 = positive_int(original_max_position_embeddings, "original_max_position_embeddings")
    inv = _default(d, b)  # [D/2]
    wavelen = 2.0 * math.pi / inv
    low_wl = l0 / lff
    high_wl = l0 / hff
    s = (l0 / wavelen - lff) / (hff - lff)
    smooth = (1.0 - s) * inv / f + s * inv
    out = np.where(wavelen > low_wl, inv / f, inv)
    medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
    return np.where(medium, smooth, out)


def _get_mscale(factor, mscale=1.0):
    return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_correction_range(head_dim, *, base, beta_fast=32.0, beta_slow=1.0, original_max_position_embeddings=4096, truncate=False):
    """The YaRN ramp bounds (low, high) in units of the pair index j.

    corr(beta) = (head_dim / 2) * ln(L0 / (2 pi beta)) / ln(base), L0 =
    original_max_position_embeddings; low = corr(beta_fast), high = corr(beta_slow).
    truncate=False (gpt-oss): low and high are used as they are.
    truncate=True (HF default): low = max(floor(low), 0), high = min(ceil(high), head_dim - 1),
    and if then low == high, high += 0.001. Requires beta_fast > beta_slow > 0.
    """
    d = _head_dim(head_dim)
    b = _base(base)
    bs = real(beta_slow, "beta_slow", low=0.0)
    bf = real(beta_fast, "beta_fast", what=f"a finite number > beta_slow={bs}")
    require(bf > bs, "beta_fast", f"a finite number > beta_slow={bs}", repr(beta_fast))
    l0 = positive_int(original_max_position_embeddings, "original_max_position_embeddings")
    require(isinstance(truncate, (bool, np.bool_)), "truncate", "True or False", repr(truncate))
    low = (d / 2) * math.log(l0 / (2.0 * math.pi * bf)) / math.log(b)
    high = (d / 2) * math.log(l0 / (2.0 * math.pi * bs)) / math.log(b)
    if truncate:
        low = max(math.floor(low), 0)
        high = min(math.ceil(high), d - 1)
        if low == high:
            high += 0.001
    return float(low), float(high)


def inv_freq_yarn(
    head_dim,
    *,
    base,
    factor,
    beta_fast=32.0,
    beta_slow=1.0,
    original_max_position_embeddings=4096,
    truncate=False,
    mscale=None,
    mscale_all_dim=None,
    attention_factor=None,
):
    """YaRN ("NTK by parts") frequencies; returns (inv_freq float64 [head_dim/2], attention_scaling).

    freq_j = base^(2j / head_dim); (low, high) = yarn_correction_range(...);
    ramp_j = clamp((j - low) / (high - low), 0, 1);
    inv_freq_j = (1 / freq_j) (1 - ramp_j) + (1 / (factor freq_j)) ramp_j.
    factor >= 1; factor == 1 returns the default frequencies exactly. With truncate=False and
    factor > 1, 0 < low < high < head_dim/2 - 1 must hold, else ArgumentError naming head_dim.
    attention_scaling (multiplies cos and sin): attention_factor if given; else, if mscale and
    mscale_all_dim are both given and non-zero, get_mscale(factor, mscale) / get_mscale(factor,
    mscale_all_dim); else get_mscale(factor); get_mscale(f, m=1) = 0.1 m ln(f) + 1 for f > 1, else 1.
    """
    d = _head_dim(head_dim)
    b = _base(base)
    f = real(factor, "factor", low=1.0, low_open=False)
    low, high = yarn_correction_range(
        d, base=b, beta_fast=beta_fast, beta_slow=beta_slow,
        original_max_position_embeddings=original_max_position_embeddings, truncate=truncate,
    )
    if attention_factor is not None:
        scale = real(attention_factor, "attention_factor", low=0.0)
    else:
        ms = None if mscale is None else real(mscale, "mscale")
        msa = None if mscale_all_dim is None else real(mscale_all_dim, "mscale_all_dim")
        if ms and msa:
            scale = _get_mscale(f, ms) / _get_mscale(f, msa)
        else:
            scale = _get_mscale(f)
    inv = _default(d, b)  # [D/2]
    if f == 1.0:
        return inv, float(scale)
    if not truncate:
        require(
            0.0 < low < high < d / 2 - 1,
            "head_dim",
            f"0 < low < high < head_dim/2 - 1 for YaRN (original_max_position_embeddings="
            f"{original_max_position_embeddings}, base={b}, beta_fast={beta_fast}, beta_slow={beta_slow})",
            f"head_dim={d}: low={low!r}, high={high!r}",
        )
    j = np.arange(d // 2, dtype=np.float64)  # [D/2]
    ramp = np.clip((j - low) / (high - low), 0.0, 1.0)
    return inv * (1.0 - ramp) + (inv / f) * ramp, float(scale)


def rope_frequencies(head_dim, *, base=10000.0, rope_scaling=None, max_position_embeddings=None):
    """Dispatch on an HF-style ``rope_scaling`` dict; returns (inv_freq [head_dim/2] float64, attention_scaling).

    rope_scaling None -> default (scaling 1.0). Otherwise a mapping whose
    "rope_type" (or the older "type") is one of "default", "linear", "llama3",
    "yarn"; anything else (including "dynamic", "longrope") is refused.
    Keys read: linear: factor. llama3: factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings (all required). yarn: factor (required),
    beta_fast (32), beta_slow (1), original_max_position_embeddings (missing ->
    max_position_embeddings, as HF does; both missing -> error), truncate (HF's
    default True; the gpt-oss HF config sets false), mscale, mscale_all_dim,
    attention_factor. Other keys are ignored.
    """
    d = _head_dim(head_dim)
    b = _base(base)
    if rope_scaling is None:
        return _default(d, b), 1.0
    require(isinstance(rope_scaling, Mapping), "rope_scaling", "None or a dict", type(rope_scaling).__name__)
    kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
    require(kind in ROPE_TYPES, "rope_scaling", f"'rope_type' one of {ROPE_TYPES}", repr(kind))
    required = {
        "default": (),
        "linear": ("factor",),
        "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
        "yarn": ("factor",),
    }[kind]
    for key in required:
        require(key in rope_scaling, "rope_scaling", f"key '{key}' for rope_type '{kind}'", f"keys {sorted(rope_scaling)}")
    r = rope_scaling
    try:
        if kind == "default":
            return _default(d, b), 1.0
        if kind == "linear":
            return inv_freq_linear(d, base=b, factor=r["factor"]), 1.0
        if kind == "llama3":
            inv = inv_freq_llama3(
                d, base=b, factor=r["factor"], low_freq_factor=r["low_freq_factor"],
                high_freq_factor=r["high_freq_factor"],
                original_max_position_embeddings=r["original_max_position_embeddings"],
            )
            return inv, 1.0
        l0 = r.get("original_max_position_embeddings") or max_position_embeddings
        require(
            l0 is not None, "rope_scaling",
            "key 'original_max_position_embeddings' for rope_type 'yarn' (or max_position_embeddings)",
            f"keys {sorted(r)}",
        )
        return inv_freq_yarn(
            d, base=b, factor=r["factor"],
            beta_fast=r.get("beta_fast") or 32.0, beta_slow=r.get("beta_slow") or 1.0,
            original_max_position_embeddings=l0, truncate=r.get("truncate", True),
            mscale=r.get("mscale"), mscale_all_dim=r.get("mscale_all_dim"),
            attention_factor=r.get("attention_factor"),
        )
    except ArgumentError as exc:
        raise ArgumentError(f"rope_scaling: {exc}") from None


def check_rope_cos_sin(inv_freq, positions, *, attention_scaling=1.0, angle_dtype=np.float64):
    """The argument checks of rope_cos_sin (inv_freq finite: checked on host values)."""
    inv = as_float_array(inv_freq, "inv_freq")
    require(inv.ndim == 1, "inv_freq", "a 1-D array [head_dim/2]", f"shape {inv.shape}")
    vals = host_values(inv)
    if vals is not None:
        require(bool(np.all(np.isfinite(vals.astype(np.float64)))), "inv_freq", "finite values", "non-finite entries")
    pos = as_int_array(positions, "positions")
    require(pos.ndim in (1, 2), "positions", "shape [T] or [B, T]", f"shape {pos.shape}")
    scale = real(attention_scaling, "attention_scaling", low=0.0)
    try:
        adt = np.dtype(angle_dtype)
    except TypeError:
        adt = None
    require(adt in (np.float64, np.float32), "angle_dtype", "np.float64 or np.float32", repr(angle_dtype))


def rope_cos_sin(inv_freq, positions, *, attention_scaling=1.0, angle_dtype=np.float64):
    """cos and sin tables: angle[..., t, j] = positions[..., t] * inv_freq_j.

    cos = cos(angle) * attention_scaling, sin = sin(angle) * attention_scaling.
    inv_freq: [D/2] floats (finite). positions: integer array [T] or [B, T] of
    absolute positions (cached decoding passes offset .. offset + T - 1; negative
    positions rotate backwards). Returns cos, sin each [T, D/2] or [B, T, D/2].

    The angle product, cos, sin and the scaling are computed in angle_dtype:
    float64 by default (the oracle; positions up to 2^53 are exact), np.float32 to
    emulate the official gpt-oss torch code, whose float32 angles are off by up to
    about position * 2^-24 radians. The tables are returned in
    compute_dtype(inv_freq) (float64 for the float64 inv_freq the inv_freq_* rules give).
    """
    check_rope_cos_sin(inv_freq, positions, attention_scaling=attention_scaling, angle_dtype=angle_dtype)
    inv, pos = as_float_array(inv_freq, "inv_freq"), as_int_array(positions, "positions")
    scale, adt = float(attention_scaling), np.dtype(angle_dtype)
    out_dt = compute_dtype(inv)
    angle = pos.astype(adt)[..., None] * inv.astype(adt)  # [..., T, D/2]
    cos = np.cos(angle) * adt.type(scale)
    sin = np.sin(angle) * adt.type(scale)
    return cos.astype(out_dt, copy=False), sin.astype(out_dt, copy=False)


def check_apply_rope(x, cos, sin, *, pairing="half", rotary_dim=None):
    """The argument checks of apply_rope (ArgumentError; returns None)."""
    x = as_float_array(x, "x", min_ndim=3)  # messages are formatted only on failure: this runs on every call
    d = x.shape[-1]
    if not (d >= 2 and d % 2 == 0):
        require(False, "x", "an even head_dim >= 2 as last dimension", f"shape {x.shape}")
    if pairing not in PAIRINGS:
        require(False, "pairing", f"one of {PAIRINGS}", repr(pairing))
    if rotary_dim is None:
        r = d
    else:
        r = positive_int(rotary_dim, "rotary_dim")
        require(r % 2 == 0 and r <= d, "rotary_dim", f"an even integer <= head_dim={d}", r)
    c = as_float_array(cos, "cos", min_ndim=2)
    s = as_float_array(sin, "sin", min_ndim=2)
    if s.shape != c.shape:
        require(False, "sin", f"the shape of cos {c.shape}", f"shape {s.shape}")
    if c.shape[-1] != r // 2:
        require(False, "cos", f"last dimension {r // 2} (rotary_dim/2)", f"shape {c.shape}")
    t = x.shape[-3]
    if c.shape[-2] != t:
        require(False, "cos", f"T={t} (axis -3 of x {x.shape}) at axis -2", f"shape {c.shape}")
    lead = x.shape[:-3]
    if c.shape[:-2] != lead and c.ndim > 2:  # a [T, R/2] table serves every leading index
        try:
            ok = np.broadcast_shapes(c.shape[:-2], lead) == lead
        except ValueError:
            ok = False
        if not ok:
            require(False, "cos", f"leading dimensions broadcasting to x's {lead}", f"shape {c.shape}")


def check_rope_terms(x, cos, sin, *, pairing="half", rotary_dim=None):
    """The argument checks of rope_terms: those of apply_rope."""
    check_apply_rope(x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)


def _rope_args(x, cos, sin, rotary_dim):
    """(x, cos, sin, r) in the compute dtype from arguments check_apply_rope accepted; cos, sin [..., T, 1, R/2]."""
    x, c, s = as_float_array(x, "x"), as_float_array(cos, "cos"), as_float_array(sin, "sin")
    r = x.shape[-1] if rotary_dim is None else int(rotary_dim)
    dt = compute_dtype(x, c, s)
    x = x.astype(dt, copy=False)
    c = c.astype(dt, copy=False)[..., None, :]  # [..., T, 1, R/2]
    s = s.astype(dt, copy=False)[..., None, :]  # [..., T, 1, R/2]
    return x, c, s, r


def apply_rope(x, cos, sin, *, pairing="half", rotary_dim=None):
    """Rotate pairs of dimensions of x by the angles whose cos/sin are given.

    x: [..., T, H, D]; cos, sin: [..., T, R/2] with R = rotary_dim (default D),
    broadcast over the head axis (and leading axes broadcasting to x's).
    For each pair (a, b) and its j: out_a = x_a cos_j - x_b sin_j,
    out_b = x_b cos_j + x_a sin_j.
      pairing="half" (gpt-oss, HF LLaMA/Mistral/GPT-NeoX, llama.cpp NEOX mode):
        a = j, b = j + R/2.
      pairing="interleaved" (Meta's original LLaMA, GPT-J, llama.cpp NORM mode):
        a = 2j, b = 2j + 1.
    Dimensions R .. D-1 pass through unchanged (partial rotary). D and R must be
    even, 2 <= R <= D. Computed and returned in compute_dtype(x, cos, sin).
    """
    check_apply_rope(x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)
    x, c, s, r = _rope_args(x, cos, sin, rotary_dim)
    d = x.shape[-1]
    xr = x[..., :r]  # [..., T, H, R]
    if pairing == "half":
        x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]  # [..., T, H, R/2]
        rot = np.concatenate((x1 * c - x2 * s, x2 * c + x1 * s), axis=-1)  # [..., T, H, R]
    else:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]  # [..., T, H, R/2]
        rot = np.stack((x1 * c - x2 * s, x2 * c + x1 * s), axis=-1)  # [..., T, H, R/2, 2]
        rot = rot.reshape(xr.shape)  # [..., T, H, R]
    if r == d:
        return rot
    return np.concatenate((rot, x[..., r:]), axis=-1)  # [..., T, H, D]


def rope_terms(x, cos, sin, *, pairing="half", rotary_dim=None):
    """apply_rope split into its two products: returns (a, b), each [..., T, H, D], with a + b = apply_rope.

    With (a_j, b_j) the pair of dimensions of j (pairing as apply_rope):
      a[a_j] = x_a cos_j,   b[a_j] = -(x_b sin_j)      (a + b = x_a cos_j - x_b sin_j)
      a[b_j] = x_b cos_j,   b[b_j] = x_a sin_j         (a + b = x_b cos_j + x_a sin_j)
    and, for partial rotary, a = x, b = 0 on dimensions R .. D-1. Each entry is one product in
    compute_dtype(x, cos, sin); a + b reproduces apply_rope bit for bit (x - y is x + (-y) in IEEE
    arithmetic; only a pass-through -0 becomes +0). A bf16 implementation (gpt-oss
    _apply_rotary_emb, HF apply_rotary_pos_emb) rounds a, b and a + b separately; since rounding to
    nearest is symmetric, rounding -(x_b sin_j) is the negated rounding of x_b sin_j.
    Arguments and checks as apply_rope.
    """
    check_rope_terms(x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)
    x, c, s, r = _rope_args(x, cos, sin, rotary_dim)
    d = x.shape[-1]
    xr = x[..., :r]  # [..., T, H, R]
    if pairing == "half":
        x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]  # [..., T, H, R/2]
        a = np.concatenate((x1 * c, x2 * c), axis=-1)  # [..., T, H, R]
        b = np.concatenate((-(x2 * s), x1 * s), axis=-1)  # [..., T, H, R]
    else:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]  # [..., T, H, R/2]
        a = np.stack((x1 * c, x2 * c), axis=-1).reshape(xr.shape)  # [..., T, H, R]
        b = np.stack((-(x2 * s), x1 * s), axis=-1).reshape(xr.shape)  # [..., T, H, R]
    if r == d:
        return a, b
    rest = x[..., r:]  # [..., T, H, D-R]
    return np.concatenate((a, rest), axis=-1), np.concatenate((b, np.zeros_like(rest)), axis=-1)  # [..., T, H, D]


def _checked_by_running(fn):
    """check_<op> for an op on scalars only: running it is its check (a few dozen floats)."""

    def check(*args, **kwargs):
        fn(*args, **kwargs)

    check.__name__ = check.__qualname__ = f"check_{fn.__name__}"
    check.__doc__ = f"The argument checks of {fn.__name__}: it runs on scalars, so it is run and its result dropped."
    check.__signature__ = __import__("inspect").signature(fn)
    return check


check_inv_freq_default = _checked_by_running(inv_freq_default)
check_inv_freq_linear = _checked_by_running(inv_freq_linear)
check_inv_freq_llama3 = _checked_by_running(inv_freq_llama3)
check_inv_freq_yarn = _checked_by_running(inv_freq_yarn)
check_yarn_correction_range = _checked_by_running(yarn_correction_range)
check_rope_frequencies = _checked_by_running(rope_frequencies)
