"""Dump a trace (spec/trace.md names) from a Hugging Face transformers model with forward hooks.

Example of how any engine produces a file for `refimpl diff`; optional, never imported by refimpl.

    /tmp/goldenv/bin/python golden/dump_hf_trace.py golden/tiny_llama/checkpoint --ids 1,5,7,2 \
        --out /tmp/hf_trace.safetensors [--dtype float32|float64|bfloat16]
    refimpl diff --model golden/tiny_llama/checkpoint --against /tmp/hf_trace.safetensors

Hooks (HF module -> trace name): embed_tokens (+ wpe/drop for GPT-2) -> embed; input_layernorm /
ln_1 -> layers.L.attn_norm; o_proj / attn.c_proj -> layers.L.attn.out; post_attention_layernorm /
ln_2 -> layers.L.mlp_norm; mlp -> layers.L.mlp.out; the decoder layer -> layers.L.out; the final
norm -> final_norm; lm_head -> logits. With attn_implementation="eager", output_attentions gives
layers.L.attn.probs [B, H, T, Tk] (sink column dropped by HF's gpt-oss eager path, as refimpl does).
Tensors are saved as float32 (bfloat16 runs keep their values; `--dtype` is written to the metadata
so that `refimpl diff` applies the bfloat16 tolerance: pass --dtype bfloat16 to refimpl diff too).
"""

import argparse
import json
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

SUFFIX = {  # HF attribute name of a decoder-layer child -> trace name inside the block
    "input_layernorm": "attn_norm", "ln_1": "attn_norm",
    "post_attention_layernorm": "mlp_norm", "ln_2": "mlp_norm",
    "mlp": "mlp.out",
}


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def dump(model_dir, ids, dtype="float32"):
    torch_dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch_dtype, attn_implementation="eager")
    model.eval()
    trace, hooks = {}, []

    def keep(name):
        def hook(module, args, out):
            trace[name] = _first(out).detach().to(torch.float32 if dtype != "float64" else torch.float64)[0].numpy()
        return hook

    base = getattr(model, "model", None) or getattr(model, "transformer")
    layers = getattr(base, "layers", None) or getattr(base, "h")
    if hasattr(base, "embed_tokens"):
        hooks.append(base.embed_tokens.register_forward_hook(keep("embed")))
    else:  # GPT-2: the embedding is wte + wpe, the dropout's output
        hooks.append(base.drop.register_forward_hook(keep("embed")))
    for i, layer in enumerate(layers):
        for attr, name in SUFFIX.items():
            if hasattr(layer, attr):
                hooks.append(getattr(layer, attr).register_forward_hook(keep(f"layers.{i}.{name}")))
        attn = getattr(layer, "self_attn", None) or getattr(layer, "attn")
        proj = getattr(attn, "o_proj", None) or getattr(attn, "c_proj")
        hooks.append(proj.register_forward_hook(keep(f"layers.{i}.attn.out")))
        hooks.append(layer.register_forward_hook(keep(f"layers.{i}.out")))
    norm = getattr(base, "norm", None) or getattr(base, "ln_f")
    hooks.append(norm.register_forward_hook(keep("final_norm")))
    hooks.append(model.lm_head.register_forward_hook(keep("logits")))
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    for i, a in enumerate(out.attentions or ()):
        if a is not None:
            trace[f"layers.{i}.attn.probs"] = a.detach().to(torch.float64 if dtype == "float64" else torch.float32)[0].numpy()
    for h in hooks:
        h.remove()
    return trace


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("--ids", required=True, help="comma-separated token ids")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    a = p.parse_args(argv)
    ids = [int(t) for t in a.ids.split(",")]
    trace = dump(a.model_dir, ids, a.dtype)
    meta = {"format": "refimpl-trace", "ids": json.dumps(ids), "producer": "transformers forward hooks",
            "dtype": a.dtype}  # no "order": refimpl puts spec names in forward order
    save_file({k: np.ascontiguousarray(v) for k, v in trace.items()}, a.out, metadata=meta)
    print(f"wrote {len(trace)} tensors to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
