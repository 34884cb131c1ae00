"""Perplexity of a token sequence under a model, with the strided sliding window of HF's docs.

PPL = exp( mean over the scored tokens x_i of -log p(x_i | the tokens before it in its window) ).
Windows ids[begin:begin+context] start at 0, stride, 2*stride, ... (the last one ends at N); a
window scores the tokens the previous window did not reach, except its own first token (nothing
before it to condition on). So with stride < context every token after x_0 is scored exactly once,
each seeing at least context - stride tokens before it; with stride == context (no overlap) the first
token of every window is not scored, as in HF's recipe. No BOS is added here (the caller decides:
`refimpl perplexity --add-bos`). log p is the op log_softmax of the logits taken in float64.
HF's docs weight each window's mean loss by its target count minus one; the result also carries
that figure (`ppl_hf_docs`), equal to `ppl` when the windows do not overlap.
Checked against transformers' numbers: spec/perplexity.md.
"""

import math

import numpy as np

from .errors import ArgumentError
from .ops.sampling import log_softmax

__all__ = ["perplexity", "token_nll", "windows"]


def token_nll(logits, targets):
    """-log_softmax(logits[t])[targets[t]] for each row t, in float64 (the op `log_softmax`).

    logits [T, V] (any float dtype), targets [T] ints in [0, V). Returns float64 [T].
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ArgumentError(f"logits, targets: expected [T, V] and [T], found {x.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[1]):
        raise ArgumentError(f"targets: expected ids in [0, {x.shape[1]}), found {int(y.min())}..{int(y.max())}")
    return -log_softmax(x, axis=-1)[np.arange(x.shape[0]), y]  # the op, in float64: [T]


def windows(n, context, stride):
    """[(begin, end, first_scored)] for n tokens: window ids[begin:end] scores positions first_scored..end-1."""
    if not (isinstance(context, int) and context >= 2):
        raise ArgumentError(f"context: expected an integer >= 2, found {context!r}")
    if not (isinstance(stride, int) and 1 <= stride <= context):
        raise ArgumentError(f"stride: expected an integer in [1, context={context}], found {stride!r}")
    out, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        out.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n:
            break
    return out


def perplexity(model, ids, *, context=None, stride=None, progress=False):
    """Perplexity of `ids` under `model` (rules in the module docstring).

    context: window length (default: the model's context length); stride: window step (default:
    context, i.e. no overlap). Returns a dict: ppl, nll (mean negative log-likelihood, nats),
    tokens (number scored: N - 1 unless windows do not overlap), ppl_hf_docs, context, stride, windows (list of
    {begin, end, scored, nll_sum}).
    """
    x = np.asarray(ids)
    if x.ndim != 1 or x.size < 2 or not np.issubdtype(x.dtype, np.integer):
        raise ArgumentError(f"ids: expected a 1-D sequence of at least 2 token ids, found shape {x.shape} "
                            f"dtype {x.dtype}")
    limit = int(model.config.max_position_embeddings)
    context = limit if context is None else context
    if isinstance(context, int) and context > limit:
        raise ArgumentError(f"context: expected at most the model's context length {limit}, found {context}")
    stride = context if stride is None else stride
    wins = windows(int(x.size), context, stride)
    bar = None
    if progress:
        from ._progress import Progress

        bar = Progress(len(wins), "perplexity")
    total, count, docs_num, docs_den, out, prev_end = 0.0, 0, 0.0, 0, [], 0
    for begin, end, first in wins:
        logits = np.asarray(model.logits(x[begin:end]))  # [L, V]
        rows = np.arange(first - begin - 1, end - begin - 1)  # logits row t predicts token t + 1
        nll = token_nll(logits[rows], x[first:end])
        s, c = float(nll.sum()), int(nll.size)
        total += s
        count += c
        targets_hf, prev_end = end - prev_end, end  # HF's trg_len: its loss is the mean over our c tokens
        if c:
            docs_num += s / c * (targets_hf - 1)
            docs_den += targets_hf - 1
        out.append({"begin": begin, "end": end, "scored": c, "nll_sum": s})
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    mean = total / count
    return {"ppl": math.exp(mean), "nll": mean, "tokens": count,
            "ppl_hf_docs": math.exp(docs_num / docs_den) if docs_den else math.exp(mean),
            "context": context, "stride": stride, "windows": out}
