"""The shared kit of the conformance suite: budgets' arithmetic, case registration, misreadings.

Each op family (refimpl/conformance/ops/<family>.py) keeps its budgets, input cases and known-wrong
readings together and builds them from this kit:

- error arithmetic: unit roundoff u, gamma_n (Higham, Accuracy and Stability of Numerical
  Algorithms, 2nd ed., ch. 2-3), library-function error LIB_ULP, the `Budget` row, shared bounds of
  dot products (`linear_bound`) and softmax (`softmax_rel`);
- cases: `case(op, strategy, examples)` registers a Hypothesis strategy of small configuration
  dicts and a builder (cfg, Generator, dtype, seed) -> inputs; value helpers (`normal_values`,
  `special_values`, `margin_logits`, `as_dtype`);
- misreadings: `Misreading(name, description, overrides, example)`, a named known-wrong reading of a
  convention, built from the reference op with a wrong knob (`rewrite`, `with_knobs`, `each`).

A budget bounds |computed - exact| for one implementation computing with unit roundoff u (float64:
2^-53; float32, and float16/bfloat16 inputs computed in float32: 2^-24). Comparing two
implementations allows the sum of both bounds, plus u_s |y| for an output stored in a narrow dtype.
Both sides start from the same inputs (the oracle widens the backend's inputs to float64 exactly).
"""

import copy
import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st

from ..ops import ops as reference_ops
from ..precision import bfloat16


# The library functions' error, in ulps of their result, that every budget admits. Measured
# (spec/budgets.md, "Library functions"): NumPy 2.x float32 SIMD exp 2.3, log 2.9, tanh 1.4, sin/cos
# 1.4 ulps over 3e5 points against float64; glibc/CPython math double exp 0.5, tanh 1.7, erf 0.9 ulps
# against mpmath; PyTorch's float32 erf about 11 ulps near x = -2.1 (issue 9's adapter, GELU at
# x = -2.985). NumPy's own accuracy tests allow 4 (numpy/_core/tests/test_umath_accuracy.py).
# The table keeps a margin over the worst measured value of each function.
LIB_ULP = {"exp": 4, "log": 4, "tanh": 4, "sin": 4, "cos": 4, "pow": 4, "erf": 16}
LIBM_ULP = max(v for k, v in LIB_ULP.items() if k != "erf")  # every function but erf


UNIT_ROUNDOFF = {
    np.dtype(np.float64): 2.0**-53,
    np.dtype(np.float32): 2.0**-24,
    np.dtype(np.float16): 2.0**-11,
    bfloat16: 2.0**-8,
}


FLOAT_MAX = {2.0**-53: float(np.finfo(np.float64).max), 2.0**-24: float(np.finfo(np.float32).max)}


FLOAT_TINY = {2.0**-53: float(np.finfo(np.float64).tiny), 2.0**-24: float(np.finfo(np.float32).tiny)}


KINDS = ("exact", "ulp", "error_model")


def unit_roundoff(dtype):
    """u of a storage dtype (float64 2^-53, float32 2^-24, float16 2^-11, bfloat16 2^-8)."""
    return UNIT_ROUNDOFF[np.dtype(dtype)]


def compute_unit_roundoff(dtype):
    """u of the dtype an op computes in for an output of `dtype` (float64 -> 2^-53, other floats -> 2^-24)."""
    return 2.0**-53 if np.dtype(dtype) == np.float64 else 2.0**-24


def gamma(n, u):
    """gamma_n = n u / (1 - n u); +inf when n u >= 1 (no bound)."""
    nu = np.asarray(n, dtype=np.float64) * u
    with np.errstate(divide="ignore"):
        return np.where(nu < 1, nu / np.maximum(1 - nu, 0), np.inf)


def f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def lib_rel(u, fn="exp"):
    """Relative error of library function `fn` (LIB_ULP[fn] ulps = 2 LIB_ULP[fn] u: one ulp is <= 2u|y|)."""
    return 2 * LIB_ULP[fn] * u


def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


@dataclass(frozen=True)
class Budget:
    """One row of the budget table."""

    op: str
    kind: str
    formula: str
    reason: str
    bound_fn: object = None  # (inputs, expected, u) -> (bound array, params); None for exact
    parts: tuple = field(default=())  # per-output budgets for ops that return a tuple

    def bound(self, expected, inputs, u, ops=None):
        """Elementwise bound on |computed - exact| for one implementation with unit roundoff u.

        ops: the namespace whose semantics the expected output follows (default the reference; a
        misreading's namespace when diagnosing), used where the bound needs the op's structure.
        """
        e = np.asarray(expected, dtype=np.float64)
        if self.kind == "exact" or self.bound_fn is None:
            return np.zeros(e.shape), {}
        # Non-finite inputs give non-finite bounds there; compare() judges those elements by their
        # NaN/Inf pattern, not by the bound, so the arithmetic warnings carry no information.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            b, params = self.bound_fn(inputs, e, u, ops or reference_ops)
        return np.broadcast_to(np.asarray(b, dtype=np.float64), e.shape), params

    def part(self, i):
        return self.parts[i] if self.parts else self


