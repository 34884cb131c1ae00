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
from . import _args
from .errors import ArgumentError, RefimplError
from .model.kvcache import KVCache
from .ops import ops as reference_ops
from .precision import Precision

DEFAULT_MODEL = "smollm2-135m"


class Model:
    """A loaded model: configuration, weights on the backend, tokenizer, Precision and op set.

    dtype: "float64" | "float32" | "bfloat16" (or a Precision), made into one Precision here.
    backend: None (the NumPy reference), a name, or a refimpl.backends.Backend: the weights are
    handed to it once (to_device) and the forward pass runs on its arrays (`backend.ops()`).
    ops: an op namespace instead (e.g. `backend.as_ops()`: NumPy in and out around every op).
    keep_bf16: keep bfloat16 matrices as stored in float32/float64 runs (prepare_weights); None =
    when the backend declares `keeps_bf16` (the NumPy reference widens them once at load).
    """

    def __init__(self, config, weights, tokenizer=None, *, dtype="float32", ops=None, backend=None, source="",
                 progress=False, keep_bf16=None):
        self.config = config
        self.precision = Precision.of(dtype)
        self.dtype = self.precision.dtype
        self.backend = None if backend is None else resolve_backend(backend)
        if ops is not None and self.backend is not None:
            raise ArgumentError("ops: expected either ops= or backend=, found both")
        self.ops = ops if ops is not None else (reference_ops if self.backend is None else self.backend.ops())
        to_device = None if self.backend is None else self.backend.to_device
        fuse = bool(getattr(self.backend, "fuse_projections", False))
        if keep_bf16 is None:  # the backend says whether its kernels take bfloat16 weights as stored
            keep_bf16 = bool(getattr(self.backend, "keeps_bf16", False)) and ops is None
        self.weights = _model.prepare_weights(config, weights, self.precision, progress=progress, to_device=to_device,
                                              fuse=fuse, keep_bf16=keep_bf16)
        self.tokenizer = tokenizer
        self.source = source

    def __repr__(self):
        c = self.config
        return (f"Model({c.name or c.arch!r}, layers={c.num_layers}, d={c.hidden_size}, "
                f"heads={c.num_heads}/{c.num_kv_heads}, dtype={self.dtype})")

    def _to_host(self, a):
        return np.asarray(a) if self.backend is None else self.backend.to_host(a)

    def _forward(self, ids, *, cache=None, trace=None):
        return _model.forward(self.config, self.weights, ids, cache=cache, dtype=self.precision, trace=trace,
                              ops=self.ops)

    def logits(self, ids):
        """Logits [T, vocab] for ids [T] (or [B, T, vocab] for ids [B, T]), as a NumPy array."""
        return self._to_host(self._forward(ids))

    def trace(self, ids):
        """Ordered dict name -> array of the intermediates named in spec/trace.md."""
        tr = {}
        self._forward(ids, trace=tr)
        return tr

    def new_cache(self, batch_shape=(), *, capacity=None):
        """An empty KVCache in the compute dtype, allocated by the backend (capacity: tokens preallocated)."""
        c = self.config
        zeros = None
        if self.backend is not None:
            def zeros(shape, dtype):
                return self.backend.to_device(np.zeros(shape, dtype=dtype))
        cap = None if capacity is None else min(int(capacity), c.max_position_embeddings)
        return KVCache(c.num_layers, c.num_kv_heads, c.head_dim, max_length=c.max_position_embeddings,
                       dtype=self.precision.compute, batch_shape=batch_shape, capacity=cap, zeros=zeros)

    def generate(self, ids, max_new_tokens=32, temperature=0.0, top_k=None, top_p=None, seed=None,
                 stop_ids=None, on_token=None, on_logits=None):
        """New token ids (the prompt not included), decoding with a KV cache.

        Stops after max_new_tokens or at the first id in stop_ids (default: the
        model's end-of-sequence ids), which is included in the result. The next token is drawn by
        the op `sample` of the model's op set, from the last position's logits widened to float64;
        only that op's result (a token id) needs the host.
        on_token(id) is called after each draw; on_logits(logits) before it, with the logits [V] the
        draw is made from (widened to float64; before temperature and filters).
        """
        a = _args.check_generate_args(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                                      top_p=top_p, seed=seed, stop_ids=stop_ids, on_token=on_token)
        max_new_tokens, temperature, top_k, top_p, seed, stop_ids, on_token = (
            a[k] for k in ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_ids", "on_token"))
        prompt = np.asarray(ids)
        if prompt.ndim != 1:
            raise ArgumentError(f"ids: expected a 1-D sequence of token ids, found shape {prompt.shape}")
        stops = set(self.config.eos_token_ids if stop_ids is None else stop_ids)
        rng = np.random.default_rng(seed)
        cache = self.new_cache(capacity=len(prompt) + max_new_tokens)
        out = []
        logits = self._forward(prompt, cache=cache)
        for _ in range(max_new_tokens):
            last = self.ops.round_to_storage(logits[-1], "float64")  # [V]
            if on_logits is not None:
                on_logits(last)
            tok = int(self.ops.sample(last, temperature=temperature, top_k=top_k, top_p=top_p,
                                      rng=rng if temperature > 0 else None))
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            if tok in stops or len(out) == max_new_tokens:
                break
            if cache.position >= self.config.max_position_embeddings:
                break
            logits = self._forward(np.array([tok]), cache=cache)
        return out


def _status(msg):
    print(msg, file=sys.stderr, flush=True)


def load(path_or_name=DEFAULT_MODEL, dtype="float32", backend="numpy", *, progress=False, packed=None,
         keep_bf16=None):
    """Load a model by preset name, path (GGUF file, safetensors file or checkpoint folder) or hub id
    ("org/name", found in the local Hugging Face cache: refimpl.hub).

    dtype: "float64" | "float32" | "bfloat16" (one Precision, made here). backend: "numpy" (the
    reference), a registered name, "module:attribute", or a Backend; the weights are handed to it once.
    packed: keep GGUF Q4_0/Q4_1/Q8_0/Q4_K/Q6_K matrices packed (spec/quant.md); None = packed for
    every backend but the NumPy reference (which dequantizes once at load: its gguf_linear would
    dequantize on every call).
    keep_bf16: keep bfloat16 matrices bfloat16 in float32/float64 runs (exact: the kernels widen each
    weight inside the product); None = for backends that declare `keeps_bf16` (Numba), never for the
    NumPy reference.
    """
    prec = Precision.of(_args.check_dtype(dtype))
    name = _args.check_path_or_name(path_or_name)
    be = resolve_backend(backend)
    if name.lower() in (DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct", "default"):
        from .fetch import smollm2_gguf_path

        path = smollm2_gguf_path()
    else:
        path = Path(os.path.expanduser(name))
        from .hub import is_hub_id, resolve_hub_id

        if not path.exists() and is_hub_id(name):
            path = resolve_hub_id(name)  # the local Hugging Face cache only
        if not path.exists():
            from .checkpoints.config_files import PRESETS

            if name in PRESETS:
                raise RefimplError(f"{name}: a preset has a configuration but no weights here; pass a path to "
                                   f"its checkpoint, or use `refimpl inspect {name}` for its sizes")
            raise RefimplError(f"{name}: no such file or folder, and not a known model name "
                               f"(known: {DEFAULT_MODEL}, a path to a .gguf / .safetensors / checkpoint folder, "
                               f"or a hub id org/name)")
    if progress:
        _status(f"loading {path} ...")
    if path.is_file() and path.suffix == ".gguf":
        from .checkpoints.gguf_reader import read_gguf
        from .text.tokenizer import gguf_tokenizer

        if packed is None:
            packed = backend not in (None, "numpy", "reference")
        cfg, weights, meta = read_gguf(path, progress=progress, packed=bool(packed))
        tok = gguf_tokenizer(meta, path, cfg.vocab_size)
    else:
        from .checkpoints.layouts import load_weights

        cfg, weights = load_weights(path)
        tok = _tokenizer_near(path, cfg)
    m = Model(cfg, weights, tok, dtype=prec, backend=be, source=str(path), progress=progress, keep_bf16=keep_bf16)
    if progress:
        _status(f"loaded {m!r}")
    return m


def _tokenizer_near(path, cfg):
    from .text.tokenizer import Tokenizer

    folder = path if path.is_dir() else path.parent
    for cand in (folder / "tokenizer.json", folder.parent / "tokenizer.json"):
        if cand.is_file():
            return Tokenizer.from_tokenizer_json(cand).check_fits(cfg.vocab_size, str(cand))
    return None


def resolve_backend(backend):
    """None for the NumPy reference ("numpy", "reference" or None), else the Backend chosen by name or object."""
    if backend is None or (isinstance(backend, str) and backend in ("numpy", "reference")):
        return None
    from .backends import get_backend

    return get_backend(backend)


def resolve_ops(backend):
    """The op namespace a model calls: the NumPy reference, or a backend's ops on its own arrays."""
    be = resolve_backend(backend)
    return reference_ops if be is None else be.ops()
