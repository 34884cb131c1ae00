"""Rotary position embedding: frequency rules (default, linear, llama3, YaRN), cos/sin tables, rotation.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""

import inspect
import math

import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    Budget,
    LIBM_ULP,
    Misreading,
    as_dtype,
    case,
    compute_unit_roundoff,
    each,
    exact,
    f64,
    gamma,
    lib_rel,
    make_rng,
    normal_values,
    rewrite,
    scales,
    sizes,
)


# ----------------------------------------------------------------------------- budgets


def _inv_default_rel(d, base, u):
    """Relative bound of 1 / base^(2j/d): exponent (u) through pow (|e ln b| per unit) + pow + reciprocal,
    or exp(-e ln b) with ln b's error: (2 L + 1)(1 + |e ln b|) u covers both."""
    e = 2.0 * np.arange(d // 2) / d
    return (2 * LIBM_ULP + 1) * (1 + np.abs(e * math.log(base))) * u


def _b_inv_freq_default(i, y, u, ops=reference_ops):
    return _inv_default_rel(int(i["head_dim"]), float(i["base"]), u) * np.abs(y), {"u": u}


def _b_inv_freq_linear(i, y, u, ops=reference_ops):
    return (_inv_default_rel(int(i["head_dim"]), float(i["base"]), u) + u) * np.abs(y), {"u": u}


def _b_inv_freq_llama3(i, y, u, ops=reference_ops):
    d, base, f = int(i["head_dim"]), float(i["base"]), float(i["factor"])
    lff, hff, l0 = float(i["low_freq_factor"]), float(i["high_freq_factor"]), float(i["original_max_position_embeddings"])
    inv = reference_ops.inv_freq_default(d, base=base)
    rel0 = _inv_default_rel(d, base, u)
    wl = 2 * math.pi / inv
    ratio = l0 / wl  # relative error rel0 + 3u (2 pi, the division, L0 / wavelen)
    s = (ratio - lff) / (hff - lff)
    ds = (ratio * (rel0 + 3 * u) + u * np.abs(ratio - lff)) / (hff - lff) + 2 * u * np.abs(s)
    smooth = np.abs(inv - inv / f) * ds + (np.abs(1 - s) * inv / f + np.abs(s) * inv) * (rel0 + 4 * u)
    out = np.where(wl > l0 / lff, (rel0 + u) * inv / f, rel0 * inv)
    medium = ~(wl < l0 / hff) & ~(wl > l0 / lff)
    return np.where(medium, smooth, out), {"u": u}


def _corr_bound(d, base, l0, beta, u):
    """(value, bound) of (d/2) ln(L0 / (2 pi beta)) / ln(base): r within 3u; ln r: 3u + lib |ln r|;
    ln base: lib relative; the division and the product by d/2: 2u."""
    r = l0 / (2 * math.pi * beta)
    c = (d / 2) * math.log(r) / math.log(base)
    return c, (d / 2) / math.log(base) * (3 * u + lib_rel(u) * abs(math.log(r))) + abs(c) * (lib_rel(u) + 2 * u)


def _range_bounds(i, u):
    d, base, l0 = int(i["head_dim"]), float(i["base"]), float(i["original_max_position_embeddings"])
    (lo, blo), (hi, bhi) = (_corr_bound(d, base, l0, float(i[k]), u) for k in ("beta_fast", "beta_slow"))
    if i["truncate"]:
        # floor / ceil are exact unless the value is within its bound of an integer (a jump of 1).
        blo = 1.0 if abs(lo - round(lo)) <= blo else 0.0
        bhi = 1.0 if abs(hi - round(hi)) <= bhi else 0.0
    return blo, bhi


def _b_yarn_range_low(i, y, u, ops=reference_ops):
    return np.full(y.shape, _range_bounds(i, u)[0]), {"u": u}


def _b_yarn_range_high(i, y, u, ops=reference_ops):
    return np.full(y.shape, _range_bounds(i, u)[1]), {"u": u}


def _yarn_inv_bound(i, y, u):
    d, base, f = int(i["head_dim"]), float(i["base"]), float(i["factor"])
    inv = reference_ops.inv_freq_default(d, base=base)
    rel0 = _inv_default_rel(d, base, u)
    if f == 1.0:
        return rel0 * inv
    low, high = reference_ops.yarn_correction_range(
        d, base=base, beta_fast=i["beta_fast"], beta_slow=i["beta_slow"],
        original_max_position_embeddings=i["original_max_position_embeddings"], truncate=i["truncate"])
    blo, bhi = _range_bounds(i, u)
    j = np.arange(d // 2)
    ramp = np.clip((j - low) / (high - low), 0, 1)
    # ramp: first-order in low and high, plus 3 roundings; blend inv (1 - r) + (inv / f) r: 4 roundings.
    dramp = (np.abs(j - high) * blo + np.abs(j - low) * bhi) / (high - low) ** 2 + 3 * u * ramp
    return np.abs(inv - inv / f) * dramp + ((1 - ramp) * inv + ramp * inv / f) * (rel0 + 4 * u)


def _b_yarn_inv(i, y, u, ops=reference_ops):
    return _yarn_inv_bound(i, y, u), {"u": u}


def _b_yarn_scaling(i, y, u, ops=reference_ops):
    if i.get("attention_factor") is not None:
        return np.zeros(y.shape), {}
    # 0.1 m ln(f) + 1: ln (lib), two products and a constant (3u), the sum (u); a ratio of two: twice + u.
    return (2 * (lib_rel(u) + 4 * u) + u) * np.abs(y), {"u": u}


def _rope_kind(rs):
    return None if rs is None else rs.get("rope_type", rs.get("type"))


def _b_rope_frequencies_inv(i, y, u, ops=reference_ops):
    rs, d, base = i["rope_scaling"], int(i["head_dim"]), float(i["base"])
    kind = _rope_kind(rs)
    if kind in (None, "default"):
        return _inv_default_rel(d, base, u) * np.abs(y), {"u": u}
    if kind == "linear":
        return (_inv_default_rel(d, base, u) + u) * np.abs(y), {"u": u}
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return _b_inv_freq_llama3({"head_dim": d, "base": base, **{k: rs[k] for k in keys}}, y, u)
    yi = dict(head_dim=d, base=base, factor=rs["factor"], beta_fast=rs.get("beta_fast") or 32.0,
              beta_slow=rs.get("beta_slow") or 1.0,
              original_max_position_embeddings=rs.get("original_max_position_embeddings") or i["max_position_embeddings"],
              truncate=rs.get("truncate", True))
    return _yarn_inv_bound(yi, y, u), {"u": u}


def _b_rope_frequencies_scaling(i, y, u, ops=reference_ops):
    rs = i["rope_scaling"]
    if _rope_kind(rs) != "yarn":
        return np.zeros(y.shape), {}
    return _b_yarn_scaling({"attention_factor": rs.get("attention_factor")}, y, u)


def _b_rope_cos_sin(i, y, u, ops=reference_ops):
    # angle = p * inv_freq: u |angle| absolute, which cos/sin pass on (|d cos / d angle| <= 1);
    # cos/sin: lib; * scaling: u. Angles formed in angle_dtype use that dtype's u.
    ue = max(u, compute_unit_roundoff(np.dtype(i["angle_dtype"])))
    angle = np.asarray(i["positions"]).astype(np.float64)[..., None] * f64(i["inv_freq"])
    scale = float(i["attention_scaling"])
    return scale * ue * np.abs(angle) + (lib_rel(ue) + ue) * np.abs(y), {"u": ue}


def _b_apply_rope(i, y, u, ops=reference_ops):
    # out_a = x_a c - x_b s: two products and one sum -> gamma_2 (|x_a c| + |x_b s|); the rest is copied.
    x, c, s = f64(i["x"]), f64(i["cos"]), f64(i["sin"])
    d = x.shape[-1]
    r = d if i["rotary_dim"] is None else int(i["rotary_dim"])
    c, s = np.abs(c)[..., None, :], np.abs(s)[..., None, :]  # [..., T, 1, R/2]
    xr = np.abs(x[..., :r])
    if i["pairing"] == "half":
        a, b = xr[..., : r // 2], xr[..., r // 2:]
        rot = np.concatenate((a * c + b * s, b * c + a * s), axis=-1)
    else:
        a, b = xr[..., 0::2], xr[..., 1::2]
        rot = np.stack((a * c + b * s, b * c + a * s), axis=-1).reshape(xr.shape)
    out = np.zeros(x.shape)
    out[..., :r] = gamma(2, u) * rot
    return out, {"u": u, "gamma_2": float(gamma(2, u))}


def _b_rope_terms(i, y, u, ops=reference_ops):
    # each rotated entry is one product (x_a cos_j, x_b sin_j, ...): u |y|; dims R .. D-1 are copies
    # (a) or zeros (b): exact.
    d = np.shape(i["x"])[-1]
    r = d if i["rotary_dim"] is None else int(i["rotary_dim"])
    out = u * np.abs(y)
    out[..., r:] = 0.0
    return out, {"u": u, "R": r}


BUDGETS = [
    Budget("inv_freq_default", "ulp", "|err| <= (2L+1)(1 + |2j/d ln base|) u |y|",
           "exponent 2j/d (u) amplified by ln base through pow, pow itself, the reciprocal", _b_inv_freq_default),
    Budget("inv_freq_linear", "ulp", "|err| <= ((2L+1)(1 + |2j/d ln base|) + 1) u |y|", "default, then / factor",
           _b_inv_freq_linear),
    Budget("inv_freq_llama3", "ulp", "kept/divided bands: default bound (+u); smooth band: |inv - inv/f| ds + "
           "(|1-s| inv/f + |s| inv)(rel0 + 4u)", "the smooth factor s is first order in the wavelength's error",
           _b_inv_freq_llama3),
    Budget("yarn_correction_range", "ulp",
           "|err| <= (d/2)/ln b (3u + 2L u |ln r|) + |corr| (2L+2) u, r = L0/(2 pi beta); truncate: 0, or 1 "
           "where the value lies within that bound of an integer",
           "three roundings in r, two logarithms, a division and a product", parts=(
               Budget("yarn_correction_range", "ulp", "low", "see row", _b_yarn_range_low),
               Budget("yarn_correction_range", "ulp", "high", "see row", _b_yarn_range_high))),
    Budget("inv_freq_yarn", "ulp",
           "inv: |inv - inv/f| d_ramp + blend (rel0 + 4u); scaling: (4L + 9) u |y| (0 for attention_factor)",
           "ramp first order in low/high (yarn_correction_range's bound), 3 roundings; blend 4 roundings",
           parts=(Budget("inv_freq_yarn", "ulp", "inv_freq", "see row", _b_yarn_inv),
                  Budget("inv_freq_yarn", "ulp", "attention_scaling", "see row", _b_yarn_scaling))),
    Budget("rope_frequencies", "ulp", "the bound of the dispatched rule (inv_freq_*); scaling as inv_freq_yarn",
           "dispatch only", parts=(
               Budget("rope_frequencies", "ulp", "inv_freq", "see row", _b_rope_frequencies_inv),
               Budget("rope_frequencies", "ulp", "attention_scaling", "see row", _b_rope_frequencies_scaling))),
    Budget("rope_cos_sin", "ulp", "|err| <= scaling u_a |p inv| + (2L+1) u_a |y|, u_a = max(u, u(angle_dtype))",
           "the angle's rounding is an absolute error that cos/sin pass on (|derivative| <= 1)",
           parts=(Budget("rope_cos_sin", "ulp", "cos", "see row", _b_rope_cos_sin),
                  Budget("rope_cos_sin", "ulp", "sin", "see row", _b_rope_cos_sin))),
    Budget("apply_rope", "error_model", "|err| <= gamma_2 (|x_a c| + |x_b s|); pass-through dims exact",
           "two products and one sum per output (cancellation allowed, hence not relative)", _b_apply_rope),
    Budget("rope_terms", "ulp", "a, b: |err| <= u |y| on the rotated dims; pass-through dims exact",
           "each rotated entry of a and b is one product (x_a cos, -(x_b sin), x_b cos, x_a sin); negation, "
           "copies and zeros are exact", parts=(
               Budget("rope_terms", "ulp", "a: u |y|", "one product per rotated entry", _b_rope_terms),
               Budget("rope_terms", "ulp", "b: u |y|", "one product per rotated entry", _b_rope_terms))),
]


# ----------------------------------------------------------------------------- cases


_HD = st.sampled_from((2, 4, 8, 16, 64, 128, 256))


_BASE = st.sampled_from((10000.0, 500000.0, 150000.0, 1e6))


@case("inv_freq_default", st.fixed_dictionaries(dict(head_dim=_HD, base=_BASE)), [dict(head_dim=64, base=10000.0)])
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"])


@case("inv_freq_linear", st.fixed_dictionaries(dict(head_dim=_HD, base=_BASE, factor=st.sampled_from((1.0, 2.0, 8.0)))),
     [dict(head_dim=64, base=10000.0, factor=4.0)])
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], factor=c["factor"])


@case("inv_freq_llama3", st.fixed_dictionaries(dict(head_dim=st.sampled_from((16, 64, 128)), base=_BASE,
                                                   factor=st.sampled_from((8.0, 32.0)), l0=st.sampled_from((2048, 8192)),
                                                   bands=st.sampled_from(((1.0, 4.0), (2.0, 8.0), (1.0, 2.0))))),
     [dict(head_dim=128, base=500000.0, factor=8.0, l0=8192), dict(head_dim=64, base=500000.0, factor=8.0, l0=8192, bands=(2.0, 8.0))])
def _(c, g, dt, seed):
    lff, hff = c.get("bands", (1.0, 4.0))
    return dict(head_dim=c["head_dim"], base=c["base"], factor=c["factor"], low_freq_factor=lff, high_freq_factor=hff,
                original_max_position_embeddings=c["l0"])


_YARN = st.fixed_dictionaries(dict(head_dim=st.sampled_from((16, 64, 128)), base=st.sampled_from((150000.0, 10000.0, 1e6)),
                                   factor=st.sampled_from((32.0, 4.0, 40.0)), l0=st.sampled_from((4096, 2048)),
                                   truncate=st.booleans(),
                                   scaling=st.sampled_from(("default", "default", "mscale", "mscale_swapped",
                                                            "attention_factor"))))


_YARN_EX = [dict(head_dim=64, base=150000.0, factor=32.0, l0=4096, truncate=False),
            dict(head_dim=64, base=10000.0, factor=4.0, l0=4096, truncate=True, scaling="mscale"),
            dict(head_dim=64, base=10000.0, factor=4.0, l0=4096, truncate=False, scaling="attention_factor")]
# the concentration knobs (DeepSeek-style mscale / mscale_all_dim, a given attention_factor)
_YARN_SCALING = {"default": {}, "mscale": dict(mscale=0.707, mscale_all_dim=1.0),
                 "mscale_swapped": dict(mscale=1.0, mscale_all_dim=0.707), "attention_factor": dict(attention_factor=1.5)}


@case("inv_freq_yarn", _YARN, _YARN_EX)
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], factor=c["factor"], original_max_position_embeddings=c["l0"],
                truncate=c["truncate"], **_YARN_SCALING[c.get("scaling", "default")])


