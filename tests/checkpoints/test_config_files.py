"""Config readers (HF, OpenAI gpt-oss), presets and parameter counts.

Expected values are the published configs' numbers written out by hand, the published parameter
counts (OpenAI gpt-oss model card; HF GPT-2 / Llama-3 / Mixtral totals), and counts of the tensors
actually written by helpers_tiny.
"""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

import helpers_tiny as tiny  # noqa: E402

from refimpl.model.config import ModelConfig  # noqa: E402
from refimpl.checkpoints.config_files import (PRESETS, config_from_hf, config_from_openai_gpt_oss, count_parameters,  # noqa: E402
                             get_preset, load_config)
from refimpl.errors import ConfigError  # noqa: E402

# openai/gpt-oss-20b config.json (HF format, repo root) and original/config.json, per
# shared/reference/released-models.md and the published files.
GPT_OSS_20B_HF = {
    "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0,
    "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
    "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 12, "max_position_embeddings": 131072,
    "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
    "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": False, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                     "rope_type": "yarn", "truncate": False},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088}
GPT_OSS_20B_ORIGINAL = {
    "num_hidden_layers": 24, "num_experts": 32, "experts_per_token": 4, "vocab_size": 201088, "hidden_size": 2880,
    "intermediate_size": 2880, "swiglu_limit": 7.0, "head_dim": 64, "num_attention_heads": 64,
    "num_key_value_heads": 8, "sliding_window": 128, "initial_context_length": 4096, "rope_theta": 150000,
    "rope_scaling_factor": 32.0, "rope_ntk_alpha": 1, "rope_ntk_beta": 32}
# openai-community/gpt2 config.json
GPT2_HF = {
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1, "bos_token_id": 50256,
    "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
    "resid_pdrop": 0.1, "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
    "summary_type": "cls_index", "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}, "vocab_size": 50257}
# meta-llama/Llama-3.1-8B config.json (transformers v4 spelling)
LLAMA31_8B_V4 = {
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}}


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


def fields(cfg, *skip):
    d = dataclasses.asdict(cfg)
    for k in ("name", "extra") + skip:
        d.pop(k)
    return d


# ------------------------------------------------------------------------------------- gpt2

def test_gpt2_real_config():
    c = config_from_hf(GPT2_HF, name="gpt2")
    assert (c.arch, c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) == \
        ("gpt2", 50257, 768, 12, 12, 12, 64)
    assert (c.intermediate_size, c.max_position_embeddings, c.norm, c.norm_eps, c.norm_placement) == \
        (3072, 1024, "layer", 1e-5, "pre")
    assert (c.activation, c.position, c.tie_word_embeddings) == ("gelu_tanh", "learned", True)
    assert c.attention_bias and c.attention_out_bias and c.mlp_bias
    assert (c.bos_token_id, c.eos_token_ids) == (50256, (50256,))
    assert config_from_hf({**GPT2_HF, "n_inner": 1000}).intermediate_size == 1000
    assert config_from_hf({**GPT2_HF, "activation_function": "gelu"}).activation == "gelu_erf"


@pytest.mark.parametrize("patch, field", [
    ({"activation_function": "relu"}, "activation_function"),
    ({"n_head": 7}, "n_head"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"n_embd": "768"}, "n_embd"),
    ({"n_layer": True}, "n_layer"),
    ({"n_layer": 2.5}, "n_layer"),
    ({"n_layer": 0}, "n_layer"),
    ({"layer_norm_epsilon": float("nan")}, "layer_norm_epsilon"),
])
def test_gpt2_bad_fields(patch, field):
    with pytest.raises(ConfigError, match=f"gpt2.json: {field}: expected"):
        config_from_hf({**GPT2_HF, **patch}, source="gpt2.json")