def fixed(atol=0.0, rtol=0.0, reason="given by the caller"):
    """A budget |err| <= atol + rtol |expected| (for tests that state their own tolerance and why)."""
    return Budget("fixed", "error_model" if atol or rtol else "exact", f"|err| <= {atol:g} + {rtol:g} |y|", reason,
                  None if not (atol or rtol) else (lambda i, y, u, ops=None: (atol + rtol * np.abs(y), {})))


def bind(op, inputs):
    """The op's inputs as a dict of every argument by name, defaults filled in."""
    if inputs is None:
        return None
    sig = inspect.signature(getattr(reference_ops, op))
    if isinstance(inputs, dict):
        ba = sig.bind_partial(**inputs)
    else:
        ba = sig.bind_partial(*inputs)
    ba.apply_defaults()
    return dict(ba.arguments)


def linear_bound(x, w, b, bx, u):
    """gamma_(K+1) (|x| @ |W|.T + |b|) + Bx @ |W|.T (bias = one more term of the dot product)."""
    k = x.shape[-1]
    acc = np.abs(x) @ np.abs(w).T
    if b is not None:
        acc = acc + np.abs(b)
    out = gamma(k + 1, u) * acc
    if bx is not None:
        out = out + bx @ np.abs(w).T
    return out


def oss_split(h, layout):
    if layout == "interleaved":
        return h[..., 0::2], h[..., 1::2]
    half = h.shape[-1] // 2
    return h[..., :half], h[..., half:]


def oss_parts(h, alpha, limit, layout, u):
    """(y, dy/dgate, dy/dlin, bound) of swiglu_oss (float64)."""
    g, l = oss_split(h, layout)
    if limit is not None:
        g, l = np.minimum(g, limit), np.clip(l, -limit, limit)
    z = alpha * g
    s = sigmoid(z)
    y = g * s * (l + 1)
    # alpha * g: gamma_2 (the constant and the product); sigmoid: (1 - s)|z| gamma_2 + 2 lib + 2u;
    # * g, l + 1, final product: 3u.
    b = np.abs(y) * ((1 - s) * np.abs(z) * gamma(2, u) + 2 * lib_rel(u) + 5 * u) + 2 * np.abs(g * (l + 1)) / FLOAT_MAX[u]
    dg = s * (1 + z * (1 - s)) * (l + 1)
    dl = g * s
    return y, dg, dl, b


def softmax_rel(x, p, e_abs, u, extra=None):
    """Relative bound of each p_j = exp(x_j - m) / sum: x_j carries absolute error e_abs_j.

    eta_j = e_abs_j + u |x_j - m| + lib (the shift and exp); den: sum_l p_l eta_l + gamma_n; the
    division: u. `extra` = (p_sink, sink logit) for a denominator-only term. Entries with p == 0 add 0.
    Also admitted, the logsumexp form p_j = exp(x_j - m - L), L = ln(sum): one more subtraction
    (u |x_j - m - L| <= u (|x_j - m| + L)) and L's own error (log: lib L, its rounding u L), i.e.
    + u |x_j - m| + (lib + 2u) L with L = -ln(max_j p_j).
    """
    m = np.max(np.where(p > 0, x, -np.inf), axis=-1, keepdims=True)
    if extra is not None:
        m = np.maximum(m, extra[1])
    with np.errstate(invalid="ignore"):
        big_l = -np.log(np.max(np.where(p > 0, p, 1.0), axis=-1, keepdims=True))  # ln(sum) >= 0
        eta = np.where(p > 0, e_abs + 2 * u * np.abs(x - m) + lib_rel(u) + (lib_rel(u, "log") + 2 * u) * big_l, 0.0)
    den = (p * eta).sum(axis=-1, keepdims=True)
    n = x.shape[-1]
    if extra is not None:
        ps, sink = extra
        with np.errstate(invalid="ignore"):
            den = den + np.where(ps > 0, ps * (u * np.abs(sink - m) + lib_rel(u)), 0.0)
        n += 1
    return eta + den + gamma(n, u) + u


def exact(op, what):
    return Budget(op, "exact", "|err| = 0", what)


GATHER = "a gather/copy: no arithmetic, so any correct implementation returns the same bits"


ROUTE = ("indices are a selection: exact when the k-th and (k+1)-th scores differ by more than their error "
          "bounds (the suite draws inputs with that margin; among ties any index of the tie set is accepted)")


