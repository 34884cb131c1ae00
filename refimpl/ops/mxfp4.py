"""MXFP4 (OCP Microscaling, E2M1 elements with an E8M0 block scale) decode and encode (spec/mxfp4.md)."""

import numpy as np

from .._validate import as_float_array, host_values, is_device_array, require
from ..errors import ArgumentError
from ..precision import bfloat16, compute_dtype
from .linear import linear

BLOCK_SIZE = 32
BYTES_PER_BLOCK = 16

# Code c (4 bits): bit 3 is the sign, bits 2..1 the exponent (bias 1), bit 0 the mantissa.
FP4_E2M1_VALUES = np.array(
    [+0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=np.float32,
)
FP4_E2M1_VALUES.setflags(write=False)

NIBBLE_ORDERS = ("low_first", "high_first")
SCALE_RULES = ("ceil", "floor")
TIES = ("even", "away")
_DECODE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), bfloat16)

# Midpoints between consecutive E2M1 magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 (exact in binary).
_MIDPOINTS = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])


def _uint8_array(x, name, *, min_ndim=0):
    try:
        a = x if is_device_array(x) else np.asarray(x)
    except Exception as exc:
        raise ArgumentError(f"{name}: expected a uint8 array, found {type(x).__name__} ({exc})") from None
    require(a.dtype == np.uint8, name, "dtype uint8", str(a.dtype))
    require(a.ndim >= min_ndim, name, f"at least {min_ndim} dimensions", f"shape {a.shape}")
    return a


def _uint8(x):
    """A uint8 array that _uint8_array accepted, as it is (a backend's array) or as a NumPy array."""
    return x if is_device_array(x) else np.asarray(x)


def _int(v, name, what, ok=lambda v: True):
    good = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    require(good and ok(int(v)), name, what, repr(v))
    return int(v)


def _check_packed(blocks, scales):
    b = _uint8_array(blocks, "blocks", min_ndim=2)
    require(
        b.shape[-1] == BYTES_PER_BLOCK,
        "blocks",
        f"last dimension {BYTES_PER_BLOCK} (32 E2M1 codes, two per byte)",
        f"shape {b.shape}",
    )
    s = _uint8_array(scales, "scales")
    require(
        s.shape == b.shape[:-1],
        "scales",
        f"shape {b.shape[:-1]} (the leading dimensions of blocks {b.shape})",
        f"shape {s.shape}",
    )
    return b, s


def _check_decoding(nibble_order, scale_bias):
    """The checked decoding knobs: returns scale_bias as an int."""
    require(nibble_order in NIBBLE_ORDERS, "nibble_order", f"one of {NIBBLE_ORDERS}", repr(nibble_order))
    return _int(scale_bias, "scale_bias", "an integer")


def check_decode_mxfp4(blocks, scales, *, dtype=np.float32, nibble_order="low_first", scale_bias=127):
    """The argument checks of decode_mxfp4."""
    _check_packed(blocks, scales)
    _check_decoding(nibble_order, scale_bias)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ArgumentError(f"dtype: expected one of float32, float64, bfloat16, found {dtype!r}") from None
    require(dt in _DECODE_DTYPES, "dtype", "one of float32, float64, bfloat16", str(dt))


def check_mxfp4_linear(x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127):
    """The argument checks of mxfp4_linear."""
    xa = as_float_array(x, "x", min_ndim=1)
    b, s = _check_packed(blocks, scales)
    require(b.ndim == 3, "blocks", "3 dimensions [out, in/32, 16]", f"shape {b.shape}")
    require(
        b.shape[1] * BLOCK_SIZE == xa.shape[-1],
        "blocks",
        f"shape [out, {xa.shape[-1] / BLOCK_SIZE:g}, 16] (in = last dimension of x = {xa.shape[-1]}, 32 per block)",
        f"shape {b.shape}",
    )
    bb = None
    if bias is not None:
        bb = as_float_array(bias, "bias")
        require(bb.shape == (b.shape[0],), "bias", f"shape ({b.shape[0]},) (out = rows of blocks)", f"shape {bb.shape}")
    _check_decoding(nibble_order, scale_bias)


