"""Byte-level BPE tokenizers in pure Python: SmolLM2 (GGUF tokens + merges) and tiktoken ranks (o200k).

Encoding a text (spec/tokenizer.md):
  1. split the text at the allowed special tokens (leftmost match; the longest special wins
     at one position); each special becomes its one id;
  2. pre-tokenize every other stretch with the vocabulary's regex (the `regex` module: it
     has the \\p{..} classes and \\s = Unicode White_Space, as Rust's regex crates);
     SmolLM2 ("smollm") first isolates every \\p{N} character, then applies the GPT-2 regex;
  3. byte-pair merge each piece's UTF-8 bytes: repeatedly merge the adjacent pair of lowest
     rank, the leftmost one on a tie, until no adjacent pair has a rank. The rank of a pair is
     its merge's index in the merges list (HF / GGUF "merges" vocabularies) or the rank of the
     concatenated bytes (tiktoken vocabularies, where a piece that is itself a token is taken
     whole first, as tiktoken does).
Decoding concatenates the tokens' bytes (a special token gives its text) and decodes UTF-8,
replacing invalid sequences with U+FFFD.

`Tokenizer.from_tokenizer_json` runs the `tokenizers` library instead (any HF tokenizer.json);
`Tokenizer.from_gguf_metadata(meta, backend="tokenizers")` builds the same SmolLM2 tokenizer with it.
"""

import base64
import heapq
import importlib.util
import struct
from pathlib import Path

from ..errors import ArgumentError, RefimplError, TokenizerError

__all__ = ["Tokenizer", "gguf_tokenizer", "PATTERNS", "bytes_to_unicode", "o200k_harmony", "quicktok_data_dir"]

# GPT-2 (openai/gpt-2 src/encoder.py; HF ByteLevel pre-tokenizer with use_regex=True)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# cl100k_base (tiktoken tiktoken_ext/openai_public.py)
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                  r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
# o200k_base and o200k_harmony (tiktoken tiktoken_ext/openai_public.py)
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
PATTERNS = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN, "o200k": O200K_PATTERN}

# tokenizer.ggml.pre -> (pattern, isolate every \p{N} character first); llama.cpp llama-vocab.cpp
_GGUF_PRE = {
    "smollm": (GPT2_PATTERN, True),
    "gpt-2": (GPT2_PATTERN, False),
    "gpt2": (GPT2_PATTERN, False),
}
_SPECIAL_TYPES = (3, 4)  # llama_token_type CONTROL, USER_DEFINED: matched whole in the text


def _regex():
    try:
        import regex
    except ImportError:
        raise TokenizerError("regex: expected the `regex` package (needed for \\p{..} pre-tokenization "
                             "patterns), found it missing: pip install regex") from None
    return regex


def _hf_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise RefimplError("this tokenizer needs the `tokenizers` package: pip install 'refimpl[text]'") from None
    return tokenizers


