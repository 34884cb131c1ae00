"""Tiny models with real tokenizers for the server tests.

byte_tokenizer(): 256 single-byte tokens (id = byte value) + <|im_start|> 256, <|im_end|> 257 (eos).
chatml_model(): a tiny random LLaMA (refimpl.conformance.tiny) over that vocabulary.
scripted_harmony_model(): a tiny gpt-oss over o200k_harmony whose weights are written by hand so
that greedy decoding after "<|start|>assistant" emits HARMONY_SCRIPT (analysis, then final).
"""

import base64
import dataclasses

import numpy as np

from refimpl.api import Model
from refimpl.conformance.tiny import tiny_config, tiny_weights

_NEEDS = {"starlette": "the serve extra is not installed (pip install 'refimpl[serve]')",
          "uvicorn": "the serve extra is not installed (pip install 'refimpl[serve]')",
          "openai": "the openai client is a dev dependency (pip install 'refimpl[dev]')",
          "httpx": "httpx is a dev dependency (pip install 'refimpl[dev]')",
          "regex": "the text extra is not installed (pip install 'refimpl[text]'): the tiny tokenizers need `regex`"}


def require(*modules):
    """Skip the calling test module (with the reason) unless these modules can be imported."""
    import pytest

    for m in modules or tuple(_NEEDS):
        pytest.importorskip(m, reason=_NEEDS[m])


IM_START, IM_END = 256, 257
MODEL_ID = "tiny-chatml"  # the name the test server gives chatml_model()


def byte_tokenizer():
    from refimpl.text.tokenizer import Tokenizer

    ranks = b"".join(base64.b64encode(bytes([b])) + f" {b}\n".encode() for b in range(256))
    return Tokenizer.from_tiktoken_vocab(ranks, {"<|im_start|>": IM_START, "<|im_end|>": IM_END}, pattern="gpt2",
                                         eos_tokens=("<|im_end|>",), name="bytes")


def chatml_model(dtype="float64", max_position_embeddings=512, seed=0):
    cfg = tiny_config("llama", vocab_size=258, max_position_embeddings=max_position_embeddings,
                      eos_token_ids=(IM_END,))
    return Model(cfg, tiny_weights(cfg, seed=seed), byte_tokenizer(), dtype=dtype)


# What the scripted gpt-oss says after "<|start|>assistant" (harmony, openai/harmony's format).
HARMONY_SCRIPT = ("<|channel|>analysis<|message|>Think<|end|><|start|>assistant<|channel|>final"
                  "<|message|>Hi<|return|>")


def scripted_harmony_model(tokenizer):
    """A 2-layer gpt-oss whose greedy continuation of a harmony chat prompt is HARMONY_SCRIPT.

    Residual stream (d = 64): token k of the script has embedding e_k = 4 * unit(k) + unit(62)
    (dim 62 is a constant 1); every other token a small random vector in dims 20..61. Layer 0 and
    both MoE blocks add nothing (zero output weights and biases). Layer 1's attention has q = k = 0,
    so it averages v over the prefix (sinks at -30 take no weight); v reads dim k("Think") and
    o writes it to dim 63: once "Think" has been said, dim 63 > 0.5 for a prefix under ~400
    tokens. The head maps token k to its successor in the script (weight 2000); where a token has
    two successors (<|channel|>, <|message|>) the later one wins only when dim 63 > 0.5 (dim 62
    pays the threshold). The prompt must not contain the token "Think".
    """
    script = tokenizer.encode(HARMONY_SCRIPT, allowed_special="all")
    prompt_end = tokenizer.encode("<|start|>assistant", allowed_special="all")
    seq = prompt_end[-1:] + script
    think = tokenizer.encode("Think", allowed_special="none")[0]
    vocab = sorted(set(seq))
    slot = {t: i for i, t in enumerate(vocab)}
    assert len(vocab) < 20
    seen = seq.index(think)
    nxt = {}  # (token, "Think" said) -> next token
    for i in range(len(seq) - 1):
        key = (seq[i], i >= seen)
        assert nxt.get(key, seq[i + 1]) == seq[i + 1], "the script needs more context than one flag"
        nxt[key] = seq[i + 1]
    V = tokenizer.vocab_size
    cfg = tiny_config("gpt_oss", vocab_size=V, max_position_embeddings=256, eos_token_ids=(
        tokenizer.special_tokens["<|return|>"], tokenizer.special_tokens["<|call|>"]))
    W = tiny_weights(dataclasses.replace(cfg, vocab_size=2), seed=0)  # embeddings and head are set below
    d = cfg.hidden_size
    rng = np.random.default_rng(1)
    emb = np.zeros((V, d))
    emb[:, 20:62] = 0.1 * rng.standard_normal((V, 42))
    for t, k in slot.items():
        emb[t] = 0.0
        emb[t, k] = 4.0
    emb[:, 62] = 1.0
    W["tok_embed"] = emb
    head = np.zeros((V, d))
    A, B = 2000.0, 20.0  # A * 4 beats B * (dim 63 <= 233) on every row
    for (t, flag), n in nxt.items():
        both = (t, not flag) in nxt and nxt[(t, not flag)] != n
        head[n, slot[t]] += A
        if both:
            head[n, 63] += B if flag else -B
            head[n, 62] += -0.5 * B if flag else 0.5 * B
    W["lm_head"] = head
    W["final_norm.weight"] = np.ones(d)
    for L in range(cfg.num_layers):
        p = f"layers.{L}"
        W[f"{p}.attn_norm.weight"] = np.ones(d)
        W[f"{p}.mlp_norm.weight"] = np.ones(d)
        for n in ("q", "k", "v"):
            W[f"{p}.attn.{n}.weight"] = np.zeros_like(W[f"{p}.attn.{n}.weight"])
            W[f"{p}.attn.{n}.bias"] = np.zeros_like(W[f"{p}.attn.{n}.bias"])
        W[f"{p}.attn.o.weight"] = np.zeros_like(W[f"{p}.attn.o.weight"])
        W[f"{p}.attn.o.bias"] = np.zeros(d)
        W[f"{p}.attn.sinks"] = np.full(cfg.num_heads, -30.0)
        W[f"{p}.moe.mlp2.weight"] = np.zeros_like(W[f"{p}.moe.mlp2.weight"])
        W[f"{p}.moe.mlp2.bias"] = np.zeros_like(W[f"{p}.moe.mlp2.bias"])
    # layer 1: v (kv head 0, dim 0) = 30 * 7.76 * [token is "Think"]; o writes head 0, dim 0 to residual dim 63
    W["layers.1.attn.v.weight"][0, slot[think]] = 30.0
    W["layers.1.attn.o.weight"][63, 0] = 1.0
    return Model(cfg, W, tokenizer, dtype="float32")
