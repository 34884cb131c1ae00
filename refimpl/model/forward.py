"""Forward passes composed from the reference ops.

One forward pass serves every architecture in the family; the ModelConfig says
which variant of each layer a model uses (see spec/model.md for the block
diagram of each architecture and spec/trace.md for the names of the traced
intermediates).

    x   = tok_embed[ids] (+ pos_embed[positions] for learned positions)
    per layer L (pre-norm):
        x = x + attn(norm_attn(x))
        x = x + mlp(norm_mlp(x))          mlp: GELU MLP, SwiGLU MLP, or MoE
    per layer L (post-norm, the original Transformer / GPT-1 placement):
        x = norm_attn(x + attn(x)); x = norm_mlp(x + mlp(x))
    logits = lm_head @ final_norm(x)

Precision: every op computes in the mode's compute dtype; in "bfloat16" mode the
output of each op that the bf16 torch reference stores as a bf16 tensor is
rounded to bf16 (spec/precision.md).
"""

import numpy as np

from .. import precision
from .._progress import Progress
from ..errors import ArgumentError
from ..ops import ops as reference_ops
from ..ops.quant import PackedGGUF


def _linear(ops, x, w, bias=None):
    """ops.linear, or ops.gguf_linear when the weight is kept packed (spec/quant.md)."""
    if isinstance(w, PackedGGUF):
        return ops.gguf_linear(x, w.blocks, w.qtype, w.shape, bias)
    return ops.linear(x, w, bias)


def _rounder(mode):
    if mode == "bfloat16":
        return precision.round_bf16
    dt = precision.storage_dtype(mode)
    return lambda a: np.asarray(a, dtype=dt)


