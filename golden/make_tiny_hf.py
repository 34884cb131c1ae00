"""Golden cases `tiny_gpt2`, `tiny_llama`, `tiny_mixtral`, `tiny_qwen3`, `tiny_gpt_oss_hf`: tiny random
models built and saved by HF transformers, their logits computed by HF transformers (eager attention).

Each case folder holds checkpoint/ (save_pretrained, safetensors), input.json (ids), and
expected.safetensors: logits_f64 / logits_f32 [T, V], and float64 intermediates captured with forward
hooks: embed [T, d], layers.L.out [T, d] (each decoder block's output), final_norm [T, d]; plus
hidden_states.i (output_hidden_states=True, HF's own convention, see case.json).

Weights: HF's own init (std 0.02) makes near-uniform logits, so every parameter is redrawn from a
seeded torch.Generator (matrices N(0, 1/fan_in), embeddings N(0, 1), biases N(0, 0.1^2), norm scales
1 + N(0, 0.1^2), sinks N(0, 0.5^2)), so that attention, routing and windows matter.

Run: /tmp/goldenv/bin/python golden/make_tiny_hf.py [case ...]
"""

import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (FORMAT_VERSION, checkpoint_hashes, force_dtype, fresh_case_dir, producer,  # noqa: E402
                     refresh_hf_rope, regen_command, write_json)

SEED = 1234
T = 16

TOL = {
    "float64": {"atol": 1e-9, "rtol": 0.0,
                "reason": "both float64 from identical weights; only summation order differs (~1e-14 expected)"},
    "float32": {"atol": 1e-4, "rtol": 0.0,
                "reason": "float32 op-order noise on O(1-10) logits through 2-4 layers (~1e-6 typical); "
                          "loose 1e-4 so that only a real convention error fails"},
    "hidden_f64": {"atol": 1e-9, "rtol": 0.0, "reason": "float64 vs float64, as logits"},
}


def redraw_(model, gen, sinks_std=0.5):
    """Redraw every parameter deterministically (see module docstring). Tied parameters drawn once."""
    seen = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            shape = tuple(p.shape)
            if "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                v = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif name.endswith("sinks"):
                v = sinks_std * torch.randn(shape, generator=gen, dtype=torch.float64)
            elif "embed" in name or name.endswith(("wte.weight", "wpe.weight")):
                v = torch.randn(shape, generator=gen, dtype=torch.float64)
            elif p.ndim == 1 or name.endswith("_bias"):
                v = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
            else:
                fan_in = _fan_in(name, shape)
                v = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
            p.copy_(v.to(p.dtype))


def _fan_in(name, shape):
    # GPT-2 Conv1D stores [in, out]; gpt-oss experts store [E, in, out]; everything else [.., out, in]
    if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
        return shape[0]
    if name.endswith(("experts.gate_up_proj", "experts.down_proj")) and "gpt_oss" in name:
        return shape[-2]
    return shape[-1]


