"""The model: its configuration record, the forward pass composed of ops, and the KV cache."""

from .config import ModelConfig
from .forward import forward, fuse_projections, prepare_weights, rope_tables
from .kvcache import KVCache, kv_cache_bytes

__all__ = ["ModelConfig", "forward", "fuse_projections", "prepare_weights", "rope_tables", "KVCache", "kv_cache_bytes"]
