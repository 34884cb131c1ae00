"""Misreadings: named known-wrong readings of the reference's conventions, and the diagnosis that names them.

Each family module (refimpl/conformance/ops/<family>.py) lists its misreadings; MISREADINGS gathers
them. Two uses: a failing comparison says which known mistake the implementation matches
(`diagnose`), and a backend built from each misreading (`get_backend("misreading:NAME")`) must fail
the suite (the suite's power; tests/conformance/test_corpus.py holds a larger corpus of one-op bugs).

A misreading is named only when it matches clearly where the reference clearly does not: the
misreading's output is within the op's budget of the kernel's output, and the reference's output is
not within CLEAR_FACTOR times that budget (or differs in shape, dtype or NaN/Inf pattern). A
near-miss of the reference is a failure without a diagnosis.
"""

import numpy as np

from .._validate import is_float_dtype
from ..errors import RefimplError
from ..ops import ops as reference_ops
from .compare import compare
from .kit import Misreading, bind
from .ops import MISREADINGS

CLEAR_FACTOR = 4.0

__all__ = ["MISREADINGS", "Misreading", "diagnose", "clearly_wrong", "CLEAR_FACTOR"]


def _widen(v):
    if isinstance(v, np.ndarray) and is_float_dtype(v.dtype):
        return v.astype(np.float64)
    return v


def clearly_wrong(report):
    """True when a failed comparison is far from a near-miss: not only values a little over budget."""
    if report.ok:
        return False
    if report.failure != "values":
        return True
    return report.budget_used >= CLEAR_FACTOR


def diagnose(op, inputs, actual, *, budget=None, misreadings=None):
    """Names of the misreadings whose output matches `actual` within the budget, where the
    reference's output clearly does not (see the module docstring); [] otherwise.

    op: op name; inputs: its inputs (dict by name or tuple of positional arguments); actual: the
    output under test (NumPy); budget: as for compare; misreadings: names to try (default all).
    The reference and the misreadings run on the inputs widened exactly to float64 (the oracle).
    """
    kw = bind(op, inputs)
    kw64 = {k: _widen(v) for k, v in kw.items()}
    ref = getattr(reference_ops, op)(**kw64)
    if not clearly_wrong(compare(ref, actual, op=op, budget=budget, inputs=kw)):
        return []
    names = []
    chosen = (MISREADINGS[n] for n in misreadings) if misreadings is not None else MISREADINGS.values()
    for m in chosen:
        fn = m.overrides.get(op)
        if fn is None:
            continue
        try:
            out = fn(**kw64)
        except RefimplError:
            continue
        seen = getattr(fn, "rewrite_inputs", lambda k: k)(kw)  # the knobs the misreading really used
        try:
            if compare(out, actual, op=op, budget=budget, inputs=seen, ops=m.ops()).ok:
                names.append(m.name)
        except RefimplError:
            continue
    return names