@case("yarn_correction_range", _YARN, _YARN_EX)
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], original_max_position_embeddings=c["l0"], truncate=c["truncate"])


@case("rope_frequencies", st.fixed_dictionaries(dict(head_dim=st.sampled_from((16, 64, 128)), base=_BASE,
                                                    kind=st.sampled_from(("none", "linear", "llama3", "yarn", "yarn",
                                                                          "linear_type_key", "yarn_type_key")),
                                                    truncate=st.booleans(), with_max=st.booleans())),
     [dict(head_dim=64, base=150000.0, kind="yarn", truncate=False, with_max=True),
      dict(head_dim=64, base=10000.0, kind="linear_type_key", truncate=False, with_max=False)])
def _(c, g, dt, seed):
    kind = c["kind"]
    old_key = kind.endswith("_type_key")  # rope_scaling's older "type" key instead of "rope_type"
    kind = kind.replace("_type_key", "")
    rs, mx = None, None
    if kind == "linear":
        rs = {"rope_type": "linear", "factor": 4.0}
    elif kind == "llama3":
        rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    elif kind == "yarn":
        rs = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
              "original_max_position_embeddings": 4096, "truncate": c["truncate"]}
        mx = 131072 if c["with_max"] else None
    if old_key and rs is not None:
        rs = {("type" if k == "rope_type" else k): v for k, v in rs.items()}
    return dict(head_dim=c["head_dim"], base=c["base"], rope_scaling=rs, max_position_embeddings=mx)


