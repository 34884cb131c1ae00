"""fuse_projections: q/k/v and gate/up stacked at load give the same logits as the separate matrices."""

import numpy as np
import pytest
from canonical_tiny import tiny_config, tiny_weights

from refimpl.model import KVCache, forward, fuse_projections, prepare_weights

ARCHS = ("gpt2", "llama", "qwen3", "mistral", "mixtral", "gpt_oss")


def _run(cfg, w, ids, dtype):
    cache = KVCache(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim)
    first = forward(cfg, w, ids[:-2], cache=cache, dtype=dtype)  # prefill, then two cached steps
    rest = [forward(cfg, w, ids[i:i + 1], cache=cache, dtype=dtype) for i in (len(ids) - 2, len(ids) - 1)]
    return np.concatenate([first] + rest)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_fused_weights_give_the_separate_products(arch, dtype):
    cfg = tiny_config(arch)
    w = tiny_weights(cfg)
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, 9)
    plain = prepare_weights(cfg, w, dtype)
    fused = prepare_weights(cfg, w, dtype, fuse=True)
    assert "layers.0.attn.qkv.weight" in fused and "layers.0.attn.q.weight" not in fused
    dense_swiglu = not cfg.num_experts and cfg.activation == "swiglu"
    assert ("layers.1.mlp.gate_up.weight" in fused) == dense_swiglu
    a, b = _run(cfg, plain, ids, dtype), _run(cfg, fused, ids, dtype)
    # the same dot products; only BLAS's blocking over the stacked rows may reorder a sum
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 if dtype == "float64" else 1e-5)


def test_stacked_rows_and_biases_are_the_parts_in_order():
    cfg = tiny_config("gpt_oss")  # q/k/v with biases
    w = tiny_weights(cfg)
    f = fuse_projections(cfg, w)
    p = "layers.1.attn."
    np.testing.assert_array_equal(f[p + "qkv.weight"], np.concatenate([w[p + n + ".weight"] for n in "qkv"]))
    np.testing.assert_array_equal(f[p + "qkv.bias"], np.concatenate([w[p + n + ".bias"] for n in "qkv"]))


def test_parts_that_differ_stay_separate():
    cfg = tiny_config("llama")
    w = dict(tiny_weights(cfg))
    w["layers.0.attn.k.weight"] = w["layers.0.attn.k.weight"].astype(np.float32)  # another dtype: not stacked
    w["layers.1.attn.q.bias"] = np.zeros(cfg.num_heads * cfg.head_dim)  # a bias on q only
    f = fuse_projections(cfg, w)
    assert "layers.0.attn.qkv.weight" not in f and "layers.0.attn.q.weight" in f
    assert "layers.1.attn.qkv.weight" not in f and "layers.1.attn.q.bias" in f
    assert "layers.0.mlp.gate_up.weight" in f
