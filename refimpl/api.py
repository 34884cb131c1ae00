"""refimpl.load and the handle it returns.

    model = refimpl.load("smollm2-135m", dtype="float32")
    model.logits(ids)    -> [T, vocab] (or [B, T, vocab])
    model.generate(ids, max_new_tokens=32) -> new ids
    model.trace(ids)     -> ordered dict of named intermediates (spec/trace.md)
"""

import os
import sys
from pathlib import Path

import numpy as np

from . import model as _model
from . import precision
from .errors import ArgumentError, RefimplError
from .model.kvcache import KVCache
from .ops import ops as reference_ops
from .ops.sampling import sample

DEFAULT_MODEL = "smollm2-135m"


class Model:
    """A loaded model: configuration, prepared weights, tokenizer, precision mode and op set."""

    def __init__(self, config, weights, tokenizer=None, *, dtype="float32", ops=reference_ops, source="",
                 progress=False):
        self.config = config
        self.dtype = precision.check_mode(dtype)
        self.weights = _model.prepare_weights(config, weights, dtype, progress=progress)
        self.tokenizer = tokenizer
        self.ops = ops
        self.source = source

    def __repr__(self):
        c = self.config
        return (f"Model({c.name or c.arch!r}, layers={c.num_layers}, d={c.hidden_size}, "
                f"heads={c.num_heads}/{c.num_kv_heads}, dtype={self.dtype})")

    def logits(self, ids):
        """Logits [T, vocab] for ids [T] (or [B, T, vocab] for ids [B, T])."""
        return _model.forward(self.config, self.weights, ids, mode=self.dtype, ops=self.ops)

    def trace(self, ids):
        """Ordered dict name -> array of the intermediates named in spec/trace.md."""
        tr = {}
        _model.forward(self.config, self.weights, ids, mode=self.dtype, trace=tr, ops=self.ops)
        return tr

    def new_cache(self, batch_shape=()):
        c = self.config
        dt = np.float64 if self.dtype == "float64" else np.float32
        return KVCache(c.num_layers, c.num_kv_heads, c.head_dim, max_length=c.max_position_embeddings,
                       dtype=dt, batch_shape=batch_shape)

    def generate(self, ids, max_new_tokens=32, temperature=0.0, top_k=None, top_p=None, seed=None,
                 stop_ids=None, on_token=None):
        """New token ids (the prompt not included), decoding with a KV cache.

        Stops after max_new_tokens or at the first id in stop_ids (default: the
        model's end-of-sequence ids), which is included in the result.
        """
        prompt = np.asarray(ids)
        if prompt.ndim != 1:
            raise ArgumentError(f"ids: expected a 1-D sequence of token ids, found shape {prompt.shape}")
        if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise ArgumentError(f"max_new_tokens: expected an integer >= 0, found {max_new_tokens!r}")
        if temperature is None or temperature < 0:
            raise ArgumentError(f"temperature: expected a number >= 0, found {temperature!r}")
        stops = set(self.config.eos_token_ids if stop_ids is None else stop_ids)
        rng = np.random.default_rng(seed)
        cache = self.new_cache()
        out = []
        logits = _model.forward(self.config, self.weights, prompt, cache=cache, mode=self.dtype, ops=self.ops)
        for _ in range(max_new_tokens):
            last = np.asarray(logits[-1], dtype=np.float64)  # [V]
            tok = int(sample(last, temperature=temperature, top_k=top_k, top_p=top_p,
                             rng=rng if temperature > 0 else None))
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            if tok in stops or len(out) == max_new_tokens:
                break
            if cache.position >= self.config.max_position_embeddings:
                break
            logits = _model.forward(self.config, self.weights, np.array([tok]), cache=cache,
                                    mode=self.dtype, ops=self.ops)
        return out


def _status(msg):
    print(msg, file=sys.stderr, flush=True)


def load(path_or_name=DEFAULT_MODEL, dtype="float32", backend="numpy", *, progress=False):
    """Load a model by preset name or path (GGUF file, safetensors file or checkpoint folder)."""
    precision.check_mode(dtype)
    ops = resolve_ops(backend)
    name = str(path_or_name)
    if name.lower() in (DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct", "default"):
        from .fetch import smollm2_gguf_path

        path = smollm2_gguf_path()
    else:
        path = Path(os.path.expanduser(name))
        if not path.exists():
            from .checkpoints.config_files import PRESETS

            if name in PRESETS:
                raise RefimplError(f"{name}: a preset has a configuration but no weights here; pass a path to "
                                   f"its checkpoint, or use `refimpl inspect {name}` for its sizes")
            raise RefimplError(f"{name}: no such file or folder, and not a known model name "
                               f"(known: {DEFAULT_MODEL}, or a path to a .gguf / .safetensors / checkpoint folder)")
    if progress:
        _status(f"loading {path} ...")
    if path.is_file() and path.suffix == ".gguf":
        from .checkpoints.gguf_reader import read_gguf
        from .text.tokenizer import Tokenizer

        cfg, weights, meta = read_gguf(path, progress=progress)
        tok = Tokenizer.from_gguf_metadata(meta)
    else:
        from .checkpoints.layouts import load_weights

        cfg, weights = load_weights(path)
        tok = _tokenizer_near(path, cfg)
    m = Model(cfg, weights, tok, dtype=dtype, ops=ops, source=str(path), progress=progress)
    if progress:
        _status(f"loaded {m!r}")
    return m


def _tokenizer_near(path, cfg):
    from .text.tokenizer import Tokenizer

    folder = path if path.is_dir() else path.parent
    for cand in (folder / "tokenizer.json", folder.parent / "tokenizer.json"):
        if cand.is_file():
            return Tokenizer.from_tokenizer_json(cand)
    return None


def resolve_ops(backend):
    """The op namespace a model calls: the NumPy reference, or a backend chosen by name or object."""
    if backend in (None, "numpy", "reference"):
        return reference_ops
    try:
        from refimpl.backends import get_backend
    except ImportError:
        raise ArgumentError(f"backend: expected 'numpy' (no backend registry installed), found {backend!r}") from None
    return get_backend(backend).as_ops()
