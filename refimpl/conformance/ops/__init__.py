"""Conformance by op family: each module holds one family's budgets, input cases and misreadings.

    BUDGETS       op name -> Budget (every op of refimpl.ops.OPS has one)
    MISREADINGS   misreading name -> Misreading (known-wrong readings of the reference's conventions)
    FAMILY        op name -> the family module name that owns it
    build_inputs(op, cfg, seed, dtype) -> the op's inputs for one case; op_configs(op) -> its strategy

A case is (op, cfg, seed): `cfg` is a small dict of plain values drawn by Hypothesis and
build_inputs turns it deterministically into the inputs (NumPy's Generator seeded with `seed`), so
every case, however large, is rebuilt from one line (what the report's repro uses).
"""

from ...errors import ArgumentError
from ..kit import BUILDERS, CONFIGS, DTYPES, EXAMPLES
from . import activations, attention, dropout, elementwise, embed, linear, moe, mxfp4, norms, rope, sampling

FAMILIES = (embed, linear, elementwise, norms, activations, dropout, rope, attention, moe, mxfp4, sampling)

BUDGETS = {b.op: b for fam in FAMILIES for b in fam.BUDGETS}
MISREADINGS = {m.name: m for fam in FAMILIES for m in fam.MISREADINGS}
FAMILY = {b.op: fam.__name__.rsplit(".", 1)[1] for fam in FAMILIES for b in fam.BUDGETS}


def get_budget(op):
    """The budget of `op` (ArgumentError naming op if there is none; tests check every op has one)."""
    if op not in BUDGETS:
        raise ArgumentError(f"op: expected an op with a budget (one of {len(BUDGETS)}: {', '.join(BUDGETS)}), "
                            f"found {op!r}")
    return BUDGETS[op]


def supported_ops():
    """Ops that have a case strategy."""
    return tuple(CONFIGS)


def op_configs(op):
    """The Hypothesis strategy of cfg dicts for `op`."""
    if op not in CONFIGS:
        raise ArgumentError(f"op: expected an op with a case strategy ({', '.join(CONFIGS)}), found {op!r}")
    return CONFIGS[op]


def examples(op):
    """The op's explicit cases (regression and power cases), run before the drawn ones."""
    return list(EXAMPLES.get(op, []))


def build_inputs(op, cfg, seed, dtype="float32"):
    """The inputs dict of `op` for configuration `cfg`, values drawn from default_rng(seed), floats in `dtype`."""
    import numpy as np

    if dtype not in DTYPES:
        raise ArgumentError(f"dtype: expected one of {sorted(DTYPES)}, found {dtype!r}")
    op_configs(op)
    return BUILDERS[op](dict(cfg), np.random.default_rng(seed), dtype, int(seed))


def repro_expression(op, cfg, dtype):
    """A Python expression (using a variable `seed`) that rebuilds the inputs of a case."""
    return (f"__import__('refimpl.conformance.ops', fromlist=['build_inputs'])"
            f".build_inputs({op!r}, {cfg!r}, seed, {dtype!r})")