def test_missing_required_field_named():
    with pytest.raises(ConfigError, match=r"c\.json: n_positions: expected .*required.*missing"):
        config_from_hf(without(GPT2_HF, "n_positions"), source="c.json")
    with pytest.raises(ConfigError, match="hidden_size.*missing"):
        config_from_hf(without(LLAMA31_8B_V4, "hidden_size"))
    with pytest.raises(ConfigError, match="model_type.*missing"):
        config_from_hf(without(LLAMA31_8B_V4, "model_type"))


# ----------------------------------------------------------------------------- llama family

def test_llama31_rope_scaling_v4_and_rope_parameters_v5_agree():
    v4 = config_from_hf(LLAMA31_8B_V4)
    v5_params = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    v5 = config_from_hf({**without(LLAMA31_8B_V4, "rope_scaling", "rope_theta"), "rope_parameters": v5_params})
    assert v4 == v5
    assert v4.rope_theta == 500000.0
    assert v4.rope_scaling == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert (v4.arch, v4.head_dim, v4.num_kv_heads, v4.norm, v4.activation) == ("llama", 128, 8, "rms", "swiglu")
    assert not (v4.attention_bias or v4.attention_out_bias or v4.mlp_bias or v4.qk_norm or v4.tie_word_embeddings)
    # legacy "type" key, and per-layer-type v5 dicts that agree
    legacy = {**LLAMA31_8B_V4, "rope_scaling": {**without(LLAMA31_8B_V4["rope_scaling"], "rope_type"), "type": "llama3"}}
    assert config_from_hf(legacy) == v4
    per_type = {**without(LLAMA31_8B_V4, "rope_scaling", "rope_theta"), "layer_types": ["full_attention"] * 32,
                "rope_parameters": {"full_attention": v5_params}}
    assert config_from_hf(per_type) == v4


@pytest.mark.parametrize("patch, field", [
    ({"rope_parameters": {"rope_type": "llama3", "factor": 4.0}}, "rope_parameters.factor"),
    ({"rope_parameters": {"rope_theta": 10000.0}}, "rope_parameters.rope_theta"),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope_scaling.rope_type"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling.low_freq_factor"),
    ({"rope_scaling": {"rope_type": "linear"}}, "rope_scaling.factor"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling.original_max_position_embeddings"),
    ({"rope_scaling": [1]}, "rope_scaling"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"num_attention_heads": 5, "head_dim": None}, "num_attention_heads"),
])
def test_llama_rope_and_field_errors(patch, field):
    with pytest.raises(ConfigError, match=f"cfg.json: {field}"):
        config_from_hf({**LLAMA31_8B_V4, **patch}, source="cfg.json")


def test_rope_linear_and_yarn_defaults():
    c = config_from_hf({**LLAMA31_8B_V4, "rope_scaling": {"rope_type": "linear", "factor": 2}})
    assert c.rope_scaling == {"rope_type": "linear", "factor": 2.0}
    c = config_from_hf({**LLAMA31_8B_V4, "rope_scaling": {"type": "yarn", "factor": 4.0,
                                                           "original_max_position_embeddings": 32768}})
    # HF defaults: beta_fast 32, beta_slow 1, truncate True (modeling_rope_utils._compute_yarn_parameters)
    assert c.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
                              "original_max_position_embeddings": 32768, "truncate": True}
    assert config_from_hf({**LLAMA31_8B_V4, "rope_scaling": None}).rope_scaling is None
    assert config_from_hf(without(LLAMA31_8B_V4, "rope_theta", "rope_scaling")).rope_theta == 10000.0


def test_mistral_sliding_window_all_layers():
    c = config_from_hf(tiny.hf_config("mistral"))
    assert c.sliding_window == 8 and c.layer_types == () and all(c.layer_window(i) == 8 for i in range(2))
    assert not c.attention_bias