@case("rope_cos_sin", st.fixed_dictionaries(dict(head_dim=st.sampled_from((2, 16, 64, 128)), t=sizes(edges=(31, 32, 33, 129)),
                                                start=st.sampled_from((0, 1, 4095, 100000)),
                                                scaling=st.sampled_from((1.0, 1.3465735902799727)),
                                                angle_dtype=st.sampled_from(("float64", "float64", "float32")),
                                                batched=st.booleans())),
     [dict(head_dim=64, t=33, start=0, scaling=1.0), dict(head_dim=16, t=5, start=4095, scaling=1.3465735902799727,
                                                        angle_dtype="float32", batched=True)])
def _(c, g, dt, seed):
    inv = reference_ops.inv_freq_default(c["head_dim"], base=10000.0)
    pos = np.arange(c["start"], c["start"] + c["t"])
    if c.get("batched"):  # per-sequence positions [B, T]: each sequence starts elsewhere
        pos = np.stack([pos, pos + 7, np.maximum(pos - 3, 0)])
    return dict(inv_freq=as_dtype(inv, dt), positions=pos, attention_scaling=c["scaling"],
                angle_dtype=np.dtype(c.get("angle_dtype", "float64")).type)


_ROPE = st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), h=st.sampled_from((1, 2, 3)),
                                   d=st.sampled_from((2, 8, 16, 64, 128)), pairing=st.sampled_from(("half", "interleaved")),
                                   partial=st.sampled_from((False, False, True)), scale=scales()))


