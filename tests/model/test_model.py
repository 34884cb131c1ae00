"""Invariants of the composed forward pass on tiny random models of every architecture.

Each check compares two different computations of the same quantity (cached vs full,
batched vs single, packed vs dense experts, trace vs logits), so none relies on a value
the code under test produced as its own expectation.
"""

import dataclasses

import numpy as np
import pytest

from canonical_tiny import tiny_config, tiny_weights
from refimpl import ArgumentError
from refimpl.api import Model
from refimpl.model import forward
from refimpl.ops.mxfp4 import decode_mxfp4

ARCHS = ["gpt2", "llama", "qwen3", "mistral", "mixtral", "gpt_oss"]
# float64 vs float64 along two orders of summation (cached decode, batching): the
# logits are O(10) and every op is backward stable, so 1e-10 absolute is ~1e5 ulps of room.
TOL64 = 1e-10


def model(arch, dtype="float64", **over):
    cfg = tiny_config(arch, **over)
    return Model(cfg, tiny_weights(cfg), dtype=dtype)


def ids_for(m, T, seed=1):
    return np.random.default_rng(seed).integers(0, m.config.vocab_size, T)


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_decode_equals_full_forward(arch):
    m = model(arch)
    ids = ids_for(m, 13)
    full = m.logits(ids)
    cache = m.new_cache()
    parts = [forward(m.config, m.weights, ids[:5], cache=cache, dtype="float64")]
    for t in range(5, 13):
        parts.append(forward(m.config, m.weights, ids[t:t + 1], cache=cache, dtype="float64"))
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=0, atol=TOL64)
    assert cache.position == 13


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_of_one_equals_batched(arch):
    m = model(arch)
    batch = np.stack([ids_for(m, 9, s) for s in range(3)])  # [3, 9]
    out = m.logits(batch)
    assert out.shape == (3, 9, m.config.vocab_size)
    for b in range(3):
        np.testing.assert_allclose(out[b], m.logits(batch[b]), rtol=0, atol=TOL64)


@pytest.mark.parametrize("arch", ARCHS)
def test_causality_prefix_logits_do_not_see_the_future(arch):
    m = model(arch)
    ids = ids_for(m, 10)
    other = ids.copy()
    other[7:] = (other[7:] + 1) % m.config.vocab_size
    np.testing.assert_allclose(m.logits(ids)[:7], m.logits(other)[:7], rtol=0, atol=TOL64)


@pytest.mark.parametrize("arch", ARCHS)
def test_trace_names_and_consistency(arch):
    m = model(arch)
    ids = ids_for(m, 6)
    tr = m.trace(ids)
    names = list(tr)
    assert names[0] == "embed" and names[-2:] == ["final_norm", "logits"]
    for L in range(m.config.num_layers):
        for n in ("attn.q", "attn.k", "attn.v", "attn.probs", "attn.out", "resid_mid", "mlp.out", "out"):
            assert f"layers.{L}.{n}" in tr, f"layers.{L}.{n} missing"
        if m.config.num_experts:
            for n in ("router_logits", "experts", "expert_weights"):
                assert f"layers.{L}.moe.{n}" in tr
    np.testing.assert_array_equal(tr["logits"], m.logits(ids))
    # the residual stream adds up: out = resid_mid + mlp.out for pre-norm blocks
    L = m.config.num_layers - 1
    np.testing.assert_allclose(tr[f"layers.{L}.out"], tr[f"layers.{L}.resid_mid"] + tr[f"layers.{L}.mlp.out"],
                               rtol=0, atol=1e-12)
    probs = tr["layers.0.attn.probs"]
    assert probs.shape == (m.config.num_heads, 6, 6)
    assert np.all(np.triu(probs, 1) == 0), "a query attended to a later key"
    sums = probs.sum(-1)
    if m.config.attention_sinks:
        assert np.all(sums < 1)
    else:
        np.testing.assert_allclose(sums, 1, rtol=0, atol=1e-12)


def test_sliding_window_layer_masks_beyond_window():
    m = model("gpt_oss")
    tr = m.trace(ids_for(m, 10))
    p0, p1 = tr["layers.0.attn.probs"], tr["layers.1.attn.probs"]  # layer 0 sliding (window 4), 1 full
    i, j = np.indices((10, 10))
    assert np.all(p0[:, i - j >= 4] == 0)
    assert np.all(p0[:, (i - j < 4) & (j <= i)] > 0)
    assert np.all(p1[:, j <= i] > 0)


def test_window_at_least_length_equals_no_window():
    a = model("mistral", sliding_window=12)
    b = model("llama")
    ids = ids_for(a, 12)
    np.testing.assert_array_equal(a.logits(ids), b.logits(ids))
    c = model("mistral", sliding_window=11)
    assert np.abs(c.logits(ids)[-1] - b.logits(ids)[-1]).max() > 1e-6


