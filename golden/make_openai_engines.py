"""Golden case `openai_engines`: whole engines made from OpenAI's gpt-oss torch reference, each with one bug.

OpenAI's reference (gpt-oss 0.0.9, gpt_oss/torch/model.py + weights.py) is imported from an unpacked wheel,
never copied into this project (see make_gpt_oss_original.py for how to get it):
    pip download --no-deps --python-version 3.12 --only-binary=:all: gpt-oss==0.0.9 -d /tmp/gptoss
    unzip /tmp/gptoss/*.whl -d /tmp/gptoss/unpacked
Every engine loads golden/tiny_gpt_oss_original/checkpoint with Transformer.from_checkpoint(device="cpu")
inside _common.force_dtype(torch.float32) (their bf16 parameters become float32; nothing else changes) and
runs the case's 12 ids. `clean` is their code unchanged; every other engine is their code with ONE bug
introduced at run time (an attribute of their module, class or model replaced; their files untouched;
everything restored afterwards). BUGS below says where each bug sits and what a kernel writer did wrong.

Each engine's trace goes to openai_engines/<engine>.safetensors in spec/trace.md names, float32, with the
ids and the stored dtype in the header (`refimpl diff --model ... --against FILE` reads both). Names come
from forward hooks and from a recording proxy of the name `torch` inside their model module:
  embed (embedding), layers.L.attn_norm (attn.norm), attn.q / attn.k (RotaryEmbedding output, q
  [T, Hkv, G, D] -> [T, Hq, D], head h = kv * G + g), attn.v (sdpa's V argument), attn.probs (sdpa's
  torch.softmax output without the sink column, [Hkv, G, T, T] -> [Hq, T, T]), attn.out (attn.out Linear),
  resid_mid (AttentionBlock output), mlp_norm, moe.router_logits (mlp.gate), moe.experts (torch.topk
  indices), moe.expert_weights (torch.nn.functional.softmax output), mlp.out (the einsum "bec,be->bc",
  before their residual add), layers.L.out (block), final_norm (norm), logits (unembedding).

Modes:
    /work/venv-peer-usability/bin/python golden/make_openai_engines.py [/tmp/gptoss/unpacked]
        builds the engines and writes their traces and provenance.json (needs torch, not refimpl);
    python golden/make_openai_engines.py --diagnose
        (refimpl's environment, no torch) runs `python -m refimpl diff --model CKPT --against FILE --json`
        on every engine and writes openai_engines/diagnosis.json and diagnosis.txt (refimpl's output,
        recorded; the expected names in provenance.json come from BUGS, not from refimpl).
"""

import contextlib
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "tiny_gpt_oss_original")
CKPT = os.path.join(CASE, "checkpoint")
OUT = os.path.join(HERE, "openai_engines")


# --------------------------------------------------------------------------- the bugs
#
# Each bug is a function bug(p) that calls p.patch(obj, attr, value) (restored after the run) and/or
# p.after_load(fn(model)) (applied to the built model). `expect` lists refimpl misreadings that describe
# the bug (any of them counts as naming it; several when two readings are the same function on this model).

class Patcher:
    def __init__(self, mod, wmod, torch):
        self.mod, self.wmod, self.torch = mod, wmod, torch
        self._saved, self._after = [], []
        self.probs_head_perm = None  # set by a bug that reorders sdpa's heads

    def patch(self, obj, attr, value):
        self._saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def after_load(self, fn):
        self._after.append(fn)

    def restore(self):
        for obj, attr, old in reversed(self._saved):
            setattr(obj, attr, old)
        self._saved = []


def _wrap_sdpa(p, change):
    """Replace their module's sdpa by one that calls it with changed arguments: change(args) -> args."""
    orig = p.mod.sdpa

    def sdpa(Q, K, V, S, sm_scale, sliding_window=0):
        return orig(*change(Q, K, V, S, sm_scale, sliding_window))

    p.patch(p.mod, "sdpa", sdpa)


def bug_rmsnorm_eps_outside(p):
    """RMSNorm written as x / (rms + eps) instead of x / sqrt(ms + eps)."""
    torch = p.torch

    def forward(self, x):
        t = x.float()
        rms = torch.sqrt(torch.mean(t * t, dim=-1, keepdim=True))
        return (t / (rms + self.eps) * self.scale).to(x.dtype)

    p.patch(p.mod.RMSNorm, "forward", forward)


