"""The reference exposed through the backend interface: every op delegates to refimpl.ops.

Subclass it and override one op to test a single kernel against the whole suite (the other ops stay
the reference); see spec/backend-interface.md.
"""

import numpy as np

from refimpl._version import __version__
from refimpl.errors import ArgumentError
from refimpl.ops import OP_NAMES
from refimpl.ops import ops as reference_ops

from .interface import DTYPES, Backend, _method_signature


def _delegate(name):
    def op(self, *args, **kwargs):
        return self._op(name)(*args, **kwargs)

    op.__name__ = op.__qualname__ = name
    op.__signature__ = _method_signature(getattr(reference_ops, name))
    op.__doc__ = f"refimpl.ops.{name} (or this backend's override of it)."
    return op


class NumpyBackend(Backend):
    """The NumPy reference as a backend: arrays are NumPy arrays, every op is implemented.

    overrides: optional dict op name -> function with the reference signature, used instead of the
    reference op (how the known-wrong variant backends are built). name: the reported name.
    Kernel variants: attention has "dense" (refimpl.ops.attention) and "online"
    (refimpl.ops.attention_online, key tiles of 32 with an online softmax).
    """

    name = "numpy"
    version = __version__

    def __init__(self, overrides=None, *, name=None):
        super().__init__()
        self._overrides = dict(overrides or {})
        unknown = set(self._overrides) - set(OP_NAMES)
        if unknown:
            raise ArgumentError(f"overrides: expected op names of refimpl.ops, found {sorted(unknown)}")
        if name is not None:
            self.name = name

    def capabilities(self):
        cap = super().capabilities()
        cap["dtypes"] = set(DTYPES)
        return cap

    def to_backend(self, array):
        return np.asarray(array)

    def to_numpy(self, array):
        return np.asarray(array)

    def _op(self, name):
        return self._overrides.get(name) or getattr(reference_ops, name)

    def kernel_variants(self, op):
        return ["dense", "online"] if op == "attention" else ["default"]

    def attention(self, q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
        kw = dict(sinks=sinks, window=window, causal=causal, q_offset=q_offset, scale=scale, mask=mask)
        if "attention" not in self._overrides and self.kernel_variant("attention") == "online":
            return reference_ops.attention_online(q, k, v, **kw)
        return self._op("attention")(q, k, v, **kw)


for _name in OP_NAMES:
    if _name != "attention":
        setattr(NumpyBackend, _name, _delegate(_name))