def test_gpt_oss_mxfp4_experts_equal_their_dense_decoding():
    cfg = tiny_config("gpt_oss")
    packed = tiny_weights(cfg, mxfp4=True)
    dense = {k: v for k, v in packed.items() if not k.endswith((".blocks", ".scales"))}
    for L in range(cfg.num_layers):
        for n in ("mlp1", "mlp2"):
            p = f"layers.{L}.moe.{n}"
            dense[p + ".weight"] = decode_mxfp4(packed[p + ".blocks"], packed[p + ".scales"], dtype=np.float64)
    ids = np.arange(11) % cfg.vocab_size
    a = Model(cfg, packed, dtype="float64").logits(ids)
    b = Model(cfg, dense, dtype="float64").logits(ids)
    np.testing.assert_array_equal(a, b)


def test_sinks_at_minus_inf_equal_no_sinks():
    cfg = tiny_config("gpt_oss")
    W = tiny_weights(cfg)
    W_inf = dict(W)
    for L in range(cfg.num_layers):
        W_inf[f"layers.{L}.attn.sinks"] = np.full(cfg.num_heads, -np.inf)
    no_sinks = dataclasses.replace(cfg, attention_sinks=False)
    ids = np.arange(9)
    np.testing.assert_array_equal(Model(cfg, W_inf, dtype="float64").logits(ids),
                                  Model(no_sinks, W, dtype="float64").logits(ids))


@pytest.mark.parametrize("arch", ["llama", "gpt_oss", "gpt2"])
def test_precision_modes_agree_within_their_rounding(arch):
    ids = np.arange(8) % 97
    ref = model(arch, "float64").logits(ids)
    f32 = model(arch, "float32").logits(ids)
    bf = model(arch, "bfloat16").logits(ids)
    assert f32.dtype == np.float32 and ref.dtype == np.float64
    scale = np.abs(ref).max()
    # float32 carries ~2^-24 per op over a 2-layer model: 1e-5 relative to the logit scale is loose.
    assert np.abs(f32 - ref).max() < 1e-5 * scale
    # bf16 storage rounds at 2^-9 relative per op; a few dozen roundings stay below 10%.
    err = np.abs(bf - ref).max()
    assert err < 0.1 * scale
    assert err > 1e-5 * scale, "the bfloat16 dtype rounded nothing"


@pytest.mark.parametrize("arch", ["llama", "gpt_oss"])
def test_greedy_generate_equals_argmax_of_full_forward(arch):
    m = model(arch)
    prompt = ids_for(m, 5)
    new = m.generate(prompt, max_new_tokens=6, stop_ids=())
    seq = list(prompt)
    for t in new:
        assert t == int(np.argmax(m.logits(np.array(seq))[-1]))
        seq.append(t)
    assert len(new) == 6


def test_generate_stops_at_stop_id_and_sampling_is_seeded():
    m = model("llama")
    prompt = ids_for(m, 4)
    first = m.generate(prompt, max_new_tokens=3, stop_ids=())[0]
    assert m.generate(prompt, max_new_tokens=10, stop_ids=(first,)) == [first]
    a = m.generate(prompt, max_new_tokens=8, temperature=1.0, seed=7, stop_ids=())
    b = m.generate(prompt, max_new_tokens=8, temperature=1.0, seed=7, stop_ids=())
    assert a == b


@pytest.mark.parametrize("bad, match", [
    (np.array([0, 97]), "ids"), (np.array([-1]), "ids"), (np.array([], dtype=np.int64), "ids"),
    (np.zeros((1, 1, 2), dtype=np.int64), "ids"), (np.array([0.5, 1.0]), "ids"),
])
def test_bad_ids_raise(bad, match):
    with pytest.raises(ArgumentError, match=match):
        model("llama").logits(bad)


def test_learned_positions_beyond_table_raise():
    m = model("gpt2")
    with pytest.raises(ArgumentError, match="positions"):
        m.logits(np.zeros(m.config.max_position_embeddings + 1, dtype=np.int64))


@pytest.mark.parametrize("arch, packed", [("llama", ("gate",)), ("llama", ("up", "down")), ("gpt2", ("fc",)),
                                          ("gpt2", ("proj",))])
def test_mlps_with_some_matrices_packed_and_some_dense(arch, packed):
    """A GGUF file may mix types: an MLP whose matrices are partly packed GGUF runs each product on its
    own kind, with the values of the same matrices dequantized (gguf's own routine) and dense."""
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'refimpl[gguf]')")
    from refimpl.ops.quant import PackedGGUF

    cfg = tiny_config(arch)
    w = {k: np.asarray(v) for k, v in tiny_weights(cfg).items()}
    dense = dict(w)
    for L in range(cfg.num_layers):
        for name in packed:
            key = f"layers.{L}.mlp.{name}.weight"
            raw = gguf.quants.quantize(w[key].astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            w[key] = PackedGGUF(raw, "Q8_0", w[key].shape)
            dense[key] = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0).reshape(w[key].shape)
    ids = np.array([3, 1, 4, 1, 5])
    got, want = Model(cfg, w, dtype="float64").logits(ids), Model(cfg, dense, dtype="float64").logits(ids)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
