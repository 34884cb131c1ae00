"""Read a GGUF file (llama.cpp's format) into ModelConfig + canonical weights.

Architectures: llama (LLaMA 2/3 without rope_freqs, Mistral, SmolLM2), qwen2, qwen3.
Every tensor is dequantized with `gguf.quants.dequantize` (llama.cpp's own NumPy
reference: F32, F16, BF16, Q8_0, Q4_0, Q4_1, K-quants, ...) and returned in the
torch `Linear` layout [out, in]. GGUF lists a tensor's shape in ggml `ne` order
(fastest axis first), so the NumPy shape is the reverse: a matrix of ne [in, out]
is stored row-major as [out, in] and needs no transpose.

llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute) reorders the
rows of the llama Q and K projections, inside each head, from the HF half-split
RoPE layout (row i pairs with row i + D/2) into its interleaved layout (row 2i
pairs with 2i + 1). `read_gguf` undoes that (`unpermute_rope_rows`) so that every
model reads HF-layout weights with rope_pairing "half". qwen2/qwen3 are converted
without the permutation (their llama.cpp RoPE is the NeoX half-split kind).
"""

import math
import mmap
import os
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._progress import Progress
from .._validate import positive_int, require
from ..model.config import ModelConfig
from .config_files import respell
from ..errors import ArgumentError, CheckpointError, ConfigError, RefimplError
from .._files import open_regular, require_regular

__all__ = ["read_gguf", "read_gguf_config", "read_gguf_metadata", "read_gguf_raw_tensors", "prescan_gguf", "unpermute_rope_rows", "permute_rope_rows"]

SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3")

# GGUF tensor name (after "blk.L.") -> canonical name (after "layers.L.")
_LAYER_NAMES = {
    "attn_norm.weight": "attn_norm.weight",
    "attn_q.weight": "attn.q.weight",
    "attn_k.weight": "attn.k.weight",
    "attn_v.weight": "attn.v.weight",
    "attn_output.weight": "attn.o.weight",
    "attn_q.bias": "attn.q.bias",
    "attn_k.bias": "attn.k.bias",
    "attn_v.bias": "attn.v.bias",
    "attn_q_norm.weight": "attn.q_norm.weight",
    "attn_k_norm.weight": "attn.k_norm.weight",
    "ffn_norm.weight": "mlp_norm.weight",
    "ffn_gate.weight": "mlp.gate.weight",
    "ffn_up.weight": "mlp.up.weight",
    "ffn_down.weight": "mlp.down.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "tok_embed",
    "output_norm.weight": "final_norm.weight",
    "output.weight": "lm_head",
}


def _gguf():
    try:
        import gguf
    except ImportError:
        raise RefimplError("reading GGUF files needs the `gguf` package: pip install 'refimpl[gguf]'") from None
    return gguf


def _field_value(field, value_type):
    """A ReaderField's value as Python data (str, int, float, bool or list of them)."""
    types = list(field.types)
    if not types:
        return None

    def one(part, t):
        if t == value_type.STRING:
            return bytes(part.tobytes()).decode("utf-8")
        v = part.tolist()
        v = v[0] if isinstance(v, list) else v
        return bool(v) if t == value_type.BOOL else v

    if types[0] == value_type.ARRAY:
        sub = types[-1]
        if sub == value_type.ARRAY:
            raise ValueError("nested arrays are not supported")
        return [one(field.parts[i], sub) for i in field.data]
    return one(field.parts[field.data[0]] if field.data and field.data[0] >= 0 else field.parts[-1], types[0])


# GGUF value types (gguf GGUFValueType): fixed-size ones -> bytes; 8 = STRING, 9 = ARRAY
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
GGML_MAX_DIMS = 4


