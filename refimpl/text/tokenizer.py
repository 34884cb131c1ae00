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
import importlib.util
import struct
from pathlib import Path

from ..errors import ArgumentError, RefimplError, TokenizerError

__all__ = ["Tokenizer", "PATTERNS", "bytes_to_unicode", "o200k_harmony", "quicktok_data_dir"]

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


def _bpe(parts, rank):
    """Byte-pair merge the list `parts` (bytes) with pair ranks `rank(a, b) -> int | None`."""
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
        if kind == "hf":
            self.vocab_size = hf.get_vocab_size(with_added_tokens=True)
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
        if backend not in ("python", "tokenizers"):
            raise ArgumentError(f"backend: expected 'python' or 'tokenizers', found {backend!r}")

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
        tokens = list(field("tokenizer.ggml.tokens"))
        types = list(field("tokenizer.ggml.token_type", [1] * len(tokens)))
        if len(types) != len(tokens):
            raise TokenizerError(f"tokenizer.ggml.token_type: expected {len(tokens)} entries (one per token), "
                                 f"found {len(types)}")
        merges_raw = list(field("tokenizer.ggml.merges"))

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
        bos = metadata.get("tokenizer.ggml.bos_token_id")
        eos = tuple(dict.fromkeys(i for i in (metadata.get("tokenizer.ggml.eos_token_id"),
                                              metadata.get("tokenizer.ggml.eot_token_id")) if i is not None))
        hf = None
        if backend == "tokenizers":
            hf = _build_hf_bytelevel(tokens, merges_raw, specials, digits_first)
        from .chat_template import attach_gguf

        return attach_gguf(cls(kind="hf" if hf is not None else "merges", id_bytes=id_bytes, specials=specials,
                   pattern=pattern, digits_first=digits_first, merges=merges, token_strings=tokens,
                   bos_id=bos, eos_ids=eos, add_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
                   hf=hf, name=str(metadata.get("general.name", ""))), metadata)

    @classmethod
    def from_tokenizer_json(cls, path, *, bos_token=None, eos_tokens=None):
        """Any HF tokenizer.json, run by the `tokenizers` library (extra `text`).

        Special tokens are the added_tokens marked "special". bos/eos come from the arguments, else
        from tokenizer_config.json beside the file (bos_token, eos_token), else none.
        """
        tk = _hf_tokenizers()
        p = Path(path)
        if not p.is_file():
            raise TokenizerError(f"{p}: expected a tokenizer.json file, found no such file")
        try:
            hf = tk.Tokenizer.from_file(str(p))
            import json

            data = json.loads(p.read_text(encoding="utf-8"))
        except Exception as exc:
            raise TokenizerError(f"{p}: expected a tokenizer.json the tokenizers library reads, found "
                                 f"{type(exc).__name__}: {exc}") from None
        specials = {t["content"]: int(t["id"]) for t in data.get("added_tokens", []) if t.get("special")}
        cfg_path = p.with_name("tokenizer_config.json")
        if (bos_token is None or eos_tokens is None) and cfg_path.is_file():
            import json

            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except Exception as exc:
                raise TokenizerError(f"{cfg_path}: expected JSON, found {exc}") from None

            def text_of(v):
                return v.get("content") if isinstance(v, dict) else v

            if bos_token is None:
                bos_token = text_of(cfg.get("bos_token"))
            if eos_tokens is None and cfg.get("eos_token") is not None:
                eos_tokens = (text_of(cfg.get("eos_token")),)

        def id_of(t, what):
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
            return self._hf.decode([i], skip_special_tokens=False).encode("utf-8")
        return self._id_bytes[i]

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
            return self._hf.decode([i], skip_special_tokens=False).encode("utf-8")

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
                return list(hf.encode(text, add_special_tokens=False).ids)
            finally:
                if prev is not None:
                    hf.encode_special_tokens = prev
        ids = []
        for piece in self._pretokenize(text):
            got = self._cache.get(piece)
            if got is None:
                got = self._encode_piece(piece.encode("utf-8"))
                if len(self._cache) < 200_000:
                    self._cache[piece] = got
            ids.extend(got)
        return ids

    def _encode_piece(self, b):
        table = self._bytes_id
        if self._kind == "ranks":
            whole = table.get(b)
            if whole is not None:
                return [whole]

            def rank(x, y):
                return table.get(x + y)
        else:
            merges = self._merges

            def rank(x, y):
                return merges.get((x, y))
        # a byte with no token of its own is dropped and its neighbours become adjacent (as the HF
        # tokenizers BPE does with no unk token); SmolLM2 lacks 21 such bytes
        singles = [b[i:i + 1] for i in range(len(b))]
        out = []
        for part in _bpe([x for x in singles if x in table], rank):
            i = table.get(part)
            if i is None:
                raise TokenizerError(f"{self.name or 'vocabulary'}: expected a token for the merge result "
                                     f"{part!r}, found none (merges and tokens disagree)")
            out.append(i)
        return out


def _read_source(src, name):
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), f"<{name} bytes>"
    if isinstance(src, (str, Path)):
        p = Path(src)
        try:
            return p.read_bytes(), str(p)
        except OSError as exc:
            raise TokenizerError(f"{p}: expected a readable vocabulary file, found {exc.strerror or exc}") from None
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
