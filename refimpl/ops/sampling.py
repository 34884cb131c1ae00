"""Next-token selection: greedy, temperature, top-k, top-p (nucleus), and the random draw.

Every function takes logits `[..., V]` (any leading batch dims, vocabulary last). The filters
return logits of the same shape in `compute_dtype(logits)` with removed entries set to `-inf`;
`greedy` and `sample` return token ids. See spec/sampling.md.
"""

import numpy as np

from .._validate import as_float_array, host_values, positive_int, real, require
from ..precision import compute_dtype

__all__ = ["softmax", "log_softmax", "greedy", "apply_temperature", "top_k_filter", "top_p_filter", "sample",
           "check_softmax", "check_log_softmax", "check_greedy", "check_apply_temperature", "check_top_k_filter",
           "check_top_p_filter", "check_sample"]


def _check_logits(logits, *, allow_pos_inf=True, need_finite_max=False):
    """Checks logits [..., V]: V >= 1; on host values also no NaN (optionally no +inf, a finite max)."""
    a = as_float_array(logits, "logits", min_ndim=1)
    require(a.shape[-1] >= 1, "logits", "a vocabulary axis of length >= 1", f"shape {a.shape}")
    x = host_values(a)
    if x is None:
        return
    x = x.astype(compute_dtype(x))
    if np.isnan(x).any():
        require(False, "logits", "no NaN", f"NaN at index {np.argwhere(np.isnan(x))[0].tolist()}")
    if not allow_pos_inf and np.isposinf(x).any():
        require(False, "logits", "no +inf", f"+inf at index {np.argwhere(np.isposinf(x))[0].tolist()}")
    if need_finite_max:
        bad = np.all(np.isneginf(x), axis=-1)  # [...]
        if bad.any():
            where = np.argwhere(bad)[0].tolist() if bad.ndim else []
            require(False, "logits", "at least one entry > -inf in every row", f"a row of only -inf at batch index {where}")


def _logits(logits):
    """Logits `[..., V]` that its op's check_<op> accepted, in their compute dtype."""
    a = as_float_array(logits, "logits")
    return a.astype(compute_dtype(a))


def check_softmax(x, axis=-1):
    """The argument checks of softmax (ArgumentError; returns None)."""
    a = as_float_array(x, "x", min_ndim=1)
    require(isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and -a.ndim <= axis < a.ndim,
            "axis", f"an integer in [{-a.ndim}, {a.ndim})", repr(axis))


def check_greedy(logits):
    """The argument checks of greedy: logits [..., V] without NaN."""
    _check_logits(logits)


def check_apply_temperature(logits, temperature):
    """The argument checks of apply_temperature."""
    _check_logits(logits)
    t = real(temperature, "temperature")
    require(t > 0, "temperature", "a number > 0", repr(temperature))


def check_top_k_filter(logits, k):
    """The argument checks of top_k_filter."""
    _check_logits(logits)
    positive_int(k, "k")


def check_top_p_filter(logits, p, *, min_keep=1):
    """The argument checks of top_p_filter."""
    _check_logits(logits, allow_pos_inf=False, need_finite_max=True)
    p = real(p, "p")
    require(0 < p <= 1, "p", "a number in (0, 1]", repr(p))
    positive_int(min_keep, "min_keep")


def check_sample(logits, *, temperature=0.0, top_k=None, top_p=None, rng=None):
    """The argument checks of sample (rng is required when temperature > 0)."""
    t = real(temperature, "temperature")
    require(t >= 0, "temperature", "a number >= 0", repr(temperature))
    _check_logits(logits, allow_pos_inf=(t == 0), need_finite_max=(t > 0))
    if top_k is not None:
        positive_int(top_k, "top_k")
    if top_p is not None:
        tp = real(top_p, "top_p")
        require(0 < tp <= 1, "top_p", "a number in (0, 1] or None", repr(top_p))
    if t > 0:
        require(isinstance(rng, np.random.Generator), "rng", "a numpy.random.Generator when temperature > 0",
                type(rng).__name__)


