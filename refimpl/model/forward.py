"""The forward pass: the ops composed per the ModelConfig, and nothing else.

One forward pass serves every architecture in the family; the ModelConfig says which variant of
each layer a model uses (spec/model.md: block diagrams; spec/trace.md: traced names).

    x   = embedding(ids) (+ learned_positions)
    per layer (pre-norm):  x = pre_norm_residual(x, norm_attn, attn); x = pre_norm_residual(x, norm_mlp, mlp)
    per layer (post-norm): x = post_norm_residual(x, norm_attn, attn); ...        (mlp: GELU, SwiGLU or MoE)
    logits = linear(final_norm(x), lm_head)

Every array operation is an op of the namespace `ops` (refimpl.ops, or a backend's `ops()`), so a
backend's arrays stay its own from the weights to the logits: this module does no arithmetic and
never converts an activation to NumPy. Token ids and positions are host integers. Rounding to the
storage dtype is the op `round_to_storage`; in "bfloat16" the step-wise ops of spec/precision.md
are called (rope_terms, attention_scores/scale/softmax_with_sinks/attention_values, swiglu_oss_bf16).
A backend may run a whole layer of a one-token decode step in one call (`decode_layer`,
spec/backend-interface.md): the same ops, fused, with the values of its op-by-op run.
"""

from dataclasses import dataclass

import numpy as np

from .._progress import Progress
from ..errors import ArgumentError
from ..ops import ops as reference_ops
from ..ops.quant import PackedGGUF
from ..precision import Precision, bfloat16


@dataclass
class Forward:
    """One forward call: what every block reads (config, weights, ops, precision, cache, trace, start)."""

    config: object
    weights: dict
    ops: object
    precision: Precision
    cache: object = None
    trace: dict = None
    start: int = 0

    def round(self, x):
        """x rounded to the storage dtype (the op round_to_storage); x itself when it is already held
        in the storage dtype (float32 or float64 runs), where that op is the identity."""
        p = self.precision
        if not p.rounds_each_step and x.dtype == p.storage:
            return x
        return self.ops.round_to_storage(x, p.dtype)

    def record(self, name, value):
        if self.trace is not None:
            backend = getattr(self.ops, "backend", None)
            self.trace[name] = np.asarray(value) if backend is None else backend.to_host(value)

    def norm(self, x, prefix):
        c, W = self.config, self.weights
        if c.norm == "layer":
            return self.round(self.ops.layer_norm(x, W[prefix + ".weight"], W[prefix + ".bias"], eps=c.norm_eps))
        return self.round(self.ops.rms_norm(x, W[prefix + ".weight"], eps=c.norm_eps))


def _linear(ops, x, w, bias=None):
    """ops.linear, or ops.gguf_linear when the weight is kept packed (spec/quant.md)."""
    if isinstance(w, PackedGGUF):
        return ops.gguf_linear(x, w.blocks, w.qtype, w.shape, bias)
    return ops.linear(x, w, bias)


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


def rope_tables(cfg, positions, *, ops=reference_ops, angle_dtype=np.float64):
    """cos, sin [.., T, D/2] for absolute positions, with YaRN's concentration folded in.

    angle_dtype: np.float64 (the oracle's angles) or np.float32 (the torch references' float32
    angles, used by the "bfloat16" dtype)."""
    inv_freq, scaling = ops.rope_frequencies(cfg.head_dim, base=cfg.rope_theta, rope_scaling=cfg.rope_scaling)
    return ops.rope_cos_sin(inv_freq, positions, attention_scaling=scaling, angle_dtype=angle_dtype)


