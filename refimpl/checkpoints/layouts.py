"""Checkpoint layouts -> refimpl's canonical weight names (spec/weights.md), validated against a ModelConfig.

Layouts (names and transforms in spec/checkpoints.md):
  gpt2_hf           HF GPT-2 (Conv1D [in, out] weights, fused c_attn), with or without "transformer."
  hf                HF LLaMA family / Mixtral (per-expert w1/w2/w3 or the fused v5 experts) / gpt-oss
                    (MXFP4 *_blocks/*_scales or dense gate_up_proj/down_proj)
  gpt_oss_original  OpenAI's original gpt-oss (block.N.attn.qkv, block.N.mlp.mlp1_weight.blocks, ...)
  canonical         already canonical names (validated only)

Every expected tensor must be present with the expected shape and dtype kind; a tensor the layout
does not use is an error unless it is in the layout's ignorable list. Arrays stay lazy views of
the memory-mapped files where the transform is a transpose or a slice (MXFP4 blocks and scales
stay packed uint8); only Mixtral's per-expert tensors are copied (stacked into [E, ...]).
"""

import os
import re

import numpy as np

from .._validate import is_float_dtype
from ..model.config import ModelConfig
from .config_files import load_config
from ..errors import CheckpointError
from ..ops.mxfp4 import BLOCK_SIZE as MXFP4_BLOCK  # values per block along the input dimension
from .safetensors_io import open_checkpoint_dir, open_safetensors

LAYOUTS = ("gpt2_hf", "hf", "gpt_oss_original", "canonical")

