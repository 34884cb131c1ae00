"""GELU, SiLU, SwiGLU and gpt-oss's clamped SwiGLU, elementwise kernels (refimpl.ops.activations).

The formulas, their order of operations and the overflow-free sigmoid are the reference's; the
library functions (tanh, exp, erf) are the C library's, where NumPy uses its own SIMD versions
(both within the budget's LIBM_ULP ulps).
"""

import math

import numpy as np
from numba import njit, prange

from refimpl.precision import compute_dtype

from ._common import JIT, enter, launch, leave, contiguous, count, per_dtype


def _float_in(x):
    """x (checked by the backend base) and its compute dtype."""
    x = np.asarray(x)
    return x, compute_dtype(x)


def _make_gelu(dt):
    F = dt.type
    c = F(math.sqrt(2.0 / math.pi))
    root2 = math.sqrt(2.0)

    @njit(parallel=True, **JIT)
    def kernel(nt, x, exact, out):  # x, out [N]
        old = enter(nt)
        half, one, k = F(0.5), F(1), F(0.044715)
        for i in prange(x.shape[0]):
            v = x[i]
            if exact:
                e = F(math.erf(np.float64(v) / root2))
            else:
                e = np.tanh(c * (v + k * (v * v * v)))
            out[i] = half * v * (one + e)
        leave(old)

    return kernel


@njit(**JIT)
def sigmoid(z, one):
    """1 / (1 + exp(-z)) from exp(-|z|) (no overflow); one: 1 in z's dtype. Module level, not a
    factory's closure: a kernel whose closure holds a compiled function misses numba's disk cache
    and compiles in every process. layer.py fuses it too."""
    e = np.exp(-abs(z))
    return one / (one + e) if z >= 0 else e / (one + e)


def _make_silu(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, g, u, has_up, out):  # g, u, out [N]
        old = enter(nt)
        one = F(1)
        for i in prange(g.shape[0]):
            y = g[i] * sigmoid(g[i], one)
            out[i] = y * u[i] if has_up else y
        leave(old)

    return kernel


def _make_oss(dt):
    F = dt.type

    @njit(parallel=True, **JIT)
    def kernel(nt, h, alpha, limit, has_limit, interleaved, out):  # h [N, 2I]; out [N, I]
        old = enter(nt)
        N, m = out.shape
        one = F(1)
        for r in prange(N):
            for i in range(m):
                if interleaved:
                    g, lin = h[r, 2 * i], h[r, 2 * i + 1]
                else:
                    g, lin = h[r, i], h[r, m + i]
                if has_limit:
                    if g > limit:
                        g = limit
                    if lin > limit:
                        lin = limit
                    elif lin < -limit:
                        lin = -limit
                out[r, i] = (g * sigmoid(alpha * g, one)) * (lin + one)
        leave(old)

    return kernel


gelu_kernel = per_dtype(_make_gelu)
silu_kernel = per_dtype(_make_silu)
oss_kernel = per_dtype(_make_oss)


def _flat(a, dt):
    return contiguous(a, dt).reshape(-1)  # [N]


def gelu(x, *, approximate="tanh"):
    """refimpl.ops.gelu (same contract). "tanh": 0.5 x (1 + tanh(c (x + 0.044715 x x x))), x^3 as two
    products; "none": erf in float64 (C library), rounded once to the compute dtype."""
    x, dt = _float_in(x)
    xf = _flat(x, dt)
    out = np.empty_like(xf)  # [N]
    launch(gelu_kernel(dt), 16 * xf.size, xf, approximate == "none", out)
    return out.reshape(x.shape)


def silu(x):
    """refimpl.ops.silu (same contract): x * sigmoid(x), sigmoid from exp(-|x|)."""
    x, dt = _float_in(x)
    xf = _flat(x, dt)
    out = np.empty_like(xf)  # [N]
    launch(silu_kernel(dt), 16 * xf.size, xf, xf, False, out)
    return out.reshape(x.shape)


def swiglu(gate, up):
    """refimpl.ops.swiglu (same contract): silu(gate) * up."""
    g, u = np.asarray(gate), np.asarray(up)
    dt = compute_dtype(g, u)
    gf, uf = _flat(g, dt), _flat(u, dt)
    out = np.empty_like(gf)  # [N]
    launch(silu_kernel(dt), 16 * gf.size, gf, uf, True, out)
    return out.reshape(g.shape)


def swiglu_oss(h, *, alpha=1.702, limit=7.0, layout="interleaved"):
    """refimpl.ops.swiglu_oss (same contract): clamps, then (g sigmoid(alpha g)) (lin + 1), per element."""
    h, dt = _float_in(h)
    alpha, limit = float(alpha), None if limit is None else float(limit)
    two_i = h.shape[-1]
    hc = contiguous(h, dt).reshape(count(h.shape[:-1]), two_i)  # [N, 2I]
    out = np.empty((hc.shape[0], two_i // 2), dtype=dt)  # [N, I]
    launch(oss_kernel(dt), 16 * out.size, hc, dt.type(alpha), dt.type(limit if limit is not None else 0.0), limit is not None,
                   layout == "interleaved", out)
    return out.reshape(*h.shape[:-1], two_i // 2)  # [..., I]
