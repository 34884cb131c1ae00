"""The Numba CPU backend: JIT-compiled kernels for the hot ops of refimpl (spec/backends-numba.md).

    from refimpl.backends import get_backend
    ops = get_backend("numba").as_ops()     # ops it lacks run the reference (ops.fallbacks)

Implemented: rms_norm, layer_norm, gelu, silu, swiglu, swiglu_oss, apply_rope, attention (mask=None),
attention_online (mask=None), decode_mxfp4, mxfp4_linear, router_topk_softmax, linear, embedding,
dequantize_gguf, gguf_linear, gguf_embedding (packed GGUF weights, quant.py). Each kernel lives in
the module named like the reference's (norms, activations, rope, attention, mxfp4, moe), takes the
reference's arguments, runs the reference's argument checks first (same ArgumentError messages),
computes in refimpl.precision.compute_dtype and returns that dtype.
"""

import numba

from refimpl._version import __version__
from refimpl.ops.attention import resolve_q_offset

from ..base import DTYPES, Backend, OpNotSupported
from . import activations, attention, embed, host, layer, linear, moe, mxfp4, norms, quant, rope
from .threads import default_threads, set_threads

__all__ = ["NumbaBackend"]

_MASK_REASON = "mask= is not supported; pass mask=None (causal, window and sinks are built in)"


def _attention(op, q, k, v, sinks, window, causal, q_offset, scale, mask, variant, block):
    """The attention kernel `variant` ("online" or "naive") on checked arguments."""
    if mask is not None:
        raise OpNotSupported(op, NumbaBackend.name, _MASK_REASON)
    window = None if window is None else int(window)
    off = resolve_q_offset(q.shape[-3], k.shape[-3], q_offset, bool(causal), window)
    return attention.run(q, k, v, sinks, window, bool(causal), off, scale, variant=variant, block=int(block))


def _attention_kernel(variant):
    def kernel(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None):
        return _attention("attention", q, k, v, sinks, window, causal, q_offset, scale, mask, variant, attention.BLOCK)

    kernel.__name__ = f"attention_{variant}"
    return kernel


def attention_online(q, k, v, *, sinks=None, window=None, causal=True, q_offset=None, scale=None, mask=None,
                     block_size=32):
    return _attention("attention_online", q, k, v, sinks, window, causal, q_offset, scale, mask, "online", block_size)


def _mxfp4_linear(variant):
    def kernel(x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127):
        return mxfp4.mxfp4_linear(x, blocks, scales, bias, nibble_order=nibble_order, scale_bias=scale_bias,
                                  variant=variant)

    kernel.__name__ = f"mxfp4_linear_{variant}"
    return kernel


class NumbaBackend(Backend):
    """Numba kernels on NumPy arrays (to_device / to_host are the identity).

    Kernels: attention "online" (tiles of 32 keys, online softmax; default) and "naive" (two passes, as
    the dense reference); mxfp4_linear "fused" (decode inside the product; default) and
    "decode_matmul" (decode kernel, then BLAS). Other ops: one kernel ("default").
    Limits: attention and attention_online accept mask=None only (a mask raises OpNotSupported
    after the arguments are checked); unsupported_reason(op, mask=True) says so.
    """

    name = "numba"
    version = f"{__version__}+numba{numba.__version__}"
    dtypes = DTYPES  # bfloat16/float16 inputs are promoted to float32 exactly, as the reference does
    limits = {"attention_mask": "mask=None only (attention, attention_online)"}
    keeps_bf16 = True  # bfloat16 weights stay bfloat16 (refimpl.load keep_bf16): linear widens them exactly (bf16.py)
    fuse_projections = True  # one GEMV for q, k, v and one for gate, up: fewer calls per decode step
    kernels = {
        "rms_norm": {"default": norms.rms_norm},
        "layer_norm": {"default": norms.layer_norm},
        "gelu": {"default": activations.gelu},
        "silu": {"default": activations.silu},
        "swiglu": {"default": activations.swiglu},
        "swiglu_oss": {"default": activations.swiglu_oss},
        "apply_rope": {"default": rope.apply_rope},
        "attention": {"online": _attention_kernel("online"), "naive": _attention_kernel("naive")},
        "attention_online": {"default": attention_online},
        "decode_mxfp4": {"default": mxfp4.decode_mxfp4},
        "mxfp4_linear": {"fused": _mxfp4_linear("fused"), "decode_matmul": _mxfp4_linear("decode_matmul")},
        "router_topk_softmax": {"default": moe.router_topk_softmax},
        "linear": {"default": linear.linear},
        "embedding": {"default": embed.embedding},
        "dequantize_gguf": {"default": quant.dequantize_gguf},
        "gguf_linear": {"default": quant.gguf_linear},
        "gguf_embedding": {"default": quant.gguf_embedding},
        "swiglu_mlp": {"default": host.swiglu_mlp},
        "gelu_mlp": {"default": host.gelu_mlp},
        **host.kernels,  # glue ops run as NumPy code on the same arrays (host.py says why)
    }

    def __init__(self, threads=None):
        """threads: for the Numba kernels and BLAS together (default: $REFIMPL_THREADS, else all CPUs
        this process may use); see backends/numba/threads.py."""
        super().__init__()
        self.threads = set_threads(default_threads() if threads is None else threads)
        self._layer_plans = {}  # layer.plan's memo: the last model's one-call layers

    def decode_layer(self, config, weights, precision, x, cache):
        """backends/numba/layer.py's one-call layer for the models it covers (bit for bit the op-by-op
        run), while the selected kernels are the ones it fuses; else None."""
        if self._selected:  # another kernel chosen for some op: run the ops
            return None
        return layer.plan(config, weights, precision, x, cache, memo=self._layer_plans)

    def unsupported_reason(self, op, *, dtype=None, mask=None, **sizes):
        if op in ("attention", "attention_online") and mask is not None and mask is not False:
            return f"{op}: backend {self.name!r} supports mask=None only (the causal/window/sink rules are built in)"
        return super().unsupported_reason(op, dtype=dtype, **sizes)