def test_qwen2_bias_and_sliding_window_rules():
    base = tiny.hf_config("qwen2")
    c = config_from_hf(base)
    assert c.attention_bias and not c.attention_out_bias and c.sliding_window is None  # use_sliding_window false
    c = config_from_hf({**base, "num_hidden_layers": 4, "use_sliding_window": True, "max_window_layers": 2})
    assert c.layer_types == ("full_attention",) * 2 + ("sliding_attention",) * 2 and c.sliding_window == 32
    assert [c.layer_window(i) for i in range(4)] == [None, None, 32, 32]
    c = config_from_hf({**base, "use_sliding_window": True, "max_window_layers": 0})
    assert c.layer_types == () and c.sliding_window == 32
    with pytest.raises(ConfigError, match="use_sliding_window"):
        config_from_hf({**base, "use_sliding_window": "yes"})


def test_qwen3_real_config():
    # Qwen/Qwen3-0.6B config.json
    q = {"architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
         "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
         "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 40960,
         "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
         "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
         "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
         "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}
    c = config_from_hf(q)
    assert c.qk_norm and not c.attention_bias and not c.attention_out_bias and c.tie_word_embeddings
    assert (c.head_dim, c.num_heads * c.head_dim, c.hidden_size) == (128, 2048, 1024)
    assert c.sliding_window is None and c.rope_theta == 1e6 and c.norm_eps == 1e-6
    assert fields(c) == fields(PRESETS["qwen3-0.6b"])
    # a v5 file spells layer_types out
    assert config_from_hf({**q, "layer_types": ["full_attention"] * 28}) == c


def test_mixtral():
    c = config_from_hf(tiny.hf_config("mixtral"))
    assert (c.arch, c.num_experts, c.experts_per_token, c.router) == ("mixtral", 4, 2, "softmax_topk")
    with pytest.raises(ConfigError, match="num_experts_per_tok.*missing"):
        config_from_hf(without(tiny.hf_config("mixtral"), "num_experts_per_tok"))
    with pytest.raises(ConfigError, match="num_experts_per_tok: expected 1..num_local_experts=4"):  # ModelConfig contradiction, source prefixed
        config_from_hf({**tiny.hf_config("mixtral"), "num_experts_per_tok": 9}, source="mx.json")


def test_model_config_contradictions_carry_the_source():
    with pytest.raises(ConfigError, match=r"^llama\.json: .*num_key_value_heads: expected a divisor of num_attention_heads"):
        config_from_hf({**LLAMA31_8B_V4, "num_key_value_heads": 5}, source="llama.json")


# ---------------------------------------------------------------------------------- gpt-oss

def test_gpt_oss_20b_hf_and_original_agree():
    hf = config_from_hf(GPT_OSS_20B_HF)
    orig = config_from_openai_gpt_oss(GPT_OSS_20B_ORIGINAL)
    assert fields(hf, "bos_token_id", "eos_token_ids") == fields(orig, "bos_token_id", "eos_token_ids")
    assert fields(hf) == fields(PRESETS["gpt-oss-20b"])
    # the released model's facts, written out
    assert (hf.arch, hf.num_layers, hf.hidden_size, hf.num_heads, hf.num_kv_heads, hf.head_dim) == \
        ("gpt_oss", 24, 2880, 64, 8, 64)
    assert (hf.num_experts, hf.experts_per_token, hf.intermediate_size, hf.vocab_size) == (32, 4, 2880, 201088)
    assert hf.layer_types[:4] == ("sliding_attention", "full_attention", "sliding_attention", "full_attention")
    assert [hf.layer_window(i) for i in range(3)] == [128, None, 128]
    assert hf.rope_theta == 150000.0 and hf.max_position_embeddings == 131072
    assert hf.rope_scaling == {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                               "original_max_position_embeddings": 4096, "truncate": False}
    assert hf.attention_sinks and hf.attention_bias and hf.attention_out_bias and hf.mlp_bias
    assert (hf.router, hf.activation, hf.swiglu_alpha, hf.swiglu_limit) == ("topk_softmax", "swiglu_oss", 1.702, 7.0)
    assert (hf.norm, hf.norm_eps, hf.tie_word_embeddings, hf.eos_token_ids) == ("rms", 1e-5, False, (200002,))
    assert hf.extra["quantization"] == "mxfp4"


def test_gpt_oss_hf_rope_parameters_v5_spelling():
    v5 = {**without(GPT_OSS_20B_HF, "rope_scaling", "rope_theta"),
          "rope_parameters": {**GPT_OSS_20B_HF["rope_scaling"], "rope_theta": 150000.0}}
    assert config_from_hf(v5) == config_from_hf(GPT_OSS_20B_HF)


def test_gpt_oss_missing_original_max_is_an_error_unless_allowed():
    rs = without(GPT_OSS_20B_HF["rope_scaling"], "original_max_position_embeddings")
    d = {**GPT_OSS_20B_HF, "rope_scaling": rs}
    with pytest.raises(ConfigError, match=r"oss\.json: rope_scaling\.original_max_position_embeddings: .*131072"):
        config_from_hf(d, source="oss.json")
    c = config_from_hf(d, missing_yarn_original_max="max_position_embeddings")
    assert c.rope_scaling["original_max_position_embeddings"] == 131072
    with pytest.raises(ConfigError, match="missing_yarn_original_max"):
        config_from_hf(d, missing_yarn_original_max="guess")


def test_gpt_oss_hf_without_layer_types_slides_on_even_layers():
    c = config_from_hf(without(GPT_OSS_20B_HF, "layer_types"))
    assert c.layer_types == ("sliding_attention", "full_attention") * 12


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("num_experts"), "num_experts"),
    (lambda d: d.update(extra_key=1), "extra_key"),
    (lambda d: d.update(sliding_window=-1), "sliding_window"),
    (lambda d: d.update(rope_scaling_factor=0.5), "rope_scaling_factor"),
    (lambda d: d.update(head_dim="64"), "head_dim"),
    (lambda d: d.update(experts_per_token=33), "experts_per_token"),
])
def test_openai_config_errors(edit, field):
    d = dict(GPT_OSS_20B_ORIGINAL)
    edit(d)
    with pytest.raises(ConfigError, match=f"orig.json: .*{field}"):
        config_from_openai_gpt_oss(d, source="orig.json")


