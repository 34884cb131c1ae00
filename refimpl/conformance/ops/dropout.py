"""dropout.

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
    exact,
    normal_values,
    scales,
    sizes,
)


# ----------------------------------------------------------------------------- budgets


def _b_dropout(i, y, u, ops=reference_ops):
    if not i["training"] or float(i["p"]) == 0.0:
        return np.zeros(y.shape), {}
    return 2 * u * np.abs(y), {"u": u, "c": 2}


BUDGETS = [
    Budget("dropout", "ulp", "|err| <= 2u |y| (exact when not training or p = 0)",
           "the same keep mask (same Generator stream), then (1-p) rounded and one division", _b_dropout),
]


# ----------------------------------------------------------------------------- cases


@case("dropout", st.fixed_dictionaries(dict(n=sizes(), p=st.sampled_from((0.0, 0.1, 0.5, 0.9)), training=st.booleans(),
                                           scale=scales())),
     [dict(n=33, p=0.5, training=True, scale=1.0)])
def _(c, g, dt, seed):
    return dict(x=as_dtype(normal_values(g, (2, c["n"]), c["scale"]), dt), p=c["p"], rng=np.random.default_rng(seed),
                training=c["training"])


# ----------------------------------------------------------------------------- misreadings


MISREADINGS = [
]
