"""refimpl.sizes: the calculator's numbers against released facts and independent tensor-by-tensor sums.

Independent formulations used here: the gpt-oss checkpoint's tensor list (shapes and storage
dtypes as released, shared/reference/released-models.md "gpt-oss checkpoint layouts") summed
tensor by tensor; GPT-2's closed form L(12d^2 + 13d) + Vd + Pd + 2d; per-layer loops for KV bytes;
literal figures from the model card (20.91B / 3.61B, 116.83B / 5.13B) and the hub index
(total_size 13,761,264,768). All arithmetic is on Python ints: exact, no tolerance needed.
"""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.cli import main as cli_main
from refimpl.model.config import ModelConfig
from refimpl.errors import ArgumentError, ConfigError, RefimplError
from refimpl.sizes import inspect_data, inspect_json, inspect_report

OSS = {"gpt-oss-20b": (24, 32), "gpt-oss-120b": (36, 128)}
D, V, HQ, HKV, HD, INTER, TOPK = 2880, 201088, 64, 8, 64, 2880, 4


def oss_tensors(L, E):
    """[(name, shape, storage)] of OpenAI's original gpt-oss checkpoint; storage 'bf16' or 'u8'."""
    qkv = (HQ + 2 * HKV) * HD
    out = [("embedding.weight", (V, D), "bf16"), ("norm.scale", (D,), "bf16"), ("unembedding.weight", (V, D), "bf16")]
    for n in range(L):
        b = f"block.{n}."
        out += [(b + "attn.norm.scale", (D,), "bf16"), (b + "attn.qkv.weight", (qkv, D), "bf16"),
                (b + "attn.qkv.bias", (qkv,), "bf16"), (b + "attn.sinks", (HQ,), "bf16"),
                (b + "attn.out.weight", (D, HQ * HD), "bf16"), (b + "attn.out.bias", (D,), "bf16"),
                (b + "mlp.norm.scale", (D,), "bf16"), (b + "mlp.gate.weight", (E, D), "bf16"),
                (b + "mlp.gate.bias", (E,), "bf16"),
                (b + "mlp.mlp1_weight.blocks", (E, 2 * INTER, D // 32, 16), "u8"),
                (b + "mlp.mlp1_weight.scales", (E, 2 * INTER, D // 32), "u8"),
                (b + "mlp.mlp1_bias", (E, 2 * INTER), "bf16"),
                (b + "mlp.mlp2_weight.blocks", (E, D, INTER // 32, 16), "u8"),
                (b + "mlp.mlp2_weight.scales", (E, D, INTER // 32), "u8"),
                (b + "mlp.mlp2_bias", (E, D), "bf16")]
    return out


def oss_params_and_bytes(L, E):
    """(parameters, active parameters, checkpoint bytes) by walking the tensor list."""
    params = active = nbytes = 0
    for name, shape, storage in oss_tensors(L, E):
        size = math.prod(shape)
        nbytes += size * (2 if storage == "bf16" else 1)
        if name.endswith(".scales"):
            continue  # scales are not parameters
        n = size * 2 if name.endswith(".blocks") else size  # two E2M1 values per byte
        params += n
        if name == "embedding.weight":
            continue  # a lookup reads one row
        if ".mlp.mlp" in name:  # per-expert tensors: only TOPK of E experts run
            n = n // E * TOPK
        active += n
    return params, active, nbytes


@pytest.mark.parametrize("name", sorted(OSS))
def test_gpt_oss_totals_match_tensor_walk(name):
    params, active, nbytes = oss_params_and_bytes(*OSS[name])
    d = inspect_data(name)
    assert d["parameters"]["total"] == params
    assert d["parameters"]["active"] == active
    assert d["weights"]["as_released"]["bytes"] == nbytes
    assert d["weights"]["bf16"] == 2 * params and d["weights"]["fp32"] == 4 * params


def test_gpt_oss_model_card_and_hub_figures():
    d20, d120 = inspect_data("gpt-oss-20b"), inspect_data("gpt-oss-120b")
    # OpenAI model card: 20.91B total / 3.61B active, 116.83B / 5.13B (two decimals, in 1e9)
    assert round(d20["parameters"]["total"] / 1e9, 2) == 20.91
    assert round(d20["parameters"]["active"] / 1e9, 2) == 3.61
    assert round(d120["parameters"]["total"] / 1e9, 2) == 116.83
    assert round(d120["parameters"]["active"] / 1e9, 2) == 5.13
    # openai/gpt-oss-20b model.safetensors.index.json metadata.total_size (spec/errata.md row 25)
    assert d20["weights"]["as_released"]["bytes"] == 13_761_264_768
    rel = d20["weights"]["as_released"]
    assert rel["mxfp4_parameters"] == 24 * 32 * (5760 * 2880 + 2880 * 2880)
    assert rel["mxfp4_bytes"] * 32 == rel["mxfp4_parameters"] * 17  # 4.25 bits per weight


def test_gpt_oss_kv_cache():
    kv = inspect_data("gpt-oss-20b")["kv_cache"]
    assert kv["bytes_per_token"] == {"bf16": 24 * 2 * 8 * 64 * 2, "fp32": 24 * 2 * 8 * 64 * 4}
    assert kv["bytes_per_token"]["bf16"] == 49_152
    assert [c["tokens"] for c in kv["contexts"]] == [4096, 32768, 131072]
    for c in kv["contexts"]:
        T = c["tokens"]
        for tag, size in (("bf16", 2), ("fp32", 4)):
            assert c["full"][tag] == 49_152 * (size // 2) * T
            windowed = sum((min(T, 128) if layer % 2 == 0 else T) * 2 * 8 * 64 * size for layer in range(24))
            assert c["windowed"][tag] == windowed
    # spec/errata.md row 11: at 131072 tokens, 6 GiB full, 3.0 GiB windowed (bf16)
    last = kv["contexts"][-1]
    assert last["full"]["bf16"] == 6 * 2 ** 30
    assert last["windowed"]["bf16"] == 12 * 131072 * 2048 + 12 * 128 * 2048


@pytest.mark.parametrize("name,layers,d,size", [("gpt2", 12, 768, 124e6), ("gpt2-medium", 24, 1024, 355e6),
                                                ("gpt2-large", 36, 1280, 774e6), ("gpt2-xl", 48, 1600, 1.5e9)])
def test_gpt2_sizes(name, layers, d, size):
    d_ = inspect_data(name)
    closed = layers * (12 * d * d + 13 * d) + 50257 * d + 1024 * d + 2 * d
    total = d_["parameters"]["total"]
    assert total == closed
    if size < 1e9:
        assert round(total / 1e6) == round(size / 1e6)  # the names 124M / 355M / 774M
    else:
        assert 1.5e9 <= total < 1.6e9  # "1.5B" (1,557,611,200)
    assert d_["weights"]["as_released"]["bytes"] == 4 * total  # released as float32
    heads = d_["architecture"]["num_heads"]
    assert d_["kv_cache"]["bytes_per_token"]["bf16"] == layers * 2 * heads * 64 * 2
    assert [c["tokens"] for c in d_["kv_cache"]["contexts"]] == [1024]


def test_report_contains_the_numbers():
    r = inspect_report("gpt-oss-20b")
    for s in ("20,914,757,184", "3,608,307,264", "13,761,264,768", "12.82 GiB", "13.76 GB", "49,152",
              "98,304", "41.83 GB", "6.00 GiB", "window 128", "64/8", "head_dim 64", "32 experts, 4 active",
              "yarn", "201,088", "131,072"):
        assert s in r, s
    r2 = inspect_report("gpt2")
    assert "124,439,808" in r2 and "learned absolute positions" in r2 and "tied" in r2
    assert "1,557,611,200" in inspect_report("gpt2-xl")


def test_json_round_trip_and_cli(capsys):
    d = inspect_data("gpt-oss-120b")
    assert json.loads(inspect_json("gpt-oss-120b")) == json.loads(json.dumps(d))
    assert cli_main(["inspect", "gpt-oss-120b"]) == 0
    out = capsys.readouterr().out
    assert "116,829,156,672" in out and "5,132,849,472" in out and "65,248,815,744" in out


def test_unknown_name_and_bad_argument(capsys):
    with pytest.raises(RefimplError, match="gpt-oss-7b"):
        inspect_data("gpt-oss-7b")
    with pytest.raises(RefimplError, match="no-such-model"):
        inspect_report("no-such-model")
    with pytest.raises(ArgumentError, match="model_or_preset"):
        inspect_data(42)
    assert cli_main(["inspect", "nonexistent-xyz"]) == 2
    assert "nonexistent-xyz" in capsys.readouterr().err


HF_20B = {
    "model_type": "gpt_oss", "num_hidden_layers": 24, "num_local_experts": 32, "num_experts_per_tok": 4,
    "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880, "head_dim": 64,
    "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 150000, "swiglu_limit": 7.0, "attention_bias": True,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(24)],
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                     "original_max_position_embeddings": 4096, "truncate": False},
    "quantization_config": {"quant_method": "mxfp4"}}
ORIGINAL_20B = {"num_hidden_layers": 24, "num_experts": 32, "experts_per_token": 4, "vocab_size": 201088,
                "hidden_size": 2880, "intermediate_size": 2880, "swiglu_limit": 7.0, "head_dim": 64,
                "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128,
                "initial_context_length": 4096, "rope_theta": 150000, "rope_scaling_factor": 32.0,
                "rope_ntk_alpha": 1.0, "rope_ntk_beta": 32.0}


def test_config_file_folder_and_original_layout(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps(HF_20B))
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 13761264768}, "weight_map": {}}))
    from safetensors.numpy import save_file
    save_file({"a": np.zeros((3, 5), np.float32), "b": np.zeros(7, np.uint8)}, str(tmp_path / "hf" / "x.safetensors"))
    (tmp_path / "orig" / "original").mkdir(parents=True)
    (tmp_path / "orig" / "original" / "config.json").write_text(json.dumps(ORIGINAL_20B))
    params, active, nbytes = oss_params_and_bytes(24, 32)
    for arg in (tmp_path / "hf" / "config.json", tmp_path / "hf", str(tmp_path / "orig"),
                tmp_path / "orig" / "original" / "config.json"):
        d = inspect_data(arg)
        assert (d["parameters"]["total"], d["parameters"]["active"]) == (params, active), arg
        assert d["weights"]["as_released"]["bytes"] == nbytes, arg
        assert d["kv_cache"]["bytes_per_token"]["bf16"] == 49_152
    files = inspect_data(tmp_path / "hf")["source"]["checkpoint_files"]
    assert files == {"index_total_size": 13761264768, "files": 1, "tensors": 2, "tensor_bytes": 3 * 5 * 4 + 7}
    assert "13,761,264,768" in inspect_report(tmp_path / "hf")
    # the same model dequantized (no quantization_config): every parameter bf16
    (tmp_path / "bf16").mkdir()
    (tmp_path / "bf16" / "config.json").write_text(json.dumps({k: v for k, v in HF_20B.items()
                                                                if k != "quantization_config"}))
    assert inspect_data(tmp_path / "bf16")["weights"]["as_released"]["bytes"] == 2 * params
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="bad.json"):
        inspect_data(tmp_path / "bad.json")


def test_mxfp4_rows_pad_to_whole_blocks():
    # input widths not multiples of 32: each row of a matrix takes ceil(in / 32) blocks of 17 bytes
    cfg = ModelConfig(arch="gpt_oss", vocab_size=10, hidden_size=40, num_layers=2, num_heads=2, num_kv_heads=1,
                      head_dim=8, intermediate_size=33, max_position_embeddings=64, activation="swiglu_oss",
                      num_experts=3, experts_per_token=2, mlp_bias=True, extra={"quantization": "mxfp4"})
    rel = inspect_data(cfg)["weights"]["as_released"]
    per_expert = 66 * 2 * 17 + 40 * 2 * 17  # mlp1 [66, 40]: 2 blocks/row; mlp2 [40, 33]: 2 blocks/row
    assert rel["mxfp4_bytes"] == 2 * 3 * per_expert
    assert rel["mxfp4_parameters"] == 2 * 3 * (66 * 40 + 40 * 33)


@given(layers=st.integers(1, 33), kv_heads=st.sampled_from([1, 2, 3]), group=st.integers(1, 4),
       head_dim=st.sampled_from([2, 8, 64, 128]), window=st.one_of(st.none(), st.integers(1, 129)),
       pattern=st.integers(0, 2), max_pos=st.sampled_from([1, 31, 32, 33, 127, 128, 129, 4096, 40000]))
def test_kv_cache_loops(layers, kv_heads, group, head_dim, window, pattern, max_pos):
    if window is None:
        types = ()
    elif pattern == 0:
        types = tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers))
    elif pattern == 1:
        types = ("sliding_attention",) * layers
    else:
        types = ()  # a window with no layer_types: every layer slides (Mistral v0.1 style)
    cfg = ModelConfig(arch="llama", vocab_size=11, hidden_size=16, num_layers=layers, num_heads=kv_heads * group,
                      num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=8, max_position_embeddings=max_pos,
                      sliding_window=window, layer_types=types)
    d = inspect_data(cfg)
    kv = d["kv_cache"]
    per_layer = 2 * kv_heads * head_dim
    assert kv["bytes_per_token"] == {"bf16": layers * per_layer * 2, "fp32": layers * per_layer * 4}
    expect_ctx = sorted({t for t in (4096, 32768) if t < max_pos} | {max_pos})
    assert [c["tokens"] for c in kv["contexts"]] == expect_ctx
    for c in kv["contexts"]:
        T = c["tokens"]
        keep = []
        for i in range(layers):
            slides = window is not None and (pattern != 0 or i % 2 == 0)
            keep.append(min(T, window) if slides else T)
        for tag, size in (("bf16", 2), ("fp32", 4)):
            assert c["full"][tag] == layers * T * per_layer * size
            assert c["windowed"][tag] == sum(keep) * per_layer * size
            assert c["windowed"][tag] <= c["full"][tag]
    total = d["parameters"]["total"]
    assert d["weights"]["fp32"] == 4 * total and d["weights"]["as_released"]["bytes"] == 2 * total
    json.dumps(d)  # JSON-able


def _write_tiny_gguf(path, *, L=2, d=16, H=4, KV=2, I=24, Vocab=32):
    gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'refimpl[gguf]')")
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_block_count(L)
    wr.add_context_length(64)
    wr.add_embedding_length(d)
    wr.add_feed_forward_length(I)
    wr.add_head_count(H)
    wr.add_head_count_kv(KV)
    wr.add_rope_freq_base(10000.0)
    wr.add_layer_norm_rms_eps(1e-6)
    hd = d // H
    shapes = {"token_embd.weight": (Vocab, d), "output_norm.weight": (d,), "output.weight": (Vocab, d)}
    for i in range(L):
        shapes.update({f"blk.{i}.attn_norm.weight": (d,), f"blk.{i}.attn_q.weight": (H * hd, d),
                       f"blk.{i}.attn_k.weight": (KV * hd, d), f"blk.{i}.attn_v.weight": (KV * hd, d),
                       f"blk.{i}.attn_output.weight": (d, H * hd), f"blk.{i}.ffn_norm.weight": (d,),
                       f"blk.{i}.ffn_gate.weight": (I, d), f"blk.{i}.ffn_up.weight": (I, d),
                       f"blk.{i}.ffn_down.weight": (d, I)})
    nbytes = 0
    for name, shape in shapes.items():
        f16 = name.endswith("ffn_up.weight")
        wr.add_tensor(name, np.zeros(shape, np.float16 if f16 else np.float32))
        nbytes += math.prod(shape) * (2 if f16 else 4)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return sum(math.prod(s) for s in shapes.values()), nbytes