def bytes_to_unicode():
    """GPT-2's byte -> character table of byte-level vocabularies.

    The 188 bytes that are printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves;
    the other 68 bytes, in increasing order, map to U+0100, U+0101, ... (so b' ' -> 'Ġ' U+0120).
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(0x100 + extra)
            extra += 1
    return table


_NO_MERGE = -1


class _PairTable(dict):
    """{(a << shift) | b: (rank << shift) | merged id, or _NO_MERGE} for `_bpe_merge`.

    `fill(a, b)` computes (and the table keeps) an entry not yet present; without `fill` a
    missing pair has no merge. `merged == (1 << shift) - 1` marks a merge whose result is not a token.
    """

    def __init__(self, shift, fill=None):
        super().__init__()
        self.shift = shift
        self.fill = fill

    def __missing__(self, key):
        if self.fill is None:
            return _NO_MERGE
        v = self.fill(key >> self.shift, key & ((1 << self.shift) - 1))
        self[key] = v
        return v


def _bpe_merge(ids, pairs):
    """Byte-pair merge the token ids `ids` of one piece: the adjacent pair of lowest rank first,
    the leftmost one on a tie, until no adjacent pair has a rank. O(n log n) in the piece length.

    pairs: a `_PairTable`. Every adjacent pair of the current parts has an entry rank * n +
    position-of-its-left-part in a heap (so the heap's minimum is the lowest rank, leftmost); a merge
    links its two parts into one (doubly linked list) and pushes the two pairs it creates; a popped
    entry whose pair has changed since it was pushed is skipped (parts only grow, so a changed pair
    never has its old rank again). Same result as rescanning every pair after each merge (the
    quadratic textbook loop `_bpe`, kept as the tests' oracle).
    """
    n = len(ids)
    if n < 2:
        return list(ids)
    shift = pairs.shift
    mask = (1 << shift) - 1
    tok = list(ids)
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        v = pairs[(tok[i] << shift) | tok[i + 1]]
        if v >= 0:
            heap.append((v >> shift) * n + i)
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        key = pop(heap)
        i = key % n
        a = tok[i]
        if a < 0:
            continue
        j = nxt[i]
        if j < 0:
            continue
        v = pairs[(a << shift) | tok[j]]
        if v < 0 or (v >> shift) * n + i != key:
            continue  # stale: the pair at i changed since this entry was pushed
        m = v & mask
        if m == mask:
            raise _MergeNotAToken(a, tok[j])
        tok[i] = m
        tok[j] = -1
        k = nxt[j]
        nxt[i] = k
        if k >= 0:
            prv[k] = i
            v = pairs[(m << shift) | tok[k]]
            if v >= 0:
                push(heap, (v >> shift) * n + i)
        p = prv[i]
        if p >= 0:
            v = pairs[(tok[p] << shift) | m]
            if v >= 0:
                push(heap, (v >> shift) * n + p)
    return [t for t in tok if t >= 0]


SMALL_PIECE = 16  # pieces shorter than this use the rescanning loop (fewer steps than a heap's setup)


def _bpe_small(ids, pairs):
    """`_bpe_merge` for a short piece: rescan the pairs after each merge (lowest rank, leftmost)."""
    shift = pairs.shift
    mask = (1 << shift) - 1
    tok = list(ids)
    while len(tok) > 1:
        best, best_rank, best_i = -1, -1, -1
        a = tok[0]
        for i in range(len(tok) - 1):
            b = tok[i + 1]
            v = pairs[(a << shift) | b]
            if v >= 0 and (best < 0 or v >> shift < best_rank):
                best, best_rank, best_i = v, v >> shift, i
            a = b
        if best < 0:
            break
        m = best & mask
        if m == mask:
            raise _MergeNotAToken(tok[best_i], tok[best_i + 1])
        tok[best_i:best_i + 2] = [m]
    return tok


ROUNDS_MIN_LENGTH = 4096  # pieces at least this long start with `_bpe_rounds`


def _lookup_many(pairs, left, right):
    """`pairs` entries of many (left, right) id pairs at once (NumPy int64 arrays in and out)."""
    import numpy as np

    keys = (left << pairs.shift) | right
    uniq, inverse = np.unique(keys, return_inverse=True)
    vals = np.fromiter((pairs[k] for k in uniq.tolist()), dtype=np.int64, count=len(uniq))
    return vals[inverse.reshape(-1)]


def _bpe_rounds(ids, pairs):
    """The same merges as `_bpe_merge`, done a rank at a time with NumPy on a long piece.

    Let r be the lowest rank among the adjacent pairs and C the positions holding a pair of rank r.
    Merging never creates a pair of rank r again (a merges-list rank names one pair; a tiktoken
    rank names one byte string, and a new pair's bytes are longer than the merged part's). So, as
    long as no merge creates a pair of rank < r, the one-at-a-time rule (lowest rank, leftmost)
    merges exactly the positions of C picked greedily left to right without overlap (in each run of
    consecutive positions of C: the 1st, 3rd, 5th, ...). The round checks every pair a merge creates,
    in merge order (also the transient pair (merged, next part) that a later merge of the next part
    replaces), and applies only the merges up to the first one creating a rank below r; the next
    round starts again from the lowest rank. When a round merges fewer than 1/64 of the parts (no
    long repetitive structure) the rest is left to the heap (`_bpe_merge`). Same result as
    `_bpe_merge`, checked against the textbook loop in tests/reliability/test_tokenizer_linear.py.
    """
    import numpy as np

    shift = pairs.shift
    mask = (1 << shift) - 1
    tok = np.asarray(ids, dtype=np.int64)
    while len(tok) > 1:
        n = len(tok)
        v = _lookup_many(pairs, tok[:-1], tok[1:])
        has = v >= 0
        if not has.any():
            break
        rk = np.where(has, v >> shift, np.iinfo(np.int64).max)
        r = rk.min()
        cand = np.flatnonzero(rk == r)
        new_run = np.ones(len(cand), dtype=bool)
        new_run[1:] = np.diff(cand) != 1
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(cand)), 0))
        sel = cand[(np.arange(len(cand)) - run_start) % 2 == 0]
        merged = v[sel] & mask
        if (merged == mask).any():
            return None  # a merge result that is not a token: the heap path raises the error
        # the part left of each merge when it happens: the previous merge's result if adjacent
        left = np.where(sel > 0, tok[np.maximum(sel - 1, 0)], -1)
        adjacent = np.zeros(len(sel), dtype=bool)
        adjacent[1:] = sel[1:] - sel[:-1] == 2
        left = np.where(adjacent, np.concatenate(([-1], merged[:-1])), left)
        right = np.where(sel + 2 < n, tok[np.minimum(sel + 2, n - 1)], -1)
        bad = np.zeros(len(sel), dtype=bool)
        for other, first in ((left, True), (right, False)):
            ok = other >= 0
            if ok.any():
                a, b = (other[ok], merged[ok]) if first else (merged[ok], other[ok])
                vv = _lookup_many(pairs, a, b)
                bad[ok] |= (vv >= 0) & ((vv >> shift) < r)
        if bad.any():
            m = int(np.argmax(bad))
            sel, merged = sel[:m + 1], merged[:m + 1]
        tok[sel] = merged
        keep = np.ones(n, dtype=bool)
        keep[sel + 1] = False
        tok = tok[keep]
        if len(sel) * 64 < n:
            return _bpe_merge(tok.tolist(), pairs)
    return tok.tolist()


class _MergeNotAToken(Exception):
    """A merge whose result has no id (merges and tokens disagree)."""


def _bpe(parts, rank):
    """The textbook quadratic loop (rescan every pair after each merge); the tests' oracle for
    `_bpe_merge`. parts: list of bytes; rank(a, b) -> int | None."""
    parts = list(parts)
    while len(parts) > 1:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = rank(parts[i], parts[i + 1])
            if r is not None and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


class Tokenizer:
    """A vocabulary and the rules that turn text into ids and back.

    Build one with `from_gguf_metadata`, `from_tokenizer_json` or `from_tiktoken_vocab`.
    Attributes: vocab_size, bos_id (or None), eos_ids (tuple), special_tokens ({text: id}),
    add_bos (whether the model's own tools prepend bos_id; `encode` never does), chat_template and
    special_tokens_map (the model's Jinja chat template(s) and HF's named special tokens, read by
    refimpl.text.chat_template from the GGUF or the files beside tokenizer.json).
    """

    chat_template = None        # str | {name: str} | None
    special_tokens_map = None   # {"bos_token": text, "eos_token": text, ...} | None

    def apply_chat_template(self, conversation, **kwargs):
        """`conversation` rendered by the model's chat template: transformers' apply_chat_template
        (same arguments and defaults); refimpl.text.chat_template, spec/chat-formats.md."""
        from .chat_template import apply_chat_template

        return apply_chat_template(self, conversation, **kwargs)

    def __init__(self, *, kind, id_bytes, specials, pattern=None, digits_first=False, merges=None,
                 token_strings=None, bos_id=None, eos_ids=(), add_bos=False, hf=None, name=""):
        self._kind = kind                      # "merges" | "ranks" | "hf"
        self._id_bytes = id_bytes              # id -> bytes for ordinary tokens (None: special or hole)
        self._bytes_id = {b: i for i, b in enumerate(id_bytes) if b is not None} if id_bytes is not None else {}
        self.special_tokens = dict(specials)   # text -> id
        self._special_text = {}
        for text, i in self.special_tokens.items():
            self._special_text.setdefault(i, text)  # the first text listed for an id names it
        self._merges = merges
        self._token_strings = token_strings
        self._hf = hf
        self._digits_first = digits_first
        self.name = name
        self.bos_id = bos_id
        self.eos_ids = tuple(eos_ids)
        self.add_bos = add_bos
        self._cache = {}
        self._pairs = None
        if kind == "hf":  # one past the largest id (a vocabulary may have holes)
            self.vocab_size = max(hf.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        else:
            self.vocab_size = max(len(id_bytes), max(self.special_tokens.values(), default=-1) + 1)
        if pattern is not None:
            re = _regex()
            self._pattern = re.compile(pattern)
            self._digit_split = re.compile(r"(?P<digit>\p{N})|[^\p{N}]+")
        else:
            self._pattern = None
        self._special_re_cache = {}

    # ---- constructors -------------------------------------------------------------------------

    @classmethod
    def from_gguf_metadata(cls, metadata, *, backend="python"):
        """SmolLM2-style byte-level BPE from GGUF metadata (tokenizer.ggml.model 'gpt2').

        Reads tokenizer.ggml.{tokens, token_type, merges, pre, bos_token_id, eos_token_id,
        eot_token_id, add_bos_token}. Tokens of type 3 (control) or 4 (user-defined) are special
        tokens, matched whole in the text. backend: "python" (this module's BPE) or "tokenizers"
        (the HF `tokenizers` library, same vocabulary, merges and pre-tokenizer).
        """
        if backend not in ("python", "tokenizers", "auto"):
            raise ArgumentError(f"backend: expected 'python', 'tokenizers' or 'auto', found {backend!r}")
        if backend == "auto":
            backend = "tokenizers" if importlib.util.find_spec("tokenizers") is not None else "python"

        def field(key, default=KeyError):
            if key in metadata:
                return metadata[key]
            if default is KeyError:
                raise TokenizerError(f"{key}: expected a GGUF tokenizer field, found it missing")
            return default

        model = field("tokenizer.ggml.model")
        if model != "gpt2":
            raise TokenizerError(f"tokenizer.ggml.model: expected 'gpt2' (byte-level BPE), found {model!r}")
        pre = field("tokenizer.ggml.pre", "default")
        if pre not in _GGUF_PRE:
            raise TokenizerError(f"tokenizer.ggml.pre: expected one of {sorted(_GGUF_PRE)}, found {pre!r}")
        pattern, digits_first = _GGUF_PRE[pre]
        if not isinstance(model, str):
            raise TokenizerError(f"tokenizer.ggml.model: expected a string, found {type(model).__name__}")
        tokens = _list_of(field("tokenizer.ggml.tokens"), str, "tokenizer.ggml.tokens", "strings")
        types = _list_of(field("tokenizer.ggml.token_type", [1] * len(tokens)), int, "tokenizer.ggml.token_type",
                         "integers")
        if len(types) != len(tokens):
            raise TokenizerError(f"tokenizer.ggml.token_type: expected {len(tokens)} entries (one per token), "
                                 f"found {len(types)}")
        merges_raw = _list_of(field("tokenizer.ggml.merges"), str, "tokenizer.ggml.merges", "strings")

        decoder = {c: b for b, c in bytes_to_unicode().items()}
        id_bytes, specials = [], {}
        for i, (tok, ty) in enumerate(zip(tokens, types)):
            if ty in _SPECIAL_TYPES:
                specials[tok] = i
                id_bytes.append(None)
                continue
            try:
                id_bytes.append(bytes(decoder[c] for c in tok))
            except KeyError as exc:
                raise TokenizerError(f"tokenizer.ggml.tokens[{i}]: expected byte-level characters, found "
                                     f"{exc.args[0]!r} in {tok!r}") from None
        merges = {}
        for r, m in enumerate(merges_raw):
            ab = m.split(" ")
            if len(ab) != 2 or not ab[0] or not ab[1]:
                raise TokenizerError(f"tokenizer.ggml.merges[{r}]: expected 'left right', found {m!r}")
            try:
                pair = (bytes(decoder[c] for c in ab[0]), bytes(decoder[c] for c in ab[1]))
            except KeyError as exc:
                raise TokenizerError(f"tokenizer.ggml.merges[{r}]: expected byte-level characters, found "
                                     f"{exc.args[0]!r}") from None
            merges.setdefault(pair, r)
        def token_id(key):
            v = metadata.get(key)
            if v is None:
                return None
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < len(tokens):
                raise TokenizerError(f"{key}: expected a token id in 0..{len(tokens) - 1}, found "
                                     f"{_describe(v)}")
            return v

        bos = token_id("tokenizer.ggml.bos_token_id")
        eos = tuple(dict.fromkeys(i for i in (token_id("tokenizer.ggml.eos_token_id"),
                                              token_id("tokenizer.ggml.eot_token_id")) if i is not None))
        add_bos = metadata.get("tokenizer.ggml.add_bos_token", False)
        if not isinstance(add_bos, bool):
            raise TokenizerError(f"tokenizer.ggml.add_bos_token: expected true or false, found {_describe(add_bos)}")
        hf = None
        if backend == "tokenizers":
            hf = _build_hf_bytelevel(tokens, merges_raw, specials, digits_first)
        from .chat_template import attach_gguf

        return attach_gguf(cls(kind="hf" if hf is not None else "merges", id_bytes=id_bytes, specials=specials,
                   pattern=pattern, digits_first=digits_first, merges=merges, token_strings=tokens,
                   bos_id=bos, eos_ids=eos, add_bos=add_bos,
                   hf=hf, name=str(metadata.get("general.name", ""))), metadata)

    @classmethod
    def from_tokenizer_json(cls, path, *, bos_token=None, eos_tokens=None):
        """Any HF tokenizer.json, run by the `tokenizers` library (extra `text`).

        Special tokens are the added_tokens marked "special". bos/eos come from the arguments, else
        from tokenizer_config.json beside the file (bos_token, eos_token), else none.
        """
        import json

        tk = _hf_tokenizers()
        p = Path(path)
        text = _read_text_file(p, "a tokenizer.json file")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise TokenizerError(f"{p}: expected JSON, found unparsable text ({_json_why(exc)})") from None
        if not isinstance(data, dict):
            raise TokenizerError(f"{p}: expected a JSON object, found {type(data).__name__}")
        hf = _lib_call(lambda: tk.Tokenizer.from_str(text), p, "read it")
        added = data.get("added_tokens", [])
        if not isinstance(added, list):
            raise TokenizerError(f"{p}: added_tokens: expected a list, found {type(added).__name__}")
        specials = {}
        for k, t in enumerate(added):
            if not (isinstance(t, dict) and isinstance(t.get("content"), str) and isinstance(t.get("id"), int)
                    and not isinstance(t.get("id"), bool) and t["id"] >= 0):
                raise TokenizerError(f"{p}: added_tokens[{k}]: expected {{\"id\": int >= 0, \"content\": str, ...}}, "
                                     f"found {type(t).__name__}")
            if t.get("special"):
                specials[t["content"]] = t["id"]
        cfg_path = p.with_name("tokenizer_config.json")
        if (bos_token is None or eos_tokens is None) and cfg_path.exists():
            try:
                cfg = json.loads(_read_text_file(cfg_path, "a tokenizer_config.json file"))
            except (ValueError, RecursionError) as exc:
                if isinstance(exc, TokenizerError):
                    raise
                raise TokenizerError(f"{cfg_path}: expected JSON, found unparsable text ({_json_why(exc)})") from None
            if not isinstance(cfg, dict):
                raise TokenizerError(f"{cfg_path}: expected a JSON object, found {type(cfg).__name__}")

            def text_of(key):
                v = cfg.get(key)
                v = v.get("content") if isinstance(v, dict) else v
                if v is not None and not isinstance(v, str):
                    raise TokenizerError(f"{cfg_path}: {key}: expected a token text, found {type(v).__name__}")
                return v

            if bos_token is None:
                bos_token = text_of("bos_token")
            if eos_tokens is None and cfg.get("eos_token") is not None:
                eos_tokens = (text_of("eos_token"),)

        def id_of(t, what):
            if not isinstance(t, str):
                raise ArgumentError(f"{what}: expected a token text, found {type(t).__name__}")
            i = hf.token_to_id(t)
            if i is None:
                raise TokenizerError(f"{p}: {what}: expected a token of this vocabulary, found {t!r}")
            return i

        bos = id_of(bos_token, "bos_token") if bos_token else None
        eos = tuple(id_of(t, "eos_tokens") for t in (eos_tokens or ()))
        from .chat_template import attach_near

        return attach_near(cls(kind="hf", id_bytes=None, specials=specials, bos_id=bos, eos_ids=eos, hf=hf,
                               name=p.name), p.parent)

    @classmethod
    def from_tiktoken_vocab(cls, path_or_bytes, specials=None, *, pattern="o200k", bos_token=None,
                            eos_tokens=(), name=""):
        """A tiktoken-style rank vocabulary (ids are ranks) plus special tokens.

        path_or_bytes: a quicktok `.vocab` file (little-endian u32 count, then per token u16 length,
        the bytes, u32 rank) or a `.tiktoken` file (one "base64(bytes) rank" per line), as a path or
        its bytes. specials: {text: id}, or a quicktok `.special` file (u32 count, then per token
        u32 id, u16 length, UTF-8 text) as a path or bytes. pattern: "o200k", "cl100k", "gpt2" or
        a regex. eos_tokens / bos_token: special token texts.
        """
        data, where = _read_source(path_or_bytes, "path_or_bytes")
        ranks = _parse_rank_vocab(data, where)
        if specials is None:
            spec = {}
        elif isinstance(specials, dict):
            spec = {}
            for t, i in specials.items():
                if not isinstance(t, str) or not isinstance(i, int) or isinstance(i, bool) or i < 0:
                    raise ArgumentError(f"specials: expected {{str: id >= 0}}, found {t!r}: {i!r}")
                spec[t] = i
        else:
            sdata, swhere = _read_source(specials, "specials")
            spec = _parse_quicktok_special(sdata, swhere)
        size = max(ranks.values()) + 1
        id_bytes = [None] * size
        for b, r in ranks.items():
            if id_bytes[r] is not None:
                raise TokenizerError(f"{where}: rank {r}: expected each rank once, found it twice")
            id_bytes[r] = b
        for t, i in spec.items():
            if i < size and id_bytes[i] is not None:
                raise TokenizerError(f"specials: {t!r}: expected an id no ordinary token has, found {i} "
                                     f"(the rank of {id_bytes[i]!r})")
        pat = PATTERNS.get(pattern, pattern)
        if not isinstance(pat, str):
            raise ArgumentError(f"pattern: expected one of {sorted(PATTERNS)} or a regex string, found {pattern!r}")

        def sid(t, what):
            if t not in spec:
                raise ArgumentError(f"{what}: expected a special token of this vocabulary, found {t!r}")
            return spec[t]

        return cls(kind="ranks", id_bytes=id_bytes, specials=spec, pattern=pat,
                   bos_id=sid(bos_token, "bos_token") if bos_token is not None else None,
                   eos_ids=tuple(sid(t, "eos_tokens") for t in eos_tokens), name=name or str(where))

    # ---- queries ------------------------------------------------------------------------------

    def token_to_id(self, token):
        """The id of `token` (vocabulary string, special text, or raw bytes), or None."""
        if isinstance(token, str) and token in self.special_tokens:
            return self.special_tokens[token]
        if self._kind == "hf" and self._id_bytes is None:
            return self._hf.token_to_id(token) if isinstance(token, str) else None
        if isinstance(token, (bytes, bytearray)):
            return self._bytes_id.get(bytes(token))
        if not isinstance(token, str):
            return None
        if self._token_strings is not None:  # byte-level vocabulary strings ("Ġworld")
            if not hasattr(self, "_string_id"):
                self._string_id = {s: i for i, s in enumerate(self._token_strings)}
            return self._string_id.get(token)
        return self._bytes_id.get(token.encode("utf-8"))

    def id_to_token(self, token_id):
        """The vocabulary's own form of `token_id`: its string (byte-level vocabularies), its
        bytes (tiktoken vocabularies) or its text (special tokens)."""
        i = self._check_id(token_id, "token_id")
        if i in self._special_text:
            return self._special_text[i]
        if self._kind == "hf" and self._id_bytes is None:
            return self._hf.id_to_token(i)
        if self._token_strings is not None:
            return self._token_strings[i]
        return self._id_bytes[i]

    def token_bytes(self, token_id):
        """The bytes `token_id` stands for (a special token: its UTF-8 text)."""
        i = self._check_id(token_id, "token_id")
        if i in self._special_text:
            return self._special_text[i].encode("utf-8")
        if self._id_bytes is None:
            return _lib_call(lambda: self._hf.decode([i], skip_special_tokens=False), self.name or "tokenizer",
                             "decode an id").encode("utf-8")
        return self._id_bytes[i]

    def check_fits(self, vocab_size, source=""):
        """Refuse a tokenizer that can produce ids the model has no row for (id >= vocab_size).

        A model's vocabulary may be larger (padded rows); never smaller. TokenizerError naming source.
        """
        if self.vocab_size > vocab_size:
            raise TokenizerError(f"{source or self.name or 'tokenizer'}: expected a tokenizer whose ids fit the "
                                 f"model's vocab_size={vocab_size}, found ids up to {self.vocab_size - 1}")
        return self

    def is_special(self, token_id):
        return int(token_id) in self._special_text

    def _check_id(self, token_id, name):
        if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
            raise ArgumentError(f"{name}: expected an integer id, found {token_id!r}")
        i = int(token_id)
        ok = 0 <= i < self.vocab_size and (
            self._id_bytes is None or i in self._special_text
            or (i < len(self._id_bytes) and self._id_bytes[i] is not None))
        if not ok:
            raise ArgumentError(f"{name}: expected an id of this vocabulary (0 <= id < {self.vocab_size}, "
                                f"assigned), found {i}")
        return i

    # ---- encode / decode ----------------------------------------------------------------------

    def encode(self, text, *, allowed_special="all"):
        """Token ids of `text`; no BOS is added.

        allowed_special: "all" (every special token's text becomes its id), "none" (special texts
        are encoded as ordinary text), or a set of special token texts.
        """
        if not isinstance(text, str):
            raise ArgumentError(f"text: expected str, found {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates (from surrogateescape or bad JSON) have no UTF-8
            raise ArgumentError(f"text: expected valid Unicode, found a lone surrogate U+{ord(text[exc.start]):04X} "
                                f"at index {exc.start}") from None
        if allowed_special == "all":
            allowed = tuple(self.special_tokens)
        elif allowed_special == "none" or allowed_special is None:
            allowed = ()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            for t in allowed_special:
                if t not in self.special_tokens:
                    raise ArgumentError(f"allowed_special: expected special tokens of this vocabulary, found {t!r}")
            allowed = tuple(allowed_special)
        else:
            raise ArgumentError(f"allowed_special: expected 'all', 'none' or a set of special tokens, "
                                f"found {allowed_special!r}")
        ids = []
        if not allowed:
            ids.extend(self._encode_ordinary(text))
            return ids
        special_re = self._special_regex(allowed)
        start = 0
        for m in special_re.finditer(text):
            ids.extend(self._encode_ordinary(text[start:m.start()]))
            ids.append(self.special_tokens[m.group()])
            start = m.end()
        ids.extend(self._encode_ordinary(text[start:]))
        return ids

    def decode(self, ids, *, skip_special=False):
        """Text of `ids`: the tokens' bytes joined and read as UTF-8 (invalid bytes -> U+FFFD)."""
        return self.decode_bytes(ids, skip_special=skip_special).decode("utf-8", errors="replace")

    def decode_bytes(self, ids, *, skip_special=False):
        """The bytes of `ids` joined (special tokens give their UTF-8 text unless skip_special)."""
        try:
            seq = list(ids)
        except TypeError:
            raise ArgumentError(f"ids: expected a sequence of integer ids, found {type(ids).__name__}") from None
        out = []
        if self._id_bytes is None:  # tokenizers backend
            checked = [self._check_id(t, f"ids[{k}]") for k, t in enumerate(seq)]
            for k, i in enumerate(checked):
                if i in self._special_text:
                    if not skip_special:
                        out.append(self._special_text[i].encode("utf-8"))
                else:
                    out.append(self._hf_token_bytes(i))
            return b"".join(out)
        for k, t in enumerate(seq):
            i = self._check_id(t, f"ids[{k}]")
            if i in self._special_text:
                if not skip_special:
                    out.append(self._special_text[i].encode("utf-8"))
            else:
                out.append(self._id_bytes[i])
        return b"".join(out)

    def _hf_token_bytes(self, i):
        tok = self._hf.id_to_token(i)
        if not hasattr(self, "_byte_decoder"):
            self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        try:
            return bytes(self._byte_decoder[c] for c in tok)
        except KeyError:  # not a byte-level vocabulary: let the library's decoder speak
            return _lib_call(lambda: self._hf.decode([i], skip_special_tokens=False), self.name or "tokenizer",
                             "decode an id").encode("utf-8")

    def _special_regex(self, allowed):
        key = frozenset(allowed)
        r = self._special_re_cache.get(key)
        if r is None:
            import re

            alts = sorted(allowed, key=len, reverse=True)  # the longest special wins at one position
            r = re.compile("|".join(re.escape(t) for t in alts))
            self._special_re_cache[key] = r
        return r

    def _pretokenize(self, text):
        if not self._digits_first:
            return self._pattern.findall(text)
        pieces = []
        for m in self._digit_split.finditer(text):
            if m.group("digit") is not None:
                pieces.append(m.group())  # each \p{N} character is a piece of its own
            else:
                pieces.extend(self._pattern.findall(m.group()))
        return pieces

    def _encode_ordinary(self, text):
        if not text:
            return []
        if self._kind == "hf":
            hf = self._hf
            prev = getattr(hf, "encode_special_tokens", None)
            if prev is not None:
                hf.encode_special_tokens = True  # special texts here are ordinary text
            try:
                return list(_lib_call(lambda: hf.encode(text, add_special_tokens=False).ids, self.name or "tokenizer",
                                      "encode the text"))
            finally:
                if prev is not None:
                    hf.encode_special_tokens = prev
        ids = []
        extend, cache = ids.extend, self._cache
        cached, encode_piece = cache.get, self._encode_piece
        for piece in self._pretokenize(text):
            got = cached(piece)
            if got is None:
                got = encode_piece(piece.encode("utf-8"))
                if len(piece) <= 64 and len(cache) < 200_000:
                    cache[piece] = got
            extend(got)
        return ids

    def _merge_tables(self):
        """(byte -> id or None list, `_PairTable`) for `_bpe_merge`, built on first use."""
        if self._pairs is None:
            table = self._bytes_id
            shift = max(len(self._id_bytes), 2).bit_length()
            mask = (1 << shift) - 1
            byte_ids = [table.get(bytes([x])) for x in range(256)]
            if self._kind == "ranks":
                idb = self._id_bytes

                def fill(a, b):
                    r = table.get(idb[a] + idb[b])
                    return _NO_MERGE if r is None else (r << shift) | r

                pairs = _PairTable(shift, fill)
            else:
                pairs = _PairTable(shift)
                for (x, y), r in self._merges.items():
                    ia, ib = table.get(x), table.get(y)
                    if ia is None or ib is None:
                        continue  # parts are always tokens, so this merge can never apply
                    m = table.get(x + y)
                    pairs[(ia << shift) | ib] = (r << shift) | (mask if m is None else m)
            self._pairs = (byte_ids, pairs)
        return self._pairs

    def _encode_piece(self, b):
        """Ids of one pre-token's bytes `b` (spec/tokenizer.md step 3)."""
        if self._kind == "ranks":
            whole = self._bytes_id.get(b)
            if whole is not None:
                return [whole]
        byte_ids, pairs = self._merge_tables()
        if pairs.fill is not None and len(pairs) > 4_000_000:
            pairs.clear()  # the rank memo of a tiktoken vocabulary stays bounded
        # a byte with no token of its own is dropped and its neighbours become adjacent (as the HF
        # tokenizers BPE does with no unk token); SmolLM2 lacks 21 such bytes
        ids = [i for i in map(byte_ids.__getitem__, b) if i is not None]
        try:
            if len(ids) < SMALL_PIECE:
                return _bpe_small(ids, pairs)
            if len(ids) >= ROUNDS_MIN_LENGTH:
                got = _bpe_rounds(ids, pairs)
                if got is not None:
                    return got
            return _bpe_merge(ids, pairs)
        except _MergeNotAToken as exc:
            x, y = (self._id_bytes[i] for i in exc.args)
            raise TokenizerError(f"{self.name or 'vocabulary'}: expected a token for the merge result "
                                 f"{x + y!r}, found none (merges and tokens disagree)") from None


TEXT_FILE_LIMIT = 256 << 20  # a tokenizer.json or vocabulary file larger than 256 MiB is refused


def _read_bytes_file(p, what):
    """The bytes of regular file `p` (a FIFO or device is refused at once), at most TEXT_FILE_LIMIT."""
    from .._files import open_regular

    with open_regular(p, TokenizerError, what) as f:
        try:
            data = f.read(TEXT_FILE_LIMIT + 1)
        except OSError as exc:
            raise TokenizerError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if len(data) > TEXT_FILE_LIMIT:
        raise TokenizerError(f"{p}: expected {what} of at most {TEXT_FILE_LIMIT} bytes, found a larger file")
    return data


def _read_text_file(p, what):
    data = _read_bytes_file(p, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{p}: expected UTF-8 text, found invalid UTF-8 at byte {exc.start}") from None


def _json_why(exc):
    import json

    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return type(exc).__name__


def _lib_call(fn, where, what):
    """fn() run by the `tokenizers` library; its errors, and its Rust panics (pyo3 PanicException, a
    BaseException that `except Exception` misses: a catastrophic regex, a bad model), become one
    TokenizerError naming `where`."""
    try:
        return fn()
    except Exception as exc:
        raise TokenizerError(f"{where}: the tokenizers library could not {what}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise TokenizerError(f"{where}: the tokenizers library could not {what}: it panicked "
                             f"({str(exc).splitlines()[0][:200] if str(exc) else 'no message'})") from None


def _describe(v):
    """A short description of a metadata value for a message (its type, and the value if small)."""
    if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 40):
        return f"{type(v).__name__} {v!r}"
    if isinstance(v, (list, tuple)):
        return f"a list of {len(v)} entries"
    return f"a {type(v).__name__}"


def _list_of(v, kind, key, what):
    """`v` as a list whose every entry is a `kind` (bool is not an int); TokenizerError naming `key`."""
    if not isinstance(v, (list, tuple)):
        raise TokenizerError(f"{key}: expected a list of {what}, found {_describe(v)}")
    for k, x in enumerate(v):
        if not isinstance(x, kind) or isinstance(x, bool):
            raise TokenizerError(f"{key}[{k}]: expected one of a list of {what}, found {_describe(x)}")
    return list(v)


def _read_source(src, name):
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), f"<{name} bytes>"
    if isinstance(src, (str, Path)):
        p = Path(src)
        return _read_bytes_file(p, "a vocabulary file"), str(p)
    raise ArgumentError(f"{name}: expected a path or bytes, found {type(src).__name__}")


def _parse_rank_vocab(data, where):
    """{token bytes: rank} from a quicktok .vocab (binary) or a .tiktoken (text) file."""
    if len(data) >= 4:
        (count,) = struct.unpack_from("<I", data, 0)
        if 0 < count <= len(data):  # a binary file: walk it; any inconsistency is an error
            ranks, off = {}, 4
            for k in range(count):
                if off + 2 > len(data):
                    raise TokenizerError(f"{where}: expected {count} tokens, found the file ending at token {k}")
                (n,) = struct.unpack_from("<H", data, off)
                off += 2
                if n == 0 or off + n + 4 > len(data):
                    raise TokenizerError(f"{where}: token {k}: expected 1..{len(data) - off - 4} bytes and a rank, "
                                         f"found length {n}" + (" past the end of the file" if n else ""))
                tok = data[off:off + n]
                (r,) = struct.unpack_from("<I", data, off + n)
                off += n + 4
                if tok in ranks:
                    raise TokenizerError(f"{where}: token {k}: expected distinct token bytes, found {tok!r} twice")
                ranks[tok] = r
            if off != len(data):
                raise TokenizerError(f"{where}: expected the file to end after {count} tokens, found "
                                     f"{len(data) - off} more bytes")
            return ranks
    ranks = {}
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise TokenizerError(f"{where}: expected a quicktok .vocab or a .tiktoken file, found neither") from None
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        parts = line.split()
        try:
            ranks[base64.b64decode(parts[0], validate=True)] = int(parts[1])
        except Exception:
            raise TokenizerError(f"{where}: line {k + 1}: expected 'base64 rank', found {line[:60]!r}") from None
    if not ranks:
        raise TokenizerError(f"{where}: expected tokens, found an empty vocabulary")
    return ranks


def _parse_quicktok_special(data, where):
    """{text: id} from a quicktok .special file."""
    if len(data) < 4:
        raise TokenizerError(f"{where}: expected a u32 count, found {len(data)} bytes")
    (count,) = struct.unpack_from("<I", data, 0)
    out, off = {}, 4
    for k in range(count):
        if off + 6 > len(data):
            raise TokenizerError(f"{where}: expected {count} special tokens, found the file ending at entry {k}")
        i, n = struct.unpack_from("<IH", data, off)
        off += 6
        if off + n > len(data):
            raise TokenizerError(f"{where}: entry {k}: expected {n} bytes of text, found the file ending")
        try:
            text = data[off:off + n].decode("utf-8")
        except UnicodeDecodeError:
            raise TokenizerError(f"{where}: entry {k}: expected UTF-8 text, found {data[off:off + n]!r}") from None
        off += n
        out.setdefault(text, i)
    if off != len(data):
        raise TokenizerError(f"{where}: expected the file to end after {count} entries, found "
                             f"{len(data) - off} more bytes")
    return out


def _build_hf_bytelevel(tokens, merges_raw, specials, digits_first):
    """The same byte-level BPE as the `tokenizers` library runs it (HF tokenizer.json semantics)."""
    tk = _hf_tokenizers()
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    model = tk.models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges_raw], fuse_unk=False)
    hf = tk.Tokenizer(model)
    byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if digits_first:
        hf.pre_tokenizer = tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        hf.pre_tokenizer = byte_level
    hf.decoder = tk.decoders.ByteLevel()
    hf.add_special_tokens([tk.AddedToken(t, special=True, normalized=False) for t in specials])
    return hf


def quicktok_data_dir():
    """The data folder of the installed `quicktok` package (pip install quicktok-v1), or None."""
    try:
        spec = importlib.util.find_spec("quicktok")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or [str(Path(spec.origin).parent)]:
        d = Path(folder) / "data"
        if (d / "o200k.vocab").is_file():
            return d
    return None


def o200k_harmony(data_dir=None):
    """gpt-oss's tokenizer: o200k_base ranks + o200k_harmony specials, eos = <|return|>, <|call|>.

    data_dir: a folder holding o200k.vocab and o200k_harmony.special (quicktok's format); by default
    the data folder of the installed `quicktok` package.
    """
    d = Path(data_dir) if data_dir is not None else quicktok_data_dir()
    if d is None:
        raise TokenizerError("o200k_harmony: expected the o200k rank file, found no data_dir and no quicktok "
                             "package (pip install quicktok-v1, or pass data_dir)")
    return Tokenizer.from_tiktoken_vocab(d / "o200k.vocab", d / "o200k_harmony.special", pattern="o200k",
                                         eos_tokens=("<|return|>", "<|call|>"), name="o200k_harmony")


def gguf_tokenizer(metadata, path, vocab_size=None, *, backend="auto"):
    """The tokenizer a GGUF file carries, or None when it carries none (weights only).

    None when no tokenizer.ggml.* key is present; otherwise `Tokenizer.from_gguf_metadata` (backend
    "auto": the `tokenizers` library when installed, else the pure-Python BPE), with every error
    naming the file, and refused (TokenizerError) when its ids do not fit `vocab_size`.
    """
    if not any(k.startswith("tokenizer.ggml.") for k in metadata):
        return None
    try:
        tok = Tokenizer.from_gguf_metadata(metadata, backend=backend)
    except RefimplError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    if vocab_size is not None:
        tok.check_fits(vocab_size, str(path))
    return tok