def hooks_capture(model, layers, final_norm, embed):
    store = {}

    def grab(key):
        def hook(_mod, _inp, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            store[key] = t.detach()[0].to(torch.float64).numpy().copy()
        return hook

    hs = [embed.register_forward_hook(grab("embed_tokens_only"))]
    for i, layer in enumerate(layers):
        hs.append(layer.register_forward_hook(grab(f"layers.{i}.out")))
    hs.append(final_norm.register_forward_hook(grab("final_norm")))
    return store, hs


def build(case):
    import transformers as tf

    if case == "tiny_gpt2":
        cfg = tf.GPT2Config(vocab_size=96, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                            bos_token_id=0, eos_token_id=1)
        model = tf.GPT2LMHeadModel(cfg)
        parts = lambda m: (m.transformer.h, m.transformer.ln_f, m.transformer.wte)  # noqa: E731
        note = "GPT2LMHeadModel: learned positions, LayerNorm, gelu_new, tied lm_head"
    elif case == "tiny_llama":
        cfg = tf.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                             max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 64},
                             bos_token_id=1, eos_token_id=2)
        model = tf.LlamaForCausalLM(cfg)
        parts = lambda m: (m.model.layers, m.model.norm, m.model.embed_tokens)  # noqa: E731
        note = "LlamaForCausalLM: GQA 4/2, llama3 RoPE scaling (original 64, so the low/high ramp is exercised)"
    elif case == "tiny_mixtral":
        cfg = tf.MixtralConfig(vocab_size=112, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                               num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=256,
                               rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                               sliding_window=None, tie_word_embeddings=False, router_jitter_noise=0.0,
                               bos_token_id=1, eos_token_id=2)
        model = tf.MixtralForCausalLM(cfg)
        parts = lambda m: (m.model.layers, m.model.norm, m.model.embed_tokens)  # noqa: E731
        note = "MixtralForCausalLM: 4 experts top-2 (softmax over all, top-k, renormalise), GQA 4/2"
    elif case == "tiny_qwen3":
        cfg = tf.Qwen3Config(vocab_size=150, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                             max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                             use_sliding_window=False, attention_bias=False, bos_token_id=1, eos_token_id=2)
        model = tf.Qwen3ForCausalLM(cfg)
        parts = lambda m: (m.model.layers, m.model.norm, m.model.embed_tokens)  # noqa: E731
        note = "Qwen3ForCausalLM: per-head q/k RMSNorm before RoPE, tied embeddings, GQA 4/2"
    elif case == "tiny_gpt_oss_hf":
        cfg = tf.GptOssConfig(vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                              num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
                              layer_types=["sliding_attention", "full_attention"],
                              max_position_embeddings=131072, rms_norm_eps=1e-5, swiglu_limit=7.0,
                              rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                                               "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                                               "original_max_position_embeddings": 4096},
                              tie_word_embeddings=False, attention_bias=True, bos_token_id=1, eos_token_id=2)
        model = tf.GptOssForCausalLM(cfg)
        parts = lambda m: (m.model.layers, m.model.norm, m.model.embed_tokens)  # noqa: E731
        note = ("GptOssForCausalLM: dense experts (gate_up_proj [E, d, 2I] interleaved gate/up), sinks, "
                "sliding window 4 on layer 0, YaRN (factor 32, original 4096, truncate False); weights stored bf16")
    else:
        raise SystemExit(f"unknown case {case}")
    return model, parts, note