ELEM = f"elementwise; library functions within LIB_ULP ulps ({LIBM_ULP}, erf {LIB_ULP['erf']}; measured, spec/budgets.md)"


SOFTMAX_REASON = ("softmax: an absolute error e in a logit is a relative error e in its exp; shift u|x-m|, exp lib, "
       "sum gamma_n, division u; the denominator averages the numerators' errors")


# ----------------------------------------------------------------------------- cases


EDGE_SIZES = (1, 31, 32, 33, 127, 128, 129)


SMALL_SIZES = (1, 2, 3, 5, 7, 8, 16)


SCALES = (1.0, 1e-3, 30.0)


DTYPES = {"float64": np.float64, "float32": np.float32, "bfloat16": bfloat16}


def sizes(edges=EDGE_SIZES, small=SMALL_SIZES):
    """Lengths and widths: the small ones first (Hypothesis shrinks toward them), then tiling edges."""
    return st.sampled_from(tuple(dict.fromkeys(small + edges)))


def even_dims(values=(2, 4, 8, 16, 32, 64, 128)):
    """Head dims: always even (RoPE pairs), crossing 32/64/128 tiles."""
    return st.sampled_from(values)


def scales():
    return st.sampled_from(SCALES)


def normal_values(rng, shape, scale):
    """Finite normals times scale; subnormals cannot occur (|x| >= 1e-30 or exactly 0 never drawn)."""
    x = rng.standard_normal(shape) * scale
    tiny = 1e-30
    return np.where(np.abs(x) < tiny, tiny, x)


def as_dtype(a, dtype):
    return np.asarray(a, dtype=np.float64).astype(DTYPES[dtype])


def margin_logits(rng, shape, gap=0.5, offset=None):
    """Rows whose entries are a permutation of a grid with spacing `gap` plus jitter < gap/4:
    every pair differs by at least gap/2, far above any rounding (bfloat16 included)."""
    n = shape[-1]
    base = np.argsort(rng.random(shape), axis=-1).astype(np.float64) * gap  # [..., n]
    jitter = rng.random(shape) * gap / 4
    off = -(n * gap) / 2 if offset is None else offset
    return base + jitter + off


def fresh(inputs):
    """The inputs with every Generator replaced by an independent copy in the same state."""
    return {k: (copy.deepcopy(v) if isinstance(v, np.random.Generator) else v) for k, v in inputs.items()}


CONFIGS, BUILDERS, EXAMPLES = {}, {}, {}


def case(name, cfg_strategy, examples=()):
    def register(fn):
        CONFIGS[name] = cfg_strategy
        BUILDERS[name] = fn
        EXAMPLES[name] = list(examples)
        return fn

    return register


def margin_ok(scores, count, rel=1e-4):
    """True when, per row, the top count+1 sorted scores are pairwise separated by > rel * (max |s| + 1e-30)."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64), axis=-1)[..., :count + 1]  # [..., count+1]
    if s.shape[-1] < 2:
        return True
    gaps = s[..., :-1] - s[..., 1:]
    return bool(np.all(gaps > rel * (np.abs(s).max() + 1e-30)))


# ----------------------------------------------------------------------------- misreadings


@dataclass(frozen=True)
class Misreading:
    """A named known-wrong reading of a convention: `overrides` maps op names to wrong functions.

    example: a function returning (op, inputs) on which this misreading's output differs from the
    reference's beyond the op's budget (what the suite's own power check uses).
    """

    name: str
    description: str
    overrides: dict
    example: object = field(default=None, compare=False)

    def ops(self):
        """The reference namespace with this misreading's ops swapped in."""
        return SimpleNamespace(**{**vars(reference_ops), **self.overrides})

    def backend(self):
        """A NumPy backend running this misreading (named "misreading:<name>")."""
        from refimpl.backends.numpy import NumpyBackend

        return NumpyBackend(self.overrides, name=f"misreading:{self.name}")


def rewrite(op, change):
    """The reference op with its bound arguments passed through change(kwargs) first."""
    ref = getattr(reference_ops, op)
    sig = inspect.signature(ref)

    def rewrite_inputs(kw):
        """The arguments the reference op is really called with (for the budget of this misreading)."""
        kw = bind(op, sig.bind(*(), **kw).arguments)
        change(kw)
        return kw

    def wrong(*args, **kwargs):
        return ref(**rewrite_inputs(sig.bind(*args, **kwargs).arguments))

    wrong.__name__, wrong.__signature__ = op, sig
    wrong.rewrite_inputs = rewrite_inputs
    return wrong


def with_knobs(ops, **values):
    return {op: rewrite(op, lambda kw: kw.update(values)) for op in ops}


def each(ops, change):
    return {op: rewrite(op, change) for op in ops}


def make_rng(seed):
    return np.random.default_rng(seed)