def prescan_gguf(path):
    """Walk a GGUF header with every count and size checked against the bytes left, before any
    loop or allocation depends on it; refuse what gguf's reader would loop on or accept wrongly.

    Layout (ggml docs/gguf.md): magic "GGUF", u32 version (2 or 3), u64 tensor_count, u64 kv_count;
    kv_count entries (string key, u32 type, value; an array is u32 item type, u64 count, items; a
    string is u64 length + UTF-8 bytes); tensor_count infos (string name, u32 n_dims <= 4, u64 dims,
    u32 ggml type, u64 offset); the data section starts at the next multiple of general.alignment
    (u32, a power of two, default 32). Checked: counts fit the bytes left (a 100-byte file declaring
    2^40 array items fails at once), no duplicate key or tensor name, known value and tensor types,
    nested arrays refused, a row length divisible by its type's block size, each tensor's offset
    aligned and its bytes inside the file, and no two tensors sharing or overlapping data bytes.
    Returns (stat of the file, offset of the data section). Errors are CheckpointError naming the
    file and the field or tensor; no message quotes bytes of the file beyond header numbers.
    """
    p = Path(path)
    with open_regular(p, CheckpointError, "a GGUF file") as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        if size < 24:
            raise CheckpointError(f"{p}: expected a GGUF file of at least 24 bytes (magic, version, counts), "
                                  f"found {size} bytes")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return st, _walk_header(mm, size, p)


