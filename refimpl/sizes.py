"""`refimpl inspect`: parameter counts, KV-cache size and weight memory of a model, from its configuration.

    inspect_data("gpt-oss-20b")    -> dict of plain ints / floats / strings (JSON-able)
    inspect_report("gpt-oss-20b")  -> the same numbers as text
    inspect_json("gpt-oss-20b")    -> json.dumps(inspect_data(...), indent=2)

The argument is a preset name (refimpl.checkpoints.config_files.PRESETS), a config.json file, a checkpoint folder
(its config.json, else original/config.json), a .safetensors file (the config.json next to it), a
.gguf file, or a ModelConfig. Nothing reads weights: a GGUF file's header and tensor table are read
(tensor data stays memory-mapped), a folder's safetensors headers only.

Formulas and the gpt-oss-20b worked example: spec/inspect.md.
"""

import json
import math
import os
from pathlib import Path

import numpy as np

from .model.config import ModelConfig
from .checkpoints.config_files import PRESETS, count_parameters, load_config, read_json_object
from .errors import ArgumentError, CheckpointError, RefimplError
from .model.kvcache import kv_cache_bytes
from .ops.mxfp4 import BLOCK_SIZE as MXFP4_BLOCK  # values per MXFP4 block (along the input dimension)
from .ops.mxfp4 import BYTES_PER_BLOCK

__all__ = ["inspect_data", "inspect_report", "inspect_json", "kv_cache_figures", "weight_memory",
           "MXFP4_BLOCK", "MXFP4_BYTES_PER_BLOCK", "CONTEXTS"]

MXFP4_BYTES_PER_BLOCK = BYTES_PER_BLOCK + 1  # 16 bytes of packed E2M1 nibbles + 1 E8M0 scale byte = 4.25 bits per value
CONTEXTS = (4096, 32768)    # context lengths reported besides the model's maximum
ITEMSIZE = {"fp32": 4, "bf16": 2}
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
# storage dtype of the released checkpoints, by preset (HF config.json `torch_dtype`)
_PRESET_RELEASE_DTYPE = {"gpt2": "float32", "gpt2-medium": "float32", "gpt2-large": "float32",
                         "gpt2-xl": "float32"}


# ------------------------------------------------------------------------------------ resolution

def _resolve(model_or_preset):
    """(ModelConfig, source dict) for a preset name, path or ModelConfig."""
    if isinstance(model_or_preset, ModelConfig):
        return model_or_preset, {"kind": "config_object", "name": model_or_preset.name}
    if not isinstance(model_or_preset, (str, os.PathLike)):
        raise ArgumentError(f"model_or_preset: expected a preset name, a path or a ModelConfig, "
                            f"found {type(model_or_preset).__name__}")
    name = os.fspath(model_or_preset)
    path = Path(os.path.expanduser(name))
    if name and path.exists():
        return _resolve_path(path)
    key = name if name in PRESETS else name.lower()
    if key in PRESETS:
        return PRESETS[key], {"kind": "preset", "name": key, "release_dtype": _PRESET_RELEASE_DTYPE.get(key, "bfloat16")}
    raise RefimplError(f"{name}: expected a preset name ({', '.join(PRESETS)}), a config.json, a checkpoint "
                       f"folder or a .gguf file, found no such preset, file or folder")


def _release_dtype(config_dict):
    dt = config_dict.get("torch_dtype", config_dict.get("dtype"))
    return dt if isinstance(dt, str) and dt in _DTYPE_BYTES else "bfloat16"


def _resolve_path(path):
    if path.is_file() and path.suffix == ".gguf":
        return _resolve_gguf(path)
    folder = None
    if path.is_dir():
        folder = path
        cfg_path = path / "config.json"
        if not cfg_path.is_file() and (path / "original" / "config.json").is_file():
            cfg_path = path / "original" / "config.json"
    elif path.suffix == ".safetensors":
        folder = path.parent
        cfg_path = path.parent / "config.json"
    else:
        cfg_path = path
    cfg = load_config(cfg_path, name=(folder or path).name if folder else "")
    src = {"kind": "checkpoint" if folder else "config", "path": str(path), "config": str(cfg_path),
           "release_dtype": _release_dtype(read_json_object(cfg_path))}
    if folder is not None:
        files = _safetensors_bytes(cfg_path.parent)
        if files:
            src["checkpoint_files"] = files
    return cfg, src


