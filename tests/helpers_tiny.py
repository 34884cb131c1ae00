"""Tiny random configs and checkpoints on disk, for every supported arch and file layout.

Each KIND has a config.json dict (HF or OpenAI format) and a tensor-name -> shape table written
out by hand from the public layouts (not derived from refimpl.checkpoints.layouts), so tests can
check the loader against an independent statement of the file format.

    path, cfg_dict, tensors = make_checkpoint(tmp_path, "gpt2", seed=0, shards=1)
    cfg, weights = refimpl.checkpoints.layouts.load_weights(path)

KINDS: gpt2, gpt2_prefixed, llama, mistral, qwen2, qwen3, mixtral, mixtral_fused,
gpt_oss_hf_mxfp4, gpt_oss_hf_dense, gpt_oss_original.
"""

import json
import os

import ml_dtypes
import numpy as np

from refimpl.checkpoints.safetensors_io import save_safetensors

KINDS = ("gpt2", "gpt2_prefixed", "llama", "mistral", "qwen2", "qwen3", "mixtral", "mixtral_fused",
         "gpt_oss_hf_mxfp4", "gpt_oss_hf_dense", "gpt_oss_original")

# gpt-oss tiny: head_dim 16 keeps the official YaRN assertion 0 < low < high < d_half - 1 true with
# base 150000 and original context 4096; hidden/intermediate are multiples of 32 for MXFP4.
GPT_OSS_TINY = dict(layers=2, experts=4, k=2, vocab=50, hidden=64, inter=32, head_dim=16, heads=4, kv=2, window=4)


