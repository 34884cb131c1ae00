"""Helpers shared by the golden/make_*.py producers (run in their own environment, with torch).

Nothing here is imported by refimpl or by its tests.
"""

import hashlib
import json
import os
import platform
import shutil
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent
FORMAT_VERSION = 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def producer():
    import torch
    import transformers

    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def fresh_case_dir(name):
    d = GOLDEN / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def checkpoint_hashes(folder):
    """{relative file name: sha256} for every file in a checkpoint folder."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def regen_command(script):
    return f"/tmp/goldenv/bin/python golden/{os.path.basename(script)}  (from the repository root; " \
           f"environment: torch 2.13 CPU, transformers 5.24, safetensors, numpy)"


# ------------------------------------------------------------------ true float64 runs
#
# HF transformers keeps float32 islands even after model.double(): RMSNorm casts to torch.float32,
# eager softmax passes dtype=torch.float32, RoPE computes inv_freq and cos/sin with .float(), and
# Mixtral's router calls .float(). OpenAI's gpt-oss reference does the same (RMSNorm x.float(),
# RoPE in torch.float32) and builds its parameters as torch.bfloat16. For a float64 golden every
# step must be float64, so during a float64 run the name `torch` inside the listed modules is
# replaced by a proxy whose float32 / float / bfloat16 / float16 attributes are torch.float64, and
# torch.Tensor.float() returns float64. Nothing on disk is edited; everything is restored on exit.

_HF_MODULES = (
    "transformers.models.llama.modeling_llama",
    "transformers.models.mixtral.modeling_mixtral",
    "transformers.models.qwen3.modeling_qwen3",
    "transformers.models.gpt_oss.modeling_gpt_oss",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.modeling_rope_utils",
    "transformers.integrations.moe",
)


class _TorchProxy:
    def __init__(self, real, dtype, names=("float32", "float", "bfloat16", "float16", "half")):
        self._real, self._dtype, self._names = real, dtype, set(names)

    def __getattr__(self, name):
        if name in self._names:
            return self._dtype
        return getattr(self._real, name)


class force_dtype:
    """Context manager: inside it, the listed modules see every float dtype name as `dtype`, and
    Tensor.float() returns `dtype` (used with dtype=torch.float64)."""

    def __init__(self, dtype, modules=_HF_MODULES, patch_tensor_float=True):
        self.dtype, self.modules, self.patch_tensor_float = dtype, modules, patch_tensor_float
        self._saved = []

    def __enter__(self):
        import importlib

        import torch

        for name in self.modules:
            mod = importlib.import_module(name) if isinstance(name, str) else name
            if getattr(mod, "torch", None) is not None:
                self._saved.append((mod, mod.torch))
                mod.torch = _TorchProxy(torch, self.dtype)
        if self.patch_tensor_float:
            self._float = torch.Tensor.float
            dt = self.dtype
            torch.Tensor.float = lambda t, *a, **k: t.to(dt)
        return self

    def __exit__(self, *exc):
        import torch

        for mod, real in self._saved:
            mod.torch = real
        self._saved = []
        if self.patch_tensor_float:
            torch.Tensor.float = self._float
        return False


def refresh_hf_rope(model, dtype):
    """Recompute every HF rotary module's inv_freq (and attention scaling) with dtype arithmetic.

    HF computes inv_freq in float32 when the model is built; .to(float64) only widens the rounded
    values. Call inside force_dtype(torch.float64)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    n = 0
    for mod in model.modules():
        if hasattr(mod, "inv_freq") and hasattr(mod, "rope_type") and hasattr(mod, "config"):
            if mod.rope_type == "default":
                fn = mod.compute_default_rope_parameters
            else:
                fn = ROPE_INIT_FUNCTIONS[mod.rope_type]
            inv_freq, scaling = fn(mod.config)
            mod.inv_freq = inv_freq.to(dtype)
            if hasattr(mod, "original_inv_freq"):
                mod.original_inv_freq = inv_freq.to(dtype).clone()
            mod.attention_scaling = scaling
            n += 1
    return n