def bug_norm_eps_1e6(p):
    """Every RMSNorm with eps 1e-6 (a Llama default) instead of the model's 1e-5."""
    def go(model):
        for m in model.modules():
            if isinstance(m, p.mod.RMSNorm):
                m.eps = 1e-6
    p.after_load(go)


def bug_rope_theta_10000(p):
    """RoPE base 10000 (the Llama-2 default) instead of the config's 150000."""
    def go(model):
        for b in model.block:
            b.attn.rope.base = 10000.0
    p.after_load(go)


def bug_rope_interleaved(p):
    """RoPE rotating adjacent pairs (2j, 2j+1) (GPT-J / llama.cpp "normal" style) where gpt-oss rotates
    halves (j, j + D/2)."""
    torch = p.torch

    def rot(x, cos, sin):
        cos, sin = cos.unsqueeze(-2).to(x.dtype), sin.unsqueeze(-2).to(x.dtype)
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)

    p.patch(p.mod, "_apply_rotary_emb", rot)


def bug_yarn_no_concentration(p):
    """YaRN frequencies used, but cos/sin not multiplied by the 0.1 ln(factor) + 1 concentration."""
    orig = p.mod.RotaryEmbedding._compute_concentration_and_inv_freq

    def f(self):
        _, inv = orig(self)
        return 1.0, inv

    p.patch(p.mod.RotaryEmbedding, "_compute_concentration_and_inv_freq", f)


def bug_yarn_missing(p):
    """rope scaling ignored: plain RoPE (factor 1), as if the config had no YaRN entry."""
    def go(model):
        for b in model.block:
            b.attn.rope.scaling_factor = 1.0
    p.after_load(go)


def bug_yarn_truncated(p):
    """YaRN ramp bounds rounded outward to integers (floor of the low, ceil of the high correction dim; HF's
    truncate=True default), where gpt-oss keeps them fractional. Introduced by giving their code the beta /
    alpha whose bounds are exactly those integers."""
    def go(model):
        for b in model.block:
            r = b.attn.rope
            dh, lb = r.head_dim / 2, math.log(r.base)
            low = dh * math.log(r.initial_context_length / (r.ntk_beta * 2 * math.pi)) / lb
            high = dh * math.log(r.initial_context_length / (r.ntk_alpha * 2 * math.pi)) / lb
            r.ntk_beta = r.initial_context_length / (2 * math.pi * math.exp(math.floor(low) * lb / dh))
            r.ntk_alpha = r.initial_context_length / (2 * math.pi * math.exp(math.ceil(high) * lb / dh))
    p.after_load(go)


def bug_window_off_by_one(p):
    """Sliding window keeps window + 1 keys (mask from j < i - window instead of j <= i - window)."""
    _wrap_sdpa(p, lambda Q, K, V, S, sc, w: (Q, K, V, S, sc, w + 1 if w > 0 else 0))


def bug_window_every_layer(p):
    """The sliding window applied to every layer (the every-other-layer rule missed)."""
    def go(model):
        w = max(b.attn.sliding_window for b in model.block)
        for b in model.block:
            b.attn.sliding_window = w
    p.after_load(go)


def bug_window_no_layer(p):
    """The sliding window never applied (full causal attention everywhere)."""
    def go(model):
        for b in model.block:
            b.attn.sliding_window = 0
    p.after_load(go)


def bug_window_odd_layers(p):
    """The window on the odd layers instead of the even ones (layer_idx % 2 test inverted)."""
    def go(model):
        w = max(b.attn.sliding_window for b in model.block)
        for i, b in enumerate(model.block):
            b.attn.sliding_window = w if i % 2 == 1 else 0
    p.after_load(go)


def bug_gqa_tiled(p):
    """GQA head mapping tiled: query head h reads kv head h % Hkv instead of h // G. Their sdpa groups the
    queries as [T, Hkv, G, D] (head h = kv * G + g); the bug regroups them as head h = g * Hkv + kv, and
    puts the outputs (and the recorded probabilities) back in head order."""
    orig = p.mod.sdpa

    def sdpa(Q, K, V, S, sm_scale, sliding_window=0):
        T, hkv, g, d = Q.shape
        order = [gg * hkv + kv for kv in range(hkv) for gg in range(g)]  # the head that slot (kv, g') holds
        slot_of_head = [order.index(h) for h in range(hkv * g)]
        Qs = Q.reshape(T, hkv * g, d)[:, order].reshape(T, hkv, g, d)
        o = orig(Qs, K, V, S[order], sm_scale, sliding_window).reshape(T, hkv * g, d)
        p.probs_head_perm = slot_of_head
        return o[:, slot_of_head].reshape(T, -1)

    p.patch(p.mod, "sdpa", sdpa)