def _safetensors_bytes(folder):
    """Tensor bytes in a folder's *.safetensors headers and the index's total_size (nothing else read)."""
    out = {}
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        meta = read_json_object(index).get("metadata") or {}
        if isinstance(meta.get("total_size"), (int, float)):
            out["index_total_size"] = int(meta["total_size"])
    files = sorted(folder.glob("*.safetensors"))
    if files:
        from .checkpoints.safetensors_io import open_safetensors

        total, count = 0, 0
        for f in files:
            st = open_safetensors(f)  # validates the header; tensor data is only memory-mapped
            for name in st:
                total += int(np.prod(st.shape(name), dtype=np.int64)) * np.dtype(st.dtype(name)).itemsize
                count += 1
        out.update({"files": len(files), "tensors": count, "tensor_bytes": total})
    return out


def _resolve_gguf(path):
    from .checkpoints import gguf_reader

    tensors = gguf_reader.read_gguf_raw_tensors(path)
    cfg = gguf_reader.read_gguf_config(path)
    types = {}
    for t in tensors.values():
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    src = {"kind": "gguf", "path": str(path), "file_bytes": path.stat().st_size,
           "tensor_bytes": sum(int(t.n_bytes) for t in tensors.values()),
           "tensor_elements": sum(int(t.n_elements) for t in tensors.values()),
           "tensor_types": dict(sorted(types.items()))}
    return cfg, src


# ------------------------------------------------------------------------------------ numbers

def kv_cache_figures(cfg, num_tokens):
    """KV-cache bytes of one sequence of `num_tokens` tokens, every layer counted.

    Returns {"full": {"bf16", "fp32"}, "windowed": {"bf16", "fp32"}}: `full` keeps all tokens in
    every layer (what refimpl.model.kvcache.KVCache does); `windowed` keeps min(T, W) tokens in a layer
    with sliding window W (key j is visible to query i iff i - W < j <= i, so W keys suffice).
    """
    sliding = [cfg.layer_window(layer) for layer in range(cfg.num_layers)]
    n_full = sum(w is None for w in sliding)
    out = {"full": {}, "windowed": {}}
    for tag, size in ITEMSIZE.items():
        def kv(layers, tokens):
            return kv_cache_bytes(layers, cfg.num_kv_heads, cfg.head_dim, tokens, itemsize=size) if layers else 0

        out["full"][tag] = kv(cfg.num_layers, num_tokens)
        out["windowed"][tag] = kv(n_full, num_tokens) + sum(kv(1, min(num_tokens, w)) for w in sliding if w)
    return out


def _expert_weight_counts(cfg):
    """(expert matrix elements, MXFP4 bytes of those matrices) over all layers and experts."""
    d, inter = cfg.hidden_size, cfg.intermediate_size
    gated = cfg.activation in ("swiglu", "swiglu_oss")
    mats = [(2 * inter, d), (d, inter)] if gated else [(inter, d), (d, inter)]  # [out, in] of mlp1 (gate+up), mlp2
    elems = sum(o * i for o, i in mats)
    mx = sum(o * math.ceil(i / MXFP4_BLOCK) * MXFP4_BYTES_PER_BLOCK for o, i in mats)
    n = cfg.num_layers * cfg.num_experts
    return n * elems, n * mx


def _experts_in_mxfp4(cfg):
    if not cfg.num_experts:
        return False
    q = cfg.extra.get("quantization")
    if q is not None:
        return q == "mxfp4"
    return cfg.extra.get("model_type") == "openai_gpt_oss"  # OpenAI's original checkpoints are MXFP4


def weight_memory(cfg, *, release_dtype="bfloat16", counts=None):
    """Weight bytes: {"fp32", "bf16", "as_released": {...}} (every parameter once; tied head once)."""
    counts = counts or count_parameters(cfg)
    total = counts["total"]
    other = _DTYPE_BYTES[release_dtype]
    rel = {"dtype": release_dtype}
    if _experts_in_mxfp4(cfg):
        elems, mx = _expert_weight_counts(cfg)
        rel.update({"rule": f"expert matrices MXFP4 (17 bytes per {MXFP4_BLOCK} values), everything else "
                            f"{release_dtype}", "mxfp4_parameters": elems, "mxfp4_bytes": mx,
                    "other_parameters": total - elems, "other_bytes": (total - elems) * other,
                    "bytes": mx + (total - elems) * other})
    else:
        rel.update({"rule": f"every parameter {release_dtype}", "bytes": total * other})
    return {"fp32": total * 4, "bf16": total * 2, "as_released": rel}


def _layer_groups(cfg):
    """[(window or None, [layer indices])] in order of first appearance."""
    groups = {}
    for layer in range(cfg.num_layers):
        groups.setdefault(cfg.layer_window(layer), []).append(layer)
    return list(groups.items())