_ROPE_EX = [dict(t=5, h=2, d=8, pairing="half", partial=False, scale=1.0),
            dict(t=3, h=2, d=16, pairing="interleaved", partial=True, scale=1.0)]


def _rope_inputs(c, g, dt):
    d = c["d"]
    rd = d // 2 if c["partial"] and d % 4 == 0 else None
    half = (rd or d) // 2
    ang = g.uniform(0, 7, size=(c["t"], half))
    return dict(x=as_dtype(normal_values(g, (c["t"], c["h"], d), c["scale"]), dt), cos=as_dtype(np.cos(ang), dt),
                sin=as_dtype(np.sin(ang), dt), pairing=c["pairing"], rotary_dim=rd)


@case("apply_rope", _ROPE, _ROPE_EX[:1])
def _(c, g, dt, seed):
    return _rope_inputs(c, g, dt)


@case("rope_terms", _ROPE, _ROPE_EX)
def _(c, g, dt, seed):
    return _rope_inputs(c, g, dt)


# ----------------------------------------------------------------------------- misreadings


GPT_OSS_YARN = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                "original_max_position_embeddings": 4096, "truncate": False}


def _swap_pairing(kw):
    kw["pairing"] = "interleaved" if kw["pairing"] == "half" else "half"


def _yarn_rewrite(change):
    def rs(kw):
        r = kw["rope_scaling"]
        if r is not None and r.get("rope_type", r.get("type")) == "yarn":
            kw["rope_scaling"] = change(dict(r), kw)
    return rs