def bug_sinks_ignored(p):
    """Attention sinks dropped (a softmax without the extra column)."""
    _wrap_sdpa(p, lambda Q, K, V, S, sc, w: (Q, K, V, p.torch.full_like(S, -math.inf), sc, w))


def bug_sinks_scaled(p):
    """The sink logit multiplied by the 1/sqrt(D) score scale (appended before scaling)."""
    _wrap_sdpa(p, lambda Q, K, V, S, sc, w: (Q, K, V, S * sc, sc, w))


def bug_score_scale_missing(p):
    """Attention scores not scaled (sm_scale 1 instead of 1/sqrt(D))."""
    _wrap_sdpa(p, lambda Q, K, V, S, sc, w: (Q, K, V, S, 1.0, w))


def bug_causal_offset(p):
    """Causal mask off by one: query i sees keys up to i + 1 (and the window moves with it), as when the
    query positions are counted from 1 against keys counted from 0."""
    p.torch_overrides["triu"] = lambda real: (lambda x, diagonal=0: real.triu(x, diagonal=diagonal + 1))
    p.torch_overrides["tril"] = lambda real: (lambda x, diagonal=0: real.tril(x, diagonal=diagonal + 1))


def bug_swiglu_no_clamp(p):
    """gpt-oss SwiGLU without the clamp at swiglu_limit."""
    orig = p.mod.swiglu
    p.patch(p.mod, "swiglu", lambda x, alpha=1.702, limit=7.0: orig(x, alpha=alpha, limit=math.inf))


def bug_swiglu_silu(p):
    """SwiGLU with SiLU (alpha 1) instead of alpha = 1.702."""
    orig = p.mod.swiglu
    p.patch(p.mod, "swiglu", lambda x, alpha=1.702, limit=7.0: orig(x, alpha=1.0, limit=limit))


def bug_swiglu_halves(p):
    """SwiGLU reading gate / linear as the two halves of mlp1's output instead of even / odd columns."""
    orig, torch = p.mod.swiglu, p.torch

    def f(x, alpha=1.702, limit=7.0):
        n = x.shape[-1] // 2
        inter = torch.stack((x[..., :n], x[..., n:]), dim=-1).flatten(-2)  # halves -> their interleaved layout
        return orig(inter, alpha=alpha, limit=limit)

    p.patch(p.mod, "swiglu", f)


def bug_swiglu_no_plus_one(p):
    """SwiGLU multiplying by the linear half itself instead of (linear + 1)."""
    orig = p.mod.swiglu

    def f(x, alpha=1.702, limit=7.0):
        glu_only = x.clone()
        glu_only[..., 1::2] = 0.0  # their result with linear = 0 is glu * 1
        # in float32 (a no-op in the float32 engines), so that the difference adds no bf16 rounding of its own
        d = orig(x.float(), alpha=alpha, limit=limit) - orig(glu_only.float(), alpha=alpha, limit=limit)
        return d.to(x.dtype)

    p.patch(p.mod, "swiglu", f)


def bug_router_softmax_all(p):
    """Router softmax over all experts, then the top-k probabilities used without renormalising."""
    state = {}

    def topk(real):
        def f(x, *a, **k):
            state["logits"] = x
            r = real.topk(x, *a, **k)
            state["idx"] = r.indices
            return r
        return f

    def softmax(real):
        def f(x, dim=None, **k):
            if "logits" in state and x.shape == state["idx"].shape:
                full = real.nn.functional.softmax(state.pop("logits"), dim=dim, **k)
                return real.gather(full, -1, state.pop("idx"))
            return real.nn.functional.softmax(x, dim=dim, **k)
        return f

    p.torch_overrides["topk"] = topk
    p.torch_overrides["nn.functional.softmax"] = softmax


def bug_mxfp4_nibbles_swapped(p):
    """MXFP4 element 2i read from the high nibble and 2i+1 from the low one."""
    orig = p.wmod.Checkpoint._get_tensor

    def get(self, name):
        t = orig(self, name)
        if name.endswith(".blocks"):
            t = (t >> 4) | ((t & 0x0F) << 4)
        return t

    p.patch(p.wmod.Checkpoint, "_get_tensor", get)