def forward(cfg, weights, ids, *, cache=None, dtype="float32", trace=None, ops=reference_ops):
    """Logits [.., T, vocab] for token ids [T] or [B, T] (the arrays of `ops`: a backend's stay its own).

    dtype: "float64" | "float32" | "bfloat16", or a refimpl.precision.Precision.
    cache: a KVCache; when given, the ids continue the cached sequence (their positions start at
    cache.position) and their keys and values are appended.
    trace: a dict to fill with the named intermediates of spec/trace.md (as NumPy arrays).
    """
    prec = Precision.of(dtype)
    ids = _check_ids(cfg, ids)
    T = ids.shape[-1]
    start = cache.position if cache is not None else 0
    if start + T > cfg.max_position_embeddings:  # the learned table's rows, or the RoPE context length
        what = "the learned position table" if cfg.position == "learned" else "max_position_embeddings, the context"
        raise ArgumentError(f"ids: expected at most {cfg.max_position_embeddings} positions ({what}), found "
                            f"{start + T}" + (f" ({start} cached + {T} new)" if start else ""))
    f = Forward(cfg, weights, ops, prec, cache, trace, start)
    W = weights

    te = W["tok_embed"]
    if isinstance(te, PackedGGUF):
        x = f.round(ops.gguf_embedding(ids, te.blocks, te.qtype, te.shape))  # [.., T, d]
    else:
        x = f.round(ops.embedding(ids, te))  # [.., T, d]
    if cfg.position == "learned":
        x = f.round(ops.add(x, ops.learned_positions(W["pos_embed"], T, offset=start)))  # [.., T, d]
    f.record("embed", x)
    cos = sin = None
    if cfg.position == "rope":
        positions = np.arange(start, start + T)  # [T], host integers
        cos, sin = rope_tables(cfg, positions, ops=ops, angle_dtype=prec.angle_dtype)  # [T, D/2]
        if prec.rounds_each_step:  # float32 angles, tables rounded (spec/precision.md rows 4-5)
            cos, sin = f.round(cos), f.round(sin)

    step = _decode_layer(f, x)  # a backend's whole-layer kernel for this one-token step, or None
    for L in range(cfg.num_layers):
        if step is not None:
            x = step(L, x, cache, cos, sin)  # the layer's ops below, in one call of the backend
            continue
        p = f"layers.{L}"

        def attn_norm(h, p=p):
            h = f.norm(h, p + ".attn_norm")
            f.record(p + ".attn_norm", h)
            return h

        def mlp_norm(h, p=p):
            h = f.norm(h, p + ".mlp_norm")
            f.record(p + ".mlp_norm", h)
            return h

        def attn(h, L=L):
            return _attention_block(f, h, L, cos, sin)

        def mlp(h, L=L):
            return _mlp_block(f, h, L)

        if cfg.norm_placement == "pre":
            x = f.round(ops.pre_norm_residual(x, attn_norm, attn))
            f.record(p + ".resid_mid", x)
            x = f.round(ops.pre_norm_residual(x, mlp_norm, mlp))
        else:  # the sum is rounded before the norm reads it
            x = ops.post_norm_residual(x, lambda s, p=p: f.norm(f.round(s), p + ".attn_norm"), attn)
            f.record(p + ".resid_mid", x)
            x = ops.post_norm_residual(x, lambda s, p=p: f.norm(f.round(s), p + ".mlp_norm"), mlp)
        f.record(p + ".out", x)

    x = f.norm(x, "final_norm")
    f.record("final_norm", x)
    logits = _linear(ops, x, W["lm_head"])  # [.., T, V]
    if prec.rounds_each_step:
        logits = f.round(logits)
    f.record("logits", logits)
    return logits


def _decode_layer(f, x):
    """ops.decode_layer(...) (spec/backend-interface.md) for one token of one sequence continuing a cache
    without a trace; None for the reference, other calls and what the backend does not cover."""
    get = getattr(f.ops, "decode_layer", None)
    if get is None or f.cache is None or f.trace is not None or tuple(x.shape[:-1]) != (1,):
        return None
    return get(f.config, f.weights, f.precision, x, f.cache)