def make(case):
    import transformers as tf  # noqa: F401

    torch.manual_seed(SEED)
    model, parts, note = build(case)
    if hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation("eager")  # plain per-expert loop (grouped_mm has no float64)
        except Exception:  # noqa: BLE001 - models without experts
            pass
    model.config._experts_implementation = "eager"
    model = model.to(torch.float32).eval()
    model.config._attn_implementation = "eager"
    gen = torch.Generator().manual_seed(SEED)
    redraw_(model, gen)
    store_bf16 = case == "tiny_gpt_oss_hf"
    if store_bf16:  # values exactly representable in bf16, so f32/f64 runs see the stored numbers
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(p.dtype))

    out = fresh_case_dir(case)
    ck = out / "checkpoint"
    cls = type(model)
    model.to(torch.bfloat16 if store_bf16 else torch.float32).save_pretrained(ck, safe_serialization=True)
    for extra in ("generation_config.json",):
        if (ck / extra).exists():
            (ck / extra).unlink()
    # every number below comes from the saved checkpoint, reloaded (fresh float32 buffers such as inv_freq)
    model = cls.from_pretrained(ck, dtype=torch.float32, attn_implementation="eager",
                                experts_implementation="eager").eval()

    V = model.config.vocab_size
    ids = torch.randint(3, V, (1, T), generator=torch.Generator().manual_seed(SEED + 1))
    ids[0, 0] = model.config.bos_token_id if model.config.bos_token_id is not None else ids[0, 0]
    tensors = {}
    plain64 = None
    # f32 first (HF as shipped), then model.double() as shipped (float32 islands kept, recorded only),
    # then the true float64 run (force_dtype + float64 inv_freq) that becomes the golden.
    for dt, tag in ((torch.float32, "f32"), (torch.float64, "plain_f64"), (torch.float64, "f64")):
        m = model.to(dt)
        layers, norm, embed = parts(m)
        store, hs = hooks_capture(m, layers, norm, embed)
        with torch.no_grad():
            if tag == "f64":
                with force_dtype(torch.float64):
                    n_rope = refresh_hf_rope(m, torch.float64)
                    r = m(ids, output_hidden_states=True, use_cache=False)
            else:
                r = m(ids, output_hidden_states=True, use_cache=False)
        for h in hs:
            h.remove()
        if tag == "plain_f64":
            plain64 = r.logits[0].numpy().copy()
            continue
        tensors[f"logits_{tag}"] = r.logits[0].numpy().astype(np.float64 if tag == "f64" else np.float32)
        if tag == "f64":
            for k, v in store.items():
                if k != "embed_tokens_only":
                    tensors[k] = v
            if case == "tiny_gpt2":  # the block input: token + position embeddings = hidden_states[0]
                tensors["embed"] = r.hidden_states[0][0].numpy().copy()
            else:
                tensors["embed"] = store["embed_tokens_only"]
            for i, h in enumerate(r.hidden_states):
                tensors[f"hidden_states.{i}"] = h[0].numpy().copy()
            assert all(v.dtype == np.float64 for k, v in tensors.items() if k != "logits_f32")
    model = model.to(torch.float32)
    d64 = float(np.max(np.abs(tensors["logits_f32"].astype(np.float64) - tensors["logits_f64"])))
    dplain = float(np.max(np.abs(plain64 - tensors["logits_f64"])))
    L = model.config.num_hidden_layers
    # which HF hidden_states entry equals which hooked tensor (documents HF's convention)
    hs_map = {}
    for i in range(L + 1):
        h = tensors[f"hidden_states.{i}"]
        for k in ["embed", "final_norm"] + [f"layers.{j}.out" for j in range(L)]:
            if np.array_equal(h, tensors[k]):
                hs_map[f"hidden_states.{i}"] = k
                break
    save_file(tensors, str(out / "expected.safetensors"))
    write_json(out / "input.json", {"ids": ids[0].tolist()})
    case_json = {
        "format_version": FORMAT_VERSION,
        "case": case,
        "producer": {**producer(), "library": f"transformers {type(model).__name__} (attn_implementation=eager)"},
        "checkpoint": {"path": "checkpoint/", "how": f"{type(model).__name__}(config), torch.manual_seed({SEED}), "
                       f"parameters redrawn (see make_tiny_hf.py), save_pretrained(safe_serialization=True)"
                       + (", saved as bfloat16" if store_bf16 else ", saved as float32"),
                       "sha256": checkpoint_hashes(ck)},
        "note": note,
        "dtype": ["float64", "float32"],
        "T": T,
        "files": {"input.json": "ids [T] (first id = bos)",
                  "expected.safetensors": "logits_f64 [T, V] float64 (model.double()), logits_f32 [T, V] float32, "
                                          "float64 intermediates from hooks: embed, layers.L.out, final_norm [T, d]; "
                                          "hidden_states.i = HF output_hidden_states (see hidden_states_map)"},
        "hidden_states_map": hs_map,
        "hf_fp32_vs_fp64_max_abs_logits": d64,
        "hf_plain_double_vs_true_f64_max_abs_logits": dplain,
        "float64_note": "logits_f64 and intermediates come from model.double() run inside _common.force_dtype"
                        "(torch.float64) with inv_freq recomputed in float64 (refresh_hf_rope, "
                        f"{n_rope} rotary module(s)): HF's float32 islands (RMSNorm, softmax, RoPE, router) "
                        "made float64. Plain model.double() differs by hf_plain_double_vs_true_f64_max_abs_logits.",
        "tolerances": TOL,
        "regenerate": regen_command(__file__) + f" {case}",
    }
    write_json(out / "case.json", case_json)
    print(f"{case}: T={T} V={V} |f32-f64|max={d64:.3e} |plain.double()-f64|={dplain:.3e} hidden_states map {hs_map}")
    print("   saved:", sorted(os.listdir(ck)))


ALL = ["tiny_gpt2", "tiny_llama", "tiny_mixtral", "tiny_qwen3", "tiny_gpt_oss_hf"]

if __name__ == "__main__":
    for c in sys.argv[1:] or ALL:
        make(c)