def _yarn_no_concentration(op):
    ref = getattr(reference_ops, op)

    def wrong(*args, **kwargs):
        inv, scaling = ref(*args, **kwargs)
        return inv, 1.0

    wrong.__name__, wrong.__signature__ = op, inspect.signature(ref)
    return wrong


def _yarn_missing_frequencies(head_dim, *, base=10000.0, rope_scaling=None, max_position_embeddings=None):
    r = rope_scaling
    if r is not None and r.get("rope_type", r.get("type")) == "yarn":
        r = None
    return reference_ops.rope_frequencies(head_dim, base=base, rope_scaling=r, max_position_embeddings=max_position_embeddings)


def _yarn_missing_inv(head_dim, *, base, factor, **_):
    return reference_ops.inv_freq_default(head_dim, base=base), 1.0


def _ex_rope():
    g = make_rng(1)
    cos, sin = reference_ops.rope_cos_sin(reference_ops.inv_freq_default(8), np.arange(5))
    return "apply_rope", dict(x=g.standard_normal((5, 2, 8)), cos=cos, sin=sin)


def _ex_yarn():
    return "rope_frequencies", dict(head_dim=64, base=150000.0, rope_scaling=dict(GPT_OSS_YARN),
                                    max_position_embeddings=131072)


_ROPE_FREQ = ("rope_frequencies", "inv_freq_yarn")