def _attention_block(f, h, L, cos, sin):
    cfg, W, ops, R = f.config, f.weights, f.ops, f.round
    p = f"layers.{L}.attn"
    Hq, Hkv, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    lead = tuple(h.shape[:-1])
    rope_done = False
    if p + ".qkv.weight" in W:  # q, k, v stacked at load (prepare_weights(fuse=True)): one product, then views
        qkv = R(_linear(ops, h, W[p + ".qkv.weight"], W.get(p + ".qkv.bias")))  # [.., T, (Hq + 2 Hkv) D]
        qk = qkv[..., :(Hq + Hkv) * D].reshape(*lead, Hq + Hkv, D)  # [.., T, Hq + Hkv, D]
        if cfg.position == "rope" and not cfg.qk_norm and not f.precision.rounds_each_step:
            qk = R(ops.apply_rope(qk, cos, sin, pairing=cfg.rope_pairing))  # per head: one call for q and k
            rope_done = True
        q, k = qk[..., :Hq, :], qk[..., Hq:, :]  # [.., T, Hq, D], [.., T, Hkv, D]
        v = qkv[..., (Hq + Hkv) * D:].reshape(*lead, Hkv, D)  # [.., T, Hkv, D]
    else:
        q = R(_linear(ops, h, W[p + ".q.weight"], W.get(p + ".q.bias"))).reshape(*lead, Hq, D)  # [.., T, Hq, D]
        k = R(_linear(ops, h, W[p + ".k.weight"], W.get(p + ".k.bias"))).reshape(*lead, Hkv, D)  # [.., T, Hkv, D]
        v = R(_linear(ops, h, W[p + ".v.weight"], W.get(p + ".v.bias"))).reshape(*lead, Hkv, D)  # [.., T, Hkv, D]
    if cfg.qk_norm:
        q = R(ops.rms_norm(q, W[p + ".q_norm.weight"], eps=cfg.norm_eps))
        k = R(ops.rms_norm(k, W[p + ".k_norm.weight"], eps=cfg.norm_eps))
    if cfg.position == "rope" and f.precision.rounds_each_step:  # each product and the sum rounded (row 6)
        qa, qb = ops.rope_terms(q, cos, sin, pairing=cfg.rope_pairing)
        q = R(ops.add(R(qa), R(qb)))  # [.., T, Hq, D]
        ka, kb = ops.rope_terms(k, cos, sin, pairing=cfg.rope_pairing)
        k = R(ops.add(R(ka), R(kb)))  # [.., T, Hkv, D]
    elif cfg.position == "rope" and not rope_done:
        q = R(ops.apply_rope(q, cos, sin, pairing=cfg.rope_pairing))
        k = R(ops.apply_rope(k, cos, sin, pairing=cfg.rope_pairing))
    f.record(p + ".q", q)
    f.record(p + ".k", k)
    f.record(p + ".v", v)
    if f.cache is not None:
        k, v = f.cache.append(L, k, v)  # [.., start+T, Hkv, D], strided views of the cache
    window = cfg.layer_window(L)
    sinks = W[p + ".sinks"] if cfg.attention_sinks else None
    kw = dict(window=window, causal=True, q_offset=f.start)
    if f.precision.rounds_each_step:  # scores, scaled scores, probabilities, output rounded (rows 7-11)
        s = R(ops.attention_scores(q, k, scale=1.0, **kw))  # [.., Hq, T, Tk]
        s = R(ops.scale(s, float(np.float32(1.0 / np.sqrt(D)))))
        probs = R(ops.softmax_with_sinks(s, sinks))  # [.., Hq, T, Tk]
        f.record(p + ".probs", probs)
        vis = ops.visibility_mask(q.shape[-3], k.shape[-3], **kw)  # [T, Tk]
        o = R(ops.attention_values(probs, v, visible=vis))  # [.., T, Hq, D]
    else:
        if f.trace is not None:
            f.record(p + ".probs", ops.attention_probs(q, k, v, sinks=sinks, **kw))
        o = R(ops.attention(q, k, v, sinks=sinks, **kw))  # [.., T, Hq, D]
    o = o.reshape(*lead, Hq * D)  # [.., T, Hq*D]
    out = R(_linear(ops, o, W[p + ".o.weight"], W.get(p + ".o.bias")))  # [.., T, d]
    f.record(p + ".out", out)
    return out


