"""Tiny random models in refimpl's canonical weight names (spec/weights.md), for whole-model checks.

A copy of tests/canonical_tiny.py (tests/ is not part of the installed package), plus tiny_model().
"""

import numpy as np

from ..model.config import ModelConfig
from ..ops.mxfp4 import encode_mxfp4


def tiny_config(arch, **over):
    base = dict(vocab_size=97, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                intermediate_size=64, max_position_embeddings=64, name=f"tiny-{arch}")
    if arch == "gpt2":
        base.update(norm="layer", activation="gelu_tanh", position="learned", num_kv_heads=4,
                    attention_bias=True, attention_out_bias=True, mlp_bias=True, tie_word_embeddings=True)
    elif arch == "llama":
        base.update(rope_theta=10000.0)
    elif arch == "qwen3":
        arch = "llama"
        base.update(qk_norm=True, rope_theta=1e6, name="tiny-qwen3")
    elif arch == "mistral":
        arch = "llama"
        base.update(sliding_window=5, name="tiny-mistral")
    elif arch == "mixtral":
        base.update(num_experts=4, experts_per_token=2, router="softmax_topk")
    elif arch == "gpt_oss":
        base.update(activation="swiglu_oss", attention_bias=True, attention_out_bias=True, attention_sinks=True,
                    num_experts=4, experts_per_token=2, router="topk_softmax", rope_theta=150000.0,
                    rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                  "original_max_position_embeddings": 4096, "truncate": False},
                    sliding_window=4, layer_types=("sliding_attention", "full_attention"))
    base.update(over)
    return ModelConfig(arch=arch, **base)


def tiny_weights(cfg, *, seed=0, mxfp4=False):
    rng = np.random.default_rng(seed)
    d, Hq, Hkv, D, I, E = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                           cfg.intermediate_size, cfg.num_experts)

    def w(*shape, s=None):
        s = s if s is not None else 1.0 / np.sqrt(shape[-1])
        return rng.standard_normal(shape) * s

    def norm_w(n):
        return 1.0 + 0.1 * rng.standard_normal(n)

    W = {"tok_embed": w(cfg.vocab_size, d, s=1.0), "final_norm.weight": norm_w(d)}
    if cfg.position == "learned":
        W["pos_embed"] = w(cfg.max_position_embeddings, d, s=0.1)
    if cfg.norm == "layer":
        W["final_norm.bias"] = 0.1 * rng.standard_normal(d)
    if not cfg.tie_word_embeddings:
        W["lm_head"] = w(cfg.vocab_size, d)
    for L in range(cfg.num_layers):
        p = f"layers.{L}"
        for n in ("attn_norm", "mlp_norm"):
            W[f"{p}.{n}.weight"] = norm_w(d)
            if cfg.norm == "layer":
                W[f"{p}.{n}.bias"] = 0.1 * rng.standard_normal(d)
        W[f"{p}.attn.q.weight"] = w(Hq * D, d)
        W[f"{p}.attn.k.weight"] = w(Hkv * D, d)
        W[f"{p}.attn.v.weight"] = w(Hkv * D, d)
        W[f"{p}.attn.o.weight"] = w(d, Hq * D)
        if cfg.attention_bias:
            for n, m in (("q", Hq), ("k", Hkv), ("v", Hkv)):
                W[f"{p}.attn.{n}.bias"] = 0.1 * rng.standard_normal(m * D)
        if cfg.attention_out_bias:
            W[f"{p}.attn.o.bias"] = 0.1 * rng.standard_normal(d)
        if cfg.qk_norm:
            W[f"{p}.attn.q_norm.weight"] = norm_w(D)
            W[f"{p}.attn.k_norm.weight"] = norm_w(D)
        if cfg.attention_sinks:
            W[f"{p}.attn.sinks"] = rng.standard_normal(Hq)
        if cfg.arch == "gpt2":
            W[f"{p}.mlp.fc.weight"], W[f"{p}.mlp.fc.bias"] = w(I, d), 0.1 * rng.standard_normal(I)
            W[f"{p}.mlp.proj.weight"], W[f"{p}.mlp.proj.bias"] = w(d, I), 0.1 * rng.standard_normal(d)
        elif cfg.arch == "llama":
            W[f"{p}.mlp.gate.weight"], W[f"{p}.mlp.up.weight"], W[f"{p}.mlp.down.weight"] = w(I, d), w(I, d), w(d, I)
        else:
            W[f"{p}.moe.router.weight"] = w(E, d, s=1.0)
            if cfg.arch == "gpt_oss":
                W[f"{p}.moe.router.bias"] = 0.1 * rng.standard_normal(E)
                m1, m2 = w(E, 2 * I, d), w(E, d, I)
                W[f"{p}.moe.mlp1.bias"] = 0.1 * rng.standard_normal((E, 2 * I))
                W[f"{p}.moe.mlp2.bias"] = 0.1 * rng.standard_normal((E, d))
                if mxfp4:
                    for n, m in (("mlp1", m1), ("mlp2", m2)):
                        W[f"{p}.moe.{n}.blocks"], W[f"{p}.moe.{n}.scales"] = encode_mxfp4(m)  # [E, out, in/32, 16]
                else:
                    W[f"{p}.moe.mlp1.weight"], W[f"{p}.moe.mlp2.weight"] = m1, m2
            else:
                W[f"{p}.moe.gate.weight"], W[f"{p}.moe.up.weight"] = w(E, I, d), w(E, I, d)
                W[f"{p}.moe.down.weight"] = w(E, d, I)
    return W


ARCHS = ("gpt2", "llama", "qwen3", "mistral", "mixtral", "gpt_oss", "gpt_oss_mxfp4")


def tiny_model(arch, *, seed=0):
    """(config, weights) of a tiny model of `arch` (one of ARCHS; gpt_oss_mxfp4 stores experts as MXFP4)."""
    if arch not in ARCHS:
        from ..errors import ArgumentError

        raise ArgumentError(f"arch: expected one of {ARCHS}, found {arch!r}")
    mx = arch == "gpt_oss_mxfp4"
    cfg = tiny_config("gpt_oss" if mx else arch)
    return cfg, tiny_weights(cfg, seed=seed, mxfp4=mx)