def bug_mxfp4_scale_bias_128(p):
    """E8M0 scale decoded as 2^(s - 128) instead of 2^(s - 127)."""
    orig = p.wmod.Checkpoint._get_tensor

    def get(self, name):
        t = orig(self, name)
        if name.endswith(".scales"):
            t = t - 1
        return t

    p.patch(p.wmod.Checkpoint, "_get_tensor", get)


def bug_qkv_kv_swapped(p):
    """Fused QKV split as q, v, k: the key rows read as values and the value rows as keys."""
    def go(model):
        torch = p.torch
        for b in model.block:
            a = b.attn
            q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
            with torch.no_grad():
                for t in (a.qkv.weight, a.qkv.bias):
                    k, v = t[q:q + kv].clone(), t[q + kv:q + 2 * kv].clone()
                    t[q:q + kv], t[q + kv:q + 2 * kv] = v, k
    p.after_load(go)


def bug_unembedding_tied(p):
    """Logits from the token embedding (tie_word_embeddings assumed) instead of the separate unembedding."""
    def go(model):
        with p.torch.no_grad():
            model.unembedding.weight.copy_(model.embedding.weight)
    p.after_load(go)


# name -> (function, where, misreadings that name it)
BUGS = {
    "clean": (None, "none: OpenAI's reference unchanged", []),
    "rmsnorm_eps_outside": (bug_rmsnorm_eps_outside, "RMSNorm.forward", ["rmsnorm_eps_outside"]),
    "norm_eps_1e-6": (bug_norm_eps_1e6, "RMSNorm.eps", ["norm_eps=1e-06"]),
    "rope_theta_10000": (bug_rope_theta_10000, "RotaryEmbedding.base", ["rope_theta=10000"]),
    "rope_interleaved": (bug_rope_interleaved, "_apply_rotary_emb", ["rope_interleaved"]),
    "yarn_no_concentration": (bug_yarn_no_concentration, "RotaryEmbedding concentration",
                              ["yarn_no_concentration"]),
    "yarn_missing": (bug_yarn_missing, "RotaryEmbedding.scaling_factor", ["yarn_missing"]),
    "yarn_truncated": (bug_yarn_truncated, "RotaryEmbedding ramp bounds", ["yarn_truncated"]),
    "window_off_by_one": (bug_window_off_by_one, "sdpa sliding-window mask", ["window_off_by_one"]),
    "window_every_layer": (bug_window_every_layer, "AttentionBlock.sliding_window (which layers)",
                           ["window_on_every_layer"]),
    "window_no_layer": (bug_window_no_layer, "AttentionBlock.sliding_window (dropped)",
                        ["window_on_no_layer", "full_causal_on_sliding"]),
    "window_odd_layers": (bug_window_odd_layers, "AttentionBlock.sliding_window (layer parity)",
                          ["layer_pattern_inverted", "layer_pattern_shifted"]),
    "gqa_tiled": (bug_gqa_tiled, "sdpa query-head to kv-head mapping", ["gqa_tiled_heads"]),
    "sinks_ignored": (bug_sinks_ignored, "sdpa sink column", ["sinks_ignored"]),
    "sinks_scaled": (bug_sinks_scaled, "sdpa sink scaling", ["sinks_scaled"]),
    "score_scale_missing": (bug_score_scale_missing, "sdpa sm_scale", ["score_scale_missing"]),
    "causal_offset": (bug_causal_offset, "sdpa causal mask diagonal", ["causal_offset_plus_one"]),
    "swiglu_no_clamp": (bug_swiglu_no_clamp, "swiglu clamp", ["swiglu_no_clamp"]),
    "swiglu_silu": (bug_swiglu_silu, "swiglu alpha", ["swiglu_silu"]),
    "swiglu_halves": (bug_swiglu_halves, "swiglu gate/linear split", ["swiglu_halves"]),
    "swiglu_no_plus_one": (bug_swiglu_no_plus_one, "swiglu linear + 1", ["swiglu_no_plus_one"]),
    "router_softmax_all": (bug_router_softmax_all, "MLPBlock router softmax/top-k order", ["softmax_all_experts"]),
    "mxfp4_nibbles_swapped": (bug_mxfp4_nibbles_swapped, "Checkpoint MXFP4 nibble order",
                              ["mxfp4_nibbles_swapped"]),
    "mxfp4_scale_bias_128": (bug_mxfp4_scale_bias_128, "Checkpoint E8M0 scale bias", ["mxfp4_scale_bias_128"]),
    "qkv_kv_swapped": (bug_qkv_kv_swapped, "AttentionBlock qkv split order", ["qkv_kv_swapped"]),
    "unembedding_tied": (bug_unembedding_tied, "Transformer.unembedding weights", ["lm_head_tied"]),
}


