"""The dense product: linear.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""


import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    Budget,
    as_dtype,
    case,
    f64,
    gamma,
    linear_bound,
    normal_values,
    scales,
    sizes,
)


# ----------------------------------------------------------------------------- budgets


def _b_linear(i, y, u, ops=reference_ops):
    x, w = f64(i["x"]), f64(i["weight"])
    return linear_bound(x, w, f64(i["bias"]), None, u), {"K": x.shape[-1], "u": u, "gamma_K+1": float(gamma(x.shape[-1] + 1, u))}


BUDGETS = [
    Budget("linear", "error_model", "|err| <= gamma_(K+1) (|x| @ |W|.T + |b|)",
           "dot product of length K plus the bias as one more term (Higham (3.5)); any summation order",
           _b_linear),
]


# ----------------------------------------------------------------------------- cases


@case("linear", st.fixed_dictionaries(dict(t=sizes(small=(0, 1, 2, 3, 5, 7, 8, 16)), k=sizes(), n=sizes(edges=(31, 32, 33, 129)),
                                          bias=st.booleans(), scale=scales())),
     [dict(t=3, k=33, n=5, bias=True, scale=1.0), dict(t=0, k=4, n=3, bias=False, scale=1.0)])
def _(c, g, dt, seed):
    k = c["k"]
    return dict(x=as_dtype(normal_values(g, (c["t"], k), c["scale"]), dt), weight=as_dtype(normal_values(g, (c["n"], k), 1 / np.sqrt(k)), dt),
                bias=as_dtype(normal_values(g, c["n"], 1.0), dt) if c["bias"] else None)


# ----------------------------------------------------------------------------- misreadings


MISREADINGS = [
]
