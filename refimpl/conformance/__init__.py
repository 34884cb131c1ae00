"""Conformance: compare any implementation with the reference and say where and why it differs.

compare(expected, actual, op=..., inputs=...) -> Report; BUDGETS (op -> Budget) and MISREADINGS
(known-wrong readings) gathered from the op families in refimpl/conformance/ops/; diagnose names
the misreadings a wrong output clearly matches. See spec/conformance.md and spec/budgets.md.
"""

from .compare import Report, compare, ulp_distance
from .kit import Budget, Misreading, unit_roundoff
from .misreadings import diagnose
from .ops import BUDGETS, FAMILY, MISREADINGS, get_budget
from . import selection  # noqa: F401  registers the backend prefix misreading:NAME

__all__ = ["BUDGETS", "Budget", "FAMILY", "get_budget", "unit_roundoff", "Report", "compare", "ulp_distance",
           "MISREADINGS", "Misreading", "diagnose"]