# --------------------------------------------------------------------------- running one engine

class _Proxy:
    """Stands for a module (torch, torch.nn, torch.nn.functional) inside their model module: named
    attributes are replaced, everything else is the real one's."""

    def __init__(self, real, overrides):
        self._real, self._over = real, overrides

    def __getattr__(self, name):
        if name in self._over:
            return self._over[name]
        return getattr(self._real, name)


def _proxy(real, flat):
    """A proxy of `real` from {"a": f, "nn.functional.b": g}: dotted names become nested proxies."""
    top, sub = {}, {}
    for k, v in flat.items():
        head, _, rest = k.partition(".")
        if rest:
            sub.setdefault(head, {})[rest] = v
        else:
            top[head] = v
    for head, inner in sub.items():
        top[head] = _proxy(getattr(real, head), inner)
    return _Proxy(real, top)


def run_engine(mod, wmod, torch, force_dtype, bug, ids, precision="float32"):
    p = Patcher(mod, wmod, torch)
    p.torch_overrides = {}
    cap, state = {}, {"layer": 0}

    def rec(name, t):
        cap[name] = t.detach().to(torch.float32).numpy().copy()

    try:
        # float32: their bf16 parameters as float32; bfloat16: their own precision policy, unchanged
        ctx = force_dtype(torch.float32, modules=(mod,)) if precision == "float32" else contextlib.nullcontext()
        with ctx:
            if bug is not None:
                bug(p)
            base = mod.torch  # force_dtype's proxy
            real = {k: v(base) for k, v in p.torch_overrides.items()}  # the bug's torch functions

            def get(name):
                if name in real:
                    return real[name]
                obj = base
                for part in name.split("."):
                    obj = getattr(obj, part)
                return obj

            L = lambda: state["layer"]  # noqa: E731

            def softmax(x, *a, **k):  # sdpa: [Hkv, G, T, T + 1] with the sink column
                w = get("softmax")(x, *a, **k)
                hkv, g, t = w.shape[0], w.shape[1], w.shape[2]
                probs = w[..., :-1].reshape(hkv * g, t, -1)
                state["probs"] = probs
                return w

            def topk(x, *a, **k):
                r = get("topk")(x, *a, **k)
                rec(f"layers.{L()}.moe.experts", r.indices)
                cap[f"layers.{L()}.moe.experts"] = cap[f"layers.{L()}.moe.experts"].astype("int64")
                return r

            def fsoftmax(x, *a, **k):
                w = get("nn.functional.softmax")(x, *a, **k)
                rec(f"layers.{L()}.moe.expert_weights", w)
                return w

            def einsum(eq, *ops):
                r = get("einsum")(eq, *ops)
                if eq.replace(" ", "") == "bec,be->bc":
                    rec(f"layers.{L()}.mlp.out", r)
                return r

            over = {"softmax": softmax, "topk": topk, "nn.functional.softmax": fsoftmax, "einsum": einsum}
            for k, v in real.items():
                over.setdefault(k, v)
            mod.torch = _proxy(base, over)

            inner_sdpa = mod.sdpa

            def sdpa(Q, K, V, S, sm_scale, sliding_window=0):
                p.probs_head_perm = None
                o = inner_sdpa(Q, K, V, S, sm_scale, sliding_window)
                rec(f"layers.{L()}.attn.v", V)
                pr = state.pop("probs")
                if p.probs_head_perm is not None:
                    pr = pr[p.probs_head_perm]
                rec(f"layers.{L()}.attn.probs", pr)
                return o

            mod.sdpa = sdpa
            try:
                model = mod.Transformer.from_checkpoint(CKPT, device="cpu")
                for fn in p._after:
                    fn(model)
                hs = [model.embedding.register_forward_hook(lambda m, i, o: rec("embed", o)),
                      model.norm.register_forward_hook(lambda m, i, o: rec("final_norm", o)),
                      model.unembedding.register_forward_hook(lambda m, i, o: rec("logits", o))]
                for i, b in enumerate(model.block):
                    def at(name, i=i):
                        return lambda m, inp, o: rec(f"layers.{i}.{name}", o)

                    def rope(m, inp, o, i=i):
                        q, k = o
                        rec(f"layers.{i}.attn.q", q.reshape(q.shape[0], -1, q.shape[-1]))
                        rec(f"layers.{i}.attn.k", k)

                    hs.append(b.register_forward_pre_hook(lambda m, inp, i=i: state.__setitem__("layer", i)))
                    hs += [b.attn.norm.register_forward_hook(at("attn_norm")),
                           b.attn.rope.register_forward_hook(rope),
                           b.attn.out.register_forward_hook(at("attn.out")),
                           b.attn.register_forward_hook(at("resid_mid")),
                           b.mlp.norm.register_forward_hook(at("mlp_norm")),
                           b.mlp.gate.register_forward_hook(at("moe.router_logits")),
                           b.register_forward_hook(at("out"))]
                with torch.inference_mode():
                    model(torch.as_tensor(ids, dtype=torch.int32))
                for h in hs:
                    h.remove()
                pdt = sorted({str(q.dtype) for q in model.parameters()})
            finally:
                mod.sdpa = inner_sdpa
                mod.torch = base
    finally:
        p.restore()
    return cap, pdt