def check_decode_e8m0(scales, *, bias=127):
    """The argument checks of decode_e8m0 (ArgumentError; returns None)."""
    _uint8_array(scales, "scales")
    _int(bias, "bias", "an integer")


def check_encode_mxfp4(w, *, scale_rule="ceil", ties="even"):
    """The argument checks of encode_mxfp4 (w finite: checked on host values)."""
    require(scale_rule in SCALE_RULES, "scale_rule", f"one of {SCALE_RULES}", repr(scale_rule))
    require(ties in TIES, "ties", f"one of {TIES}", repr(ties))
    a = as_float_array(w, "w", min_ndim=1)
    k = a.shape[-1]
    require(k >= BLOCK_SIZE and k % BLOCK_SIZE == 0, "w", "a last dimension that is a positive multiple of 32", f"shape {a.shape}")
    vals = host_values(a)
    if vals is not None:
        require(bool(np.all(np.isfinite(vals.astype(np.float64)))), "w", "finite values", "NaN or Inf")


def decode_e8m0(scales, *, bias=127):
    """E8M0 scale codes to float32: ``2^(s - bias)``, exact.

    scales: uint8 array, any shape. bias: integer (released gpt-oss: 127; 128 is
    a known-wrong variant that halves every value). The power of two is formed
    in float32 (``ldexp(1, s - bias)``): exponents -149..127 are exact (-149..-127
    as float32 subnormals), s - bias >= 128 overflows to +inf and s - bias <= -150
    underflows to 0. Code 255 is NOT special-cased (OCP MX calls it NaN), so with
    bias 127 it decodes to +inf; spec/mxfp4.md "Scale code 255" has the peers' rules.
    Returns float32 with the shape of ``scales``.
    """
    check_decode_e8m0(scales, bias=bias)
    s, bias = np.asarray(scales), int(bias)
    exp = s.astype(np.int64) - bias
    exp = np.clip(exp, -1000, 1000).astype(np.int32)
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(np.ones(s.shape, dtype=np.float32), exp)


def decode_mxfp4(blocks, scales, *, dtype=np.float32, nibble_order="low_first", scale_bias=127):
    """Packed MXFP4 to floats: ``out[..., 32 g + j] = E2M1[code_j(blocks[..., g, :])] * 2^(scales[..., g] - scale_bias)``.

    blocks: uint8 [..., G, 16]; scales: uint8 [..., G] (the same leading dims). Byte i holds
    elements 2i and 2i + 1: nibble_order="low_first" (released gpt-oss) puts element 2i in the
    low nibble (byte & 0x0F); "high_first" is the swapped, known-wrong reading.
    Code table ``FP4_E2M1_VALUES``; scale ``decode_e8m0(scales, bias=scale_bias)`` (255 -> +inf).
    Each product is formed exactly and rounded once to ``dtype`` (float32 default, float64 or
    bfloat16); products >= 2^128 are +-inf in float32 and bfloat16, and a zero code with scale
    code 255 gives NaN (0 x inf).
    Returns [..., G * 32] in ``dtype``.
    """
    check_decode_mxfp4(blocks, scales, dtype=dtype, nibble_order=nibble_order, scale_bias=scale_bias)
    b, s, dt, scale_bias = _uint8(blocks), _uint8(scales), np.dtype(dtype), int(scale_bias)
    # A byte decodes to a pair of table values; the pair table makes the unpacking one gather.
    wide = np.float64 if dt == np.float64 else np.float32
    vals = _byte_pairs(nibble_order, wide)[b].reshape(*b.shape[:-1], BLOCK_SIZE)  # [..., G, 32]
    scale = decode_e8m0(s, bias=scale_bias).astype(wide)[..., None]  # [..., G, 1]
    # The product of a one-mantissa-bit value and a power of two is exact in float32
    # (subnormals included) unless it overflows, so float32 arithmetic equals the exact
    # product rounded once; bfloat16 then rounds it once more, exactly.
    with np.errstate(invalid="ignore", over="ignore"):
        out = (vals * scale).reshape(*b.shape[:-2], b.shape[-2] * BLOCK_SIZE)  # [..., G*32]
        return out.astype(dt, copy=False)


_PAIRS = {}


