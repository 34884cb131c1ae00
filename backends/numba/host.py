"""Ops whose Numba-backend kernel is NumPy code on the same arrays (this backend's arrays are NumPy's).

These are the glue of a forward pass: rounding to the storage dtype, residual compositions that call
their norm/sublayer (themselves Numba kernels), the RoPE tables (D/2 values once per forward), the MoE
combine (it calls the expert function, whose linears are Numba kernels), and sampling on one row of
logits. Each costs microseconds; a JIT kernel would gain nothing, and they are not "fallbacks": no
array is copied to or from a device (to_device/to_host are the identity), the function is declared in
the kernel table, and it is refimpl's own code. The dense MLPs are composed of this backend's kernels.
"""

from refimpl.ops import OPS

from . import activations, linear

HOST_OPS = ("round_to_storage", "add", "scale", "pre_norm_residual", "post_norm_residual", "rope_frequencies",
            "rope_cos_sin", "router_softmax_topk", "moe_combine", "softmax", "greedy", "sample", "learned_positions")

kernels = {op: {"numpy": OPS[op]} for op in HOST_OPS}


def swiglu_mlp(x, gate_weight, up_weight, down_weight):
    """Same contract as refimpl.ops.swiglu_mlp: down(swiglu(gate(x), up(x))) with this backend's kernels."""
    return linear.linear(activations.swiglu(linear.linear(x, gate_weight), linear.linear(x, up_weight)), down_weight)


def gelu_mlp(x, fc_weight, fc_bias, proj_weight, proj_bias, *, approximate="tanh"):
    """Same contract as refimpl.ops.gelu_mlp: proj(gelu(fc(x))) with this backend's kernels."""
    h = activations.gelu(linear.linear(x, fc_weight, fc_bias), approximate=approximate)
    return linear.linear(h, proj_weight, proj_bias)
