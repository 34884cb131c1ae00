"""Bad inputs to layer functions and to a model: every one raises ArgumentError naming the argument
before any arithmetic; NaN/Inf in inputs propagate as IEEE arithmetic and causality say.

The bad-argument matrix calls every public reference op with each array argument replaced by a
string array, an object array, a complex array, a ragged list, a 0-d array, None, a void (raw bytes)
array and a wrong-rank array, and requires ArgumentError whose message starts with that argument's name.
"""

import os
import re
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import canonical_tiny as ct  # noqa: E402

from refimpl import Model  # noqa: E402
from refimpl.errors import ArgumentError  # noqa: E402
from refimpl.ops import attention as _attention_module  # noqa: E402
from refimpl.ops import ops  # noqa: E402
from refimpl.ops.mxfp4 import encode_mxfp4  # noqa: E402

R = np.random.default_rng(0)
F = lambda *s: R.standard_normal(s)  # noqa: E731

BLOCKS, SCALES = encode_mxfp4(F(4, 32))


def _calls():
    """(op name, positional args, keyword args, names of the array arguments to corrupt)."""
    q, k, v = F(3, 4, 8), F(3, 2, 8), F(3, 2, 8)
    return [
        ("embedding", (np.array([0, 2]), F(5, 4)), {}, {0: "ids", 1: "weight"}),
        ("learned_positions", (F(6, 4), 3), {}, {0: "wpe"}),
        ("linear", (F(2, 4), F(3, 4), F(3)), {}, {0: "x", 1: "weight", 2: "bias"}),
        ("layer_norm", (F(2, 4), F(4), F(4)), {}, {0: "x", 1: "weight", 2: "bias"}),
        ("rms_norm", (F(2, 4), F(4)), {}, {0: "x", 1: "weight"}),
        ("gelu", (F(2, 4),), {}, {0: "x"}),
        ("silu", (F(2, 4),), {}, {0: "x"}),
        ("swiglu", (F(2, 4), F(2, 4)), {}, {0: "gate", 1: "up"}),
        ("swiglu_oss", (F(2, 4),), {}, {0: "h"}),
        ("gelu_mlp", (F(2, 4), F(8, 4), F(8), F(4, 8), F(4)), {},
         {0: "x", 1: "fc_weight", 2: "fc_bias", 3: "proj_weight", 4: "proj_bias"}),
        ("swiglu_mlp", (F(2, 4), F(8, 4), F(8, 4), F(4, 8)), {},
         {0: "x", 1: "gate_weight", 2: "up_weight", 3: "down_weight"}),
        ("dropout", (F(2, 4), 0.5), {"rng": np.random.default_rng(0)}, {0: "x"}),
        ("rope_cos_sin", (ops.inv_freq_default(8), np.arange(3)), {}, {0: "inv_freq", 1: "positions"}),
        ("apply_rope", (F(3, 2, 8), *ops.rope_cos_sin(ops.inv_freq_default(8), np.arange(3))), {},
         {0: "x", 1: "cos", 2: "sin"}),
        ("attention", (q, k, v), {}, {0: "q", 1: "k", 2: "v"}),
        ("attention_probs", (q, k), {}, {0: "q", 1: "k"}),
        ("attention_online", (q, k, v), {}, {0: "q", 1: "k", 2: "v"}),
        ("attention_scores", (q, k), {}, {0: "q", 1: "k"}),
        ("softmax_with_sinks", (F(4, 3, 3), F(4)), {}, {0: "scores", 1: "sinks"}),
        ("attention_values", (np.full((4, 3, 3), 1 / 3), v), {}, {0: "probs", 1: "v"}),
        ("router_topk_softmax", (F(3, 4), 2), {}, {0: "logits"}),
        ("router_softmax_topk", (F(3, 4), 2), {}, {0: "logits"}),
        ("expert_choice", (F(3, 4), 2), {}, {0: "logits"}),
        ("load_balancing_loss", (F(3, 4), np.array([[0, 1], [2, 3], [1, 0]]), 4), {},
         {0: "router_logits", 1: "indices"}),
        ("moe_combine", (F(3, 4), F(3, 2), np.array([[0, 1], [1, 2], [2, 0]]), lambda e, r: r), {},
         {0: "x", 1: "weights", 2: "indices"}),
        ("decode_e8m0", (SCALES,), {}, {0: "scales"}),
        ("decode_mxfp4", (BLOCKS, SCALES), {}, {0: "blocks", 1: "scales"}),
        ("encode_mxfp4", (F(4, 32),), {}, {0: "w"}),
        ("mxfp4_linear", (F(2, 32), BLOCKS, SCALES), {}, {0: "x", 1: "blocks", 2: "scales"}),
        ("greedy", (F(5),), {}, {0: "logits"}),
        ("apply_temperature", (F(5), 0.7), {}, {0: "logits"}),
        ("top_k_filter", (F(5), 2), {}, {0: "logits"}),
        ("top_p_filter", (F(5), 0.9), {}, {0: "logits"}),
        ("sample", (F(5),), {"temperature": 1.0, "rng": np.random.default_rng(0)}, {0: "logits"}),
        ("softmax", (F(5),), {}, {0: "x"}),
    ]


