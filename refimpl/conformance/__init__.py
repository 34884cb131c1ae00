"""Conformance: compare any implementation with the reference and say where and why it differs.

compare(expected, actual, op=..., inputs=...) -> Report; BUDGETS (one table, budgets.py);
VARIANTS and diagnose (known-wrong variants, variants.py). See spec/budgets.md and
spec/backend-interface.md.
"""

from .budgets import BUDGETS, Budget, get_budget, unit_roundoff
from .compare import Report, compare, ulp_distance
from .variants import VARIANTS, Variant, diagnose

__all__ = ["BUDGETS", "Budget", "get_budget", "unit_roundoff", "Report", "compare", "ulp_distance",
           "VARIANTS", "Variant", "diagnose"]