ORDER = ("embed", "attn_norm", "attn.q", "attn.k", "attn.v", "attn.probs", "attn.out", "resid_mid", "mlp_norm",
         "moe.router_logits", "moe.experts", "moe.expert_weights", "mlp.out", "out")


def ordered(cap, num_layers):
    names = ["embed"] + [f"layers.{i}.{n}" for i in range(num_layers) for n in ORDER[1:]] + ["final_norm", "logits"]
    missing = [n for n in names if n not in cap]
    assert not missing, missing
    return {n: cap[n] for n in names}


def build(unpacked):
    import importlib

    import numpy as np
    import torch
    from safetensors.numpy import save_file

    sys.path.insert(0, HERE)
    from _common import FORMAT_VERSION, producer, regen_command, sha256_file, write_json

    sys.path.insert(0, unpacked)
    mod = importlib.import_module("gpt_oss.torch.model")
    wmod = importlib.import_module("gpt_oss.torch.weights")
    import gpt_oss
    from _common import force_dtype

    oss_dir = os.path.dirname(gpt_oss.__file__)
    with open(os.path.join(CASE, "input.json")) as f:
        ids = json.load(f)["ids"]
    with open(os.path.join(CKPT, "config.json")) as f:
        nl = json.load(f)["num_hidden_layers"]
    os.makedirs(OUT, exist_ok=True)
    for fn in os.listdir(OUT):
        if fn.endswith(".safetensors"):
            os.remove(os.path.join(OUT, fn))

    engines, clean = {}, {}
    for precision, suffix in (("float32", ""), ("bfloat16", ".bf16")):
        for name, (bug, where, expect) in BUGS.items():
            cap, pdt = run_engine(mod, wmod, torch, force_dtype, bug, ids, precision)
            tr = ordered(cap, nl)
            tr = {k: (v.astype(np.int64) if k.endswith("moe.experts") else v.astype(np.float32)) for k, v in tr.items()}
            clean.setdefault(precision, tr)
            dlog = float(np.max(np.abs(tr["logits"].astype(np.float64) - clean[precision]["logits"])))
            meta = {"format": "refimpl-trace", "order": json.dumps(list(tr)), "ids": json.dumps(ids),
                    "dtype": precision,
                    "producer": f"OpenAI gpt-oss 0.0.9 torch reference, {precision}, CPU" +
                                ("" if bug is None else f", one bug: {name}")}
            fname = f"{name}{suffix}.safetensors"
            save_file(tr, os.path.join(OUT, fname), metadata=meta)
            e = engines.setdefault(name, {"where": where, "bug": (bug.__doc__ or "").strip() if bug else None,
                                          "expected_misreadings": expect, "files": {}})
            e["files"][precision] = {"file": fname, "param_dtypes": pdt, "max_abs_logit_change_vs_clean": dlog}
            print(f"{precision:9s} {name:24s} max|logits - clean| = {dlog:.3e}")

    write_json(os.path.join(OUT, "provenance.json"), {
        "case": "openai_engines",
        "format_version": FORMAT_VERSION,
        "producer": {**producer(), "gpt_oss": "0.0.9",
                     "library": "OpenAI gpt-oss torch reference (gpt_oss/torch/model.py, weights.py), imported from "
                                "the unpacked wheel, run on CPU (float32: inside _common.force_dtype(torch.float32); "
                                "bfloat16: unchanged)",
                     "source": "pip download --no-deps gpt-oss==0.0.9 (wheel unpacked, imported from " + oss_dir + ")",
                     "model_py_sha256": sha256_file(os.path.join(oss_dir, "torch", "model.py")),
                     "weights_py_sha256": sha256_file(os.path.join(oss_dir, "torch", "weights.py"))},
        "checkpoint": "../tiny_gpt_oss_original/checkpoint (sha256 in its case.json)",
        "ids": ids,
        "dtype": "float32 (files <engine>.safetensors: their bf16 parameters made float32 by force_dtype) and "
                 "bfloat16 (<engine>.bf16.safetensors: their own precision policy; values stored as float32, "
                 "metadata dtype bfloat16)",
        "how": "each engine is their code with one runtime patch (make_openai_engines.py BUGS); 'clean' has none",
        "expected_misreadings": "refimpl misreading names that describe the bug (written here from the bug, "
                                "not taken from refimpl's output); any of them counts as naming it",
        "engines": engines,
        "regenerate": regen_command(__file__).replace("/tmp/goldenv/bin/python", "/work/venv-peer-usability/bin/python")
                      + " [/tmp/gptoss/unpacked]; then python golden/make_openai_engines.py --diagnose",
    })