BAD = {
    "strings": lambda a: np.full(np.shape(a), "x"),
    "object": lambda a: np.array([None, 1.0], dtype=object),
    "complex": lambda a: np.asarray(a) + 1j if np.asarray(a).dtype.kind == "f" else np.zeros(np.shape(a), complex),
    "ragged": lambda a: [[1.0, 2.0], [3.0]],
    "zero_d": lambda a: np.float64(1.5) if np.asarray(a).dtype.kind == "f" else np.int64(1),
    "none": lambda a: None,
    "void": lambda a: np.zeros(np.shape(a), dtype="V4"),
    "extra_rank": lambda a: np.zeros((2,) * (np.ndim(a) + 3), dtype=np.asarray(a).dtype),
}
# arguments for which a 0-d / extra-rank value is a valid input (elementwise ops, any-shape gathers)
SHAPE_FREE = {("gelu", "x"), ("silu", "x"), ("swiglu", "gate"), ("swiglu", "up"), ("dropout", "x"),
              ("embedding", "ids"), ("decode_e8m0", "scales"), ("swiglu_oss", "h")}
FIXED_RANK = {"weight", "bias", "wpe", "fc_weight", "fc_bias", "proj_weight", "proj_bias", "gate_weight",
              "up_weight", "down_weight", "inv_freq", "positions", "sinks", "k", "v", "indices", "blocks", "scales"}
OPTIONAL = {("linear", "bias"), ("layer_norm", "bias"), ("gelu_mlp", "fc_bias"), ("gelu_mlp", "proj_bias"),
            ("softmax_with_sinks", "sinks")}

def _applies(name, argname, bad):
    if bad == "none" and (name, argname) in OPTIONAL:
        return False  # None is this argument's documented "absent"
    if bad in ("zero_d", "extra_rank") and (name, argname) in SHAPE_FREE:
        return False  # any shape is valid for this argument
    # leading batch dims are valid for activations; a wrong width is named where it is checked
    return bad != "extra_rank" or argname in FIXED_RANK


CASES = [(name, i, argname, bad) for name, args, kw, arrays in _calls() for i, argname in arrays.items()
         for bad in BAD if _applies(name, argname, bad)]


