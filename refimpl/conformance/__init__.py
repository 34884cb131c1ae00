"""Conformance: compare any implementation with the reference and say where and why it differs.

compare(expected, actual, op=..., inputs=...) -> Report; BUDGETS (one table, budgets.py);
VARIANTS and diagnose (known-wrong variants, variants.py). See spec/budgets.md and
spec/backend-interface.md.
"""

from .budgets import BUDGETS, Budget, get_budget, unit_roundoff
from .compare import Report, compare, ulp_distance
from .variants import VARIANTS, Variant, diagnose

from refimpl.backends import BackendError, register_prefix



def _misreading_backend(name):
    """get_backend("misreading:NAME"): the reference with the known-wrong reading NAME swapped in."""
    if name not in VARIANTS:
        raise BackendError(f"backend 'misreading:{name}': unknown known-wrong reading {name!r}; "
                           f"known: {', '.join(sorted(VARIANTS))}")
    return VARIANTS[name].backend()


register_prefix("misreading", _misreading_backend, replace=True)

__all__ = ["BUDGETS", "Budget", "get_budget", "unit_roundoff", "Report", "compare", "ulp_distance",
           "VARIANTS", "Variant", "diagnose"]