def _summary(res):
    out = {}
    for v in res.values():
        out[v["verdict"]] = out.get(v["verdict"], 0) + 1
    return out


def diagnose():
    """Run `refimpl diff --model` on every stored engine; record refimpl's verdicts (no torch needed)."""
    with open(os.path.join(OUT, "provenance.json")) as f:
        prov = json.load(f)
    res, text = {}, []
    root = os.path.dirname(HERE)
    for precision in ("float32", "bfloat16"):
        res[precision] = {}
        for name, e in prov["engines"].items():
            fe = e["files"][precision]
            js = os.path.join(OUT, f".{name}.json")
            cmd = [sys.executable, "-m", "refimpl", "diff", "--model", os.path.relpath(CKPT, root), "--against",
                   os.path.relpath(os.path.join(OUT, fe["file"]), root), "--ids", ",".join(map(str, prov["ids"])),
                   "--json", js]
            r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
            with open(js) as f:
                d = json.load(f)
            os.remove(js)
            named = [m["name"] for m in d.get("misreadings", [])]
            exp = e["expected_misreadings"]
            verdict = ("passes" if r.returncode == 0 else "FLAGGED") if not exp else (
                "named" if named and set(named) <= set(exp) else
                "named, with other readings" if set(named) & set(exp) else
                "flagged, not named" if r.returncode == 1 else "NOT flagged")
            res[precision][name] = {"exit": r.returncode, "first": d.get("first"), "named": named, "expected": exp,
                                    "verdict": verdict, "logit_metrics": d.get("metrics")}
            text.append(f"$ refimpl diff --model {cmd[5]} --against {cmd[7]} --ids {cmd[9]}   # exit {r.returncode}\n"
                        + r.stdout + (r.stderr if r.returncode not in (0, 1) else ""))
            print(f"{precision:9s} {name:24s} exit {r.returncode}  first {d.get('first')}  named {named}  -> {verdict}")
    with open(os.path.join(OUT, "diagnosis.json"), "w") as f:
        json.dump({"command": "refimpl diff --model ../tiny_gpt_oss_original/checkpoint --against <engine> "
                              "--ids <ids> (model dtype float64; engine traces float32 or bfloat16, the stored "
                              "dtype sets the tolerance)",
                   "summary": {p: _summary(v) for p, v in res.items()}, "engines": res}, f, indent=2)
        f.write("\n")
    with open(os.path.join(OUT, "diagnosis.txt"), "w") as f:
        f.write("\n".join(text))


if __name__ == "__main__":
    if "--diagnose" in sys.argv[1:]:
        diagnose()
    else:
        build(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gptoss/unpacked")
