"""Packed GGUF weights: dequantize_gguf, gguf_embedding, gguf_linear (spec/quant.md).

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""


import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ...ops.quant import QTYPES, random_packed
from ..kit import Budget, as_dtype, case, exact, f64, gamma, linear_bound, normal_values, sizes


# ----------------------------------------------------------------------------- budgets


def _b_gguf_linear(i, y, u, ops=reference_ops):
    w = ops.dequantize_gguf(i["blocks"], i["qtype"], i["shape"]).astype(np.float64)  # exact: gguf's float32 values
    x = f64(i["x"])
    return linear_bound(x, w, f64(i["bias"]), None, u), {"K": x.shape[-1], "u": u, "gamma_K+1": float(gamma(x.shape[-1] + 1, u))}


BUDGETS = [
    exact("dequantize_gguf", "gguf's float32 dequantization, bit for bit: every weight is one or two float32 "
          "roundings in a fixed order (spec/quant.md), which an implementation must reproduce"),
    exact("gguf_embedding", "rows of dequantize_gguf: exact (spec/quant.md)"),
    Budget("gguf_linear", "error_model", "|err| <= gamma_(K+1) (|x| @ |dequantize_gguf(W)|.T + |b|)",
           "the weights are exact (dequantize_gguf), then linear's bound", _b_gguf_linear),
]


# ----------------------------------------------------------------------------- cases

_QTYPES = tuple(QTYPES)


def _packed(g, qtype, out, blocks):
    n_in = QTYPES[qtype][0] * blocks
    return random_packed(g, qtype, (out, n_in)), (out, n_in)


@case("dequantize_gguf", st.fixed_dictionaries(dict(q=st.sampled_from(_QTYPES), out=sizes(edges=(31, 32, 33)),
                                                    blocks=st.integers(1, 3))),
      [dict(q=q, out=3, blocks=2) for q in _QTYPES])
def _(c, g, dt, seed):
    b, shape = _packed(g, c["q"], c["out"], c["blocks"])
    return dict(blocks=b, qtype=c["q"], shape=shape)


@case("gguf_embedding", st.fixed_dictionaries(dict(q=st.sampled_from(_QTYPES), out=sizes(edges=(31, 32, 33)),
                                                   blocks=st.integers(1, 2), t=sizes(edges=(31, 32, 33)))),
      [dict(q=q, out=7, blocks=1, t=5) for q in _QTYPES])
def _(c, g, dt, seed):
    b, shape = _packed(g, c["q"], c["out"], c["blocks"])
    return dict(ids=g.integers(0, c["out"], size=c["t"]), blocks=b, qtype=c["q"], shape=shape)


@case("gguf_linear", st.fixed_dictionaries(dict(q=st.sampled_from(_QTYPES), t=sizes(edges=(1, 7, 8, 9, 33)),
                                               out=sizes(edges=(15, 16, 17, 33)), blocks=st.integers(1, 3),
                                               bias=st.booleans())),
      [dict(q=q, t=t, out=5, blocks=2, bias=True) for q in _QTYPES for t in (1, 3, 9)])
def _(c, g, dt, seed):
    b, shape = _packed(g, c["q"], c["out"], c["blocks"])
    return dict(x=as_dtype(normal_values(g, (c["t"], shape[1]), 1.0), dt), blocks=b, qtype=c["q"], shape=shape,
                bias=as_dtype(normal_values(g, c["out"], 1.0), dt) if c["bias"] else None)


# ----------------------------------------------------------------------------- misreadings


MISREADINGS = [
]