def _byte_pairs(nibble_order, dtype):
    """[256, 2] table: the two decoded values of each byte, in element order."""
    key = (nibble_order, np.dtype(dtype))
    if key not in _PAIRS:
        byte = np.arange(256)
        low, high = byte & 0x0F, byte >> 4
        first, second = (low, high) if nibble_order == "low_first" else (high, low)
        table = FP4_E2M1_VALUES.astype(dtype)
        _PAIRS[key] = np.stack([table[first], table[second]], axis=-1)  # [256, 2]
    return _PAIRS[key]


def encode_mxfp4(w, *, scale_rule="ceil", ties="even"):
    """Floats to packed MXFP4 along the last axis: w [..., K] -> (blocks [..., K/32, 16], scales [..., K/32]).

    K a positive multiple of 32, w finite; computed exactly in float64 per block of 32 with
    amax = max |w_block|. Scale exponent e (code e + 127, clamped to [0, 254]; amax 0 gives code 0):
    scale_rule="ceil" (default, triton_kernels' ROUND_UP): the smallest e with amax <= 6 * 2^e;
    "floor" (OCP MX v1.0): e = floor(log2(amax)) - 2, scaled magnitudes in (6, 8) saturate to 6.
    Elements: w / 2^e rounded to the nearest E2M1 magnitude, ties to the even code (ties="even") or
    to the larger magnitude ("away"); above 6 saturates; the sign bit is signbit(w) (-0 -> code 8).
    Element 2i goes to the low nibble of byte i. decode(encode(v)) == v for every finite value the
    decoder produces (the scale code may change). Sources and proofs: spec/mxfp4.md.
    """
    check_encode_mxfp4(w, scale_rule=scale_rule, ties=ties)
    a = as_float_array(w, "w")
    k = a.shape[-1]
    x = a.astype(np.float64)
    g = k // BLOCK_SIZE
    xb = x.reshape(*x.shape[:-1], g, BLOCK_SIZE)  # [..., G, 32]
    amax = np.max(np.abs(xb), axis=-1)  # [..., G]
    mant, ex = np.frexp(amax)  # amax = mant * 2^ex, mant in [0.5, 1)
    e = ex.astype(np.int64) - 3  # floor(log2(amax)) - 2
    if scale_rule == "ceil":
        e = e + (amax > np.ldexp(6.0, e)).astype(np.int64)
    e = np.where(amax == 0, -(1 << 20), e)
    code = np.clip(e + 127, 0, 254)  # [..., G]
    q = np.ldexp(xb, -(code - 127)[..., None])  # [..., G, 32]
    mag = np.abs(q)
    below = np.searchsorted(_MIDPOINTS, mag.ravel(), side="left").reshape(mag.shape)  # midpoints < |q|
    tie = np.isin(mag, _MIDPOINTS)
    if ties == "even":
        m = np.where(tie & (below % 2 == 1), below + 1, below)
    else:
        m = np.where(tie, below + 1, below)
    c = (m + 8 * np.signbit(q)).astype(np.uint8)  # [..., G, 32]
    blocks = (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)  # [..., G, 16]
    return blocks, code.astype(np.uint8)


def mxfp4_linear(x, blocks, scales, bias=None, *, nibble_order="low_first", scale_bias=127):
    """``y = x @ decode_mxfp4(blocks, scales).T + bias`` with the weight packed along its input dimension.

    x: [..., in]; blocks: uint8 [out, in/32, 16]; scales: uint8 [out, in/32];
    bias: [out] or None. The weight is decoded (exactly) in
    ``compute_dtype(x, bias)`` and the product accumulates in that dtype; the
    bias is added after the product. Returns [..., out] in that dtype.
    """
    check_mxfp4_linear(x, blocks, scales, bias, nibble_order=nibble_order, scale_bias=scale_bias)
    xa, bb = as_float_array(x, "x"), None if bias is None else as_float_array(bias, "bias")
    b, s, dt, scale_bias = _uint8(blocks), _uint8(scales), compute_dtype(xa, bb), int(scale_bias)
    wt = decode_mxfp4(b, s, dtype=dt, nibble_order=nibble_order, scale_bias=scale_bias)  # [out, in]
    return linear(xa, wt, bb)  # [..., out]
