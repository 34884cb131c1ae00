"""The key/value cache: the only stateful object in refimpl. See spec/kvcache.md.

Per layer it holds the keys and values of every token seen so far (keys after RoPE) in one
storage dtype, in a preallocated buffer `[*batch, Hkv, capacity, D]` (each head's positions
contiguous, the decode-friendly layout); attention reads a strided view `[*batch, T, Hkv, D]` of it,
no copy. The buffers are the backend's arrays when a backend allocates them (`zeros`).
"""

import numpy as np

from .._validate import as_float_array, is_float_dtype, positive_int, require
from ..errors import ArgumentError

__all__ = ["KVCache", "kv_cache_bytes"]


def kv_cache_bytes(num_layers, num_kv_heads, head_dim, num_tokens, *, itemsize=2, batch_size=1):
    """Bytes to cache `num_tokens` tokens: 2 * num_layers * num_kv_heads * head_dim * itemsize
    * num_tokens * batch_size (the 2 counts keys and values). itemsize 2 = bf16 (released models).
    Every layer counted at full length, sliding-window layers included (see KVCache)."""
    num_layers = positive_int(num_layers, "num_layers")
    num_kv_heads = positive_int(num_kv_heads, "num_kv_heads")
    head_dim = positive_int(head_dim, "head_dim")
    if not (isinstance(num_tokens, (int, np.integer)) and not isinstance(num_tokens, bool) and num_tokens >= 0):
        require(False, "num_tokens", "an integer >= 0", repr(num_tokens))
    itemsize = positive_int(itemsize, "itemsize")
    batch_size = positive_int(batch_size, "batch_size")
    return 2 * num_layers * num_kv_heads * head_dim * itemsize * int(num_tokens) * batch_size


def _layer_index(layer, num_layers):
    if not (isinstance(layer, (int, np.integer)) and not isinstance(layer, bool) and 0 <= layer < num_layers):
        require(False, "layer", f"an integer in [0, {num_layers})", repr(layer))
    return int(layer)