_HF_IGNORABLE = (re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"),)
_GPT2_IGNORABLE = (re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$"),)


class _Rule:
    """Canonical tensor `out` = fn(*file tensors), each file tensor with an expected shape."""

    __slots__ = ("out", "inputs", "fn", "packed")

    def __init__(self, out, inputs, fn=None, packed=False):
        self.out, self.inputs, self.fn, self.packed = out, inputs, fn, packed


def _same(out, name, shape, packed=False):
    return _Rule(out, [(name, shape)], None, packed)


# ------------------------------------------------------------------------- canonical shapes

def canonical_shapes(cfg, *, expert_format="mxfp4"):
    """{canonical name: shape} that `cfg` needs (spec/weights.md). expert_format: gpt-oss experts as
    "mxfp4" (blocks/scales) or "dense" (weight). The tied lm_head is included (same shape as tok_embed)."""
    _check_cfg(cfg)
    d, V, I, E = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size, cfg.num_experts
    q, kv, D = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.head_dim
    ln = cfg.norm == "layer"
    s = {"tok_embed": (V, d)}
    if cfg.position == "learned":
        s["pos_embed"] = (cfg.max_position_embeddings, d)
    for L in range(cfg.num_layers):
        p = f"layers.{L}."
        for n in ("attn_norm", "mlp_norm"):
            s[p + n + ".weight"] = (d,)
            if ln:
                s[p + n + ".bias"] = (d,)
        for n, rows in (("q", q), ("k", kv), ("v", kv)):
            s[p + f"attn.{n}.weight"] = (rows, d)
            if cfg.attention_bias:
                s[p + f"attn.{n}.bias"] = (rows,)
        s[p + "attn.o.weight"] = (d, q)
        if cfg.attention_out_bias:
            s[p + "attn.o.bias"] = (d,)
        if cfg.qk_norm:
            s[p + "attn.q_norm.weight"] = (D,)
            s[p + "attn.k_norm.weight"] = (D,)
        if cfg.attention_sinks:
            s[p + "attn.sinks"] = (cfg.num_heads,)
        if cfg.arch == "gpt2":
            s[p + "mlp.fc.weight"], s[p + "mlp.proj.weight"] = (I, d), (d, I)
            if cfg.mlp_bias:
                s[p + "mlp.fc.bias"], s[p + "mlp.proj.bias"] = (I,), (d,)
        elif cfg.arch == "llama":
            s[p + "mlp.gate.weight"], s[p + "mlp.up.weight"], s[p + "mlp.down.weight"] = (I, d), (I, d), (d, I)
            if cfg.mlp_bias:
                s[p + "mlp.gate.bias"], s[p + "mlp.up.bias"], s[p + "mlp.down.bias"] = (I,), (I,), (d,)
        elif cfg.arch == "mixtral":
            s[p + "moe.router.weight"] = (E, d)
            s[p + "moe.gate.weight"], s[p + "moe.up.weight"], s[p + "moe.down.weight"] = (E, I, d), (E, I, d), (E, d, I)
        else:  # gpt_oss
            s[p + "moe.router.weight"], s[p + "moe.router.bias"] = (E, d), (E,)
            if expert_format == "mxfp4":
                s[p + "moe.mlp1.blocks"] = (E, 2 * I, d // MXFP4_BLOCK, MXFP4_BLOCK // 2)
                s[p + "moe.mlp1.scales"] = (E, 2 * I, d // MXFP4_BLOCK)
                s[p + "moe.mlp2.blocks"] = (E, d, I // MXFP4_BLOCK, MXFP4_BLOCK // 2)
                s[p + "moe.mlp2.scales"] = (E, d, I // MXFP4_BLOCK)
            else:
                s[p + "moe.mlp1.weight"], s[p + "moe.mlp2.weight"] = (E, 2 * I, d), (E, d, I)
            s[p + "moe.mlp1.bias"], s[p + "moe.mlp2.bias"] = (E, 2 * I), (E, d)
    s["final_norm.weight"] = (d,)
    if ln:
        s["final_norm.bias"] = (d,)
    s["lm_head"] = (V, d)
    return s


def _check_cfg(cfg):
    if not isinstance(cfg, ModelConfig):
        raise CheckpointError(f"cfg: expected a ModelConfig, found {type(cfg).__name__}")


def _need_mxfp4_dims(cfg, source):
    for f in ("hidden_size", "intermediate_size"):
        v = getattr(cfg, f)
        if v % MXFP4_BLOCK:
            raise CheckpointError(f"{source}: MXFP4 experts: {f} must be a multiple of {MXFP4_BLOCK}, found {v}")


# ---------------------------------------------------------------------------------- layouts

def detect_layout(names, *, source=None):
    """The layout of a set of tensor names (see LAYOUTS); CheckpointError (naming `source`) if none fits."""
    names = set(names)
    if any(re.match(r"^(transformer\.)?(wte\.weight$|h\.\d+\.)", n) for n in names):
        return "gpt2_hf"
    if "embedding.weight" in names or any(n.startswith("block.") for n in names):
        return "gpt_oss_original"
    if any(n.startswith("model.") for n in names):
        return "hf"
    if "tok_embed" in names or any(n.startswith("layers.") for n in names):
        return "canonical"
    some = ", ".join(sorted(names)[:5])
    where = f"{source}: " if source else ""
    raise CheckpointError(f"{where}tensor names: expected a known layout ({', '.join(LAYOUTS)}), found {some or 'no tensors'}")


def _rules_gpt2(cfg, names):
    d, I = cfg.hidden_size, cfg.intermediate_size
    pre = "transformer." if "transformer.wte.weight" in names or any(n.startswith("transformer.h.") for n in names) else ""
    rules = [_same("tok_embed", pre + "wte.weight", (cfg.vocab_size, d)),
             _same("pos_embed", pre + "wpe.weight", (cfg.max_position_embeddings, d))]
    t = lambda a: a.T  # noqa: E731  Conv1D [in, out] -> [out, in]
    for L in range(cfg.num_layers):
        h, p = f"{pre}h.{L}.", f"layers.{L}."
        for src, dst in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm")):
            rules += [_same(p + dst + ".weight", h + src + ".weight", (d,)),
                      _same(p + dst + ".bias", h + src + ".bias", (d,))]
        for i, n in enumerate("qkv"):
            rules.append(_Rule(p + f"attn.{n}.weight", [(h + "attn.c_attn.weight", (d, 3 * d))],
                               lambda w, i=i: w.T[i * d:(i + 1) * d]))  # [3d, d] -> [d, d]
            rules.append(_Rule(p + f"attn.{n}.bias", [(h + "attn.c_attn.bias", (3 * d,))],
                               lambda b, i=i: b[i * d:(i + 1) * d]))  # [3d] -> [d]
        rules += [_Rule(p + "attn.o.weight", [(h + "attn.c_proj.weight", (d, d))], t),
                  _same(p + "attn.o.bias", h + "attn.c_proj.bias", (d,)),
                  _Rule(p + "mlp.fc.weight", [(h + "mlp.c_fc.weight", (d, I))], t),  # [d, I] -> [I, d]
                  _same(p + "mlp.fc.bias", h + "mlp.c_fc.bias", (I,)),
                  _Rule(p + "mlp.proj.weight", [(h + "mlp.c_proj.weight", (I, d))], t),  # [I, d] -> [d, I]
                  _same(p + "mlp.proj.bias", h + "mlp.c_proj.bias", (d,))]
    rules += [_same("final_norm.weight", pre + "ln_f.weight", (d,)),
              _same("final_norm.bias", pre + "ln_f.bias", (d,))]
    optional = {"lm_head.weight": (cfg.vocab_size, d)}
    if not cfg.tie_word_embeddings:
        rules.append(_same("lm_head", "lm_head.weight", (cfg.vocab_size, d)))
        optional = {}
    return rules, _GPT2_IGNORABLE, optional


def _attn_hf(cfg, L):
    d, q, kv, D = cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.head_dim
    m, p = f"model.layers.{L}.", f"layers.{L}."
    rules = [_same(p + "attn_norm.weight", m + "input_layernorm.weight", (d,)),
             _same(p + "mlp_norm.weight", m + "post_attention_layernorm.weight", (d,))]
    for n, rows in (("q", q), ("k", kv), ("v", kv)):
        rules.append(_same(p + f"attn.{n}.weight", m + f"self_attn.{n}_proj.weight", (rows, d)))
        if cfg.attention_bias:
            rules.append(_same(p + f"attn.{n}.bias", m + f"self_attn.{n}_proj.bias", (rows,)))
    rules.append(_same(p + "attn.o.weight", m + "self_attn.o_proj.weight", (d, q)))
    if cfg.attention_out_bias:
        rules.append(_same(p + "attn.o.bias", m + "self_attn.o_proj.bias", (d,)))
    if cfg.qk_norm:
        rules += [_same(p + "attn.q_norm.weight", m + "self_attn.q_norm.weight", (D,)),
                  _same(p + "attn.k_norm.weight", m + "self_attn.k_norm.weight", (D,))]
    if cfg.attention_sinks:
        rules.append(_same(p + "attn.sinks", m + "self_attn.sinks", (cfg.num_heads,)))
    return rules


def _rules_hf(cfg, names, source):
    d, I, E, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.vocab_size
    rules = [_same("tok_embed", "model.embed_tokens.weight", (V, d)),
             _same("final_norm.weight", "model.norm.weight", (d,))]
    optional = {"lm_head.weight": (V, d)}
    if not cfg.tie_word_embeddings:
        rules.append(_same("lm_head", "lm_head.weight", (V, d)))
        optional = {}
    for L in range(cfg.num_layers):
        m, p = f"model.layers.{L}.", f"layers.{L}."
        rules += _attn_hf(cfg, L)
        if cfg.arch == "llama":
            for n, shape in (("gate", (I, d)), ("up", (I, d)), ("down", (d, I))):
                rules.append(_same(p + f"mlp.{n}.weight", m + f"mlp.{n}_proj.weight", shape))
                if cfg.mlp_bias:
                    rules.append(_same(p + f"mlp.{n}.bias", m + f"mlp.{n}_proj.bias", shape[:1]))
        elif cfg.arch == "mixtral":
            if m + "mlp.experts.gate_up_proj" in names:  # transformers v5 fused experts
                rules += [_same(p + "moe.router.weight", m + "mlp.gate.weight", (E, d)),
                          _Rule(p + "moe.gate.weight", [(m + "mlp.experts.gate_up_proj", (E, 2 * I, d))],
                                lambda w: w[:, :I]),  # [E, 2I, d] -> [E, I, d]
                          _Rule(p + "moe.up.weight", [(m + "mlp.experts.gate_up_proj", (E, 2 * I, d))],
                                lambda w: w[:, I:]),  # [E, 2I, d] -> [E, I, d]
                          _same(p + "moe.down.weight", m + "mlp.experts.down_proj", (E, d, I))]
            else:
                b = m + "block_sparse_moe."
                rules.append(_same(p + "moe.router.weight", b + "gate.weight", (E, d)))
                for n, w, shape in (("gate", "w1", (I, d)), ("up", "w3", (I, d)), ("down", "w2", (d, I))):
                    rules.append(_Rule(p + f"moe.{n}.weight",
                                       [(b + f"experts.{e}.{w}.weight", shape) for e in range(E)], _stack))
        elif cfg.arch == "gpt_oss":
            x = m + "mlp.experts."
            rules += [_same(p + "moe.router.weight", m + "mlp.router.weight", (E, d)),
                      _same(p + "moe.router.bias", m + "mlp.router.bias", (E,)),
                      _same(p + "moe.mlp1.bias", x + "gate_up_proj_bias", (E, 2 * I)),
                      _same(p + "moe.mlp2.bias", x + "down_proj_bias", (E, d))]
            if x + "gate_up_proj" in names or x + "down_proj" in names:  # dense: HF stores [E, in, out]
                swap = lambda w: w.transpose(0, 2, 1)  # noqa: E731  [E, in, out] -> [E, out, in]
                rules += [_Rule(p + "moe.mlp1.weight", [(x + "gate_up_proj", (E, d, 2 * I))], swap),
                          _Rule(p + "moe.mlp2.weight", [(x + "down_proj", (E, I, d))], swap)]
            else:
                _need_mxfp4_dims(cfg, source)
                rules += _mxfp4_rules(cfg, p, x + "gate_up_proj_blocks", x + "gate_up_proj_scales",
                                      x + "down_proj_blocks", x + "down_proj_scales")
        else:
            raise CheckpointError(f"{source}: layout hf: expected a config of arch llama, mixtral or gpt_oss, found {cfg.arch!r}")
    return rules, _HF_IGNORABLE, optional


def _stack(*ws):
    a = np.stack(ws)  # E x [r, c] -> [E, r, c]
    a.flags.writeable = False
    return a


def _mxfp4_rules(cfg, p, b1, s1, b2, s2):
    d, I, E = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts
    return [_same(p + "moe.mlp1.blocks", b1, (E, 2 * I, d // 32, 16), True),
            _same(p + "moe.mlp1.scales", s1, (E, 2 * I, d // 32), True),
            _same(p + "moe.mlp2.blocks", b2, (E, d, I // 32, 16), True),
            _same(p + "moe.mlp2.scales", s2, (E, d, I // 32), True)]


def _rules_gpt_oss_original(cfg, names, source):
    if cfg.arch != "gpt_oss":
        raise CheckpointError(f"{source}: layout gpt_oss_original: expected a config of arch gpt_oss, found {cfg.arch!r}")
    d, I, E, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.vocab_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    rules = [_same("tok_embed", "embedding.weight", (V, d)), _same("final_norm.weight", "norm.scale", (d,)),
             _same("lm_head", "unembedding.weight", (V, d))]
    cuts = {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
    for L in range(cfg.num_layers):
        b, p = f"block.{L}.", f"layers.{L}."
        for n, (lo, hi) in cuts.items():
            rules.append(_Rule(p + f"attn.{n}.weight", [(b + "attn.qkv.weight", (q + 2 * kv, d))],
                               lambda w, lo=lo, hi=hi: w[lo:hi]))  # [q+2kv, d] -> [hi-lo, d]
            rules.append(_Rule(p + f"attn.{n}.bias", [(b + "attn.qkv.bias", (q + 2 * kv,))],
                               lambda w, lo=lo, hi=hi: w[lo:hi]))  # [q+2kv] -> [hi-lo]
        rules += [_same(p + "attn_norm.weight", b + "attn.norm.scale", (d,)),
                  _same(p + "attn.o.weight", b + "attn.out.weight", (d, q)),
                  _same(p + "attn.o.bias", b + "attn.out.bias", (d,)),
                  _same(p + "attn.sinks", b + "attn.sinks", (cfg.num_heads,)),
                  _same(p + "mlp_norm.weight", b + "mlp.norm.scale", (d,)),
                  _same(p + "moe.router.weight", b + "mlp.gate.weight", (E, d)),
                  _same(p + "moe.router.bias", b + "mlp.gate.bias", (E,)),
                  _same(p + "moe.mlp1.bias", b + "mlp.mlp1_bias", (E, 2 * I)),
                  _same(p + "moe.mlp2.bias", b + "mlp.mlp2_bias", (E, d))]
        if b + "mlp.mlp1_weight" in names or b + "mlp.mlp2_weight" in names:  # dense, already [E, out, in]
            rules += [_same(p + "moe.mlp1.weight", b + "mlp.mlp1_weight", (E, 2 * I, d)),
                      _same(p + "moe.mlp2.weight", b + "mlp.mlp2_weight", (E, d, I))]
        else:
            _need_mxfp4_dims(cfg, source)
            rules += _mxfp4_rules(cfg, p, b + "mlp.mlp1_weight.blocks", b + "mlp.mlp1_weight.scales",
                                  b + "mlp.mlp2_weight.blocks", b + "mlp.mlp2_weight.scales")
    return rules, (), {}


def _rules_canonical(cfg, names, source):
    dense = any(n.endswith("moe.mlp1.weight") for n in names)
    if cfg.arch == "gpt_oss" and not dense:
        _need_mxfp4_dims(cfg, source)
    shapes = canonical_shapes(cfg, expert_format="dense" if dense else "mxfp4")
    optional = {}
    if cfg.tie_word_embeddings:
        optional = {"lm_head": shapes.pop("lm_head")}
    rules = [_same(n, n, s, n.endswith((".blocks", ".scales"))) for n, s in shapes.items()]
    return rules, (), optional


# ------------------------------------------------------------------------------- conversion

def _shape(tensors, name):
    return tuple(tensors.shape(name)) if hasattr(tensors, "shape") else tuple(np.shape(tensors[name]))


def _dtype(tensors, name):
    return np.dtype(tensors.dtype(name)) if hasattr(tensors, "dtype") else np.asarray(tensors[name]).dtype


def _where(tensors, name, source):
    if hasattr(tensors, "source"):
        try:
            return tensors.source(name)
        except KeyError:
            pass
    return source


def _listing(names, n=5):
    names = sorted(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(repr(x) for x in names[:n]) + more


_LAYER_PATTERNS = {"gpt2_hf": re.compile(r"^(?:transformer\.)?h\.(\d+)\."), "hf": re.compile(r"^model\.layers\.(\d+)\."),
                   "gpt_oss_original": re.compile(r"^block\.(\d+)\."), "canonical": re.compile(r"^layers\.(\d+)\.")}
_EXPERT_PATTERN = re.compile(r"\.experts\.(\d+)\.")


def _check_counts(cfg, names, source, layout):
    """Refuse a layer or expert count the tensor names do not back, before a per-layer (or per-expert)
    rule list is built: a config claiming 10^9 layers fails here at once instead of looping."""
    for what, field, n, pat in (("layer", "num_layers", cfg.num_layers, _LAYER_PATTERNS[layout]),
                                ("expert", "num_experts", cfg.num_experts, _EXPERT_PATTERN)):
        found = {int(m.group(1)) for m in map(pat.search, names) if m}
        if what == "expert" and not found:
            continue  # experts stored stacked (one tensor per layer): their shape check covers the count
        first = next((i for i in range(min(n, len(found) + 1)) if i not in found), None)
        if first is not None:
            raise CheckpointError(f"{source}: missing tensors of {what} {first}: expected {n} {what}s ({field} of "
                                  f"{cfg.name or cfg.arch}), found tensors for {len(found)}")


def to_canonical(cfg, tensors, *, layout=None, source=None):
    """Map a checkpoint's tensors ({name: array}, e.g. an open_checkpoint_dir result) to canonical names.

    Returns {canonical name: array} in [out, in] layout (spec/weights.md). A tied `lm_head` is the
    same object as `tok_embed`. Raises CheckpointError naming the file and tensor for: a missing
    tensor, a tensor the layout does not use (unless ignorable), a shape other than cfg implies,
    MXFP4 blocks/scales that are not uint8, or weights that are not floating point.
    """
    _check_cfg(cfg)
    source = source or getattr(tensors, "path", None) or "checkpoint"
    names = set(tensors)
    layout = layout or detect_layout(names, source=source)
    if layout in _LAYER_PATTERNS:
        _check_counts(cfg, names, source, layout)
    if layout == "gpt2_hf":
        if cfg.arch != "gpt2":
            raise CheckpointError(f"{source}: layout gpt2_hf: expected a config of arch gpt2, found {cfg.arch!r}")
        rules, ignorable, optional = _rules_gpt2(cfg, names)
    elif layout == "hf":
        rules, ignorable, optional = _rules_hf(cfg, names, source)
    elif layout == "gpt_oss_original":
        rules, ignorable, optional = _rules_gpt_oss_original(cfg, names, source)
    elif layout == "canonical":
        rules, ignorable, optional = _rules_canonical(cfg, names, source)
    else:
        raise CheckpointError(f"layout: expected one of {', '.join(LAYOUTS)}, found {layout!r}")

    expected = {}
    for rule in rules:
        for name, shape in rule.inputs:
            expected[name] = (shape, rule)
    missing = [n for n in expected if n not in names]
    if missing:
        raise CheckpointError(f"{source}: missing tensor{'s' if len(missing) > 1 else ''} ({len(missing)}) for layout "
                              f"{layout} of {cfg.name or cfg.arch}: {_listing(missing)}"
                              f" (needed for {expected[sorted(missing)[0]][1].out})")
    unexpected = [n for n in names - set(expected) - set(optional) if not any(p.match(n) for p in ignorable)]
    if unexpected:
        first = sorted(unexpected)[0]
        raise CheckpointError(f"{_where(tensors, first, source)}: unexpected tensor{'s' if len(unexpected) > 1 else ''} "
                              f"({len(unexpected)}) not used by layout {layout} of {cfg.name or cfg.arch}: "
                              f"{_listing(unexpected)}")
    checks = [(n, s, r.packed, r.out) for n, (s, r) in expected.items()]
    checks += [(n, s, False, "ignored (tied)") for n, s in optional.items() if n in names]
    for name, shape, packed, out in checks:
        found = _shape(tensors, name)
        if found != tuple(shape):
            raise CheckpointError(f"{_where(tensors, name, source)}: tensor {name!r}: shape: expected {list(shape)} "
                                  f"(for {out}), found {list(found)}")
        dt = _dtype(tensors, name)
        if packed and dt != np.uint8:
            raise CheckpointError(f"{_where(tensors, name, source)}: tensor {name!r}: dtype: expected uint8 "
                                  f"(MXFP4 packed), found {dt}")
        if not packed and not is_float_dtype(dt):
            raise CheckpointError(f"{_where(tensors, name, source)}: tensor {name!r}: dtype: expected a floating "
                                  f"dtype, found {dt}")

    out = {}
    for rule in rules:
        arrays = [tensors[n] for n, _ in rule.inputs]
        out[rule.out] = rule.fn(*arrays) if rule.fn else arrays[0]
    if cfg.tie_word_embeddings:
        out["lm_head"] = out["tok_embed"]
    return out


def _has_safetensors(d):
    return os.path.isdir(d) and any(f.endswith(".safetensors") for f in os.listdir(d))


def load_weights(path, cfg=None, *, missing_yarn_original_max="error"):
    """(cfg, canonical weights) from a checkpoint path.

    path: a .safetensors file (config.json beside it unless cfg is given); an HF directory
    (model.safetensors or model.safetensors.index.json + config.json); a directory whose weights
    are only in `original/` (OpenAI gpt-oss: original/config.json in OpenAI's format); or a
    directory of *.safetensors files. The config format and the weight layout are detected.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        tensors = open_safetensors(path)
        root = os.path.dirname(os.path.abspath(path))
    elif os.path.isdir(path):
        root = path
        hf = any(os.path.exists(os.path.join(path, f)) for f in ("model.safetensors", "model.safetensors.index.json"))
        if not hf and not _has_safetensors(path) and _has_safetensors(os.path.join(path, "original")):
            root = os.path.join(path, "original")
        tensors = open_checkpoint_dir(root)
    else:
        raise CheckpointError(f"{path}: expected a .safetensors file or a checkpoint directory, found nothing")
    if cfg is None:
        cfg = load_config(os.path.join(root, "config.json"), missing_yarn_original_max=missing_yarn_original_max)
    _check_cfg(cfg)
    return cfg, to_canonical(cfg, tensors, source=getattr(tensors, "path", path))