def test_openai_config_without_scaling_or_window():
    c = config_from_openai_gpt_oss({**GPT_OSS_20B_ORIGINAL, "rope_scaling_factor": 1.0, "sliding_window": 0})
    assert c.rope_scaling is None and c.sliding_window is None and c.layer_types == ()
    assert c.max_position_embeddings == 4096


# ------------------------------------------------------------------------------ load_config

def test_load_config_detects_format(tmp_path):
    for sub, d in (("hf", GPT_OSS_20B_HF), ("orig", GPT_OSS_20B_ORIGINAL), ("g", GPT2_HF)):
        os.makedirs(tmp_path / sub)
        (tmp_path / sub / "config.json").write_text(json.dumps(d))
    a, b = load_config(tmp_path / "hf"), load_config(str(tmp_path / "orig" / "config.json"))
    assert a.extra["model_type"] == "gpt_oss" and b.extra["model_type"] == "openai_gpt_oss"
    assert fields(a, "bos_token_id", "eos_token_ids") == fields(b, "bos_token_id", "eos_token_ids")
    assert load_config(tmp_path / "g").arch == "gpt2"


@pytest.mark.parametrize("text, needle", [
    ('{"model_type": "bert", "hidden_size": 8}', r"model_type: expected one of .*found 'bert'"),
    ("[1, 2]", "expected a JSON object, found list"),
    ("{oops", "expected JSON"),
    ('{"hidden_size": 8}', "model_type: expected a Hugging Face config"),
    ('{"model_type": 3}', "model_type: expected a string"),
])
def test_load_config_errors_name_the_file(tmp_path, text, needle):
    p = tmp_path / "config.json"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle) as ei:
        load_config(p)
    assert str(p) in str(ei.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nothing.json")


@pytest.mark.parametrize("kind", tiny.KINDS)
def test_tiny_configs_read(kind):
    d = tiny.hf_config(kind)
    c = config_from_openai_gpt_oss(d) if kind == "gpt_oss_original" else config_from_hf(d)
    assert isinstance(c, ModelConfig)


# ------------------------------------------------------------------------- presets and counts

def test_presets_validate_and_are_named():
    assert {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt-oss-20b", "gpt-oss-120b", "llama-3-8b",
            "llama-3-70b", "qwen3-0.6b", "smollm2-135m", "mixtral-8x7b"} <= set(PRESETS)
    for name, c in PRESETS.items():
        assert isinstance(c, ModelConfig) and c.name == name
        assert ModelConfig(**dataclasses.asdict(c)) == c  # re-validates
    assert get_preset("gpt2") is PRESETS["gpt2"]
    with pytest.raises(ConfigError, match="preset: expected one of"):
        get_preset("gpt-5")


def test_preset_gpt_oss_120b_facts():
    c = PRESETS["gpt-oss-120b"]
    assert (c.num_layers, c.num_experts, c.experts_per_token, c.hidden_size) == (36, 128, 4, 2880)
    assert c.layer_window(0) == 128 and c.layer_window(35) is None


@pytest.mark.parametrize("name, total, active", [
    # OpenAI gpt-oss model card: 20.91B total / 3.61B active; 116.83B / 5.13B (two decimals)
    ("gpt-oss-20b", 20.91e9, 3.61e9), ("gpt-oss-120b", 116.83e9, 5.13e9)])
def test_gpt_oss_parameter_counts_match_model_card(name, total, active):
    p = count_parameters(PRESETS[name])
    assert round(p["total"] / 1e9, 2) == round(total / 1e9, 2)
    assert round(p["active"] / 1e9, 2) == round(active / 1e9, 2)


@pytest.mark.parametrize("name, total", [
    # HF model.num_parameters() of the released checkpoints
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200),
    ("llama-3-8b", 8_030_261_248), ("mixtral-8x7b", 46_702_792_704)])