def test_gguf_file(tmp_path):
    path = tmp_path / "tiny.gguf"
    elements, nbytes = _write_tiny_gguf(path)
    d = inspect_data(path)
    assert d["source"]["kind"] == "gguf"
    assert d["parameters"]["total"] == elements == d["source"]["tensor_elements"]
    assert d["architecture"]["tie_word_embeddings"] is False  # output.weight present
    assert d["weights"]["as_released"]["bytes"] == nbytes
    assert d["source"]["tensor_types"] == {"F16": 2, "F32": 19}
    assert d["kv_cache"]["bytes_per_token"]["fp32"] == 2 * 2 * 2 * 4 * 4
    assert "tiny.gguf" in inspect_report(path)


def test_smollm2_gguf_if_present():
    from refimpl.fetch import find_smollm2_gguf

    path = find_smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not here (refimpl.fetch.smollm2_gguf_path() downloads it)")
    d = inspect_data(path)
    # HuggingFaceTB/SmolLM2-135M: 30 layers, d 576, 9/3 heads of 64, MLP 1536, vocab 49152, tied
    closed = 30 * (576 * (576 + 2 * 192) + 576 * 576 + 3 * 576 * 1536 + 2 * 576) + 49152 * 576 + 576
    assert d["parameters"]["total"] == closed == d["source"]["tensor_elements"]
    # Q4_1: 20 bytes per 32 values; Q8_0: 34 per 32; F32: 4 per value (ggml block sizes)
    per = {"Q4_1": 20 / 32, "Q8_0": 34 / 32, "F32": 4}
    from refimpl.checkpoints.gguf_reader import read_gguf_raw_tensors
    expect = sum(int(t.n_elements) * per[t.tensor_type.name] for t in read_gguf_raw_tensors(path).values())
    assert d["weights"]["as_released"]["bytes"] == expect
    assert d["kv_cache"]["bytes_per_token"]["bf16"] == 30 * 2 * 3 * 64 * 2
    assert inspect_data("smollm2-135m")["parameters"]["total"] == closed
