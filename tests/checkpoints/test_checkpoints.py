"""Safetensors reader/writer and checkpoint layouts -> canonical weights.

Expected values come from the written tensors and hand-written statements of each layout
(helpers_tiny.file_shapes, the slicing below), never from refimpl.checkpoints.layouts itself.
Comparisons are exact: loading only renames, slices and transposes stored bytes.
"""

import json
import os
import shutil
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, strategies as st
from safetensors.numpy import load_file as st_load, save_file as st_save

import helpers_tiny as tiny  # noqa: E402

from refimpl.checkpoints.layouts import canonical_shapes, detect_layout, load_weights, to_canonical  # noqa: E402
from refimpl.checkpoints.safetensors_io import (  # noqa: E402
    DTYPES, open_checkpoint_dir, open_safetensors, save_safetensors)
from refimpl.checkpoints.config_files import config_from_hf, load_config  # noqa: E402
from refimpl.errors import CheckpointError  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)


def same(a, b):
    """Exact equality of values, dtype and shape (bit-level via bytes for float kinds)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------------ safetensors format

DTYPE_CHOICES = [np.float32, np.float64, np.float16, BF16, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                 np.uint32, np.int64, np.uint64, np.bool_, np.dtype(ml_dtypes.float8_e4m3fn),
                 np.dtype(ml_dtypes.float8_e5m2)]

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3)


@st.composite
def tensor_dicts(draw):
    n = draw(st.integers(0, 4))
    out = {}
    for i in range(n):
        shape = tuple(draw(shapes))
        dt = np.dtype(draw(st.sampled_from(DTYPE_CHOICES)))
        raw = draw(st.binary(min_size=int(np.prod(shape)) * dt.itemsize, max_size=int(np.prod(shape)) * dt.itemsize))
        a = np.frombuffer(raw, dtype=np.uint8).view(dt).reshape(shape) if raw else np.zeros(shape, dt)
        if dt == np.bool_:
            a = np.asarray(a.view(np.uint8) % 2 == 1)
        out[draw(st.sampled_from(["a", "b.weight", "model.layers.0.x", "z" * 3, "é"])) + str(i)] = a
    return out


@given(tensor_dicts())
def test_roundtrip_ours_against_safetensors_package(tmp_path_factory, tensors):
    d = tmp_path_factory.mktemp("rt")
    ours, theirs = str(d / "ours.safetensors"), str(d / "theirs.safetensors")
    save_safetensors(ours, tensors, metadata={"k": "v"})
    # the safetensors package's NumPy API has no float8 dtypes: cross-check the others with it
    pkg = not any(a.dtype.name.startswith("float8") for a in tensors.values())
    if pkg:
        back = st_load(ours)  # the package reads what we write
        assert set(back) == set(tensors)
        assert all(same(back[n], tensors[n]) for n in tensors)
    if tensors and pkg:
        st_save(tensors, theirs, metadata={"k": "v"})
        f = open_safetensors(theirs)  # we read what the package writes
        assert set(f) == set(tensors) and f.metadata == {"k": "v"}
        assert all(same(f[n], tensors[n]) for n in tensors)
    f = open_safetensors(ours)
    assert set(f) == set(tensors) and f.metadata == {"k": "v"}
    assert all(same(f[n], tensors[n]) for n in tensors)


def test_arrays_are_read_only_memmaps_and_bf16_is_known(tmp_path):
    p = str(tmp_path / "x.safetensors")
    w = np.arange(12, dtype=np.float32).reshape(3, 4).astype(BF16)
    save_safetensors(p, {"w": w})
    a = open_safetensors(p)["w"]
    assert a.dtype == BF16 and a.shape == (3, 4)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1
    assert isinstance(a.base, np.ndarray) or isinstance(a.base, np.memmap) or a.base is not None
    assert np.array_equal(a.astype(np.float32), np.arange(12, dtype=np.float32).reshape(3, 4))


def test_header_is_8_byte_aligned_and_offsets_contiguous(tmp_path):
    p = str(tmp_path / "x.safetensors")
    save_safetensors(p, {"b": np.ones(3, np.float32), "a": np.zeros((2, 2), np.float64)})
    raw = open(p, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0
    head = json.loads(raw[8:8 + n])
    assert head["a"]["data_offsets"] == [0, 32] and head["b"]["data_offsets"] == [32, 44]
    assert len(raw) == 8 + n + 44


def _raw_file(path, header, data=b"", n=None):
    body = json.dumps(header).encode() if not isinstance(header, bytes) else header
    with open(path, "wb") as f:
        f.write((len(body) if n is None else n).to_bytes(8, "little") + body + data)
    return str(path)


F32 = lambda shape, lo, hi: {"dtype": "F32", "shape": shape, "data_offsets": [lo, hi]}  # noqa: E731


@pytest.mark.parametrize("case, header, data, n, needle", [
    ("short", None, b"", None, "at least 8"),
    ("header_len_past_file", {"w": F32([1], 0, 4)}, b"\0" * 4, 10_000, "header length"),
    ("header_len_huge", {"w": F32([1], 0, 4)}, b"\0" * 4, 2 ** 60, "header length"),
    ("garbage_header", b"\x00\xff not json", b"", None, "header"),
    ("header_not_object", [1, 2, 3], b"", None, "JSON object"),
    ("duplicate_key", b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                      b'"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, None, "duplicate"),
    ("unknown_dtype", {"w": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "'w'.*dtype"),
    ("offsets_past_end", {"w": F32([4], 0, 16)}, b"\0" * 8, None, "'w'.*past the end"),
    ("bytes_vs_shape", {"w": F32([3], 0, 8)}, b"\0" * 8, None, "'w'.*byte count: expected 12"),
    ("overlap", {"a": F32([2], 0, 8), "b": F32([1], 4, 8)}, b"\0" * 8, None, "'b'.*overlap.*'a'"),
    ("gap", {"a": F32([1], 0, 4), "b": F32([1], 8, 12)}, b"\0" * 12, None, "'b'.*gap"),
    ("trailing", {"a": F32([1], 0, 4)}, b"\0" * 8, None, "trailing"),
    ("begin_after_end", {"a": F32([0], 4, 0)}, b"\0" * 4, None, "'a'.*begin <= end"),
    ("negative_shape", {"a": F32([-1], 0, 0)}, b"", None, "'a'.*shape"),
    ("bool_shape", {"a": F32([True], 0, 4)}, b"\0" * 4, None, "'a'.*shape"),
    ("float_offsets", {"a": F32([1], 0, 4.0)}, b"\0" * 4, None, "'a'.*data_offsets"),
    ("extra_key", {"a": {**F32([1], 0, 4), "x": 1}}, b"\0" * 4, None, "'a'.*keys"),
    ("entry_not_object", {"a": 3}, b"", None, "'a'"),
    ("bad_metadata", {"__metadata__": {"k": 1}, "a": F32([1], 0, 4)}, b"\0" * 4, None, "__metadata__"),
])
def test_corrupt_file_raises_checkpoint_error_naming_file_and_tensor(tmp_path, case, header, data, n, needle):
    p = str(tmp_path / f"{case}.safetensors")
    if header is None:
        open(p, "wb").write(b"\x01\x02")
    else:
        _raw_file(p, header, data, n)
    with pytest.raises(CheckpointError, match=needle) as ei:
        open_safetensors(p)
    assert p in str(ei.value)


def test_truncated_file_names_the_tensor_cut(tmp_path):
    p = str(tmp_path / "t.safetensors")
    save_safetensors(p, {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)})
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[:-3])
    with pytest.raises(CheckpointError, match=r"'b'.*past the end") as ei:
        open_safetensors(p)
    assert p in str(ei.value)


def test_unreadable_path(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        open_safetensors(str(tmp_path / "nope.safetensors"))


def test_empty_and_zero_size_tensors(tmp_path):
    p = str(tmp_path / "e.safetensors")
    save_safetensors(p, {})
    assert len(open_safetensors(p)) == 0
    save_safetensors(p, {"z": np.zeros((0, 3), np.float32), "a": np.ones(2, np.float32)})
    f = open_safetensors(p)
    assert f["z"].shape == (0, 3) and same(f["a"], np.ones(2, np.float32))


# ------------------------------------------------------------------------------- directories

def test_sharded_equals_single(tmp_path):
    d1, _, t = tiny.make_checkpoint(tmp_path, "llama", shards=1)
    d3, _, _ = tiny.make_checkpoint(tmp_path, "llama", shards=3)
    a, b = open_checkpoint_dir(d1), open_checkpoint_dir(d3)
    assert set(a) == set(b) == set(t)
    assert all(same(a[n], t[n]) and same(b[n], t[n]) for n in t)
    assert len({b.source(n) for n in t}) == 3


def test_missing_shard_names_shard_and_index(tmp_path):
    d, _, _ = tiny.make_checkpoint(tmp_path, "llama", shards=3)
    os.remove(os.path.join(d, "model-00002-of-00003.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json.*model-00002-of-00003"):
        open_checkpoint_dir(d)


def test_index_and_shard_disagree(tmp_path):
    d, _, _ = tiny.make_checkpoint(tmp_path, "llama", shards=2)
    idx = os.path.join(d, "model.safetensors.index.json")
    doc = json.load(open(idx))
    doc["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors"
    json.dump(doc, open(idx, "w"))
    with pytest.raises(CheckpointError, match=r"model-00001-of-00002\.safetensors.*'model\.extra\.weight'.*missing"):
        open_checkpoint_dir(d)
    del doc["weight_map"]["model.extra.weight"]
    moved = "model.norm.weight"
    doc["weight_map"].pop(moved)
    json.dump(doc, open(idx, "w"))
    with pytest.raises(CheckpointError, match=r"'model\.norm\.weight'.*index"):
        open_checkpoint_dir(d)


def test_bad_index_json(tmp_path):
    d, _, _ = tiny.make_checkpoint(tmp_path, "llama", shards=2)
    open(os.path.join(d, "model.safetensors.index.json"), "w").write("{not json")
    with pytest.raises(CheckpointError, match="index.json"):
        open_checkpoint_dir(d)
    open(os.path.join(d, "model.safetensors.index.json"), "w").write('{"weight_map": []}')
    with pytest.raises(CheckpointError, match="weight_map"):
        open_checkpoint_dir(d)


def test_unindexed_files_with_same_tensor_twice(tmp_path):
    save_safetensors(str(tmp_path / "a.safetensors"), {"x": np.ones(2, np.float32)})
    save_safetensors(str(tmp_path / "b.safetensors"), {"x": np.ones(2, np.float32)})
    with pytest.raises(CheckpointError, match=r"'x'.*a\.safetensors.*b\.safetensors"):
        open_checkpoint_dir(str(tmp_path))


def test_empty_dir(tmp_path):
    with pytest.raises(CheckpointError, match="found none"):
        open_checkpoint_dir(str(tmp_path))


# ------------------------------------------------------------------------------ layouts

@pytest.mark.parametrize("kind", ["gpt2", "gpt2_prefixed"])
def test_gpt2_conv1d_transposed_and_c_attn_split(tmp_path, kind):
    d_, c, t = tiny.make_checkpoint(tmp_path, kind)
    cfg, w = load_weights(d_)
    pre = "transformer." if kind == "gpt2_prefixed" else ""
    d = c["n_embd"]
    assert w["tok_embed"] is w["lm_head"]
    assert same(w["tok_embed"], t[pre + "wte.weight"]) and same(w["pos_embed"], t[pre + "wpe.weight"])
    for L in range(c["n_layer"]):
        h = f"{pre}h.{L}."
        ca, cb = t[h + "attn.c_attn.weight"], t[h + "attn.c_attn.bias"]
        # column block 0/1/2 of the [in, out] Conv1D weight is q/k/v; each becomes [out, in]
        for i, n in enumerate("qkv"):
            col = np.array([[ca[r, i * d + o] for r in range(d)] for o in range(d)], dtype=ca.dtype)
            assert same(w[f"layers.{L}.attn.{n}.weight"], col)
            assert same(w[f"layers.{L}.attn.{n}.bias"], cb[i * d:(i + 1) * d])
        assert same(w[f"layers.{L}.attn.o.weight"], np.ascontiguousarray(t[h + "attn.c_proj.weight"].T))
        assert same(w[f"layers.{L}.mlp.fc.weight"], np.ascontiguousarray(t[h + "mlp.c_fc.weight"].T))
        assert w[f"layers.{L}.mlp.fc.weight"].shape == (4 * d, d)
        assert same(w[f"layers.{L}.mlp.proj.weight"], np.ascontiguousarray(t[h + "mlp.c_proj.weight"].T))
        assert same(w[f"layers.{L}.attn_norm.bias"], t[h + "ln_1.bias"])
        assert same(w[f"layers.{L}.mlp_norm.weight"], t[h + "ln_2.weight"])
    assert same(w["final_norm.bias"], t[pre + "ln_f.bias"])


def test_gpt2_known_ignorable_buffers_and_tied_head(tmp_path):
    d_, c, t = tiny.make_checkpoint(tmp_path, "gpt2")
    cfg = load_config(d_)
    extra = dict(t)
    extra["h.0.attn.bias"] = np.tril(np.ones((1, 1, 33, 33), np.float32))
    extra["h.1.attn.masked_bias"] = np.array(-1e4, np.float32)
    extra["lm_head.weight"] = t["wte.weight"]
    w = to_canonical(cfg, extra)
    assert w["lm_head"] is w["tok_embed"]
    extra["lm_head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError, match=r"'lm_head\.weight'.*shape"):
        to_canonical(cfg, extra)


def _check_attn_hf(w, t, L, *, bias=False, qk_norm=False, o_bias=False):
    m = f"model.layers.{L}."
    for n in "qkv":
        assert same(w[f"layers.{L}.attn.{n}.weight"], t[m + f"self_attn.{n}_proj.weight"])
        assert (f"layers.{L}.attn.{n}.bias" in w) == bias
        if bias:
            assert same(w[f"layers.{L}.attn.{n}.bias"], t[m + f"self_attn.{n}_proj.bias"])
    assert same(w[f"layers.{L}.attn.o.weight"], t[m + "self_attn.o_proj.weight"])
    assert (f"layers.{L}.attn.o.bias" in w) == o_bias
    assert (f"layers.{L}.attn.q_norm.weight" in w) == qk_norm
    if qk_norm:
        assert same(w[f"layers.{L}.attn.k_norm.weight"], t[m + "self_attn.k_norm.weight"])
    assert same(w[f"layers.{L}.attn_norm.weight"], t[m + "input_layernorm.weight"])
    assert same(w[f"layers.{L}.mlp_norm.weight"], t[m + "post_attention_layernorm.weight"])


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "qwen3"])
def test_llama_family(tmp_path, kind):
    d_, c, t = tiny.make_checkpoint(tmp_path, kind, dtype=BF16)
    cfg, w = load_weights(d_)
    assert cfg.arch == "llama"
    for L in range(c["num_hidden_layers"]):
        _check_attn_hf(w, t, L, bias=kind == "qwen2", qk_norm=kind == "qwen3")
        for n in ("gate", "up", "down"):
            assert same(w[f"layers.{L}.mlp.{n}.weight"], t[f"model.layers.{L}.mlp.{n}_proj.weight"])
    assert same(w["tok_embed"], t["model.embed_tokens.weight"]) and same(w["final_norm.weight"], t["model.norm.weight"])
    if kind == "qwen3":
        assert w["lm_head"] is w["tok_embed"]
    else:
        assert same(w["lm_head"], t["lm_head.weight"])
    assert w["tok_embed"].dtype == BF16 and not w["tok_embed"].flags.writeable


@pytest.mark.parametrize("kind", ["mixtral", "mixtral_fused"])
def test_mixtral_experts_stacked(tmp_path, kind):
    d_, c, t = tiny.make_checkpoint(tmp_path, kind)
    cfg, w = load_weights(d_)
    E, I = c["num_local_experts"], c["intermediate_size"]
    assert cfg.arch == "mixtral" and cfg.router == "softmax_topk"
    for L in range(c["num_hidden_layers"]):
        m = f"model.layers.{L}."
        _check_attn_hf(w, t, L)
        g, u, dn = (w[f"layers.{L}.moe.{n}.weight"] for n in ("gate", "up", "down"))
        assert g.shape == u.shape == (E, I, c["hidden_size"]) and dn.shape == (E, c["hidden_size"], I)
        for e in range(E):
            if kind == "mixtral":
                x = m + f"block_sparse_moe.experts.{e}."
                assert same(g[e], t[x + "w1.weight"]) and same(u[e], t[x + "w3.weight"])
                assert same(dn[e], t[x + "w2.weight"])
            else:
                gu = t[m + "mlp.experts.gate_up_proj"][e]
                assert same(g[e], gu[:I]) and same(u[e], gu[I:])
                assert same(dn[e], t[m + "mlp.experts.down_proj"][e])
        router = t[m + ("block_sparse_moe.gate.weight" if kind == "mixtral" else "mlp.gate.weight")]
        assert same(w[f"layers.{L}.moe.router.weight"], router)


def test_gpt_oss_hf_mxfp4_stays_packed(tmp_path):
    d_, c, t = tiny.make_checkpoint(tmp_path, "gpt_oss_hf_mxfp4", dtype=BF16)
    cfg, w = load_weights(d_)
    assert cfg.arch == "gpt_oss"
    for L in range(c["num_hidden_layers"]):
        x = f"model.layers.{L}.mlp.experts."
        _check_attn_hf(w, t, L, bias=True, o_bias=True)
        assert same(w[f"layers.{L}.attn.sinks"], t[f"model.layers.{L}.self_attn.sinks"])
        for canon, src in (("mlp1.blocks", "gate_up_proj_blocks"), ("mlp1.scales", "gate_up_proj_scales"),
                           ("mlp1.bias", "gate_up_proj_bias"), ("mlp2.blocks", "down_proj_blocks"),
                           ("mlp2.scales", "down_proj_scales"), ("mlp2.bias", "down_proj_bias")):
            a = w[f"layers.{L}.moe.{canon}"]
            assert same(a, t[x + src]) and not a.flags.writeable
        assert w[f"layers.{L}.moe.mlp1.blocks"].dtype == np.uint8
        assert same(w[f"layers.{L}.moe.router.bias"], t[f"model.layers.{L}.mlp.router.bias"])


def test_gpt_oss_hf_dense_transposed_to_out_in(tmp_path):
    d_, c, t = tiny.make_checkpoint(tmp_path, "gpt_oss_hf_dense")
    cfg, w = load_weights(d_)
    E, I, d = c["num_local_experts"], c["intermediate_size"], c["hidden_size"]
    for L in range(c["num_hidden_layers"]):
        x = f"model.layers.{L}.mlp.experts."
        m1, m2 = w[f"layers.{L}.moe.mlp1.weight"], w[f"layers.{L}.moe.mlp2.weight"]
        assert m1.shape == (E, 2 * I, d) and m2.shape == (E, d, I)
        for e in (0, E - 1):
            # HF computes x @ W[e] with W[e] [in, out]; canonical W'[e] @ x needs W'[e][o, i] = W[e][i, o]
            for o, i in ((0, 0), (2 * I - 1, d - 1), (5, 7)):
                assert m1[e, o, i] == t[x + "gate_up_proj"][e, i, o]
            for o, i in ((0, 0), (d - 1, I - 1), (3, 9)):
                assert m2[e, o, i] == t[x + "down_proj"][e, i, o]


def test_gpt_oss_original_qkv_split_and_agrees_with_hf(tmp_path):
    d_, c, t = tiny.make_checkpoint(tmp_path, "gpt_oss_original", dtype=BF16)
    cfg, w = load_weights(d_)  # only original/ holds weights: detected
    T = tiny.GPT_OSS_TINY
    q, k = T["heads"] * T["head_dim"], T["kv"] * T["head_dim"]
    for L in range(T["layers"]):
        qkv = t[f"block.{L}.attn.qkv.weight"]
        assert same(w[f"layers.{L}.attn.q.weight"], qkv[0:q])
        assert same(w[f"layers.{L}.attn.k.weight"], qkv[q:q + k])
        assert same(w[f"layers.{L}.attn.v.weight"], qkv[q + k:q + 2 * k])
        assert same(w[f"layers.{L}.attn.v.bias"], t[f"block.{L}.attn.qkv.bias"][q + k:])
        assert same(w[f"layers.{L}.moe.mlp1.blocks"], t[f"block.{L}.mlp.mlp1_weight.blocks"])
        assert same(w[f"layers.{L}.moe.router.weight"], t[f"block.{L}.mlp.gate.weight"])
    assert same(w["lm_head"], t["unembedding.weight"]) and same(w["final_norm.weight"], t["norm.scale"])
    # the same weights in the HF layout (converter renaming) load to the same canonical dict
    hf_dir = str(tmp_path / "hf")
    tiny.write_checkpoint(hf_dir, tiny.gpt_oss_original_to_hf(t), tiny.hf_config("gpt_oss_hf_mxfp4"), shards=2)
    cfg2, w2 = load_weights(hf_dir)
    assert set(w2) == set(w) and all(same(w[n], w2[n]) for n in w)
    # a repo root with both HF shards and original/: the HF files win
    shutil.copytree(os.path.join(d_, "original"), os.path.join(hf_dir, "original"))
    assert load_weights(hf_dir)[0].extra["model_type"] == "gpt_oss"


def test_canonical_layout_roundtrip_and_single_file(tmp_path):
    d_, c, t = tiny.make_checkpoint(tmp_path, "qwen3")
    cfg, w = load_weights(d_)
    p = str(tmp_path / "canon" / "weights.safetensors")
    os.makedirs(os.path.dirname(p))
    save_safetensors(p, {n: a for n, a in w.items() if n != "lm_head"})
    shutil.copy(os.path.join(d_, "config.json"), os.path.dirname(p))
    assert detect_layout(open_safetensors(p)) == "canonical"
    cfg2, w2 = load_weights(p)  # single file, config.json beside it
    assert set(w2) == set(w) and all(same(w[n], w2[n]) for n in w) and w2["lm_head"] is w2["tok_embed"]
    assert set(canonical_shapes(cfg)) == set(w)


# ------------------------------------------------------------------------- layout errors

def _load_modified(tmp_path, kind, edit):
    d_, c, t = tiny.make_checkpoint(tmp_path, kind)
    t = dict(t)
    edit(t)
    tiny.write_checkpoint(d_ if kind != "gpt_oss_original" else os.path.join(d_, "original"), t,
                          tiny.hf_config(kind))
    return d_


@pytest.mark.parametrize("kind, edit, needle", [
    ("llama", lambda t: t.pop("model.layers.1.mlp.down_proj.weight"),
     r"missing tensor.*'model\.layers\.1\.mlp\.down_proj\.weight'.*layers\.1\.mlp\.down\.weight"),
    ("gpt2", lambda t: t.pop("h.0.attn.c_attn.bias"), r"missing tensor.*'h\.0\.attn\.c_attn\.bias'"),
    ("mixtral", lambda t: t.pop("model.layers.0.block_sparse_moe.experts.3.w2.weight"), r"experts\.3\.w2"),
    ("gpt_oss_original", lambda t: t.pop("block.1.attn.sinks"), r"'block\.1\.attn\.sinks'"),
    ("gpt_oss_hf_mxfp4", lambda t: t.pop("model.layers.0.mlp.experts.down_proj_scales"), r"down_proj_scales"),
    ("llama", lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": np.zeros(16, np.float32)}),
     r"model\.safetensors: unexpected tensor.*'model\.layers\.0\.self_attn\.q_proj\.bias'"),
    ("gpt2", lambda t: t.update({"h.2.ln_1.weight": np.zeros(16, np.float32)}), r"unexpected tensor.*'h\.2\.ln_1"),
    ("gpt_oss_original", lambda t: t.update({"block.0.attn.rope.inv_freq": np.zeros(8, np.float32)}),
     r"original.*unexpected tensor.*inv_freq"),
    ("llama", lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((16, 16), np.float32)}),
     r"'model\.layers\.0\.self_attn\.k_proj\.weight': shape: expected \[8, 16\].*found \[16, 16\]"),
    ("gpt2", lambda t: t.update({"h.1.attn.c_attn.weight": np.zeros((48, 16), np.float32)}),
     r"'h\.1\.attn\.c_attn\.weight': shape: expected \[16, 48\].*found \[48, 16\]"),
    ("gpt_oss_hf_mxfp4", lambda t: t.update({"model.layers.1.mlp.experts.gate_up_proj_blocks":
                                                 np.zeros((4, 64, 2, 16), np.float32)}),
     r"gate_up_proj_blocks'.*dtype: expected uint8"),
    ("gpt_oss_hf_dense", lambda t: t.update({"model.layers.1.mlp.experts.down_proj": np.zeros((4, 64, 32), np.float32)}),
     r"'model\.layers\.1\.mlp\.experts\.down_proj': shape: expected \[4, 32, 64\]"),
    ("qwen3", lambda t: t.update({"model.norm.weight": np.zeros(16, np.int32)}), r"'model\.norm\.weight'.*floating"),
])
def test_layout_errors_name_file_and_tensor(tmp_path, kind, edit, needle):
    d_ = _load_modified(tmp_path, kind, edit)
    with pytest.raises(CheckpointError, match=needle) as ei:
        load_weights(d_)
    assert d_ in str(ei.value)


def test_ignorable_rotary_inv_freq(tmp_path):
    d_ = _load_modified(tmp_path, "llama", lambda t: t.update(
        {"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(2, np.float32)}))
    cfg, w = load_weights(d_)
    assert not any("inv_freq" in n for n in w)


def test_config_and_layout_disagree(tmp_path):
    d_, _, t = tiny.make_checkpoint(tmp_path, "gpt2")
    llama_cfg = config_from_hf(tiny.hf_config("llama"))
    with pytest.raises(CheckpointError, match="gpt2_hf.*arch gpt2.*'llama'"):
        load_weights(d_, llama_cfg)
    d2, _, _ = tiny.make_checkpoint(tmp_path, "gpt_oss_original")
    with pytest.raises(CheckpointError, match="gpt_oss_original.*gpt_oss"):
        load_weights(d2, llama_cfg)
    with pytest.raises(CheckpointError, match="known layout"):
        to_canonical(llama_cfg, {"foo": np.zeros(2)})
    with pytest.raises(CheckpointError, match="cfg"):
        to_canonical({"arch": "llama"}, t)


def test_mxfp4_needs_multiples_of_32(tmp_path):
    c = dict(tiny.hf_config("gpt_oss_hf_mxfp4"), intermediate_size=48)
    cfg = config_from_hf(c)
    d_, _, t = tiny.make_checkpoint(tmp_path, "gpt_oss_hf_mxfp4")
    with pytest.raises(CheckpointError, match="intermediate_size must be a multiple of 32, found 48"):
        to_canonical(cfg, open_checkpoint_dir(d_))


def test_load_weights_path_errors(tmp_path):
    with pytest.raises(CheckpointError, match="found nothing"):
        load_weights(str(tmp_path / "missing"))


def test_every_dtype_name_is_readable():
    assert {"BF16", "F32", "F16", "U8", "I64", "F8_E4M3"} <= set(DTYPES)