def _mlp_block(f, h, L):
    cfg, W, ops = f.config, f.weights, f.ops
    p = f"layers.{L}"
    if cfg.num_experts:
        return _moe_block(f, h, L)
    packed = any(isinstance(W.get(p + n), PackedGGUF) for n in (".mlp.fc.weight", ".mlp.proj.weight",
                                                                ".mlp.gate.weight", ".mlp.up.weight", ".mlp.down.weight"))
    if cfg.activation in ("gelu_tanh", "gelu_erf"):
        approx = "tanh" if cfg.activation == "gelu_tanh" else "none"
        fc, fc_b, proj, proj_b = (W.get(p + n) for n in (".mlp.fc.weight", ".mlp.fc.bias", ".mlp.proj.weight",
                                                         ".mlp.proj.bias"))
        if packed:  # gelu_mlp's two linears, some on packed weights
            m = _linear(ops, ops.gelu(_linear(ops, h, fc, fc_b), approximate=approx), proj, proj_b)
        else:
            m = ops.gelu_mlp(h, fc, fc_b, proj, proj_b, approximate=approx)
    elif p + ".mlp.gate_up.weight" in W:  # gate and up stacked at load (prepare_weights(fuse=True))
        gu = _linear(ops, h, W[p + ".mlp.gate_up.weight"])  # [.., T, 2I]
        i = gu.shape[-1] // 2
        m = _linear(ops, ops.swiglu(gu[..., :i], gu[..., i:]), W[p + ".mlp.down.weight"])
    elif packed:  # swiglu_mlp's three linears, some on packed weights (a GGUF file may mix types)
        a = ops.swiglu(_linear(ops, h, W[p + ".mlp.gate.weight"]), _linear(ops, h, W[p + ".mlp.up.weight"]))
        m = _linear(ops, a, W[p + ".mlp.down.weight"])
    else:
        m = ops.swiglu_mlp(h, W[p + ".mlp.gate.weight"], W[p + ".mlp.up.weight"], W[p + ".mlp.down.weight"])
    m = f.round(m)  # [.., T, d]
    f.record(p + ".mlp.out", m)
    return m


def _moe_block(f, h, L):
    cfg, W, ops, R = f.config, f.weights, f.ops, f.round
    p = f"layers.{L}.moe"
    logits = R(ops.linear(h, W[p + ".router.weight"], W.get(p + ".router.bias")))  # [.., T, E]
    # A token whose router logits are not finite gets NaN weights from the router (the tie rule picks
    # its experts): its output is NaN, every other token is untouched, as in torch.
    if cfg.router == "topk_softmax":
        weights, idx = ops.router_topk_softmax(logits, cfg.experts_per_token)  # [.., T, k]
    else:
        weights, idx = ops.router_softmax_topk(logits, cfg.experts_per_token)  # [.., T, k]
    weights = R(weights)  # [.., T, k]
    f.record(p + ".router_logits", logits)
    f.record(p + ".experts", idx)
    f.record(p + ".expert_weights", weights)

    if cfg.arch == "gpt_oss":
        lin1, lin2 = _expert_linear(W, p + ".mlp1", ops), _expert_linear(W, p + ".mlp2", ops)
        b1, b2 = W[p + ".mlp1.bias"], W[p + ".mlp2.bias"]

        def expert(e, t):
            if f.precision.rounds_each_step:  # matmul and bias add rounded separately, SwiGLU step-wise (rows 16-18)
                u = R(ops.add(R(lin1(e, t)), b1[e]))  # [n, 2I]
                a = ops.swiglu_oss_bf16(u, alpha=cfg.swiglu_alpha, limit=cfg.swiglu_limit)  # [n, I]
                return R(ops.add(R(lin2(e, a)), b2[e]))  # [n, d]
            u = R(lin1(e, t, b1[e]))  # [n, 2I]
            a = R(ops.swiglu_oss(u, alpha=cfg.swiglu_alpha, limit=cfg.swiglu_limit))  # [n, I]
            return R(lin2(e, a, b2[e]))  # [n, d]
    else:
        gate, up, down = W[p + ".gate.weight"], W[p + ".up.weight"], W[p + ".down.weight"]

        def expert(e, t):
            return R(ops.swiglu_mlp(t, gate[e], up[e], down[e]))  # [n, d]

    m = R(ops.moe_combine(h, weights, idx, expert))  # [.., T, d]
    f.record(f"layers.{L}.mlp.out", m)
    return m


def _expert_linear(W, prefix, ops):
    """(e, x, bias=None) -> x @ W_e.T + bias for expert e.

    Packed MXFP4 experts go through ops.mxfp4_linear, which decodes (exactly) only the
    expert in use, so a backend with a fused MXFP4 kernel runs it; dense experts use ops.linear.
    """
    if prefix + ".weight" in W:
        dense = W[prefix + ".weight"]
        return lambda e, x, bias=None: ops.linear(x, dense[e], bias)
    blocks, scales = W[prefix + ".blocks"], W[prefix + ".scales"]
    return lambda e, x, bias=None: ops.mxfp4_linear(x, blocks[e], scales[e], bias)


