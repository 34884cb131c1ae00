"""Elementwise steps the forward pass composes: round_to_storage, add, scale.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""

import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import Budget, as_dtype, case, exact, normal_values, scales, sizes


# ----------------------------------------------------------------------------- budgets


def _b_add(i, y, u, ops=reference_ops):
    return u * np.abs(y), {"u": u}


def _b_scale(i, y, u, ops=reference_ops):
    return 2 * u * np.abs(y), {"u": u}


BUDGETS = [
    exact("round_to_storage", "one rounding of the input's value to the storage dtype, from any wider "
          "input holding the same value: the same bits"),
    Budget("add", "ulp", "|err| <= u |y|", "one IEEE addition", _b_add),
    Budget("scale", "ulp", "|err| <= 2u |y|", "the factor's rounding and one product", _b_scale),
]


# ----------------------------------------------------------------------------- cases


@case("round_to_storage", st.fixed_dictionaries(dict(n=sizes(), scale=scales(),
                                                     target=st.sampled_from(("float64", "float32", "bfloat16")))),
      [dict(n=33, scale=1.0, target="bfloat16")])
def _(c, g, dt, seed):
    return dict(x=as_dtype(normal_values(g, (2, c["n"]), c["scale"]), dt), dtype=c["target"])


@case("add", st.fixed_dictionaries(dict(n=sizes(), scale=scales(), row=st.booleans())),
      [dict(n=33, scale=1.0, row=True)])
def _(c, g, dt, seed):
    y = normal_values(g, (c["n"],) if c["row"] else (3, c["n"]), c["scale"])
    return dict(x=as_dtype(normal_values(g, (3, c["n"]), c["scale"]), dt), y=as_dtype(y, dt))


@case("scale", st.fixed_dictionaries(dict(n=sizes(), scale=scales(),
                                          factor=st.sampled_from((0.125, 0.08838834764831845, 3.0)))),
      [dict(n=33, scale=1.0, factor=0.125)])
def _(c, g, dt, seed):
    x = normal_values(g, (3, c["n"]), c["scale"])
    x[0, 0] = -np.inf  # a masked score
    return dict(x=as_dtype(x, dt), factor=c["factor"])


# ----------------------------------------------------------------------------- misreadings


MISREADINGS = []
