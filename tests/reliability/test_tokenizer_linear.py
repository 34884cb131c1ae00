"""The pure-Python BPE is O(n log n) and equals the textbook rescanning loop (heap and NumPy rounds).

`_bpe_merge` (heap of (rank, position) + linked list) against `_bpe` (rescan every pair after each
merge, the rule as spec/tokenizer.md states it) on random small vocabularies and texts built to
have many ties (repeated letters, one pair reachable by two splits), for merges-list and rank
vocabularies; and the number of pair lookups grows linearly with a run's length (counted, not timed).
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.text import tokenizer as T
from refimpl.text.tokenizer import Tokenizer

pytest.importorskip("regex", reason="the pure-Python tokenizer needs the `regex` package")


def _rank_vocab(tokens):
    """A rank vocabulary: the 3 single bytes a, b, c then `tokens` (multi-byte), ids = ranks."""
    out, seen = {}, set()
    for t in [b"a", b"b", b"c", *tokens]:
        if t not in seen:
            seen.add(t)
            out[t] = len(out)
    return out


_TOKEN = st.text("abc", min_size=2, max_size=5).map(str.encode)


@given(st.lists(_TOKEN, max_size=12), st.text("abc", max_size=40))
def test_heap_bpe_equals_textbook_loop_on_rank_vocabularies(tokens, text):
    ranks = _rank_vocab(tokens)
    tok = Tokenizer.from_tiktoken_vocab(b"\n".join(f"{__import__('base64').b64encode(b).decode()} {r}".encode()
                                                   for b, r in ranks.items()), pattern=r"[abc]+")
    b = text.encode()
    if not b:
        return
    want = [ranks[b]] if b in ranks else [ranks[p] for p in T._bpe([b[i:i + 1] for i in range(len(b))],
                                                                    lambda x, y: ranks.get(x + y))]
    assert tok._encode_piece(b) == want
    if b not in ranks:  # the NumPy rounds used for long pieces give the same merges
        byte_ids, pairs = tok._merge_tables()
        got = T._bpe_rounds([byte_ids[x] for x in b], pairs)
        assert got is None or got == want


@given(st.lists(st.tuples(st.text("abc", min_size=1, max_size=3), st.text("abc", min_size=1, max_size=3)),
                max_size=12), st.text("abc", max_size=40))
def test_heap_bpe_equals_textbook_loop_on_merge_lists(pairs, text):
    merges = [f"{x} {y}" for x, y in pairs]
    tokens = list(dict.fromkeys(["a", "b", "c"] + [x for x, _ in pairs] + [y for _, y in pairs]
                                + [x + y for x, y in pairs]))
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.merges": merges}
    tok = Tokenizer.from_gguf_metadata(meta, backend="python")
    rank = {}
    for r, (x, y) in enumerate(pairs):
        rank.setdefault((x.encode(), y.encode()), r)
    b = text.encode()
    want = [tokens.index(p.decode()) for p in T._bpe([b[i:i + 1] for i in range(len(b))],
                                                     lambda x, y: rank.get((x, y)))]
    assert tok._encode_piece(b) == want
    byte_ids, pairs = tok._merge_tables()
    assert T._bpe_rounds([byte_ids[x] for x in b], pairs) in (None, want)


def _lookups(tok, text):
    byte_ids, pairs = tok._merge_tables()
    calls = [0]

    class Counting(T._PairTable):
        def __getitem__(self, key):
            calls[0] += 1
            return super().__getitem__(key)

    c = Counting(pairs.shift, pairs.fill)
    c.update(pairs)
    tok._pairs = (byte_ids, c)
    try:
        tok.encode(text)
    finally:
        tok._pairs = (byte_ids, pairs)
    return calls[0]


@settings(max_examples=60)
@given(st.sampled_from(["a", "ab", "aab", "abc", "ba"]), st.integers(1, 300), st.text("abc", max_size=6))
def test_rounds_equal_textbook_loop_on_long_repetitive_pieces(unit, reps, tail):
    """Long runs (where the rounds do the work) against the textbook loop, rank vocabulary with
    tokens reachable by several splits (aaa = a+aa = aa+a)."""
    ranks = _rank_vocab([b"aa", b"aaa", b"ab", b"aab", b"aaaa", b"abab", b"ba", b"bc", b"abc", b"aaaaaa", b"aabaab"])
    tok = Tokenizer.from_tiktoken_vocab(b"\n".join(f"{__import__('base64').b64encode(b).decode()} {r}".encode()
                                                   for b, r in ranks.items()), pattern=r"[abc]+")
    b = (unit * reps + tail).encode()
    want = [ranks[p] for p in T._bpe([b[i:i + 1] for i in range(len(b))], lambda x, y: ranks.get(x + y))]
    byte_ids, pairs = tok._merge_tables()
    assert T._bpe_rounds([byte_ids[x] for x in b], pairs) == want
    assert T._bpe_merge([byte_ids[x] for x in b], pairs) == want


@pytest.mark.parametrize("unit", ["a", " ", "ab"])
def test_pair_lookups_grow_linearly_with_a_run(unit):
    """8x the text makes at most ~8x the pair lookups (the old loop made ~64x)."""
    tokens = ["a", "b", "Ġ", "aa", "aaaa", "ĠĠ", "ĠĠĠĠ", "ab", "abab"]
    merges = ["a a", "aa aa", "Ġ Ġ", "ĠĠ ĠĠ", "a b", "ab ab"]
    tok = Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
                                        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges},
                                       backend="python")
    small, big = _lookups(tok, unit * 2000), _lookups(tok, unit * 16000)
    assert big <= 8 * small * 1.2, (small, big)