def _stack(parts):
    """One matrix of the rows of `parts` (all packed GGUF of one qtype, or all dense of one dtype), or None."""
    if all(isinstance(t, PackedGGUF) for t in parts):
        if len({t.qtype for t in parts}) != 1 or len({t.shape[1] for t in parts}) != 1:
            return None
        blocks = np.concatenate([np.asarray(t.blocks) for t in parts])
        return PackedGGUF(blocks, parts[0].qtype, (sum(t.shape[0] for t in parts), parts[0].shape[1]))
    arrays = [np.asarray(t) for t in parts]
    if any(isinstance(t, PackedGGUF) for t in parts) or len({(a.dtype, a.ndim, a.shape[1:]) for a in arrays}) != 1:
        return None
    return np.concatenate(arrays)


def fuse_projections(cfg, weights):
    """weights with each layer's q, k, v (and a dense SwiGLU MLP's gate, up) matrices stacked by rows into
    `.attn.qkv` (`.mlp.gate_up`): one product instead of three (two), then views of its output. Every
    output row is the same dot product as before, so only a backend's kernel choice can change results.
    Layers whose parts differ in kind, qtype or dtype, or have biases on some parts only, stay as they are."""
    w = dict(weights)
    for L in range(cfg.num_layers):
        groups = [(f"layers.{L}.attn.", ("q", "k", "v"), "qkv")]
        if not cfg.num_experts and cfg.activation not in ("gelu_tanh", "gelu_erf"):
            groups.append((f"layers.{L}.mlp.", ("gate", "up"), "gate_up"))
        for pre, names, fused in groups:
            mats = [w.get(pre + n + ".weight") for n in names]
            biases = [w.get(pre + n + ".bias") for n in names]
            if any(m is None for m in mats) or (any(b is None for b in biases) and any(b is not None for b in biases)):
                continue
            stacked = _stack(mats)
            if stacked is None:
                continue
            if biases[0] is not None:
                b = _stack(biases)
                if b is None:
                    continue
                w[pre + fused + ".bias"] = b
            w[pre + fused + ".weight"] = stacked
            for n in names:
                w.pop(pre + n + ".weight")
                w.pop(pre + n + ".bias", None)
    return w


def prepare_weights(cfg, weights, dtype, *, progress=False, to_device=None, fuse=False, keep_bf16=False):
    """Every dense tensor rounded once to the storage dtype, then handed to the backend (to_device).

    MXFP4 blocks and scales stay packed, and an untied token embedding stays as stored
    (memory-mapped on the host when to_device is None): only its gathered rows are ever converted.
    keep_bf16: bfloat16 matrices (2-D and up: linear weights, experts, lm_head; not the learned
    position table) stay bfloat16 as stored in float32/float64 runs, for a backend whose kernels widen
    them exactly inside the product (the same operands as the widened copy, half the memory).
    dtype: a dtype name or a Precision. progress: show a progress bar on stderr.
    fuse: stack q/k/v and gate/up matrices (fuse_projections), for a backend whose
    `fuse_projections` is True (fewer, larger products).
    """
    prec = Precision.of(dtype)
    if fuse:
        weights = fuse_projections(cfg, weights)
    out = {}
    tied = cfg.tie_word_embeddings or "lm_head" not in weights
    bar = Progress(len(weights), f"preparing {len(weights)} tensors as {prec.dtype}") if progress else None
    for name, t in weights.items():
        if bar is not None:
            bar.update()
        if name == "lm_head" and tied:
            continue  # the same table as tok_embed: prepared once, below
        if isinstance(t, PackedGGUF):  # packed GGUF rows stay as read (spec/quant.md)
            out[name] = t if to_device is None else PackedGGUF(to_device(np.asarray(t.blocks)), t.qtype, t.shape)
            continue
        a = np.asarray(t)
        if name.endswith(".blocks") or name.endswith(".scales"):
            out[name] = t
        elif name == "tok_embed" and not tied:
            out[name] = t  # gathered rows are converted after the gather; the table stays as stored
        elif keep_bf16 and a.dtype == bfloat16 and a.ndim >= 2 and name != "pos_embed" and prec.dtype != "bfloat16":
            out[name] = t  # widened exactly by the backend's kernels (linear, embedding)
        elif a.dtype.kind == "f" or a.dtype == bfloat16:
            out[name] = reference_ops.round_to_storage(a, prec.dtype)
        else:
            out[name] = a
        if to_device is not None:
            out[name] = to_device(np.asarray(out[name]))
    if bar is not None:
        bar.close()
    if tied:
        out["lm_head"] = out["tok_embed"]
    return out