def softmax(x, axis=-1):
    """Numerically stable softmax along `axis`.

    y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j, computed in compute_dtype(x)
    and returned in that dtype. A slice whose entries are all -inf returns zeros (not NaN);
    other NaN/+inf inputs propagate as IEEE arithmetic says.
    """
    check_softmax(x, axis)
    a = as_float_array(x, "x")
    a = a.astype(compute_dtype(a))
    m = np.max(a, axis=axis, keepdims=True)  # [..., 1, ...]
    m = np.where(np.isneginf(m), 0, m).astype(a.dtype)
    e = np.exp(a - m)
    s = np.sum(e, axis=axis, keepdims=True)  # [..., 1, ...]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(s == 0, 0, e / np.where(s == 0, 1, s))
    return y.astype(a.dtype)


def check_log_softmax(x, axis=-1):
    """The argument checks of log_softmax (ArgumentError; returns None)."""
    a = as_float_array(x, "x", min_ndim=1)
    require(isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and -a.ndim <= axis < a.ndim,
            "axis", f"an integer in [{-a.ndim}, {a.ndim})", repr(axis))


def log_softmax(x, axis=-1):
    """Natural log of softmax along `axis`, without forming the softmax (no underflow to log 0).

    y_i = (x_i - m) - log(sum_j exp(x_j - m)), m = max_j x_j, computed in compute_dtype(x) and
    returned in that dtype: pass float64 logits for float64 log-probabilities. Entries equal to
    -inf give -inf; a slice that is all -inf gives -inf everywhere (not NaN); other NaN/+inf
    propagate as IEEE arithmetic says. exp(log_softmax(x)) equals softmax(x) up to rounding.
    Used for the log-probabilities that `refimpl serve` reports (spec/serve.md).
    """
    check_log_softmax(x, axis)
    a = as_float_array(x, "x")
    a = a.astype(compute_dtype(a))
    m = np.max(a, axis=axis, keepdims=True)  # [..., 1, ...]
    m = np.where(np.isneginf(m), 0, m).astype(a.dtype)
    z = a - m
    s = np.sum(np.exp(z), axis=axis, keepdims=True)  # [..., 1, ...]
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(s == 0, -np.inf, z - np.log(np.where(s == 0, 1, s)))
    return y.astype(a.dtype)


def greedy(logits):
    """Index of the largest logit along the last axis.

    Ties resolve to the LOWEST index (first maximum), as torch.argmax and numpy.argmax do.
    logits [..., V] with no NaN (ArgumentError naming `logits`); +inf and -inf are ordinary
    values. Returns a Python int for 1-D logits, else an int64 array of shape [...].
    """
    check_greedy(logits)
    x = _logits(logits)
    idx = np.argmax(x, axis=-1)  # [...]
    return int(idx) if x.ndim == 1 else idx.astype(np.int64)


def apply_temperature(logits, temperature):
    """logits / temperature.

    temperature must be a finite real > 0 (temperature 0 means greedy, handled by `sample`).
    The division is one IEEE division in compute_dtype(logits), by temperature rounded to that
    dtype (HF TemperatureLogitsWarper divides; the official gpt-oss generator multiplies by
    1/temperature, which differs by rounding unless 1/temperature is exact).
    """
    check_apply_temperature(logits, temperature)
    x, t = _logits(logits), float(temperature)
    with np.errstate(over="ignore"):
        return (x / x.dtype.type(t)).astype(x.dtype)


def top_k_filter(logits, k):
    """Keep every logit >= the k-th largest value of its row; set the rest to -inf.

    Rule (HF TopKLogitsWarper): threshold = k-th largest value (counting repeats);
    keep x_i iff x_i >= threshold. Ties at the threshold are all kept, so more than k
    entries survive when the k-th value is repeated. k is an integer >= 1; k >= V keeps all.
    """
    check_top_k_filter(logits, k)
    x, k = _logits(logits), int(k)
    v = x.shape[-1]
    kk = min(k, v)
    thr = np.partition(x, v - kk, axis=-1)[..., v - kk : v - kk + 1]  # [..., 1]
    return np.where(x >= thr, x, -np.inf).astype(x.dtype)