def _architecture(cfg):
    a = {"arch": cfg.arch, "name": cfg.name, "num_layers": cfg.num_layers, "hidden_size": cfg.hidden_size,
         "num_heads": cfg.num_heads, "num_kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
         "query_width": cfg.num_heads * cfg.head_dim, "kv_width": cfg.num_kv_heads * cfg.head_dim,
         "intermediate_size": cfg.intermediate_size, "num_experts": cfg.num_experts,
         "experts_per_token": cfg.experts_per_token, "router": cfg.router if cfg.num_experts else None,
         "norm": cfg.norm, "norm_eps": cfg.norm_eps, "norm_placement": cfg.norm_placement,
         "activation": cfg.activation, "position": cfg.position,
         "rope_theta": cfg.rope_theta if cfg.position == "rope" else None,
         "rope_pairing": cfg.rope_pairing if cfg.position == "rope" else None,
         "rope_scaling": dict(cfg.rope_scaling) if cfg.rope_scaling else None,
         "sliding_window": cfg.sliding_window,
         "sliding_layers": [layer for w, ls in _layer_groups(cfg) if w for layer in ls],
         "attention_bias": cfg.attention_bias, "attention_out_bias": cfg.attention_out_bias,
         "mlp_bias": cfg.mlp_bias, "qk_norm": cfg.qk_norm, "attention_sinks": cfg.attention_sinks,
         "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_position_embeddings,
         "tie_word_embeddings": cfg.tie_word_embeddings}
    return a