@pytest.mark.parametrize("name, i, argname, bad", CASES, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
def test_bad_argument_matrix(name, i, argname, bad):
    args, kw = next((a, k) for n, a, k, _ in _calls() if n == name)
    args = list(args)
    args[i] = BAD[bad](args[i])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy warning (ComplexWarning, ...) is not an answer either
        with pytest.raises(ArgumentError, match=f"^{argname}") as ei:
            (getattr(ops, name, None) or getattr(_attention_module, name))(*args, **kw)
    assert "expected" in str(ei.value)


def test_int_where_float_expected_is_exact_promotion():
    """Integer arrays stand for their exact values (promoted to float64); bools are refused by ids checks."""
    x = np.array([[1, -2, 3, 4]])
    np.testing.assert_array_equal(ops.linear(x, np.eye(4, dtype=np.int32)), x.astype(np.float64))
    assert ops.rms_norm(x, np.ones(4, np.int64)).dtype == np.float64
    with pytest.raises(ArgumentError, match="^ids"):
        ops.embedding(np.array([True, False]), F(3, 2))
    with pytest.raises(ArgumentError, match="^ids"):
        ops.embedding(np.array([0.0, 1.0]), F(3, 2))


# ------------------------------------------------------------------------------------ models

_MODELS = {}


def model(arch, **over):
    key = (arch, tuple(sorted(over.items())))
    if key not in _MODELS:
        cfg = ct.tiny_config(arch, **over)
        _MODELS[key] = Model(cfg, ct.tiny_weights(cfg), dtype="float64")
    return _MODELS[key]


ARCHS = ("gpt2", "llama", "qwen3", "mistral", "mixtral", "gpt_oss")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("ids, needle", [
    (np.array([], dtype=np.int64), "at least one token"),
    (np.zeros((2, 0), dtype=np.int64), "at least one token"),
    (np.array([0, 97]), r"\[0, 97\).*97 at index \(1,\)"),
    (np.array([[0, 1], [-1, 2]]), r"-1 at index \(1, 0\)"),
    (np.array([1.0, 2.0]), "integer"),
    (np.array([True]), "integer"),
    (np.array(["1"]), "integer"),
    (np.array(3), "shape"),
    (np.zeros((1, 1, 2), dtype=np.int64), "shape"),
    ([[1, 2], [3]], "ids"),
    (None, "ids"),
    (np.array([2 ** 40], dtype=np.int64), "2^40|1099511627776"),
    (np.array([2 ** 64 - 1], dtype=np.uint64), "18446744073709551615"),
])
def test_model_ids_refused_naming_ids(arch, ids, needle):
    with pytest.raises(ArgumentError, match="^ids") as ei:
        model(arch).logits(ids)
    assert re.search(needle, str(ei.value)), str(ei.value)


@pytest.mark.parametrize("arch", ARCHS)
def test_sequence_longer_than_the_context_is_refused(arch):
    """Every model refuses T > max_position_embeddings (learned table or RoPE context) naming ids;
    exactly max_position_embeddings tokens are accepted, also when continuing a KV cache."""
    m = model(arch, max_position_embeddings=8)
    P = m.config.max_position_embeddings
    ids = np.arange(P + 1) % m.config.vocab_size
    with pytest.raises(ArgumentError, match=f"^ids.*at most {P} positions.*found {P + 1}"):
        m.logits(ids)
    assert m.logits(ids[:P]).shape == (P, m.config.vocab_size)
    from refimpl.model import forward
    cache = m.new_cache()
    forward(m.config, m.weights, ids[:P - 1], cache=cache, dtype=m.dtype)
    with pytest.raises(ArgumentError, match="^ids"):
        forward(m.config, m.weights, ids[:2], cache=cache, dtype=m.dtype)


@pytest.mark.parametrize("arch", ARCHS)
def test_nan_and_inf_in_one_token_reach_only_it_and_later_positions(arch):
    """A NaN (or +inf) in token t's embedding row: logits at positions < t are bit-identical to the clean
    run (causal attention never reads later keys; masked keys contribute exact zeros, not 0*NaN), and
    logits at position t are NaN. Later positions read t's value through attention: NaN too (softmax
    weights of a NaN score are NaN), except where a sliding window no longer covers t."""
    m = model(arch)
    T, t = 7, 3
    ids = np.array([5, 6, 7, 8, 9, 10, 11])
    clean = m.logits(ids)
    for bad in (np.nan, np.inf):
        W = dict(m.weights)
        row = W["tok_embed"][ids[t]].copy()
        row[0] = bad
        W["tok_embed"] = W["tok_embed"].copy()
        W["tok_embed"][ids[t]] = row
        if m.config.tie_word_embeddings:
            W["lm_head"] = W["tok_embed"]
            continue  # a tied head puts the NaN row into every position's logits (column ids[t])
        out = Model.__new__(Model)
        out.__dict__.update(m.__dict__, weights=W)
        got = out.logits(ids)
        if m.config.num_experts:
            # MoE: each expert multiplies the rows routed to it as one matrix; the NaN token changes
            # which rows share an expert, and BLAS may round a row differently in a matrix of
            # another height, so earlier positions agree to float64 rounding, not bit for bit.
            np.testing.assert_allclose(got[:t], clean[:t], rtol=1e-12, atol=1e-13)
        else:
            np.testing.assert_array_equal(got[:t], clean[:t])
        assert np.isnan(got[t]).all()
        for s in range(t + 1, T):
            assert np.isnan(got[s]).any(), (arch, bad, s)


def test_tied_head_nan_row_shows_in_its_column_only_before_t():
    """With a tied head, the NaN row is also a column of every position's logits: positions before t are
    clean except that one column."""
    m = model("gpt2")
    ids = np.array([5, 6, 7, 8])
    W = dict(m.weights)
    W["tok_embed"] = W["tok_embed"].copy()
    W["tok_embed"][7, 0] = np.nan
    W["lm_head"] = W["tok_embed"]
    out = Model.__new__(Model)
    out.__dict__.update(m.__dict__, weights=W)
    got, clean = out.logits(ids), m.logits(ids)
    assert np.isnan(got[:2, 7]).all()
    np.testing.assert_array_equal(np.delete(got[:2], 7, axis=1), np.delete(clean[:2], 7, axis=1))


@given(st.lists(st.integers(-5, 200), min_size=0, max_size=12))
def test_any_id_list_gives_logits_or_argument_error(ids):
    """Arbitrary integer lists: in-vocab non-empty lists give finite logits, anything else ArgumentError."""
    m = model("llama")
    ok = 0 < len(ids) <= m.config.max_position_embeddings and all(0 <= i < m.config.vocab_size for i in ids)
    if ok:
        assert np.isfinite(m.logits(np.array(ids, dtype=np.int64))).all()
    else:
        with pytest.raises(ArgumentError, match="^ids"):
            m.logits(np.array(ids, dtype=np.int64))


def test_generate_rejects_bad_arguments_by_name():
    m = model("llama")
    for kw, name in (({"max_new_tokens": -1}, "max_new_tokens"), ({"temperature": -0.5}, "temperature"),
                     ({"temperature": float("nan")}, "temperature"), ({"top_k": 0, "temperature": 1.0}, "top_k"),
                     ({"top_p": 1.5, "temperature": 1.0}, "top_p")):
        with pytest.raises(ArgumentError, match=f"^{name}"):
            m.generate(np.array([1, 2]), seed=0, **kw)
    with pytest.raises(ArgumentError, match="^ids"):
        m.generate(np.array([[1, 2]]))