def test_dense_parameter_counts_match_published(name, total):
    assert count_parameters(PRESETS[name])["total"] == total


def test_small_presets_round_to_their_names():
    assert round(count_parameters(PRESETS["smollm2-135m"])["total"] / 1e6) == 135
    q = count_parameters(PRESETS["qwen3-0.6b"])
    # Qwen3-0.6B model card: 0.6B parameters, 0.44B without embeddings
    assert round(q["total"] / 1e9, 1) == 0.6
    assert round((q["total"] - q["per_component"]["embedding"]) / 1e9, 2) == 0.44
    assert round(count_parameters(PRESETS["llama-3-70b"])["total"] / 1e9) == 71


@pytest.mark.parametrize("kind", tiny.KINDS)
def test_count_matches_tensors_written(kind):
    d = tiny.hf_config(kind)
    cfg = config_from_openai_gpt_oss(d) if kind == "gpt_oss_original" else config_from_hf(d)
    written = 0
    for name, shape in tiny.file_shapes(kind).items():
        if name.endswith("scales"):  # MXFP4 scales are not parameters
            continue
        n = int(np.prod(shape))
        written += 2 * n if name.endswith("blocks") else n  # two E2M1 values per packed byte
    assert count_parameters(cfg)["total"] == written


def test_active_count_hand_worked_tiny_gpt_oss():
    cfg = config_from_hf(tiny.hf_config("gpt_oss_hf_mxfp4"))
    t = tiny.GPT_OSS_TINY
    per_expert = (2 * t["inter"] * t["hidden"] + 2 * t["inter"]) + (t["hidden"] * t["inter"] + t["hidden"])
    p = count_parameters(cfg)
    unused = t["layers"] * (t["experts"] - t["k"]) * per_expert
    assert p["active"] == p["total"] - unused - t["vocab"] * t["hidden"]
    assert p["per_component"]["experts"] == t["layers"] * t["experts"] * per_expert
    with pytest.raises(ConfigError, match="cfg"):
        count_parameters({"arch": "gpt2"})