def _check_ids(cfg, ids):
    try:
        a = np.asarray(ids)
    except Exception as exc:  # ragged lists
        raise ArgumentError(f"ids: expected integer token ids [T] or [B, T], found {type(ids).__name__} ({exc})") from None
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise ArgumentError(f"ids: expected integer token ids, found dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ArgumentError(f"ids: expected shape [T] or [B, T], found {a.shape}")
    if a.shape[-1] == 0:
        raise ArgumentError("ids: expected at least one token, found an empty sequence")
    bad = (a < 0) | (a >= cfg.vocab_size)  # before any cast: uint64 ids >= 2^63 must not wrap
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise ArgumentError(f"ids: expected ids in [0, {cfg.vocab_size}), found {a[i].item()} at index {i}")
    return a.astype(np.int64)


def rope_tables(cfg, positions, *, ops=reference_ops, angle_dtype=None):
    """cos, sin [.., T, D/2] for absolute positions, with YaRN's concentration folded in.

    angle_dtype: None (rope_cos_sin's default, float64 angles) or np.float32 (the torch references'
    float32 angles, used by "bfloat16" mode)."""
    inv_freq, scaling = ops.rope_frequencies(cfg.head_dim, base=cfg.rope_theta, rope_scaling=cfg.rope_scaling)
    if angle_dtype is None:
        return ops.rope_cos_sin(inv_freq, positions, attention_scaling=scaling)
    return ops.rope_cos_sin(inv_freq, positions, attention_scaling=scaling, angle_dtype=angle_dtype)


def forward(cfg, weights, ids, *, cache=None, mode="float32", trace=None, ops=reference_ops):
    """Logits [.., T, vocab] for token ids [T] or [B, T].

    cache: a KVCache; when given, the ids continue the cached sequence (their
    positions start at cache.position) and their keys and values are appended.
    trace: a dict to fill with the named intermediates of spec/trace.md.
    """
    precision.check_mode(mode)
    ids = _check_ids(cfg, ids)
    R = _rounder(mode)
    W = weights
    T = ids.shape[-1]
    start = cache.position if cache is not None else 0
    if start + T > cfg.max_position_embeddings:  # the learned table's rows, or the RoPE context length
        what = "the learned position table" if cfg.position == "learned" else "max_position_embeddings, the context"
        raise ArgumentError(f"ids: expected at most {cfg.max_position_embeddings} positions ({what}), found "
                            f"{start + T}" + (f" ({start} cached + {T} new)" if start else ""))
    positions = np.arange(start, start + T)  # [T]

    def record(name, value):
        if trace is not None:
            trace[name] = np.asarray(value)

    record.active = trace is not None
    def norm(x, prefix):
        if cfg.norm == "layer":
            return R(ops.layer_norm(x, W[prefix + ".weight"], W[prefix + ".bias"], eps=cfg.norm_eps))
        return R(ops.rms_norm(x, W[prefix + ".weight"], eps=cfg.norm_eps))

    if isinstance(W["tok_embed"], PackedGGUF):
        te = W["tok_embed"]
        x = R(ops.gguf_embedding(ids, te.blocks, te.qtype, te.shape))  # [.., T, d]
    else:
        x = R(ops.embedding(ids, W["tok_embed"]))  # [.., T, d]
    if cfg.position == "learned":
        x = R(x + ops.embedding(positions, W["pos_embed"]))  # [.., T, d]
    record("embed", x)
    bf16 = mode == "bfloat16"
    cos = sin = None
    if cfg.position == "rope":
        if bf16:  # float32 angles, tables rounded to bf16 (spec/precision.md rows 4-5)
            cos, sin = rope_tables(cfg, positions, ops=ops, angle_dtype=np.float32)  # [T, D/2]
            cos, sin = R(cos), R(sin)
        else:
            cos, sin = rope_tables(cfg, positions, ops=ops)  # [T, D/2]

    for L in range(cfg.num_layers):
        p = f"layers.{L}"
        if cfg.norm_placement == "pre":
            h = norm(x, p + ".attn_norm")
            record(p + ".attn_norm", h)
            a = _attention_block(cfg, W, h, L, cos, sin, cache, start, R, record, ops, bf16=bf16)
            x = R(x + a)
            record(p + ".resid_mid", x)
            h = norm(x, p + ".mlp_norm")
            record(p + ".mlp_norm", h)
            m = _mlp_block(cfg, W, h, L, R, record, ops, bf16=bf16)
            x = R(x + m)
        else:
            a = _attention_block(cfg, W, x, L, cos, sin, cache, start, R, record, ops, bf16=bf16)
            x = norm(R(x + a), p + ".attn_norm")
            record(p + ".resid_mid", x)
            m = _mlp_block(cfg, W, x, L, R, record, ops, bf16=bf16)
            x = norm(R(x + m), p + ".mlp_norm")
        record(p + ".out", x)

    x = norm(x, "final_norm")
    record("final_norm", x)
    logits = _linear(ops, x, W["lm_head"])  # [.., T, V]
    logits = R(logits) if mode == "bfloat16" else logits
    record("logits", logits)
    return logits


def _attention_block(cfg, W, h, L, cos, sin, cache, start, R, record, ops, *, bf16=False):
    p = f"layers.{L}.attn"
    Hq, Hkv, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    lead = h.shape[:-1]
    q = R(_linear(ops, h, W[p + ".q.weight"], W.get(p + ".q.bias"))).reshape(*lead, Hq, D)  # [.., T, Hq, D]
    k = R(_linear(ops, h, W[p + ".k.weight"], W.get(p + ".k.bias"))).reshape(*lead, Hkv, D)  # [.., T, Hkv, D]
    v = R(_linear(ops, h, W[p + ".v.weight"], W.get(p + ".v.bias"))).reshape(*lead, Hkv, D)  # [.., T, Hkv, D]
    if cfg.qk_norm:
        q = R(ops.rms_norm(q, W[p + ".q_norm.weight"], eps=cfg.norm_eps))
        k = R(ops.rms_norm(k, W[p + ".k_norm.weight"], eps=cfg.norm_eps))
    if cfg.position == "rope" and bf16:  # each product and the sum rounded (spec/precision.md row 6)
        q = R(sum(R(t) for t in ops.rope_terms(q, cos, sin, pairing=cfg.rope_pairing)))  # [.., T, Hq, D]
        k = R(sum(R(t) for t in ops.rope_terms(k, cos, sin, pairing=cfg.rope_pairing)))  # [.., T, Hkv, D]
    elif cfg.position == "rope":
        q = R(ops.apply_rope(q, cos, sin, pairing=cfg.rope_pairing))
        k = R(ops.apply_rope(k, cos, sin, pairing=cfg.rope_pairing))
    record(p + ".q", q)
    record(p + ".k", k)
    record(p + ".v", v)
    if cache is not None:
        k, v = cache.append(L, k, v)  # [.., start+T, Hkv, D]
    window = cfg.layer_window(L)
    sinks = W[p + ".sinks"] if cfg.attention_sinks else None
    kw = dict(sinks=sinks, window=window, causal=True, q_offset=start)
    if bf16:  # scores, scaled scores, probabilities, output each rounded (spec/precision.md rows 7-11)
        s = R(ops.attention_scores(q, k, window=window, causal=True, q_offset=start, scale=1.0))  # [.., Hq, T, Tk]
        s = R(s * np.float32(1.0 / np.sqrt(D)))
        probs = R(ops.softmax_with_sinks(s, sinks))  # [.., Hq, T, Tk]
        record(p + ".probs", probs)
        vis = ops.visibility_mask(q.shape[-3], k.shape[-3], q_offset=start, window=window, causal=True)  # [T, Tk]
        o = R(ops.attention_values(probs, v, visible=vis))  # [.., T, Hq, D]
    else:
        if record.active:
            record(p + ".probs", ops.attention_probs(q, k, v, **kw))
        o = R(ops.attention(q, k, v, **kw))  # [.., T, Hq, D]
    o = o.reshape(*lead, Hq * D)  # [.., T, Hq*D]
    out = R(_linear(ops, o, W[p + ".o.weight"], W.get(p + ".o.bias")))  # [.., T, d]
    record(p + ".out", out)
    return out


def _mlp_block(cfg, W, h, L, R, record, ops, *, bf16=False):
    p = f"layers.{L}"
    if cfg.num_experts:
        return _moe_block(cfg, W, h, L, R, record, ops, bf16=bf16)
    if cfg.activation in ("gelu_tanh", "gelu_erf"):
        approx = "tanh" if cfg.activation == "gelu_tanh" else "none"
        m = ops.gelu_mlp(h, W[p + ".mlp.fc.weight"], W.get(p + ".mlp.fc.bias"),
                         W[p + ".mlp.proj.weight"], W.get(p + ".mlp.proj.bias"), approximate=approx)
    elif isinstance(W[p + ".mlp.gate.weight"], PackedGGUF):  # swiglu_mlp's three linears, on packed weights
        a = ops.swiglu(_linear(ops, h, W[p + ".mlp.gate.weight"]), _linear(ops, h, W[p + ".mlp.up.weight"]))
        m = _linear(ops, a, W[p + ".mlp.down.weight"])
    else:
        m = ops.swiglu_mlp(h, W[p + ".mlp.gate.weight"], W[p + ".mlp.up.weight"], W[p + ".mlp.down.weight"])
    m = R(m)  # [.., T, d]
    record(p + ".mlp.out", m)
    return m


def _moe_block(cfg, W, h, L, R, record, ops, *, bf16=False):
    p = f"layers.{L}.moe"
    logits = R(ops.linear(h, W[p + ".router.weight"], W.get(p + ".router.bias")))  # [.., T, E]
    k = cfg.experts_per_token
    # A token whose router logits are not finite (a NaN/Inf hidden state) is routed by the tie rule
    # (logits taken as 0) and its output set to NaN below: other tokens are untouched, as in torch.
    nonfinite = ~np.isfinite(logits).all(axis=-1)  # [.., T]
    route = np.where(nonfinite[..., None], logits.dtype.type(0), logits) if nonfinite.any() else logits
    if cfg.router == "topk_softmax":
        weights, idx = ops.router_topk_softmax(route, k)  # [.., T, k]
    else:
        weights, idx = ops.router_softmax_topk(route, k)  # [.., T, k]
    weights = R(weights)
    record(p + ".router_logits", logits)
    record(p + ".experts", idx)
    record(p + ".expert_weights", weights)

    if cfg.arch == "gpt_oss":
        lin1, lin2 = _expert_linear(W, p + ".mlp1", ops), _expert_linear(W, p + ".mlp2", ops)
        b1, b2 = W[p + ".mlp1.bias"], W[p + ".mlp2.bias"]

        def expert(e, t):
            if bf16:  # matmul and bias add rounded separately, each SwiGLU step rounded (rows 16-18)
                u = R(R(lin1(e, t)) + b1[e])  # [n, 2I]
                a = _swiglu_oss_bf16(u, cfg.swiglu_alpha, cfg.swiglu_limit, R)  # [n, I]
                return R(R(lin2(e, a)) + b2[e])  # [n, d]
            u = R(lin1(e, t, b1[e]))  # [n, 2I]
            a = R(ops.swiglu_oss(u, alpha=cfg.swiglu_alpha, limit=cfg.swiglu_limit))  # [n, I]
            return R(lin2(e, a, b2[e]))  # [n, d]
    else:
        gate, up, down = W[p + ".gate.weight"], W[p + ".up.weight"], W[p + ".down.weight"]

        def expert(e, t):
            return R(ops.swiglu_mlp(t, gate[e], up[e], down[e]))  # [n, d]

    m = R(ops.moe_combine(h, weights, idx, expert))  # [.., T, d]
    if nonfinite.any():
        m = np.where(nonfinite[..., None], m.dtype.type(np.nan), m)
    record(f"layers.{L}.mlp.out", m)
    return m


def _swiglu_oss_bf16(u, alpha, limit, R):
    """swiglu_oss (interleaved) in the official gpt-oss reference's step order, each step's output rounded:
    g = min(gate, limit), l = clip(lin, -limit, limit) (exact); z = R(alpha g); s = R(sigmoid(z));
    glu = R(g s); out = R(glu R(l + 1)). Every step computes in float32 (spec/precision.md row 17)."""
    g, lin = u[..., 0::2], u[..., 1::2]  # [n, I], [n, I]
    if limit is not None:
        g = np.minimum(g, np.float32(limit))
        lin = np.clip(lin, np.float32(-limit), np.float32(limit))
    z = R(np.float32(alpha) * g)
    with np.errstate(over="ignore"):
        sig = R(np.float32(1) / (np.float32(1) + np.exp(-z)))
    glu = R(g * sig)
    return R(glu * R(lin + np.float32(1)))


def _expert_linear(W, prefix, ops):
    """(e, x, bias=None) -> x @ W_e.T + bias for expert e.

    Packed MXFP4 experts go through ops.mxfp4_linear, which decodes (exactly) only the
    expert in use, so a backend with a fused MXFP4 kernel runs it; dense experts use ops.linear.
    """
    if prefix + ".weight" in W:
        dense = W[prefix + ".weight"]
        return lambda e, x, bias=None: ops.linear(x, dense[e], bias)
    blocks, scales = W[prefix + ".blocks"], W[prefix + ".scales"]
    return lambda e, x, bias=None: ops.mxfp4_linear(x, np.asarray(blocks[e]), np.asarray(scales[e]), bias)


def prepare_weights(cfg, weights, mode, *, progress=False):
    """Cast every dense tensor once to the mode's storage.

    MXFP4 blocks and scales stay packed, and an untied token embedding stays as stored
    (memory-mapped): only its gathered rows are ever converted.
    progress: show a progress bar on stderr.
    """
    precision.check_mode(mode)
    R = _rounder(mode)
    out = {}
    tied = cfg.tie_word_embeddings or "lm_head" not in weights
    bar = Progress(len(weights), f"preparing {len(weights)} tensors as {mode}") if progress else None
    for name, t in weights.items():
        if bar is not None:
            bar.update()
        if name == "lm_head" and tied:
            continue  # the same table as tok_embed: prepared once, below
        if isinstance(t, PackedGGUF):
            out[name] = t  # packed GGUF rows stay as read (spec/quant.md)
            continue
        a = np.asarray(t)
        if name.endswith(".blocks") or name.endswith(".scales"):
            out[name] = t
        elif name == "tok_embed" and not tied:
            out[name] = t  # gathered rows are converted after the gather; the table stays as stored
        elif a.dtype.kind == "f" or a.dtype == precision.bfloat16:
            out[name] = R(a)
        else:
            out[name] = a
    if bar is not None:
        bar.close()
    if tied:
        out["lm_head"] = out["tok_embed"]
    return out