def top_p_filter(logits, p, *, min_keep=1):
    """Nucleus filter: keep the smallest most-probable prefix whose probability mass reaches p.

    Order the tokens by logit descending, ties by lower index first (rank r = 0, 1, ...).
    With probabilities q = softmax(logits) (compute dtype) and the exclusive prefix sum
    S_r = q_(0) + ... + q_(r-1) (sequential sum in that order, compute dtype), token of rank r
    is kept iff S_r < p (compared exactly, in float64), or r < min_keep. The token whose
    inclusion first makes the mass >= p is kept. This equals HF TopPLogitsWarper's rule
    (remove when the ascending inclusive cumulative sum <= 1 - p) in exact arithmetic.
    p in (0, 1]; p == 1 keeps every token (no filtering). min_keep is an integer >= 1.
    Removed entries become -inf; kept entries keep their value.
    """
    check_top_p_filter(logits, p, min_keep=min_keep)
    x, p, min_keep = _logits(logits), float(p), int(min_keep)
    if p == 1.0:
        return x.copy()
    q = softmax(x)  # [..., V]
    order = np.argsort(-x, axis=-1, kind="stable")  # [..., V]
    qs = np.take_along_axis(q, order, axis=-1)  # [..., V]
    incl = np.cumsum(qs, axis=-1, dtype=q.dtype)  # [..., V]
    excl = np.concatenate([np.zeros_like(incl[..., :1]), incl[..., :-1]], axis=-1)  # [..., V]
    keep_sorted = excl.astype(np.float64) < p
    keep_sorted[..., :min_keep] = True
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, x, -np.inf).astype(x.dtype)


def sample(logits, *, temperature=0.0, top_k=None, top_p=None, rng=None):
    """Draw one token id per row.

    temperature == 0: greedy(logits) (lowest index on ties); rng is not used.
    temperature > 0: x = apply_temperature(logits, temperature), then top_k_filter(x, top_k) and
    top_p_filter(x, top_p) where given (HF's warper order), then the draw, in float64:
    e_i = exp(x_i - max x) (0 for removed tokens); C_i = e_0 + ... + e_i summed in index order;
    u = rng.random(size=batch_shape) (one per row, C order); token = the smallest i with
    u * C_{V-1} < C_i (inverse CDF on the unnormalised weights).
    rng: a numpy.random.Generator, required when temperature > 0. Logits must be free of NaN,
    and of +inf when temperature > 0, with at least one entry > -inf per row.
    Returns a Python int for 1-D logits, else an int64 array of shape [...].
    """
    check_sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng)
    x, t = _logits(logits), float(temperature)
    if t == 0:
        return greedy(x)
    x = apply_temperature(x, t)
    require(not np.isposinf(x).any(), "temperature", "a value for which logits / temperature stays finite",
            f"{temperature!r} (logits / temperature overflows to +inf)")
    if top_k is not None:
        x = top_k_filter(x, top_k)
    if top_p is not None:
        x = top_p_filter(x, top_p)
    x = x.astype(np.float64)
    m = np.max(x, axis=-1, keepdims=True)  # [..., 1]
    e = np.exp(x - m)  # [..., V]
    c = np.cumsum(e, axis=-1)  # [..., V]
    u = rng.random(size=x.shape[:-1])  # [...]
    target = np.asarray(u)[..., None] * c[..., -1:]  # [..., 1]
    idx = np.sum(c <= target, axis=-1)  # [...]
    idx = np.minimum(idx, x.shape[-1] - 1)
    return int(idx) if x.ndim == 1 else idx.astype(np.int64)
