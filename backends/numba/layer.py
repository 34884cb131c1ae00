"""One decoder layer of a one-token decode step in one Numba call: the backend's `decode_layer`
(spec/backend-interface.md, spec/backends-numba.md).

In a decode step of a small model the op calls cost as much as the arithmetic: SmolLM2-135M runs ~13
ops per layer, each a Python call of 10-50 us around a few us of work. `layer_kernel` runs the same
kernels in the same order inside one call, so every value is bit for bit the op-by-op run's on this
backend (tests/backends/test_numba_layer.py):

    h = rms_norm(x); qkv = linear(h); q, k = apply_rope(q, k) (float64 tables, rounded to float32)
    cache[pos] = k, v; o = attention(q, cache) ("online" kernel); x1 = x + linear(o)
    h = rms_norm(x1); g, u = linear(h); x2 = x1 + linear(swiglu(g, u))

(each `linear` runs the op path's GEMV work items: `_gemv`). Covered: float32 runs ("float32" precision)
of pre-norm RMSNorm/RoPE/SwiGLU models (LLaMA, Mistral, Qwen2/3, SmolLM2) whose q/k/v and gate/up
matrices were stacked at load, each of the four matrices per layer packed GGUF (Q4_0, Q4_1, Q8_0,
Q4_K, Q6_K), float32 or bfloat16 kept as stored (C order; kinds may mix: one kernel specialization
takes all three), with optional q/k/v and output biases, sliding windows and sinks; one sequence.
Qwen3's q/k norms too. Anything else (MoE, another weight dtype or order, "bfloat16" precision, a trace, a prompt
of several tokens, another attention kernel selected) runs op by op: `plan` returns None.
"""

import hashlib
import operator
from pathlib import Path

import numpy as np
from numba import njit, prange

from refimpl.ops.quant import PackedGGUF
from refimpl.precision import bfloat16

from . import activations, attention, bf16, linear, norms, quant
from ._common import JIT, _threads, enter, leave, serial_twin
from .rope import rope_pair

_F32 = np.dtype(np.float32)
_rms_row, _online, _sigmoid = norms.rms_row, attention.online, activations.sigmoid
_visible, _BLOCK = attention._visible, attention.BLOCK
_packed_rows, _f32_rows, _bf16_rows = quant.gemv1_rows, linear.gemv_rows, bf16.gemv_rows
ROWS = quant.ROWS
assert ROWS == linear.ROWS == bf16.ROWS, "one work-item size for the three GEMV kernels"
_NO_BIAS = np.zeros(1, np.float32)