def inspect_data(model_or_preset):
    """The calculator's numbers as a JSON-able dict (ints are exact; bytes are plain byte counts).

    Keys: source, architecture, parameters {total, active, active_fraction, per_component},
    kv_cache {bytes_per_token {bf16, fp32}, bytes_per_token_per_layer, contexts [{tokens, full,
    windowed}]}, weights {fp32, bf16, as_released {bytes, rule, dtype, ...}}.
    Errors: an unknown name -> RefimplError naming it; bad config -> ConfigError; bad file -> CheckpointError.
    """
    cfg, src = _resolve(model_or_preset)
    counts = count_parameters(cfg)
    per_token = kv_cache_figures(cfg, 1)["full"]
    ctxs = sorted({t for t in CONTEXTS if t < cfg.max_position_embeddings} | {cfg.max_position_embeddings})
    kv = {"bytes_per_token": per_token,
          "bytes_per_token_per_layer": {k: v // cfg.num_layers for k, v in per_token.items()},
          "contexts": [{"tokens": t, **kv_cache_figures(cfg, t)} for t in ctxs]}
    if src["kind"] == "gguf":
        release = {"bytes": src["tensor_bytes"], "rule": "tensor bytes of the GGUF file ("
                   + ", ".join(f"{k} x{v}" for k, v in src["tensor_types"].items()) + ")", "dtype": "gguf"}
        weights = {"fp32": counts["total"] * 4, "bf16": counts["total"] * 2, "as_released": release}
    else:
        weights = weight_memory(cfg, release_dtype=src.get("release_dtype", "bfloat16"), counts=counts)
    return {"source": src, "architecture": _architecture(cfg),
            "parameters": {"total": counts["total"], "active": counts["active"],
                           "active_fraction": counts["active"] / counts["total"],
                           "per_component": dict(counts["per_component"])},
            "kv_cache": kv, "weights": weights}


def inspect_json(model_or_preset):
    """json.dumps(inspect_data(model_or_preset), indent=2)."""
    return json.dumps(inspect_data(model_or_preset), indent=2)


# ------------------------------------------------------------------------------------ text

def _count(n):
    human = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"
    return f"{n:,} ({human})"


def _bytes(b):
    for dec, binary, p in (("GB", "GiB", 3), ("MB", "MiB", 2), ("KB", "KiB", 1)):
        if b >= 1000 ** p or p == 1:
            return f"{b:,} B = {b / 1000 ** p:.2f} {dec} = {b / 1024 ** p:.2f} {binary}"


def _ranges(idx):
    if len(idx) > 2 and all(b - a == idx[1] - idx[0] for a, b in zip(idx, idx[1:])):
        step = idx[1] - idx[0]
        return f"{idx[0]}..{idx[-1]}" + (f" step {step}" if step != 1 else "")
    return ",".join(map(str, idx))


def inspect_report(model_or_preset):
    """A text report of inspect_data's numbers (architecture, parameters, KV cache, weight memory)."""
    d = inspect_data(model_or_preset)
    a, p, kv, w, src = d["architecture"], d["parameters"], d["kv_cache"], d["weights"], d["source"]
    lines = [f"{a['name'] or src.get('name') or src.get('path', '')}  [{a['arch']}]  "
             f"({src['kind']}{': ' + src['path'] if 'path' in src else ''})", "", "architecture"]
    group = a["num_heads"] // a["num_kv_heads"]
    lines.append(f"  layers {a['num_layers']}, hidden {a['hidden_size']}, heads q/kv {a['num_heads']}/"
                 f"{a['num_kv_heads']} ({group} q per kv), head_dim {a['head_dim']} "
                 f"(q width {a['query_width']}, kv width {a['kv_width']})")
    if a["num_experts"]:
        lines.append(f"  MoE: {a['num_experts']} experts, {a['experts_per_token']} active per token "
                     f"(router {a['router']}), expert width {a['intermediate_size']}")
    else:
        lines.append(f"  MLP width {a['intermediate_size']}")
    lines.append(f"  {a['norm']}norm ({a['norm_placement']}, eps {a['norm_eps']:g}), activation {a['activation']}")
    if a["position"] == "rope":
        theta = a["rope_theta"]
        rope = f"RoPE theta {theta:,.0f}" if float(theta).is_integer() else f"RoPE theta {theta:g}"
        rope += f", {a['rope_pairing']} pairing"
        if a["rope_scaling"]:
            s = dict(a["rope_scaling"])
            rope += f", {s.pop('rope_type', '?')} scaling " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else
                                                                        f"{k} {v}" for k, v in s.items())
        lines.append("  " + rope)
    else:
        lines.append(f"  learned absolute positions ({a['max_position_embeddings']})")
    groups = {}
    for layer in range(a["num_layers"]):
        groups.setdefault(layer in a["sliding_layers"], []).append(layer)
    if a["sliding_layers"]:
        win = f"sliding window {a['sliding_window']} (i - {a['sliding_window']} < j <= i) on " \
              f"{len(groups[True])} layers {_ranges(groups[True])}"
        if groups.get(False):
            win += f"; full causal on {len(groups[False])} layers {_ranges(groups[False])}"
    else:
        win = "full causal attention on every layer"
    lines.append("  " + win)
    extras = [n for n, on in (("qkv bias", a["attention_bias"]), ("out bias", a["attention_out_bias"]),
                              ("mlp bias", a["mlp_bias"]), ("q/k norm", a["qk_norm"]),
                              ("attention sinks", a["attention_sinks"])) if on]
    lines.append(f"  vocab {a['vocab_size']:,}, context {a['max_position_embeddings']:,}, embeddings "
                 f"{'tied' if a['tie_word_embeddings'] else 'untied'}" + (", " + ", ".join(extras) if extras else ""))

    lines += ["", "parameters",
              f"  total            {_count(p['total'])}",
              f"  active per token {_count(p['active'])}  ({100 * p['active_fraction']:.1f} %)"]
    for k, v in p["per_component"].items():
        if v:
            lines.append(f"    {k:<19s}{v:>16,}  {100 * v / p['total']:5.1f} %")

    pt = kv["bytes_per_token"]
    lines += ["", "KV cache (one sequence; K and V of every layer)",
              f"  per token: bf16 {pt['bf16']:,} B, fp32 {pt['fp32']:,} B  "
              f"(per layer {kv['bytes_per_token_per_layer']['bf16']:,} B bf16)"]
    for c in kv["contexts"]:
        lines.append(f"  at {c['tokens']:>7,} tokens: bf16 {_bytes(c['full']['bf16'])};  fp32 {_bytes(c['full']['fp32'])}")
        if c["windowed"] != c["full"]:
            lines.append(f"     windowed (sliding layers keep {a['sliding_window']}): "
                         f"bf16 {_bytes(c['windowed']['bf16'])};  fp32 {_bytes(c['windowed']['fp32'])}")

    rel = w["as_released"]
    lines += ["", "weight memory (GB = 1e9 B, GiB = 2^30 B)",
              f"  fp32         {_bytes(w['fp32'])}",
              f"  bf16         {_bytes(w['bf16'])}",
              f"  as released  {_bytes(rel['bytes'])}  [{rel['rule']}]"]
    if "mxfp4_bytes" in rel:
        lines.append(f"    experts MXFP4 {rel['mxfp4_parameters']:,} weights -> {rel['mxfp4_bytes']:,} B; "
                     f"other {rel['other_parameters']:,} params -> {rel['other_bytes']:,} B")
    files = src.get("checkpoint_files") or {}
    if "index_total_size" in files:
        lines.append(f"  checkpoint index total_size {files['index_total_size']:,} B")
    if "tensor_bytes" in files:
        lines.append(f"  checkpoint files: {files['files']} safetensors, {files['tensors']} tensors, "
                     f"{files['tensor_bytes']:,} B")
    if src["kind"] == "gguf":
        lines.append(f"  GGUF file {src['file_bytes']:,} B; {src['tensor_elements']:,} values in its tensors")
    return "\n".join(lines)