def _wrong_l0(r, kw):
    r["original_max_position_embeddings"] = kw.get("max_position_embeddings") or int(
        r["factor"] * (r.get("original_max_position_embeddings") or 4096))
    return r


MISREADINGS = [
    Misreading("rope_interleaved", "RoPE rotates pairs (2j, 2j+1) on half-split weights (pairs (j, j + D/2))",
            each(("apply_rope", "rope_terms"), _swap_pairing), _ex_rope),
    Misreading("yarn_missing", "YaRN scaling ignored (plain RoPE frequencies, no concentration)",
            {"rope_frequencies": _yarn_missing_frequencies, "inv_freq_yarn": _yarn_missing_inv}, _ex_yarn),
    Misreading("yarn_wrong_original_length",
            "YaRN built from max_position_embeddings (131072 on gpt-oss) instead of the original 4096",
            {"rope_frequencies": rewrite("rope_frequencies", _yarn_rewrite(_wrong_l0)),
             "inv_freq_yarn": rewrite("inv_freq_yarn", lambda kw: kw.update(
                 original_max_position_embeddings=int(kw["factor"] * kw["original_max_position_embeddings"])))},
            _ex_yarn),
    Misreading("yarn_truncated", "YaRN ramp bounds floored/ceiled (HF default truncate=True; gpt-oss uses False)",
            {"rope_frequencies": rewrite("rope_frequencies", _yarn_rewrite(lambda r, kw: {**r, "truncate": True})),
             "inv_freq_yarn": rewrite("inv_freq_yarn", lambda kw: kw.update(truncate=True))}, _ex_yarn),
    Misreading("yarn_no_concentration", "YaRN frequencies without the 0.1 ln(factor) + 1 factor on cos and sin",
            {op: _yarn_no_concentration(op) for op in _ROPE_FREQ}, _ex_yarn),
]
