"""Reference operations, one module per layer family.

`ops` is the namespace of every reference op by name; models call ops through a
namespace like it, so that a backend (backends/) can stand in for the reference.
"""

from types import SimpleNamespace

from . import activations, attention, dropout, embed, linear, moe, mxfp4, norms, quant, rope, sampling

_MODULES = (embed, linear, norms, activations, dropout, rope, attention, moe, mxfp4, quant, sampling)

OP_NAMES = tuple(
    name
    for mod in _MODULES
    for name in getattr(mod, "__all__", [n for n, v in vars(mod).items()
                                         if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__])
)

ops = SimpleNamespace(**{name: getattr(mod, name) for mod in _MODULES
                         for name in OP_NAMES if hasattr(mod, name)})

__all__ = ["ops", "OP_NAMES"] + [m.__name__.rsplit(".", 1)[1] for m in _MODULES]
