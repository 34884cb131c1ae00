"""Conformance: compare any implementation with the reference and say where and why it differs.

compare(expected, actual, op=..., inputs=...) -> Report; BUDGETS (op -> Budget) and MISREADINGS
(known-wrong readings) gathered from the op families in refimpl/conformance/ops/; diagnose names
the misreadings a wrong output clearly matches. See spec/conformance.md and spec/budgets.md.

The names below are imported on first use (PEP 562): the input strategies need Hypothesis (the
`dev` extra), and `refimpl generate` must not. Importing this package registers the backend
prefix misreading:NAME (refimpl.conformance.selection, which needs nothing beyond refimpl).
"""

import importlib

from . import selection  # noqa: F401  registers the backend prefix misreading:NAME

_LAZY = {
    "Report": ".compare", "compare": ".compare", "ulp_distance": ".compare",
    "Budget": ".kit", "Misreading": ".kit", "unit_roundoff": ".kit",
    "diagnose": ".misreadings",
    "BUDGETS": ".ops", "FAMILY": ".ops", "MISREADINGS": ".ops", "get_budget": ".ops",
}

__all__ = ["BUDGETS", "Budget", "FAMILY", "get_budget", "unit_roundoff", "Report", "compare", "ulp_distance",
           "MISREADINGS", "Misreading", "diagnose"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(_LAZY[name], __name__)
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        from ..errors import RefimplError

        raise RefimplError("refimpl.conformance: needs Hypothesis for its input strategies; "
                           "install it with pip install 'refimpl[dev]'") from None
    value = getattr(module, name)
    globals()[name] = value
    return value
