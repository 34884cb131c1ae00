"""Whole-model diagnosis: which known-wrong reading reproduces another engine's trace.

    hits = diagnose_trace(config, weights, ids, mode, other, dtype=None)   # [(name, description)]

Candidates are the op-level misreadings (refimpl.conformance.misreadings, each run through the
whole model) and config-level misreadings: a sliding window applied to every layer or to none, the
layer pattern inverted or shifted by one, another RoPE theta, another norm eps. A candidate is named
when its trace agrees with the other trace under the trace rule (tracediff) where the reference's
does not. Used by `refimpl diff --model`.
"""

import dataclasses

import numpy as np

from ..model import forward
from .misreadings import MISREADINGS
from .tracediff import diff_traces

_THETAS = (10000.0, 500000.0, 1000000.0, 150000.0)
_EPS = (1e-5, 1e-6, 1e-12)


def config_misreadings(cfg):
    """[(name, description, config)]: the config-level misreadings that apply to `cfg`."""
    out = []
    rep = dataclasses.replace
    n = cfg.num_layers
    if cfg.sliding_window is not None:
        out.append(("window_on_every_layer", f"the sliding window {cfg.sliding_window} applied to every layer",
                    rep(cfg, layer_types=("sliding_attention",) * n)))
        out.append(("window_on_no_layer", "the sliding window ignored: full causal attention on every layer",
                    rep(cfg, sliding_window=None, layer_types=())))
        lt = tuple(cfg.layer_types)
        if lt and len(set(lt)) == 2:
            flip = {"sliding_attention": "full_attention", "full_attention": "sliding_attention"}
            out.append(("layer_pattern_inverted", "sliding and full layers swapped",
                        rep(cfg, layer_types=tuple(flip[t] for t in lt))))
            shifted = lt[1:] + lt[:1]
            if shifted != lt:
                out.append(("layer_pattern_shifted", "the sliding/full pattern starting one layer later",
                            rep(cfg, layer_types=shifted)))
    for theta in _THETAS + (cfg.rope_theta * 10, cfg.rope_theta / 10):
        if theta != cfg.rope_theta and theta >= 1:
            out.append((f"rope_theta={theta:g}", f"RoPE base {theta:g} instead of {cfg.rope_theta:g}",
                        rep(cfg, rope_theta=float(theta))))
    for eps in _EPS:
        if eps != cfg.norm_eps:
            out.append((f"norm_eps={eps:g}", f"norm eps {eps:g} instead of {cfg.norm_eps:g}", rep(cfg, norm_eps=eps)))
    return out


def diagnose_trace(cfg, weights, ids, mode, other, *, dtype=None, u=None, c=None):
    """[(name, description)] of the misreadings whose trace agrees with `other` (see the module docstring)."""
    kw = dict(u=u) if c is None else dict(u=u, c=c)
    ids = np.asarray(ids)
    hits = []
    for m in MISREADINGS.values():
        tr = {}
        try:
            forward(cfg, weights, ids, dtype=mode, trace=tr, ops=m.ops())
        except Exception:
            continue
        if diff_traces(tr, other, dtype=dtype, **kw).ok:
            hits.append((m.name, m.description))
    for name, desc, cfg2 in config_misreadings(cfg):
        tr = {}
        try:
            forward(cfg2, weights, ids, dtype=mode, trace=tr)
        except Exception:
            continue
        if diff_traces(tr, other, dtype=dtype, **kw).ok:
            hits.append((name, desc))
    return hits
