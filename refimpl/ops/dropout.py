"""Inverted dropout (spec/dropout.md). Inference never drops: every released
model refimpl runs is evaluated with training=False."""

import math

import numpy as np

from .._validate import as_float_array, require
from ..precision import compute_dtype

__all__ = ["dropout", "check_dropout"]


def check_dropout(x, p, *, rng=None, training=True):
    """The argument checks of dropout (rng is required only when training with p > 0, checked by dropout)."""
    ok = isinstance(p, (int, float, np.integer, np.floating)) and not isinstance(p, bool)
    require(ok and math.isfinite(float(p)) and 0.0 <= float(p) < 1.0, "p", "a finite number in [0, 1)", repr(p))
    require(isinstance(training, (bool, np.bool_)), "training", "a bool", repr(training))
    require(
        rng is None or isinstance(rng, np.random.Generator),
        "rng",
        "a numpy.random.Generator",
        type(rng).__name__,
    )
    as_float_array(x, "x")


def dropout(x, p, *, rng=None, training=True):
    """Inverted dropout: out = (x * keep) / (1 - p), keep = rng.random(x.shape) >= p; E[out] = x.

    Identity (x converted to ``compute_dtype(x)``, no random draws) when ``training`` is False
    or p == 0. The uniforms are float64 in [0, 1), drawn in C order; the product and the
    rescale are in compute_dtype(x). A dropped NaN or inf gives NaN (IEEE 0 * inf).
    p: finite, in [0, 1) (p == 1 is refused). rng: a ``numpy.random.Generator``, required when
    training with p > 0; the same seed gives the same mask. training: a bool.
    Returns x's shape in ``compute_dtype(x)``.
    """
    check_dropout(x, p, rng=rng, training=training)
    p = float(p)
    x = as_float_array(x, "x")
    dt = compute_dtype(x)
    x = x.astype(dt, copy=True)
    if not training or p == 0.0:
        return x
    require(rng is not None, "rng", "a numpy.random.Generator when training with p > 0", "None")
    keep = rng.random(x.shape) >= p  # [x.shape]
    with np.errstate(invalid="ignore"):
        return (x * keep) / dt.type(1.0 - p)