def hf_config(kind):
    """The config.json dict of a tiny checkpoint of `kind`."""
    if kind.startswith("gpt2"):
        return {"model_type": "gpt2", "vocab_size": 67, "n_positions": 33, "n_embd": 16, "n_layer": 2, "n_head": 2,
                "n_inner": None, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
                "bos_token_id": 66, "eos_token_id": 66}
    base = {"vocab_size": 61, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False}
    if kind == "llama":
        return {**base, "model_type": "llama", "attention_bias": False, "mlp_bias": False}
    if kind == "mistral":
        return {**base, "model_type": "mistral", "sliding_window": 8}
    if kind == "qwen2":
        return {**base, "model_type": "qwen2", "use_sliding_window": False, "sliding_window": 32,
                "max_window_layers": 2}
    if kind == "qwen3":
        return {**base, "model_type": "qwen3", "head_dim": 8, "attention_bias": False, "tie_word_embeddings": True}
    if kind.startswith("mixtral"):
        return {**base, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2,
                "sliding_window": None, "rope_theta": 1e6}
    t = GPT_OSS_TINY
    if kind.startswith("gpt_oss_hf"):
        return {"model_type": "gpt_oss", "num_hidden_layers": t["layers"], "num_local_experts": t["experts"],
                "num_experts_per_tok": t["k"], "vocab_size": t["vocab"], "hidden_size": t["hidden"],
                "intermediate_size": t["inter"], "head_dim": t["head_dim"], "num_attention_heads": t["heads"],
                "num_key_value_heads": t["kv"], "sliding_window": t["window"], "max_position_embeddings": 131072,
                "rms_norm_eps": 1e-5, "rope_theta": 150000.0, "swiglu_limit": 7.0, "attention_bias": True,
                "tie_word_embeddings": False,
                "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(t["layers"])],
                "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                 "original_max_position_embeddings": 4096, "truncate": False}}
    if kind == "gpt_oss_original":
        return {"num_hidden_layers": t["layers"], "num_experts": t["experts"], "experts_per_token": t["k"],
                "vocab_size": t["vocab"], "hidden_size": t["hidden"], "intermediate_size": t["inter"],
                "swiglu_limit": 7.0, "head_dim": t["head_dim"], "num_attention_heads": t["heads"],
                "num_key_value_heads": t["kv"], "sliding_window": t["window"], "initial_context_length": 4096,
                "rope_theta": 150000.0, "rope_scaling_factor": 32.0, "rope_ntk_alpha": 1.0, "rope_ntk_beta": 32.0}
    raise ValueError(f"kind: expected one of {KINDS}, found {kind!r}")


def file_shapes(kind):
    """{tensor name in the file: shape} for `kind`, from the public layouts (see module docstring)."""
    c = hf_config(kind)
    s = {}
    if kind.startswith("gpt2"):
        pre = "transformer." if kind == "gpt2_prefixed" else ""
        d, V, P = c["n_embd"], c["vocab_size"], c["n_positions"]
        s[pre + "wte.weight"], s[pre + "wpe.weight"] = (V, d), (P, d)
        for i in range(c["n_layer"]):
            h = f"{pre}h.{i}."
            for ln in ("ln_1", "ln_2"):
                s[h + ln + ".weight"] = s[h + ln + ".bias"] = (d,)
            s[h + "attn.c_attn.weight"], s[h + "attn.c_attn.bias"] = (d, 3 * d), (3 * d,)
            s[h + "attn.c_proj.weight"], s[h + "attn.c_proj.bias"] = (d, d), (d,)
            s[h + "mlp.c_fc.weight"], s[h + "mlp.c_fc.bias"] = (d, 4 * d), (4 * d,)
            s[h + "mlp.c_proj.weight"], s[h + "mlp.c_proj.bias"] = (4 * d, d), (d,)
        s[pre + "ln_f.weight"] = s[pre + "ln_f.bias"] = (d,)
        return s
    if kind == "gpt_oss_original":
        t = GPT_OSS_TINY
        d, E, I, V = t["hidden"], t["experts"], t["inter"], t["vocab"]
        qkv = t["head_dim"] * (t["heads"] + 2 * t["kv"])
        s["embedding.weight"], s["unembedding.weight"], s["norm.scale"] = (V, d), (V, d), (d,)
        for n in range(t["layers"]):
            b = f"block.{n}."
            s[b + "attn.norm.scale"] = (d,)
            s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"] = (qkv, d), (qkv,)
            s[b + "attn.sinks"] = (t["heads"],)
            s[b + "attn.out.weight"], s[b + "attn.out.bias"] = (d, t["heads"] * t["head_dim"]), (d,)
            s[b + "mlp.norm.scale"] = (d,)
            s[b + "mlp.gate.weight"], s[b + "mlp.gate.bias"] = (E, d), (E,)
            s[b + "mlp.mlp1_weight.blocks"], s[b + "mlp.mlp1_weight.scales"] = (E, 2 * I, d // 32, 16), (E, 2 * I, d // 32)
            s[b + "mlp.mlp1_bias"] = (E, 2 * I)
            s[b + "mlp.mlp2_weight.blocks"], s[b + "mlp.mlp2_weight.scales"] = (E, d, I // 32, 16), (E, d, I // 32)
            s[b + "mlp.mlp2_bias"] = (E, d)
        return s
    # HF LLaMA family, Mixtral, gpt-oss
    d, V, I = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    D = c.get("head_dim") or d // H
    s["model.embed_tokens.weight"], s["model.norm.weight"] = (V, d), (d,)
    if not c["tie_word_embeddings"]:
        s["lm_head.weight"] = (V, d)
    for i in range(c["num_hidden_layers"]):
        m = f"model.layers.{i}."
        s[m + "input_layernorm.weight"] = s[m + "post_attention_layernorm.weight"] = (d,)
        s[m + "self_attn.q_proj.weight"], s[m + "self_attn.o_proj.weight"] = (H * D, d), (d, H * D)
        s[m + "self_attn.k_proj.weight"] = s[m + "self_attn.v_proj.weight"] = (KV * D, d)
        if kind in ("qwen2", "gpt_oss_hf_mxfp4", "gpt_oss_hf_dense"):
            s[m + "self_attn.q_proj.bias"] = (H * D,)
            s[m + "self_attn.k_proj.bias"] = s[m + "self_attn.v_proj.bias"] = (KV * D,)
        if kind == "qwen3":
            s[m + "self_attn.q_norm.weight"] = s[m + "self_attn.k_norm.weight"] = (D,)
        if kind in ("llama", "mistral", "qwen2", "qwen3"):
            s[m + "mlp.gate_proj.weight"] = s[m + "mlp.up_proj.weight"] = (I, d)
            s[m + "mlp.down_proj.weight"] = (d, I)
        elif kind == "mixtral":
            E = c["num_local_experts"]
            s[m + "block_sparse_moe.gate.weight"] = (E, d)
            for e in range(E):
                x = m + f"block_sparse_moe.experts.{e}."
                s[x + "w1.weight"] = s[x + "w3.weight"] = (I, d)
                s[x + "w2.weight"] = (d, I)
        elif kind == "mixtral_fused":
            E = c["num_local_experts"]
            s[m + "mlp.gate.weight"] = (E, d)
            s[m + "mlp.experts.gate_up_proj"], s[m + "mlp.experts.down_proj"] = (E, 2 * I, d), (E, d, I)
        else:  # gpt-oss HF
            E = c["num_local_experts"]
            s[m + "self_attn.o_proj.bias"], s[m + "self_attn.sinks"] = (d,), (H,)
            s[m + "mlp.router.weight"], s[m + "mlp.router.bias"] = (E, d), (E,)
            x = m + "mlp.experts."
            s[x + "gate_up_proj_bias"], s[x + "down_proj_bias"] = (E, 2 * I), (E, d)
            if kind == "gpt_oss_hf_mxfp4":
                s[x + "gate_up_proj_blocks"], s[x + "gate_up_proj_scales"] = (E, 2 * I, d // 32, 16), (E, 2 * I, d // 32)
                s[x + "down_proj_blocks"], s[x + "down_proj_scales"] = (E, d, I // 32, 16), (E, d, I // 32)
            else:  # HF dense experts are stored [E, in, out]
                s[x + "gate_up_proj"], s[x + "down_proj"] = (E, d, 2 * I), (E, I, d)
    return s


def random_tensors(kind, *, seed=0, dtype=np.float32):
    """Random file tensors for `kind`: floats N(0, 0.5) in `dtype`; MXFP4 blocks uniform bytes,
    scales in 120..130 (values 2^-7..2^3 times the E2M1 table)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in file_shapes(kind).items():
        if name.endswith(("blocks", "_blocks")):
            out[name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        elif name.endswith(("scales", "_scales")):
            out[name] = rng.integers(120, 131, size=shape, dtype=np.uint8)
        else:
            out[name] = (rng.standard_normal(shape) * 0.5).astype(dtype)
    return out


def write_checkpoint(directory, tensors, config, *, shards=1):
    """Write config.json and the tensors (model.safetensors, or `shards` files + index) into directory."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    names = sorted(tensors)
    if shards == 1:
        save_safetensors(os.path.join(directory, "model.safetensors"), tensors, metadata={"format": "pt"})
        return directory
    weight_map = {}
    for k in range(shards):
        part = names[k::shards]
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_safetensors(os.path.join(directory, fname), {n: tensors[n] for n in part}, metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(np.asarray(t).nbytes for t in tensors.values())},
                   "weight_map": weight_map}, f)
    return directory


def make_checkpoint(tmp_path, kind, *, seed=0, shards=1, dtype=np.float32):
    """(directory, config dict, file tensors) of a tiny random checkpoint of `kind` under tmp_path.

    gpt_oss_original is written the way OpenAI publishes it: <dir>/original/{config.json, model.safetensors}.
    """
    config = hf_config(kind)
    tensors = random_tensors(kind, seed=seed, dtype=dtype)
    directory = os.path.join(os.fspath(tmp_path), f"{kind}-{seed}-{shards}")
    if kind == "gpt_oss_original":
        write_checkpoint(os.path.join(directory, "original"), tensors, config, shards=shards)
    else:
        write_checkpoint(directory, tensors, config, shards=shards)
    return directory, config, tensors


def gpt_oss_original_to_hf(tensors, *, heads=GPT_OSS_TINY["heads"], kv=GPT_OSS_TINY["kv"],
                           head_dim=GPT_OSS_TINY["head_dim"]):
    """The HF MXFP4 tensors holding the same weights as OpenAI-original `tensors` (transformers'
    convert_gpt_oss_weights_to_hf.py renaming, qkv rows cut at heads*head_dim and (heads+kv)*head_dim)."""
    q, k = heads * head_dim, kv * head_dim
    out = {"model.embed_tokens.weight": tensors["embedding.weight"], "lm_head.weight": tensors["unembedding.weight"],
           "model.norm.weight": tensors["norm.scale"]}
    n = 0
    while f"block.{n}.attn.qkv.weight" in tensors:
        b, m = f"block.{n}.", f"model.layers.{n}."
        w, bias = tensors[b + "attn.qkv.weight"], tensors[b + "attn.qkv.bias"]
        for name, lo, hi in (("q", 0, q), ("k", q, q + k), ("v", q + k, q + 2 * k)):
            out[m + f"self_attn.{name}_proj.weight"] = w[lo:hi]
            out[m + f"self_attn.{name}_proj.bias"] = bias[lo:hi]
        out[m + "self_attn.o_proj.weight"] = tensors[b + "attn.out.weight"]
        out[m + "self_attn.o_proj.bias"] = tensors[b + "attn.out.bias"]
        out[m + "self_attn.sinks"] = tensors[b + "attn.sinks"]
        out[m + "input_layernorm.weight"] = tensors[b + "attn.norm.scale"]
        out[m + "post_attention_layernorm.weight"] = tensors[b + "mlp.norm.scale"]
        out[m + "mlp.router.weight"] = tensors[b + "mlp.gate.weight"]
        out[m + "mlp.router.bias"] = tensors[b + "mlp.gate.bias"]
        x = m + "mlp.experts."
        out[x + "gate_up_proj_blocks"] = tensors[b + "mlp.mlp1_weight.blocks"]
        out[x + "gate_up_proj_scales"] = tensors[b + "mlp.mlp1_weight.scales"]
        out[x + "gate_up_proj_bias"] = tensors[b + "mlp.mlp1_bias"]
        out[x + "down_proj_blocks"] = tensors[b + "mlp.mlp2_weight.blocks"]
        out[x + "down_proj_scales"] = tensors[b + "mlp.mlp2_weight.scales"]
        out[x + "down_proj_bias"] = tensors[b + "mlp.mlp2_bias"]
        n += 1
    return out


BF16 = np.dtype(ml_dtypes.bfloat16)
