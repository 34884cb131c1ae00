"""MXFP4: E8M0 scales, FP4 codes, encode, and the MXFP4 linear.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""


import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    DTYPES,
    Budget,
    Misreading,
    as_dtype,
    case,
    each,
    exact,
    f64,
    gamma,
    linear_bound,
    make_rng,
    normal_values,
    scales,
    sizes,
    with_knobs,
)


# ----------------------------------------------------------------------------- budgets


def _b_mxfp4_linear(i, y, u, ops=reference_ops):
    w = ops.decode_mxfp4(i["blocks"], i["scales"], dtype=np.float64, nibble_order=i["nibble_order"],
                                   scale_bias=i["scale_bias"])
    x = f64(i["x"])
    return linear_bound(x, w, f64(i["bias"]), None, u), {"K": x.shape[-1], "u": u, "gamma_K+1": float(gamma(x.shape[-1] + 1, u))}


BUDGETS = [
    exact("decode_e8m0", "powers of two, exact in float32 (ldexp)"),
    exact("decode_mxfp4", "E2M1 value times a power of two: exact in every decode dtype"),
    exact("encode_mxfp4", "integer codes from exact float64 comparisons; ties stated"),
    Budget("mxfp4_linear", "error_model", "|err| <= gamma_(K+1) (|x| @ |decode(W)|.T + |b|)",
           "the decode is exact, then linear's bound", _b_mxfp4_linear),
]


# ----------------------------------------------------------------------------- cases


@case("decode_e8m0", st.fixed_dictionaries(dict(n=sizes(), lo=st.sampled_from((0, 100, 120)), bias=st.sampled_from((127, 127, 128)))),
     [dict(n=33, lo=100), dict(n=4, lo=0, extremes=True)])
def _(c, g, dt, seed):
    s = g.integers(c["lo"], 256, size=(2, c["n"]), dtype=np.uint8)
    s.flat[: min(s.size, 4)] = np.array([255, 254, 0, 127], np.uint8)[: min(s.size, 4)]  # the extreme codes, 255 too
    return dict(scales=s, bias=c.get("bias", 127))


def _mx(g, out, groups, extremes=False):
    blocks = g.integers(0, 256, size=(out, groups, 16), dtype=np.uint8)
    scales = g.integers(118, 136, size=(out, groups), dtype=np.uint8)
    if extremes:
        scales.flat[0] = 255
        scales.flat[-1] = 0
    return blocks, scales


_ORDERS = st.sampled_from(("low_first", "low_first", "high_first"))


@case("decode_mxfp4", st.fixed_dictionaries(dict(out=sizes(edges=(31, 32, 33)), groups=st.integers(1, 5),
                                                out_dtype=st.sampled_from(("float32", "float64", "bfloat16")),
                                                order=_ORDERS, extremes=st.booleans())),
     [dict(out=3, groups=2), dict(out=2, groups=1, out_dtype="float64", order="high_first", extremes=True)])
def _(c, g, dt, seed):
    b, s = _mx(g, c["out"], c["groups"], c.get("extremes", False))
    return dict(blocks=b, scales=s, dtype=DTYPES[c.get("out_dtype", "float32")], nibble_order=c.get("order", "low_first"))


@case("encode_mxfp4", st.fixed_dictionaries(dict(out=sizes(edges=(31, 32, 33)), groups=st.integers(1, 4), scale=scales(),
                                                rule=st.sampled_from(("ceil", "floor")), ties=st.sampled_from(("even", "away")))),
     [dict(out=3, groups=2, scale=1.0), dict(out=2, groups=1, scale=4.0, rule="floor", ties="away")])
def _(c, g, dt, seed):
    w = normal_values(g, (c["out"], 32 * c["groups"]), c["scale"])
    w.flat[::7] = np.round(w.flat[::7] * 4) / 4  # quarter steps: the E2M1 rounding ties
    return dict(w=as_dtype(w, dt), scale_rule=c.get("rule", "ceil"), ties=c.get("ties", "even"))


@case("mxfp4_linear", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(0, 1, 2, 3)), out=sizes(edges=(31, 32, 33)),
                                                groups=st.integers(1, 4), bias=st.booleans(), order=_ORDERS,
                                                scale_bias=st.sampled_from((127, 127, 128)))),
     [dict(t=3, out=5, groups=2, bias=True), dict(t=2, out=3, groups=1, bias=False, order="high_first", scale_bias=128)])
def _(c, g, dt, seed):
    b, s = _mx(g, c["out"], c["groups"])
    return dict(x=as_dtype(normal_values(g, (c["t"], 32 * c["groups"]), 1.0), dt), blocks=b, scales=s,
                bias=as_dtype(normal_values(g, c["out"], 1.0), dt) if c["bias"] else None,
                nibble_order=c.get("order", "low_first"), scale_bias=c.get("scale_bias", 127))


# ----------------------------------------------------------------------------- misreadings


def _swap_nibbles(kw):
    kw["nibble_order"] = "high_first" if kw["nibble_order"] == "low_first" else "low_first"


def _ex_mxfp4():
    g = make_rng(4)
    return "decode_mxfp4", dict(blocks=g.integers(0, 256, size=(3, 2, 16), dtype=np.uint8),
                                scales=g.integers(120, 130, size=(3, 2), dtype=np.uint8))


MISREADINGS = [
    Misreading("mxfp4_nibbles_swapped", "MXFP4 element 2i read from the high nibble (high_first)",
            each(("decode_mxfp4", "mxfp4_linear"), _swap_nibbles), _ex_mxfp4),
    Misreading("mxfp4_scale_bias_128", "E8M0 scale decoded as 2^(s - 128): every weight halved",
            {**with_knobs(("decode_mxfp4", "mxfp4_linear"), scale_bias=128), **with_knobs(("decode_e8m0",), bias=128)},
            _ex_mxfp4),
]
