"""Reference operations, one module per layer family (spec/README.md lists them by page).

`OPS` is the op table: every op by name, written out (no discovery). `CHECKS` maps each op to its
public argument check `check_<op>(same arguments)`, which raises ArgumentError and returns None,
reads only `.shape`, `.dtype` and `.ndim` of a backend's arrays, and is what the reference op runs
first. A backend (refimpl.backends) runs `CHECKS[op]` once, then its kernel. `ops` is the same table
as a namespace, the op set a model calls when no backend is chosen.
"""

from types import MappingProxyType, SimpleNamespace

from . import activations, attention, dropout, elementwise, embed, linear, moe, mxfp4, norms, quant, rope, sampling

OPS = MappingProxyType({
    # embeddings (spec/embeddings.md)
    "embedding": embed.embedding,
    "learned_positions": embed.learned_positions,
    # linear (spec/linear.md)
    "linear": linear.linear,
    # rounding to the storage dtype, separately rounded sums and scalings (spec/elementwise.md)
    "round_to_storage": elementwise.round_to_storage,
    "add": elementwise.add,
    "scale": elementwise.scale,
    # norms and residual placements (spec/norms.md)
    "layer_norm": norms.layer_norm,
    "rms_norm": norms.rms_norm,
    "pre_norm_residual": norms.pre_norm_residual,
    "post_norm_residual": norms.post_norm_residual,
    # activations and dense MLPs (spec/activations.md)
    "gelu": activations.gelu,
    "silu": activations.silu,
    "swiglu": activations.swiglu,
    "swiglu_oss": activations.swiglu_oss,
    "swiglu_oss_bf16": activations.swiglu_oss_bf16,
    "gelu_mlp": activations.gelu_mlp,
    "swiglu_mlp": activations.swiglu_mlp,
    # dropout (spec/dropout.md)
    "dropout": dropout.dropout,
    # rotary embeddings (spec/rope.md)
    "inv_freq_default": rope.inv_freq_default,
    "inv_freq_linear": rope.inv_freq_linear,
    "inv_freq_llama3": rope.inv_freq_llama3,
    "inv_freq_yarn": rope.inv_freq_yarn,
    "yarn_correction_range": rope.yarn_correction_range,
    "rope_frequencies": rope.rope_frequencies,
    "rope_cos_sin": rope.rope_cos_sin,
    "apply_rope": rope.apply_rope,
    "rope_terms": rope.rope_terms,
    # attention (spec/attention.md)
    "visibility_mask": attention.visibility_mask,
    "repeat_kv": attention.repeat_kv,
    "attention_probs": attention.attention_probs,
    "attention": attention.attention,
    "attention_online": attention.attention_online,
    "attention_scores": attention.attention_scores,
    "softmax_with_sinks": attention.softmax_with_sinks,
    "attention_values": attention.attention_values,
    # mixture of experts (spec/moe.md)
    "router_topk_softmax": moe.router_topk_softmax,
    "router_softmax_topk": moe.router_softmax_topk,
    "expert_choice": moe.expert_choice,
    "load_balancing_loss": moe.load_balancing_loss,
    "moe_combine": moe.moe_combine,
    "gpt_oss_experts": moe.gpt_oss_experts,
    # MXFP4 (spec/mxfp4.md)
    "decode_e8m0": mxfp4.decode_e8m0,
    "decode_mxfp4": mxfp4.decode_mxfp4,
    "encode_mxfp4": mxfp4.encode_mxfp4,
    "mxfp4_linear": mxfp4.mxfp4_linear,
    # packed GGUF blocks (spec/quant.md)
    "dequantize_gguf": quant.dequantize_gguf,
    "gguf_embedding": quant.gguf_embedding,
    "gguf_linear": quant.gguf_linear,
    # sampling (spec/sampling.md)
    "softmax": sampling.softmax,
    "log_softmax": sampling.log_softmax,
    "greedy": sampling.greedy,
    "apply_temperature": sampling.apply_temperature,
    "top_k_filter": sampling.top_k_filter,
    "top_p_filter": sampling.top_p_filter,
    "sample": sampling.sample,
})

_MODULES = (embed, linear, elementwise, norms, activations, dropout, rope, attention, moe, mxfp4, quant, sampling)

# The public argument check of each op, with the op's signature (tests/backends/test_backend_interface.py).
CHECKS = MappingProxyType({
    "embedding": embed.check_embedding,
    "learned_positions": embed.check_learned_positions,
    "linear": linear.check_linear,
    "round_to_storage": elementwise.check_round_to_storage,
    "add": elementwise.check_add,
    "scale": elementwise.check_scale,
    "layer_norm": norms.check_layer_norm,
    "rms_norm": norms.check_rms_norm,
    "pre_norm_residual": norms.check_pre_norm_residual,
    "post_norm_residual": norms.check_post_norm_residual,
    "gelu": activations.check_gelu,
    "silu": activations.check_silu,
    "swiglu": activations.check_swiglu,
    "swiglu_oss": activations.check_swiglu_oss,
    "swiglu_oss_bf16": activations.check_swiglu_oss_bf16,
    "gelu_mlp": activations.check_gelu_mlp,
    "swiglu_mlp": activations.check_swiglu_mlp,
    "dropout": dropout.check_dropout,
    "inv_freq_default": rope.check_inv_freq_default,
    "inv_freq_linear": rope.check_inv_freq_linear,
    "inv_freq_llama3": rope.check_inv_freq_llama3,
    "inv_freq_yarn": rope.check_inv_freq_yarn,
    "yarn_correction_range": rope.check_yarn_correction_range,
    "rope_frequencies": rope.check_rope_frequencies,
    "rope_cos_sin": rope.check_rope_cos_sin,
    "apply_rope": rope.check_apply_rope,
    "rope_terms": rope.check_rope_terms,
    "visibility_mask": attention.check_visibility_mask,
    "repeat_kv": attention.check_repeat_kv,
    "attention_probs": attention.check_attention_probs,
    "attention": attention.check_attention,
    "attention_online": attention.check_attention_online,
    "attention_scores": attention.check_attention_scores,
    "softmax_with_sinks": attention.check_softmax_with_sinks,
    "attention_values": attention.check_attention_values,
    "router_topk_softmax": moe.check_router_topk_softmax,
    "router_softmax_topk": moe.check_router_softmax_topk,
    "expert_choice": moe.check_expert_choice,
    "load_balancing_loss": moe.check_load_balancing_loss,
    "moe_combine": moe.check_moe_combine,
    "gpt_oss_experts": moe.check_gpt_oss_experts,
    "decode_e8m0": mxfp4.check_decode_e8m0,
    "decode_mxfp4": mxfp4.check_decode_mxfp4,
    "encode_mxfp4": mxfp4.check_encode_mxfp4,
    "mxfp4_linear": mxfp4.check_mxfp4_linear,
    "dequantize_gguf": quant.check_dequantize_gguf,
    "gguf_embedding": quant.check_gguf_embedding,
    "gguf_linear": quant.check_gguf_linear,
    "softmax": sampling.check_softmax,
    "log_softmax": sampling.check_log_softmax,
    "greedy": sampling.check_greedy,
    "apply_temperature": sampling.check_apply_temperature,
    "top_k_filter": sampling.check_top_k_filter,
    "top_p_filter": sampling.check_top_p_filter,
    "sample": sampling.check_sample,
})

OP_NAMES = tuple(OPS)

ops = SimpleNamespace(**OPS)

__all__ = ["OPS", "CHECKS", "OP_NAMES", "ops"] + [m.__name__.rsplit(".", 1)[1] for m in _MODULES]