class KVCache:
    """Keys and values of past tokens, per layer.

    KVCache(num_layers, num_kv_heads, head_dim, *, max_length=None, dtype=np.float32, batch_shape=(),
            capacity=None, zeros=None)

    - append(layer, k, v): k, v [*batch_shape, T_new, Hkv, D] (T_new >= 0) are converted to
      `dtype` (round to nearest even for narrower dtypes) and written after the tokens already
      in that layer; returns (k_all, v_all) [*batch_shape, T_total, Hkv, D] in `dtype`: strided
      views of the buffer (no copy), valid until the next append, truncate or reset of the layer.
    - capacity: tokens preallocated per layer (default 16, at most max_length); the buffer doubles
      (one copy) when an append needs more. zeros(shape, dtype): the allocator (default np.zeros; a
      backend passes one that allocates on its device).
    - length(layer=0): tokens cached in `layer`. `position`: length(0), the position of the next
      query token (the q_offset for the next call).
    - truncate(length): drop every cached token at position >= length in every layer
      (speculative-decoding rollback); 0 <= length <= position. reset() == truncate(0).
    - nbytes: bytes of the cached entries (sum over layers of 2 * len * prod(batch) * Hkv * D
      * itemsize); bytes_per_token: 2 * num_layers * Hkv * D * itemsize (one sequence).
    - max_length (None = unbounded): an append that would make a layer longer raises.

    Every layer keeps all its tokens, sliding-window layers included: the visibility mask, not
    the cache, applies the window.
    """

    def __init__(self, num_layers, num_kv_heads, head_dim, *, max_length=None, dtype=np.float32, batch_shape=(),
                 capacity=None, zeros=None):
        self.num_layers = positive_int(num_layers, "num_layers")
        self.num_kv_heads = positive_int(num_kv_heads, "num_kv_heads")
        self.head_dim = positive_int(head_dim, "head_dim")
        if max_length is not None:
            max_length = positive_int(max_length, "max_length")
        self.max_length = max_length
        try:
            dt = np.dtype(dtype)
        except Exception:
            raise ArgumentError(f"dtype: expected a floating dtype, found {dtype!r}") from None
        if not (is_float_dtype(dt) and dt.itemsize >= 2):
            require(False, "dtype", "a floating dtype of at least 16 bits (float64, float32, float16, bfloat16)", str(dt))
        self.dtype = dt
        if not isinstance(batch_shape, (tuple, list)):
            require(False, "batch_shape", "a tuple of integers >= 1", repr(batch_shape))
        for d in batch_shape:
            if not (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1):
                require(False, "batch_shape", "a tuple of integers >= 1", repr(batch_shape))
        self.batch_shape = tuple(int(d) for d in batch_shape)
        if capacity is not None:
            capacity = positive_int(capacity, "capacity")
        self.capacity = capacity
        self._zeros = zeros or np.zeros
        self._k = [None] * self.num_layers
        self._v = [None] * self.num_layers
        self._len = [0] * self.num_layers

    def _entry_shape(self):
        b = ", ".join(str(d) for d in self.batch_shape)
        return f"({b + ', ' if b else ''}T_new, {self.num_kv_heads}, {self.head_dim})"

    def _check(self, a, name):
        a = as_float_array(a, name)
        nb = len(self.batch_shape)
        ok = (a.ndim == nb + 3 and a.shape[:nb] == self.batch_shape
              and a.shape[nb + 1:] == (self.num_kv_heads, self.head_dim))
        if not ok:
            require(False, name, f"shape {self._entry_shape()}", f"shape {a.shape}")
        return a

    def append(self, layer, k, v):
        """Append k, v [*batch, T_new, Hkv, D] to `layer`; return (k_all, v_all) [*batch, T_total, Hkv, D]."""
        layer = _layer_index(layer, self.num_layers)
        k = self._check(k, "k")
        v = self._check(v, "v")
        nb = len(self.batch_shape)
        t_new = k.shape[nb]
        if v.shape[nb] != t_new:
            require(False, "v", f"T_new = {t_new} tokens (as k)", f"shape {v.shape}")
        old = self._len[layer]
        total = old + t_new
        self._reserve(layer, old, total)
        if t_new:
            self._k[layer][..., old:total, :] = k.swapaxes(-3, -2).astype(self.dtype)  # [*batch, Hkv, T_new, D]
            self._v[layer][..., old:total, :] = v.swapaxes(-3, -2).astype(self.dtype)
        self._len[layer] = total
        return self.get(layer)

    def _reserve(self, layer, old, total):
        """Room for `total` entries in `layer`'s buffers (grown by doubling; the first `old` kept)."""
        if self.max_length is not None:
            if total > self.max_length:
                require(False, "k", f"at most max_length={self.max_length} cached tokens in layer {layer}",
                        f"{old} cached + {total - old} new = {total}")
        buf_k = self._k[layer]
        cap = 0 if buf_k is None else buf_k.shape[-2]
        if total > cap:
            new_cap = max(total, 2 * cap, self.capacity or 16)
            if self.max_length is not None:
                new_cap = min(new_cap, self.max_length)
            shape = self.batch_shape + (self.num_kv_heads, new_cap, self.head_dim)  # [*batch, Hkv, cap, D]
            nk = self._zeros(shape, dtype=self.dtype)
            nv = self._zeros(shape, dtype=self.dtype)
            if buf_k is not None and old:
                nk[..., :old, :] = buf_k[..., :old, :]
                nv[..., :old, :] = self._v[layer][..., :old, :]
            self._k[layer], self._v[layer] = nk, nv

    def extend(self, layer, t_new):
        """Make room for t_new more entries of `layer` that the caller writes itself (a backend's fused
        decode layer); returns (k_buf, v_buf, old): the buffers [*batch, Hkv, capacity, D] and the index
        of the first new entry. The layer's length becomes old + t_new."""
        layer = _layer_index(layer, self.num_layers)
        t_new = positive_int(t_new, "t_new")
        old = self._len[layer]
        self._reserve(layer, old, old + t_new)
        self._len[layer] = old + t_new
        return self._k[layer], self._v[layer], old

    def get(self, layer):
        """(k_all, v_all) [*batch, T, Hkv, D] of `layer`: strided views of the buffer in the storage dtype."""
        layer = _layer_index(layer, self.num_layers)
        n = self._len[layer]
        if self._k[layer] is None:
            shape = self.batch_shape + (n, self.num_kv_heads, self.head_dim)  # [*batch, T, Hkv, D]
            return self._zeros(shape, dtype=self.dtype), self._zeros(shape, dtype=self.dtype)
        return self._k[layer][..., :n, :].swapaxes(-3, -2), self._v[layer][..., :n, :].swapaxes(-3, -2)

    def length(self, layer=0):
        """Number of tokens cached in `layer`."""
        return self._len[_layer_index(layer, self.num_layers)]

    @property
    def position(self):
        """Tokens cached in layer 0: the position of the next query token."""
        return self._len[0]

    def reset(self):
        """Forget every cached token (the buffers are released)."""
        self._k = [None] * self.num_layers
        self._v = [None] * self.num_layers
        self._len = [0] * self.num_layers

    def truncate(self, length):
        """Keep the first `length` tokens of every layer (0 <= length <= position)."""
        if not (isinstance(length, (int, np.integer)) and not isinstance(length, bool) and 0 <= length <= self.position):
            require(False, "length", f"an integer in [0, position={self.position}]", repr(length))
        self._len = [min(n, int(length)) for n in self._len]

    @property
    def bytes_per_token(self):
        """2 * num_layers * num_kv_heads * head_dim * itemsize (one sequence, keys and values)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype.itemsize

    @property
    def nbytes(self):
        """Bytes of the cached entries (not of spare capacity)."""
        per = 2 * int(np.prod(self.batch_shape, dtype=np.int64)) * self.num_kv_heads * self.head_dim * self.dtype.itemsize
        return per * sum(self._len)

    def __repr__(self):
        return (f"KVCache(num_layers={self.num_layers}, num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, "
                f"max_length={self.max_length}, dtype={self.dtype}, batch_shape={self.batch_shape}, "
                f"position={self.position})")
