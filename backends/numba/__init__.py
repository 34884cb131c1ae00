"""The Numba CPU backend: JIT-compiled kernels for the hot ops of refimpl (spec/backends-numba.md).

    from refimpl.backends import get_backend
    ops = get_backend("numba").as_ops()     # ops it lacks run the reference (ops.fallbacks)

Implemented: rms_norm, layer_norm, gelu, silu, swiglu, swiglu_oss, apply_rope, attention (mask=None),
attention_online (mask=None), decode_mxfp4, mxfp4_linear, router_topk_softmax. Each kernel lives in
the module named like the reference's (norms, activations, rope, attention, mxfp4, moe), takes the
reference's arguments, runs the reference's argument checks first (same ArgumentError messages),
computes in refimpl.precision.compute_dtype and returns that dtype.
"""

import numba
import numpy as np

from refimpl._version import __version__
from refimpl._validate import positive_int
from refimpl.ops import quant as _q

from ..interface import DTYPES, Backend, OpNotSupported
from . import activations, attention, embed, linear, moe, mxfp4, norms, quant, rope
from .threads import default_threads, set_threads

__all__ = ["NumbaBackend"]

_ATTENTION_OPS = ("attention", "attention_online")
_VARIANTS = {
    "attention": ["online", "naive"],
    "mxfp4_linear": ["fused", "decode_matmul"],
}


class NumbaBackend(Backend):
    """Numba kernels on NumPy arrays (to_backend / to_numpy are the identity).

    Kernel variants: attention "online" (tiles of 32 keys, online softmax; default) and "naive"
    (two passes, as the dense reference); mxfp4_linear "fused" (decode inside the product; default)
    and "decode_matmul" (decode kernel, then BLAS). Other ops: one kernel ("default").
    Limits: attention and attention_online accept mask=None only (a mask raises OpNotSupported
    after the arguments are checked); unsupported_reason(op, mask=True) says so.
    """

    name = "numba"
    version = f"{__version__}+numba{numba.__version__}"

    def __init__(self, threads=None):
        super().__init__()
        self.threads = set_threads(default_threads() if threads is None else threads)

    def capabilities(self):
        cap = super().capabilities()
        cap["dtypes"] = set(DTYPES)  # bfloat16/float16 inputs are promoted to float32 exactly, as the reference does
        cap["limits"] = {"attention_mask": "mask=None only (attention, attention_online)"}
        return cap

    def unsupported_reason(self, op, *, dtype=None, mask=None, **sizes):
        if op in _ATTENTION_OPS and mask is not None and mask is not False:
            return f"{op}: backend {self.name!r} supports mask=None only (the causal/window/sink rules are built in)"
        return super().unsupported_reason(op, dtype=dtype, **sizes)

    def to_backend(self, array):
        return np.asarray(array)

    def to_numpy(self, array):
        return np.asarray(array)

    def kernel_variants(self, op):
        return list(_VARIANTS.get(op, ["default"]))

    # --- norms
    def rms_norm(self, x, weight, *, eps=1e-5, cast_before_scale=False):
        return norms.rms_norm(x, weight, eps=eps, cast_before_scale=cast_before_scale)

    def layer_norm(self, x, weight, bias, *, eps=1e-5):
        return norms.layer_norm(x, weight, bias, eps=eps)

    # --- activations
    def gelu(self, x, *, approximate="tanh"):
        return activations.gelu(x, approximate=approximate)

    def silu(self, x):
        return activations.silu(x)

    def swiglu(self, gate, up):
        return activations.swiglu(gate, up)

    def swiglu_oss(self, h, *, alpha=1.702, limit=7.0, layout="interleaved"):
        return activations.swiglu_oss(h, alpha=alpha, limit=limit, layout=layout)

    # --- rope
    def apply_rope(self, x, cos, sin, *, pairing="half", rotary_dim=None):
        return rope.apply_rope(x, cos, sin, pairing=pairing, rotary_dim=rotary_dim)

    # --- attention
    def _attention(self, op, q, k, v, sinks, window, causal, q_offset, scale, mask, variant, block):
        q, k, v, sinks, window, causal, off, scale, mask = attention.check(q, k, v, sinks, window, causal,
                                                                          q_offset, scale, mask)
        if mask is not None:
            raise OpNotSupported(op, self, "mask= is not supported; pass mask=None (causal, window and sinks are built in)")
        return attention.run(q, k, v, sinks, window, causal, off, scale, variant=variant, block=block)

    def attention(self, q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
        return self._attention("attention", q, k, v, sinks, window, causal, q_offset, scale, mask,
                               self.kernel_variant("attention"), attention.BLOCK)

    def attention_online(self, q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None,
                         block_size=32):
        block_size = positive_int(block_size, "block_size")
        return self._attention("attention_online", q, k, v, sinks, window, causal, q_offset, scale, mask,
                               "online", block_size)

    # --- mxfp4
    def decode_mxfp4(self, blocks, scales, *, dtype=np.float32, nibble_order="low_first", scale_bias=127):
        return mxfp4.decode_mxfp4(blocks, scales, dtype=dtype, nibble_order=nibble_order, scale_bias=scale_bias)

    def mxfp4_linear(self, x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127):
        return mxfp4.mxfp4_linear(x, blocks, scales, bias, nibble_order=nibble_order, scale_bias=scale_bias,
                                  variant=self.kernel_variant("mxfp4_linear"))

    # --- moe
    def router_topk_softmax(self, logits, k):
        return moe.router_topk_softmax(logits, k)

    # --- linear, embedding, packed GGUF weights
    def linear(self, x, weight, bias=None):
        _check_linear(x, weight, bias)
        return linear.linear(x, weight, bias)

    def embedding(self, ids, weight):
        from refimpl.ops.embed import embedding as ref

        w = np.asarray(weight)
        a = np.asarray(ids)
        if a.dtype.kind not in "iu" or w.ndim != 2 or a.size and (a.min() < 0 or a.max() >= w.shape[0]):
            return ref(ids, weight)  # the reference's checks raise its ArgumentError
        return embed.embedding(a, w)

    def dequantize_gguf(self, blocks, qtype, shape):
        _q.check_dequantize_gguf(blocks, qtype, shape)
        return quant.dequantize_gguf(blocks, qtype, shape)

    def gguf_linear(self, x, blocks, qtype, shape, bias=None):
        _q.check_gguf_linear(x, blocks, qtype, shape, bias)
        return quant.gguf_linear(x, blocks, qtype, shape, bias)

    def gguf_embedding(self, ids, blocks, qtype, shape):
        _q.check_gguf_embedding(ids, blocks, qtype, shape)
        return quant.gguf_embedding(ids, blocks, qtype, shape)


def _check_linear(x, weight, bias):
    """refimpl.ops.linear's checks (same ArgumentError messages)."""
    from refimpl._validate import as_float_array, require

    x = as_float_array(x, "x", min_ndim=1)
    w = as_float_array(weight, "weight")
    require(w.ndim == 2, "weight", "a 2-D matrix [out, in]", f"shape {w.shape}")
    require(w.shape[1] == x.shape[-1], "weight", f"shape [out, {x.shape[-1]}] (in = last dimension of x)",
            f"shape {w.shape}")
    if bias is not None:
        b = as_float_array(bias, "bias")
        require(b.shape == (w.shape[0],), "bias", f"shape ({w.shape[0]},) (out = rows of weight)", f"shape {b.shape}")
