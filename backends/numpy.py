"""The reference exposed through the backend interface: every op's kernel is refimpl.ops.OPS[op].

Subclass it and override one op (a method named like the op, or a `kernels` entry) to test a single
kernel against the whole suite, the other ops staying the reference; see spec/backend-interface.md.
"""

import numpy as np

from refimpl._version import __version__
from refimpl.errors import ArgumentError
from refimpl.ops import OPS

from .base import Backend


def _attention_online(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
    """refimpl.ops.attention_online with its default tiles, under attention's signature."""
    return OPS["attention_online"](q, k, v, sinks=sinks, window=window, causal=causal, q_offset=q_offset,
                                   scale=scale, mask=mask)


class NumpyBackend(Backend):
    """The NumPy reference as a backend: arrays are NumPy arrays, every op has a kernel.

    Kernels: attention has "dense" (refimpl.ops.attention) and "online" (refimpl.ops.attention_online,
    key tiles of 32 with an online softmax); every other op has "default" (the reference op).
    overrides: optional dict op name -> function with the reference signature, the op's only kernel
    (how the misreading backends of refimpl.conformance are built). name: the reported name.
    """

    name = "numpy"
    version = __version__
    kernels = {
        **{op: {"default": fn} for op, fn in OPS.items()},
        "attention": {"dense": OPS["attention"], "online": _attention_online},
    }

    def __init__(self, overrides=None, *, name=None):
        super().__init__()
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(OPS)
        if unknown:
            raise ArgumentError(f"overrides: expected op names of refimpl.ops.OPS, found {sorted(unknown)}")
        if overrides:
            self.kernels = {**type(self).kernels,
                            **{op: {self.kernel_names(op)[0]: fn} for op, fn in overrides.items()}}
        if name is not None:
            self.name = name

    def to_device(self, array):
        return np.asarray(array)

    def to_host(self, array):
        return np.asarray(array)