def _walk_header(mm, size, p):
    import struct

    if mm[:4] != b"GGUF":
        raise CheckpointError(f"{p}: expected the GGUF magic at byte 0, found other bytes (not a GGUF file)")
    order = "<"
    (version,) = struct.unpack_from("<I", mm, 4)
    if version & 0xFFFF == 0:
        order = ">"  # written on a big-endian machine (gguf's reader swaps too)
        (version,) = struct.unpack_from(">I", mm, 4)
    if version not in (2, 3):
        raise CheckpointError(f"{p}: version: expected 2 or 3, found {version}")
    n_tensors, n_kv = struct.unpack_from(order + "QQ", mm, 8)
    pos = 24
    u32, u64 = struct.Struct(order + "I"), struct.Struct(order + "Q")

    def fail(what):
        raise CheckpointError(f"{p}: {what}")

    def need(n, what):
        if n > size - pos:
            fail(f"{what}: expected {n} bytes, found {size - pos} left in the file (truncated, or a size field "
                 "larger than the file)")

    if n_kv > (size - pos) // 13:  # a key/value takes at least 8 + 1 + 4 bytes
        fail(f"kv_count: expected at most {(size - pos) // 13} ({size - pos} bytes left, 13 or more per "
             f"key/value), found {n_kv}")
    if n_tensors > (size - pos) // 24:  # a tensor info takes at least 8 + 4 + 4 + 8 bytes
        fail(f"tensor_count: expected at most {(size - pos) // 24} ({size - pos} bytes left, 24 or more per "
             f"tensor), found {n_tensors}")

    def read_str(what):
        nonlocal pos
        need(8, f"{what} length")
        (n,) = u64.unpack_from(mm, pos)
        pos += 8
        need(n, what)
        raw = mm[pos:pos + n]
        pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            fail(f"{what}: expected UTF-8 text, found invalid bytes")

    alignment = 32
    keys = set()
    for k in range(n_kv):
        key = read_str(f"key {k}")
        if key in keys:
            fail(f"{key}: expected each key once, found it twice")
        keys.add(key)
        need(4, f"{key}: value type")
        (t,) = u32.unpack_from(mm, pos)
        pos += 4
        if key == "general.alignment":
            if t != _UINT32:
                fail(f"general.alignment: expected a uint32, found value type {t}")
            need(4, key)
            (alignment,) = u32.unpack_from(mm, pos)
            if alignment == 0 or alignment & (alignment - 1):
                fail(f"general.alignment: expected a power of two, found {alignment}")
        if t in _FIXED_SIZES:
            need(_FIXED_SIZES[t], key)
            pos += _FIXED_SIZES[t]
        elif t == _STRING:
            read_str(key)
        elif t == _ARRAY:
            need(12, f"{key}: array header")
            (it,) = u32.unpack_from(mm, pos)
            (count,) = u64.unpack_from(mm, pos + 4)
            pos += 12
            if it in _FIXED_SIZES:
                need(count * _FIXED_SIZES[it], f"{key}: array of {count} items")
                pos += count * _FIXED_SIZES[it]
            elif it == _STRING:
                if count > (size - pos) // 8:
                    fail(f"{key}: array of {count} strings: expected at most {(size - pos) // 8} (8 bytes or more "
                         f"each, {size - pos} bytes left)")
                for i in range(count):
                    need(8, f"{key}[{i}] length")
                    (n,) = u64.unpack_from(mm, pos)
                    pos += 8
                    need(n, f"{key}[{i}]")
                    pos += n
            elif it == _ARRAY:
                fail(f"{key}: expected an array of numbers or strings, found an array of arrays (not supported)")
            else:
                fail(f"{key}: array item type: expected one of 0..12 except 9, found {it}")
        else:
            fail(f"{key}: value type: expected one of 0..12, found {t}")

    quant = {int(k): v for k, v in _gguf().GGML_QUANT_SIZES.items()}
    tensors, names = [], set()
    for k in range(n_tensors):
        name = read_str(f"tensor {k} name")
        if name in names:
            fail(f"tensor {name}: expected each tensor name once, found it twice")
        names.add(name)
        need(4, f"tensor {name}: n_dims")
        (nd,) = u32.unpack_from(mm, pos)
        pos += 4
        if nd > GGML_MAX_DIMS:
            fail(f"tensor {name}: n_dims: expected at most {GGML_MAX_DIMS}, found {nd}")
        need(8 * nd + 12, f"tensor {name}: dims, type and offset")
        dims = struct.unpack_from(order + "Q" * nd, mm, pos)
        pos += 8 * nd
        (ttype,) = u32.unpack_from(mm, pos)
        (offset,) = u64.unpack_from(mm, pos + 4)
        pos += 12
        if ttype not in quant:
            fail(f"tensor {name}: type: expected a ggml type gguf knows, found {ttype}")
        block, type_size = quant[ttype]
        n_elems = math.prod(dims)
        if nd and dims[0] % block:
            fail(f"tensor {name}: ne[0]: expected a multiple of the block size {block} of its type, found {dims[0]}")
        tensors.append((offset, n_elems // block * type_size, name))
    data_start = -(-pos // alignment) * alignment
    prev = None
    for offset, nbytes, name in sorted(tensors):
        if offset % alignment:
            fail(f"tensor {name}: offset: expected a multiple of general.alignment={alignment}, found {offset}")
        if data_start + offset + nbytes > size:
            fail(f"tensor {name}: data bytes [{offset}, {offset + nbytes}) of the data section: expected them "
                 f"inside the file ({max(size - data_start, 0)} bytes of data), found them past its end")
        if nbytes and prev is not None and offset < prev[0] + prev[1]:
            fail(f"tensor {name}: data bytes [{offset}, {offset + nbytes}): expected bytes of its own, found "
                 f"them shared with tensor {prev[2]} [{prev[0]}, {prev[0] + prev[1]})")
        if nbytes:
            prev = (offset, nbytes, name)
    return data_start


_CACHE = {}  # (device, inode, size, mtime_ns, ctime_ns) -> (reader, metadata, header crc)


def _open(path):
    """(gguf module, GGUFReader, metadata dict) for `path`; the last two files read are kept.

    The cache key holds the inode and ctime (which no user call can set back), so a file replaced
    in place with the same size and mtime is read again; the header CRC guards a rewrite within one
    ctime tick.
    """
    gguf = _gguf()
    p = Path(path)
    st = require_regular(p, CheckpointError, "a GGUF file")
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _CACHE:
        reader, meta, crc = _CACHE[key]
        if _header_crc(p, reader) == crc:
            return gguf, reader, dict(meta)
        del _CACHE[key]
    st, _ = prescan_gguf(p)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    try:
        reader = gguf.GGUFReader(str(p), "r")
    except Exception as exc:  # the prescan leaves little: report the kind, not the text (it may quote bytes)
        raise CheckpointError(f"{p}: expected a complete GGUF file, found gguf's reader failing with "
                              f"{type(exc).__name__}") from None
    meta = _metadata(gguf, reader, p)
    while len(_CACHE) >= 2:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (reader, meta, _header_crc(p, reader))
    return gguf, reader, dict(meta)


def _header_crc(p, reader):
    """CRC-32 of the header bytes (everything before the tensor data) as they are on disk now."""
    with open_regular(p, CheckpointError, "a GGUF file") as f:
        try:
            return zlib.crc32(f.read(int(reader.data_offset)))
        except OSError as exc:
            raise CheckpointError(f"{p}: cannot read: {exc.strerror or exc}") from None


def read_gguf_metadata(path):
    """Every key/value of the GGUF header as a dict of Python values (tensors not touched)."""
    return _open(path)[2]


def read_gguf_raw_tensors(path):
    """{ggml tensor name: gguf ReaderTensor} of the file, undecoded (raw blocks; shape in ne order)."""
    return {t.name: t for t in _open(path)[1].tensors}


def _metadata(gguf, reader, p):
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        try:
            meta[name] = _field_value(field, gguf.GGUFValueType)
        except Exception as exc:
            why = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise CheckpointError(f"{p}: metadata field {name}: expected a readable value, found {why}") from None
    return meta


def permute_rope_rows(w, n_heads):
    """llama.cpp's row order from HF's: inside each head, row h*D/2 + i moves to 2i + h.

    w: [n_heads * D, ...] (a Q or K projection weight or bias, HF layout, D even).
    Returns the same shape; HF row (head g, half h, index i) is at row g*D + 2i + h.
    """
    w = np.asarray(w)
    n_heads = positive_int(n_heads, "n_heads")
    require(w.ndim >= 1 and w.shape[0] % (2 * n_heads) == 0, "w",
            f"a first dimension divisible by 2*n_heads={2 * n_heads}", f"shape {w.shape}")
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # [H, 2, D/2, ...] -> [H*D, ...]


def unpermute_rope_rows(w, n_heads):
    """Inverse of permute_rope_rows: llama.cpp interleaved-pair rows back to HF half-split rows.

    w: [n_heads * D, ...]; row g*D + 2i + h (GGUF) goes to row g*D + h*D/2 + i (HF), for
    h in {0, 1}, 0 <= i < D/2. n_heads is the number of heads of that projection
    (num_heads for Q, num_kv_heads for K), as in llama.cpp's LlamaModel.permute.
    """
    w = np.asarray(w)
    n_heads = positive_int(n_heads, "n_heads")
    require(w.ndim >= 1 and w.shape[0] % (2 * n_heads) == 0, "w",
            f"a first dimension divisible by 2*n_heads={2 * n_heads}", f"shape {w.shape}")
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # [H, D/2, 2, ...] -> [H*D, ...]


def _f32_decimal(v):
    """A float32 metadata value as the shortest decimal that rounds to it (9.9999997e-06 -> 1e-05)."""
    return float(repr(np.float32(v)).replace("np.float32(", "").rstrip(")"))


def _config(meta, p, n_tensors_vocab):
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise ConfigError(f"{p}: general.architecture: expected one of {SUPPORTED_ARCHS}, found {_short(arch)}")

    def need(key, kind=int):
        k = f"{arch}.{key}"
        if k not in meta:
            raise ConfigError(f"{p}: {k}: expected a value, found the field missing")
        v = meta[k]
        if kind is int and (not isinstance(v, int) or isinstance(v, bool)):
            raise ConfigError(f"{p}: {k}: expected an integer, found {_short(v)}")
        if kind is float and (not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v)):
            raise ConfigError(f"{p}: {k}: expected a finite number, found {_short(v)}")
        return v

    def opt(key, default):
        k = f"{arch}.{key}"
        v = meta.get(k, default)
        if v is not default and (not isinstance(v, int) or isinstance(v, bool)):
            raise ConfigError(f"{p}: {k}: expected an integer, found {_short(v)}")
        return v

    d = need("embedding_length")
    n_heads = need("attention.head_count")
    n_kv = meta.get(f"{arch}.attention.head_count_kv", n_heads)
    if isinstance(n_kv, list):  # per-layer head counts (some hybrids)
        raise ConfigError(f"{p}: {arch}.attention.head_count_kv: expected one integer, found a per-layer list")
    n_kv = opt("attention.head_count_kv", n_heads)
    head_dim = opt("attention.key_length", d // n_heads if n_heads > 0 else 0)
    v_dim = opt("attention.value_length", head_dim)
    if v_dim != head_dim:
        raise ConfigError(f"{p}: {arch}.attention.value_length: expected {head_dim} (= key_length), found {v_dim}")
    rot = opt("rope.dimension_count", head_dim)
    if rot != head_dim:
        raise ConfigError(f"{p}: {arch}.rope.dimension_count: expected {head_dim} (full-width RoPE), found {rot}")
    vocab = opt("vocab_size", None)
    if vocab is None:
        tokens = meta.get("tokenizer.ggml.tokens")
        vocab = len(tokens) if isinstance(tokens, list) and tokens else n_tensors_vocab

    rope_scaling = None
    stype = meta.get(f"{arch}.rope.scaling.type", "none")
    if not isinstance(stype, str):
        raise ConfigError(f"{p}: {arch}.rope.scaling.type: expected a string, found {_short(stype)}")
    if stype == "linear":
        rope_scaling = {"rope_type": "linear", "factor": _f32_decimal(need("rope.scaling.factor", float))}
    elif stype == "yarn":
        rope_scaling = {"rope_type": "yarn", "factor": _f32_decimal(need("rope.scaling.factor", float)),
                        "original_max_position_embeddings": need("rope.scaling.original_context_length")}
    elif stype != "none":
        raise ConfigError(f"{p}: {arch}.rope.scaling.type: expected none, linear or yarn, found {_short(stype)}")

    def token_id(key):
        v = meta.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0
                              or (isinstance(vocab, int) and v >= vocab)):
            raise ConfigError(f"{p}: {key}: expected a token id in 0..{vocab - 1 if isinstance(vocab, int) else '?'}, "
                              f"found {_short(v)}")
        return v

    eos_ids = tuple(dict.fromkeys(i for i in (token_id("tokenizer.ggml.eos_token_id"),
                                              token_id("tokenizer.ggml.eot_token_id")) if i is not None))
    bos = token_id("tokenizer.ggml.bos_token_id")
    name = meta.get("general.name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{p}: general.name: expected a string, found {_short(name)}")
    try:
        return _model_config(meta, p, arch, need, d, n_heads, n_kv, head_dim, vocab, rope_scaling, eos_ids, bos)
    except ConfigError as exc:
        msg = str(exc)
        for own in (f"{p}: ", f"{meta.get('general.name') or p.stem}: "):
            if msg.startswith(own):
                msg = msg[len(own):]
        raise ConfigError(f"{p}: {respell(msg, _gguf_spelling(arch))}") from None


def _short(v):
    """A metadata value described for a message: small scalars shown, lists and long strings summarised."""
    if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 40):
        return f"{type(v).__name__} {v!r}"
    if isinstance(v, list):
        return f"a list of {len(v)} entries"
    return f"a {type(v).__name__}"


def _gguf_spelling(arch):
    """ModelConfig field -> GGUF key, for messages."""
    return {"vocab_size": f"{arch}.vocab_size", "hidden_size": f"{arch}.embedding_length",
            "num_layers": f"{arch}.block_count", "num_heads": f"{arch}.attention.head_count",
            "num_kv_heads": f"{arch}.attention.head_count_kv", "head_dim": f"{arch}.attention.key_length",
            "intermediate_size": f"{arch}.feed_forward_length",
            "max_position_embeddings": f"{arch}.context_length",
            "norm_eps": f"{arch}.attention.layer_norm_rms_epsilon", "rope_theta": f"{arch}.rope.freq_base",
            "bos_token_id": "tokenizer.ggml.bos_token_id", "eos_token_ids": "tokenizer.ggml.eos_token_id"}


def _model_config(meta, p, arch, need, d, n_heads, n_kv, head_dim, vocab, rope_scaling, eos_ids, bos):
    return ModelConfig(
        arch="llama",
        vocab_size=vocab,
        hidden_size=d,
        num_layers=need("block_count"),
        num_heads=n_heads,
        num_kv_heads=n_kv,
        head_dim=head_dim,
        intermediate_size=need("feed_forward_length"),
        max_position_embeddings=need("context_length"),
        norm="rms",
        norm_eps=_f32_decimal(need("attention.layer_norm_rms_epsilon", float)),
        activation="swiglu",
        position="rope",
        rope_theta=_f32_decimal(need("rope.freq_base", float) if f"{arch}.rope.freq_base" in meta else 10000.0),
        rope_scaling=rope_scaling,
        rope_pairing="half",
        attention_bias=arch == "qwen2",
        qk_norm=arch == "qwen3",
        tie_word_embeddings=True,  # corrected by read_gguf when output.weight is present
        bos_token_id=bos,
        eos_token_ids=eos_ids,
        name=meta.get("general.name") or p.stem,
        extra={"source": "gguf", "path": str(p), "gguf_architecture": arch,
               "file_type": meta.get("general.file_type")},
    )


def read_gguf_config(path):
    """The ModelConfig of a GGUF file from its header alone (no tensor is dequantized)."""
    p = Path(path)
    _, reader, meta = _open(p)
    names = {t.name: t for t in reader.tensors}
    emb = names.get("token_embd.weight")
    cfg = _config(meta, p, int(emb.shape[-1]) if emb is not None else 0)
    if "output.weight" in names:
        cfg = replace(cfg, tie_word_embeddings=False)
    if "blk.0.attn_q.bias" in names:
        cfg = replace(cfg, attention_bias=True)
    return cfg


def _expected_shapes(cfg, names):
    d, inter = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    shapes = {"tok_embed": (cfg.vocab_size, d), "final_norm.weight": (d,), "lm_head": (cfg.vocab_size, d)}
    per = {"attn_norm.weight": (d,), "attn.q.weight": (q, d), "attn.k.weight": (kv, d), "attn.v.weight": (kv, d),
           "attn.o.weight": (d, q), "attn.q.bias": (q,), "attn.k.bias": (kv,), "attn.v.bias": (kv,),
           "attn.q_norm.weight": (cfg.head_dim,), "attn.k_norm.weight": (cfg.head_dim,),
           "mlp_norm.weight": (d,), "mlp.gate.weight": (inter, d), "mlp.up.weight": (inter, d),
           "mlp.down.weight": (d, inter)}
    for name in names:
        if name.startswith("layers."):
            shapes[name] = per[name.split(".", 2)[2]]
    return shapes


def _required(cfg):
    per = ["attn_norm.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight",
           "mlp_norm.weight", "mlp.gate.weight", "mlp.up.weight", "mlp.down.weight"]
    if cfg.attention_bias:
        per += ["attn.q.bias", "attn.k.bias", "attn.v.bias"]
    if cfg.qk_norm:
        per += ["attn.q_norm.weight", "attn.k_norm.weight"]
    return ["tok_embed", "final_norm.weight"] + [f"layers.{L}.{n}" for L in range(cfg.num_layers) for n in per]


def _check_block_count(cfg, tensors, p):
    """Refuse a block_count the tensors do not back, before any per-layer loop runs over it."""
    layers = {int(n.split(".")[1]) for n in tensors if n.startswith("blk.") and n.split(".")[1].isdigit()}
    missing = next((L for L in range(min(cfg.num_layers, len(layers) + 1)) if L not in layers), None)
    if missing is not None:
        raise CheckpointError(f"{p}: tensor blk.{missing}.*: expected tensors for every layer of "
                              f"{cfg.extra['gguf_architecture']}.block_count={cfg.num_layers}, found none for layer {missing}")


def read_gguf(path, *, dtype=np.float32, progress=False):
    """Read a GGUF checkpoint.

    Returns (config, weights, metadata):
      config    ModelConfig (arch "llama", rope_pairing "half", HF meanings of every field);
      weights   {canonical name (spec/weights.md): ndarray of `dtype`, [out, in] layout}; Q and K
                of llama files un-permuted to HF row order; `lm_head` is the same array object as
                `tok_embed` when the file has no output.weight (tied embeddings);
      metadata  every header key/value (tokenizer.ggml.*, tokenizer.chat_template, ...).

    dtype: float32 (default) or float64; the values are gguf's float32 dequantization (scale * small
    integer + offset), so float64 only widens them.
    progress: print what is being read to stderr.
    Errors: missing/truncated/corrupt file or a tensor of the wrong shape -> CheckpointError naming
    the file and tensor; unsupported architecture or contradictory fields -> ConfigError.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ArgumentError(f"dtype: expected float32 or float64, found {dtype!r}") from None
    require(dt in (np.dtype(np.float32), np.dtype(np.float64)), "dtype", "float32 or float64", str(dt))
    p = Path(path)
    if progress:
        print(f"reading GGUF header of {p} ...", file=sys.stderr, flush=True)
    gguf, reader, meta = _open(p)

    tensors = {t.name: t for t in reader.tensors}
    emb = tensors.get("token_embd.weight")
    cfg = _config(meta, p, int(emb.shape[-1]) if emb is not None else 0)
    _check_block_count(cfg, tensors, p)

    bar = Progress(len(tensors), f"dequantizing {len(tensors)} tensors to {dt}") if progress else None
    weights = {}
    for gname, t in tensors.items():
        if bar is not None:
            bar.update()
        if gname in _GLOBAL_NAMES:
            cname = _GLOBAL_NAMES[gname]
        else:
            parts = gname.split(".", 2)
            if len(parts) != 3 or parts[0] != "blk" or not parts[1].isdigit() or parts[2] not in _LAYER_NAMES:
                if gname == "rope_freqs.weight":
                    raise ConfigError(f"{p}: rope_freqs.weight: expected no per-frequency RoPE factors "
                                      "(llama3 rope scaling is not read from GGUF), found the tensor")
                raise CheckpointError(f"{p}: tensor {gname}: expected a known {cfg.extra['gguf_architecture']} "
                                      "tensor name, found an unknown one")
            layer = int(parts[1])
            if layer >= cfg.num_layers:
                raise CheckpointError(f"{p}: tensor {gname}: expected layer < block_count={cfg.num_layers}, "
                                      f"found layer {layer}")
            cname = f"layers.{layer}.{_LAYER_NAMES[parts[2]]}"
        try:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as exc:
            raise CheckpointError(f"{p}: tensor {gname}: expected {t.tensor_type.name} data that dequantizes, "
                                  f"found {type(exc).__name__}: {exc}") from None
        ne = tuple(int(x) for x in t.shape)
        shape = tuple(reversed(ne))  # ggml ne order is fastest-first; NumPy order is the reverse
        if a.size != int(np.prod(shape)):
            raise CheckpointError(f"{p}: tensor {gname}: expected {int(np.prod(shape))} values (ne {list(ne)}), "
                                  f"found {a.size}")
        a = np.ascontiguousarray(a.reshape(shape), dtype=dt)  # [out, in]
        weights[cname] = a
    if bar is not None:
        bar.close()

    if cfg.extra["gguf_architecture"] == "llama":
        for L in range(cfg.num_layers):
            for proj, heads in (("q", cfg.num_heads), ("k", cfg.num_kv_heads)):
                for kind in ("weight", "bias"):
                    key = f"layers.{L}.attn.{proj}.{kind}"
                    if key in weights and weights[key].shape[0] == heads * cfg.head_dim:
                        weights[key] = np.ascontiguousarray(unpermute_rope_rows(weights[key], heads))

    if not cfg.attention_bias and any(k.endswith("attn.q.bias") for k in weights):
        cfg = replace(cfg, attention_bias=True)  # llama-arch files may carry q/k/v biases
    for name in _required(cfg):
        if name not in weights:
            raise CheckpointError(f"{p}: tensor {name}: expected it (required by the configuration), "
                                  "found it missing")
    for name, shape in _expected_shapes(cfg, weights).items():
        if name in weights and weights[name].shape != shape:
            raise CheckpointError(f"{p}: tensor {name}: expected shape {shape}, found {weights[name].shape}")
    if "lm_head" not in weights:
        weights["lm_head"] = weights["tok_embed"]  # tied: one array, two names
    else:
        cfg = replace(cfg, tie_word_embeddings=False)
    return cfg, weights, meta
