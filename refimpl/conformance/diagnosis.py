"""Whole-model diagnosis: which known-wrong reading reproduces another engine's trace.

    hits = diagnose_trace(config, weights, ids, mode, other, dtype=None)   # [(name, description)]

Candidates are the op-level misreadings (refimpl.conformance.misreadings, each run through the
whole model), config-level misreadings (a sliding window applied to every layer or to none, the
layer pattern inverted or shifted by one, another RoPE theta, another norm eps) and weight-layout
misreadings (a fused QKV split with k and v swapped, the output projection taken from the token
embedding). A candidate is named when its trace agrees with the other trace under the trace rule
(tracediff, with the same tolerance floors) where the reference's does not, run at the reference's
precision or, failing that, at the other trace's precision. Used by `refimpl diff --model`.
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


def weight_misreadings(cfg, weights):
    """[(name, description, weights)]: misread weight layouts that apply to `weights` (same config).

    qkv_kv_swapped: a fused QKV projection split as q, v, k (the key rows read as values and the
    value rows as keys; only where k and v have one shape). lm_head_tied: logits from the token
    embedding (tie_word_embeddings assumed) on a model with its own output projection.
    """
    out = []
    keys = [n for n in weights if n.endswith(".attn.k.weight")]
    if keys and all(np.shape(weights[n]) == np.shape(weights.get(n[:-len("k.weight")] + "v.weight")) for n in keys):
        w2 = dict(weights)
        for n in keys:
            p = n[:-len("k.weight")]
            for suf in ("weight", "bias"):
                if p + "k." + suf in weights and p + "v." + suf in weights:
                    w2[p + "k." + suf], w2[p + "v." + suf] = weights[p + "v." + suf], weights[p + "k." + suf]
        out.append(("qkv_kv_swapped", "fused QKV split as q, v, k: keys and values swapped", w2))
    te, lm = weights.get("tok_embed"), weights.get("lm_head")
    if te is not None and lm is not None and te is not lm and np.shape(te) == np.shape(lm):
        dt = np.asarray(lm).dtype
        out.append(("lm_head_tied", "logits from the token embedding (tied) instead of the model's own output "
                    "projection", dict(weights, lm_head=np.asarray(te).astype(dt))))
    return out


def _candidates(cfg, weights):
    out = [(m.name, m.description, cfg, weights, m.ops()) for m in MISREADINGS.values()]
    out += [(n, d, cfg2, weights, None) for n, d, cfg2 in config_misreadings(cfg)]
    out += [(n, d, cfg, w2, None) for n, d, w2 in weight_misreadings(cfg, weights)]
    return out


def diagnose_trace(cfg, weights, ids, mode, other, *, dtype=None, u=None, c=None, floors=None, other_mode=None,
                   other_weights=None):
    """[(name, description)] of the misreadings whose trace agrees with `other` (see the module docstring).

    mode: the precision the candidates run in (the reference's, normally float64), on `weights`.
    other_mode / other_weights: the precision the other trace was computed in (e.g. "bfloat16") and
    the weights prepared for it (refimpl.load(..., dtype=other_mode).weights): a candidate that does
    not agree when run in `mode` is run again in other_mode, where it rounds where a bfloat16 engine
    rounds (on an ill-conditioned model a float64 candidate can sit farther from a bfloat16 engine with
    the same bug than the tolerance allows, although the bug is the same).
    """
    kw = dict(u=u, floors=floors) if c is None else dict(u=u, c=c, floors=floors)
    ids = np.asarray(ids)
    runs = [(mode, _candidates(cfg, weights))]
    if other_mode is not None and other_mode != mode:
        runs.append((other_mode, _candidates(cfg, weights if other_weights is None else other_weights)))
    hits = []
    for i in range(len(runs[0][1])):
        for md, cands in runs:
            name, desc, cfg2, w2, ops = cands[i]
            tr = {}
            try:
                if ops is None:
                    forward(cfg2, w2, ids, dtype=md, trace=tr)
                else:
                    forward(cfg2, w2, ids, dtype=md, trace=tr, ops=ops)
            except Exception:
                continue
            if diff_traces(tr, other, dtype=dtype, **kw).ok:
                hits.append((name, desc))
                break
    return hits
