"""Token and learned absolute position embeddings (spec/embeddings.md).

Both ops are exact gathers: they return rows of the table unchanged, in the
table's own dtype (a bfloat16 table gives bfloat16 rows; no promotion).
"""

import numpy as np

from .._validate import as_float_array, as_int_array, host_values, require

__all__ = ["embedding", "learned_positions", "check_embedding", "check_learned_positions"]


def _table(weight, name):
    w = as_float_array(weight, name)
    if w.ndim != 2:
        require(False, name, "a 2-D table [rows, width]", f"shape {w.shape}")
    return w


def _nonneg_int(v, name):
    if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0):
        require(False, name, "an integer >= 0", repr(v))
    return int(v)


def check_embedding(ids, weight):
    """The argument checks of embedding; the id range is checked when the ids are on the host."""
    w = _table(weight, "weight")
    ids = as_int_array(ids, "ids")
    vals = host_values(ids)
    if vals is None:
        return
    vocab = w.shape[0]
    bad = (vals < 0) | (vals >= vocab)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        require(
            False,
            "ids",
            f"values in [0, {vocab}) (vocab size {vocab} = rows of weight)",
            f"{int(vals[where])} at index {where}",
        )


def check_learned_positions(wpe, length, *, offset=0):
    """The argument checks of learned_positions."""
    w = _table(wpe, "wpe")
    length = _nonneg_int(length, "length")
    offset = _nonneg_int(offset, "offset")
    rows = w.shape[0]
    if not (offset + length <= rows):
        require(False, "length", f"offset + length <= {rows} (rows of wpe)", f"offset {offset} + length {length} = {offset + length}")


def embedding(ids, weight):
    """Token embedding lookup: ``out[..., :] = weight[ids[...], :]``.

    ids: integer array of any shape (a Python int gives a single row).
    weight: [V, d] table (checkpoint names: GPT-2 ``wte.weight``, gpt-oss
    ``embedding.weight``, HF ``model.embed_tokens.weight``).

    Returns ``ids.shape + (d,)`` in ``weight``'s dtype. The gather is exact:
    no arithmetic, no rounding, no promotion (a bfloat16 table returns
    bfloat16). No scaling is applied (GPT-2, LLaMA and gpt-oss use none).

    Every id must satisfy ``0 <= id < V``; a negative id is an error (it is
    never wrapped around as NumPy indexing would).
    """
    check_embedding(ids, weight)
    w, ids = as_float_array(weight, "weight"), as_int_array(ids, "ids")
    return w[ids]  # [..., d]


def learned_positions(wpe, length, *, offset=0):
    """Learned absolute position rows: ``wpe[offset : offset + length]``.

    wpe: [P, d] position table (GPT-2 ``wpe.weight``, P = n_positions = 1024).
    length: number of positions (tokens in this call), an integer >= 0.
    offset: position of the first token, an integer >= 0; 0 for a full
    sequence, the number of already-cached tokens when decoding with a KV
    cache (GPT-2's ``past_length``).

    Requires ``offset + length <= P`` (positions beyond the table do not exist;
    nothing is wrapped or clamped). Returns [length, d] in ``wpe``'s dtype,
    exact (a copy). The caller adds it to the token embeddings.
    """
    check_learned_positions(wpe, length, offset=offset)
    w, length, offset = as_float_array(wpe, "wpe"), int(length), int(offset)
    return w[offset : offset + length].copy()  # [length, d]