@njit(inline="always", **JIT)
def _gemv(blocks, wf, wb, qt, nb, tab, x, bias, has_bias, y):
    """y [N] = x [K] @ W.T (+ bias), work items of ROWS rows over the threads, each by its op kernel's
    own code for W's kind: qt >= 0: packed GGUF blocks uint8 [N, row bytes] (quant.gemv1_rows, inlined
    as in gemv1_vec); qt == -1: float32 wf [N, K] (linear.gemv_rows); qt == -2: bfloat16 bits wb uint16
    [N, K] (bf16.gemv_rows). Those two are calls, so that their fast-math flags stay theirs."""
    N = y.shape[0]
    x2, y2 = x.reshape(1, x.shape[0]), y.reshape(1, N)  # as the dense op path: x [1, K], y [1, N]
    for c in prange((N + ROWS - 1) // ROWS):
        n0, n1 = c * ROWS, min(N, (c + 1) * ROWS)
        if qt >= 0:
            _packed_rows(qt, blocks, x, nb, tab, bias, has_bias, y, n0, n1)
        elif qt == -1:
            _f32_rows(x2, wf, bias, has_bias, np.float32(0), y2, n0, n1)
        else:
            _bf16_rows(x2, wb, bias, has_bias, np.float32(0), y2, n0, n1)


@njit(parallel=True, **JIT)
def layer_kernel(nt, x, attn_norm, mlp_norm, eps,
                 qkv, qkv_f, qkv_h, qkv_qt, qkv_nb, qkv_b, qkv_has_b, o, o_f, o_h, o_qt, o_nb, o_b, o_has_b,
                 gu, gu_f, gu_h, gu_qt, gu_nb, dn, dn_f, dn_h, dn_qt, dn_nb, nob,
                 qk_norm, q_norm, k_norm, tab, cos, sin, interleaved, hq, kbuf, vbuf, pos, window, sinks, scale, out):
    """out [1, d] = layer(x [1, d]) for the token at position pos, whose k and v it writes to
    kbuf, vbuf [Hkv, capacity, D] at pos (the KVCache's buffers); cos, sin [D/2] float64. Each matrix
    is (packed blocks, float32, bfloat16 bits, qt, nb), the two unused arrays empty (_gemv). qk_norm:
    each q and k head RMS-normalised (weights q_norm, k_norm [D]) before RoPE (Qwen3)."""
    old = enter(nt)
    d = x.shape[1]
    hkv, D = kbuf.shape[0], kbuf.shape[2]
    half = cos.shape[0]
    # attention: norm, q/k/v product, RoPE (float64 tables, each result rounded to float32)
    h = np.empty((1, d), np.float32)
    _rms_row(x, 0, attn_norm, eps, h)
    y = np.empty((hq + 2 * hkv) * D, np.float32)
    _gemv(qkv, qkv_f, qkv_h, qkv_qt, qkv_nb, tab, h[0], qkv_b, qkv_has_b, y)
    qk = y[:(hq + hkv) * D].reshape(hq + hkv, D)  # [Hq + Hkv, D]
    if qk_norm:  # rms_norm's rows, one per head, as the op path normalises q [Hq, D] and k [Hkv, D]
        normed = np.empty((hq + hkv, D), np.float32)
        for hh in range(hq + hkv):
            _rms_row(qk, hh, q_norm if hh < hq else k_norm, eps, normed)
        qk = normed
    q = np.empty((hq, D), np.float32)
    for hh in range(hq + hkv):
        src = qk[hh]
        dst = q[hh] if hh < hq else kbuf[hh - hq, pos]
        for j in range(half):
            a, b = (2 * j, 2 * j + 1) if interleaved else (j, j + half)
            ra, rb = rope_pair(np.float64(src[a]), np.float64(src[b]), cos[j], sin[j])
            dst[a], dst[b] = np.float32(ra), np.float32(rb)
        for j in range(2 * half, D):
            dst[j] = src[j]
    v0 = (hq + hkv) * D
    for hk in range(hkv):
        for j in range(D):
            vbuf[hk, pos, j] = y[v0 + hk * D + j]
    # attention over the cached keys (attention's "online" kernel, one query, GQA by index)
    tk = pos + 1
    vbad = np.zeros(hkv, np.bool_)
    for hk in range(hkv):  # attention._nonfinite's rule: a NaN/inf value anywhere in the kv head
        bad = False
        for j in range(tk):
            for e in range(D):
                z = vbuf[hk, j, e] - vbuf[hk, j, e]
                bad |= z != z
        vbad[hk] = bad
    lo, hi = _visible(pos, tk, window, True)
    att = np.empty((hq, D), np.float32)
    G = hq // hkv
    for hh in prange(hq):
        hk = hh // G
        oh = att[hh]
        for e in range(D):
            oh[e] = np.float32(0)
        _online(q[hh], kbuf[hk, :tk], vbuf[hk, :tk], vbad[hk], sinks[hh], lo, hi, scale, _BLOCK, oh)
    # output product and residual
    y2 = np.empty(d, np.float32)
    _gemv(o, o_f, o_h, o_qt, o_nb, tab, att.reshape(hq * D), o_b, o_has_b, y2)
    x1 = np.empty((1, d), np.float32)
    for i in range(d):
        x1[0, i] = x[0, i] + y2[i]
    # MLP: norm, gate/up product, SwiGLU, down product, residual
    _rms_row(x1, 0, mlp_norm, eps, h)
    m = max(gu.shape[0], gu_f.shape[0], gu_h.shape[0]) // 2  # the one in use
    g = np.empty(2 * m, np.float32)
    _gemv(gu, gu_f, gu_h, gu_qt, gu_nb, tab, h[0], nob, False, g)  # nob: no bias
    act = np.empty(m, np.float32)
    one = np.float32(1)
    for i in range(m):
        act[i] = (g[i] * _sigmoid(g[i], one)) * g[m + i]
    _gemv(dn, dn_f, dn_h, dn_qt, dn_nb, tab, act, nob, False, y2)
    for i in range(d):
        out[0, i] = x1[0, i] + y2[i]
    leave(old)


def _readonly(a):
    if not a.flags.writeable:
        return a
    a = a.view()
    a.flags.writeable = False
    return a


_NONE = {dt: _readonly(np.zeros((0, 0), dt)) for dt in (np.uint8, np.float32, np.uint16)}  # unused slots


def _matrix(w):
    """layer_kernel's (packed blocks, float32, bfloat16 bits as uint16, qt, nb) for one matrix, the two
    unused arrays empty, or None: C-order [N, K] dense matrices as the op kernels take them. Read-only
    views: one kernel specialization, whatever the kind and whether the model's arrays are writable."""
    if isinstance(w, PackedGGUF) and w.qtype in quant.QCODE:
        qt, nb = quant.QCODE[w.qtype], w.shape[1] // quant.QTYPES[w.qtype][0]
        return _readonly(np.asarray(w.blocks)), _NONE[np.float32], _NONE[np.uint16], qt, nb
    if not (isinstance(w, np.ndarray) and w.ndim == 2 and w.flags.c_contiguous):
        return None
    if w.dtype == _F32:
        return _NONE[np.uint8], _readonly(np.asarray(w)), _NONE[np.uint16], -1, 0
    if w.dtype == bfloat16:
        return _NONE[np.uint8], _NONE[np.float32], _readonly(np.asarray(w).view(np.uint16)), -2, 0
    return None


def _vector(a, n):
    return isinstance(a, np.ndarray) and a.dtype == _F32 and a.shape == (n,) and a.flags.c_contiguous


_READS = ("attn.qkv.weight", "attn.o.weight", "mlp.gate_up.weight", "mlp.down.weight", "attn.qkv.bias",
          "attn.o.bias", "attn_norm.weight", "mlp_norm.weight", "attn.sinks", "attn.q_norm.weight",
          "attn.k_norm.weight")  # every entry a plan reads


def plan(cfg, weights, precision, x, cache, memo=None):
    """A function step(L, x, cache, cos, sin) -> x running layer L for one token in one call, or None
    when this model, its weights, the precision or this call's x [1, d] and cache are not covered
    (module docstring). memo: a dict (the backend's) keeping the last plan while the config and every
    weight entry it reads are the same objects (checked by identity on each call, ~10 us)."""
    if precision.dtype != "float32" or precision.rounds_each_step or not _accepts(x, cache):
        return None
    c = cfg
    if (c.norm, c.norm_placement, c.position, c.activation) != ("rms", "pre", "rope", "swiglu") \
            or c.num_experts or c.head_dim % 2:
        return None
    if memo is None:
        return _plan(cfg, weights)
    last = memo.get("last")  # (cfg, keys, reads, step), replaced as a whole
    same_cfg = last is not None and last[0] is cfg
    keys = last[1] if same_cfg else [f"layers.{L}.{n}" for L in range(cfg.num_layers) for n in _READS]
    reads = tuple(map(weights.get, keys))
    if same_cfg and all(map(operator.is_, reads, last[2])):
        return last[3]
    step = _plan(cfg, weights)
    memo["last"] = (cfg, keys, reads, step) if step is not None else None
    return step


def _plan(cfg, weights):
    c = cfg
    d, hq, hkv, D = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim
    W = weights
    layers = []
    for L in range(c.num_layers):
        p = f"layers.{L}."
        qkv, o = W.get(p + "attn.qkv.weight"), W.get(p + "attn.o.weight")
        gu, dn = W.get(p + "mlp.gate_up.weight"), W.get(p + "mlp.down.weight")
        mats = [_matrix(w) for w in (qkv, o, gu, dn)]
        if None in mats:
            return None
        if qkv.shape != ((hq + 2 * hkv) * D, d) or o.shape != (d, hq * D) or gu.shape[1] != d \
                or dn.shape != (d, gu.shape[0] // 2):
            return None
        qkv_b, o_b = W.get(p + "attn.qkv.bias"), W.get(p + "attn.o.bias")
        an, mn = W.get(p + "attn_norm.weight"), W.get(p + "mlp_norm.weight")
        sinks = W.get(p + "attn.sinks") if c.attention_sinks else None
        qn, kn = (W.get(p + "attn.q_norm.weight"), W.get(p + "attn.k_norm.weight")) if c.qk_norm else (None, None)
        if (qkv_b is not None and not _vector(qkv_b, qkv.shape[0])) or (o_b is not None and not _vector(o_b, d)) \
                or not _vector(an, d) or not _vector(mn, d) or (c.attention_sinks and not _vector(sinks, hq)) \
                or (c.qk_norm and not (_vector(qn, D) and _vector(kn, D))):
            return None
        args = [*mats[0], qkv_b if qkv_b is not None else _NO_BIAS, qkv_b is not None,
                *mats[1], o_b if o_b is not None else _NO_BIAS, o_b is not None, *mats[2], *mats[3], _NO_BIAS,
                bool(c.qk_norm), qn if c.qk_norm else _NO_BIAS, kn if c.qk_norm else _NO_BIAS]
        window = c.layer_window(L)
        sk = sinks if sinks is not None else np.full(hq, -np.inf, np.float32)
        layers.append((an, mn, args, 0 if window is None else int(window), sk))
    eps = np.float32(c.norm_eps)
    scale = np.float32(1.0 / np.sqrt(D))
    interleaved = c.rope_pairing == "interleaved"

    def step(L, x, cache, cos, sin):
        an, mn, args, window, sk = layers[L]
        kbuf, vbuf, pos = cache.extend(L, 1)
        out = np.empty((1, d), np.float32)
        kernel = layer_kernel if _threads() > 1 else serial_twin(layer_kernel)
        kernel(0, x, an, mn, eps, *args, quant.F16, cos[0], sin[0], interleaved, hq, kbuf, vbuf, pos, window, sk,
               scale, out)
        return out

    return step



def _accepts(x, cache):
    """x float32 [1, d] (C order), a float32 KVCache of one sequence."""
    return isinstance(x, np.ndarray) and x.dtype == _F32 and x.ndim == 2 and x.shape[0] == 1 \
        and x.flags.c_contiguous and getattr(cache, "batch_shape", None) == () and cache.dtype == _F32


def _drop_stale_cache(cache=None):
    """Numba's disk cache checks the stamp of the kernel's own file only, and layer_kernel inlines code
    from the modules below: when any of them changes, this module's cached entries are removed."""
    here = Path(__file__).parent
    names = ("layer.py", "quant.py", "linear.py", "bf16.py", "norms.py", "attention.py", "rope.py", "activations.py",
             "_common.py")
    digest = hashlib.sha256(b"".join((here / n).read_bytes() for n in names)).hexdigest()
    try:
        cache = Path(layer_kernel._cache._cache_path if cache is None else cache)
        stamp = cache / "layer.sources.sha256"
        if not stamp.exists() or stamp.read_text() != digest:
            for f in cache.glob("layer.*.nb[ic]"):
                f.unlink()
            cache.mkdir(parents=True, exist_ok=True)
            stamp.write_text(digest)
    except (AttributeError, OSError):
        pass  # numba internals moved, or an unwritable cache: numba's own rules apply


_drop_stale_cache()
