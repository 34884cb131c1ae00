"""Embedding gathers: embedding, learned_positions.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""


from hypothesis import strategies as st


from ..kit import (
    GATHER,
    as_dtype,
    case,
    exact,
    normal_values,
    scales,
    sizes,
)


# ----------------------------------------------------------------------------- budgets


BUDGETS = [
    exact("embedding", GATHER),
    exact("learned_positions", GATHER),
]


# ----------------------------------------------------------------------------- cases


@case("embedding", st.fixed_dictionaries(dict(t=sizes(), v=st.sampled_from((1, 7, 97)), d=sizes(), scale=scales())),
     [dict(t=5, v=7, d=33, scale=1.0)])
def _(c, g, dt, seed):
    return dict(ids=g.integers(0, c["v"], size=c["t"]), weight=as_dtype(normal_values(g, (c["v"], c["d"]), c["scale"]), dt))


@case("learned_positions", st.fixed_dictionaries(dict(p=st.sampled_from((1, 8, 33, 129)), d=sizes(), frac=st.floats(0, 1),
                                                     off=st.floats(0, 1), scale=scales())),
     [dict(p=33, d=8, frac=0.5, off=0.5, scale=1.0)])
def _(c, g, dt, seed):
    p = c["p"]
    length = max(1, int(round(c["frac"] * p)))
    offset = int(round(c["off"] * (p - length)))
    return dict(wpe=as_dtype(normal_values(g, (p, c["d"]), c["scale"]), dt), length=length, offset=offset)


# ----------------------------------------------------------------------------- misreadings


MISREADINGS = [
]
