"""Mixture-of-experts routing, the Switch load-balancing loss and expert combination (spec/moe.md)."""

import numpy as np

from .._validate import as_float_array, as_int_array, host_values, positive_int, require
from ..errors import ArgumentError
from ..precision import compute_dtype
from .activations import check_swiglu_oss, swiglu_oss

LOSS_FRACTIONS = ("per_token", "per_assignment")


def _check_logits(logits, name="logits", *, min_ndim=1, finite=True):
    """Checks router logits [..., E]: E >= 1, and finite on host values when `finite`; returns them unconverted."""
    a = as_float_array(logits, name, min_ndim=min_ndim)
    require(a.shape[-1] >= 1, name, "at least one expert (last dimension >= 1)", f"shape {a.shape}")
    vals = host_values(a) if finite else None
    if vals is not None:
        require(bool(np.all(np.isfinite(vals.astype(compute_dtype(vals))))), name, "finite values", "NaN or Inf")
    return a


def _logits(logits, name="logits"):
    """(logits in their compute dtype, that dtype) for logits that their op's check_<op> accepted."""
    a = as_float_array(logits, name)
    dt = compute_dtype(a)
    return a.astype(dt, copy=False), dt


def _route(a, k, select):
    """select(a, k) -> (weights, indices) on rows of finite logits; a row with a NaN or infinite
    logit is routed as if its logits were all 0 (experts 0 .. k-1) and gets NaN weights."""
    bad = ~np.isfinite(a).all(axis=-1)  # [...]
    if not bad.any():
        return select(a, k)
    w, idx = select(np.where(bad[..., None], a.dtype.type(0), a), k)
    return np.where(bad[..., None], w.dtype.type(np.nan), w), idx


def _k(k, num_experts):
    k = positive_int(k, "k")
    require(k <= num_experts, "k", f"an integer in [1, {num_experts}] (the number of experts)", k)
    return k


def check_router_topk_softmax(logits, k):
    """The argument checks of router_topk_softmax (ArgumentError; returns None); any values."""
    a = _check_logits(logits, finite=False)
    _k(k, a.shape[-1])


def check_router_softmax_topk(logits, k, *, renormalize=True):
    """The argument checks of router_softmax_topk."""
    require(isinstance(renormalize, (bool, np.bool_)), "renormalize", "True or False", repr(renormalize))
    check_router_topk_softmax(logits, k)


def check_expert_choice(logits, capacity):
    """The argument checks of expert_choice."""
    a = _check_logits(logits, min_ndim=2)
    t = a.shape[-2]
    capacity = positive_int(capacity, "capacity")
    require(capacity <= t, "capacity", f"an integer in [1, {t}] (the number of tokens)", capacity)


def _softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _descending(a, k):
    """Positions of the k largest entries along the last axis, largest first, lower position first among equals."""
    return np.argsort(-a, axis=-1, kind="stable")[..., :k].astype(np.int64)


def router_topk_softmax(logits, k):
    """gpt-oss routing: top-k of the raw logits, then softmax over those k only.

    logits: [..., E]; k: integer, 1 <= k <= E. indices[..., j] is the expert with the j-th
    largest logit, the lower expert index first among equal logits (a stable sort of -logits).
    weights[..., j] = exp(l_j - l_0) / sum_{i<k} exp(l_i - l_0) (l_j the selected logits, l_0
    the largest): they sum to 1 and are non-increasing.
    A row with a NaN or infinite logit is routed to experts 0 .. k-1 with NaN weights, so that
    only its own output is NaN. Computed in and returned as ``compute_dtype(logits)``.
    Returns (weights [..., k], indices [..., k] int64).
    """
    check_router_topk_softmax(logits, k)
    a, dt = _logits(logits)

    def select(a, k):
        idx = _descending(a, k)  # [..., k]
        top = np.take_along_axis(a, idx, axis=-1)  # [..., k]
        return _softmax(top).astype(dt, copy=False), idx

    return _route(a, int(k), select)


def router_softmax_topk(logits, k, *, renormalize=True):
    """Mixtral / Qwen-MoE routing: softmax over all E experts, then the top k.

    p = softmax(logits) over the last axis (max subtracted first); indices as
    ``router_topk_softmax`` (top k by logit, descending, the lower index first among equal
    logits; the order follows the logits even where distinct logits round to equal p).
    renormalize=True: weights = p_sel / sum(p_sel) (router_topk_softmax's weights up to
    rounding). renormalize=False: weights = p_sel, which sum to <= 1.
    Non-finite rows: as router_topk_softmax (NaN weights, experts 0 .. k-1).
    Computed in and returned as ``compute_dtype(logits)``.
    Returns (weights [..., k], indices [..., k] int64).
    """
    check_router_softmax_topk(logits, k, renormalize=renormalize)
    a, dt = _logits(logits)

    def select(a, k):
        p = _softmax(a)  # [..., E]
        idx = _descending(a, k)  # [..., k]
        w = np.take_along_axis(p, idx, axis=-1)  # [..., k]
        if renormalize:
            w = w / np.sum(w, axis=-1, keepdims=True)
        return w.astype(dt, copy=False), idx

    return _route(a, int(k), select)


def expert_choice(logits, capacity):
    """Expert-choice routing (Zhou et al. 2022): each expert takes its ``capacity`` best tokens.

    logits: [..., T, E] (T tokens routed together; leading dims are independent
    groups), finite. capacity: integer, 1 <= capacity <= T (the paper uses
    capacity = T * c / E for a capacity factor c).
    S = softmax(logits) over the expert axis (per token). For each expert e,
    indices[..., e, :] lists the tokens with the ``capacity`` largest S[..., t, e],
    largest first; among equal scores the lower token index comes first.
    gates[..., e, j] = S[..., indices[..., e, j], e]. A token may be taken by
    several experts or by none.
    Computed in and returned as ``compute_dtype(logits)``; indices int64.
    Returns (gates [..., E, capacity], indices [..., E, capacity]).
    """
    check_expert_choice(logits, capacity)
    (a, dt), capacity = _logits(logits), int(capacity)
    s = np.swapaxes(_softmax(a), -1, -2)  # [..., E, T]
    idx = _descending(s, capacity)  # [..., E, C]
    gates = np.take_along_axis(s, idx, axis=-1)  # [..., E, C]
    return gates.astype(dt, copy=False), idx


def check_load_balancing_loss(router_logits, indices, num_experts, *, fraction="per_token"):
    """The argument checks of load_balancing_loss (index range: checked on host values)."""
    require(fraction in LOSS_FRACTIONS, "fraction", f"one of {LOSS_FRACTIONS}", repr(fraction))
    e = positive_int(num_experts, "num_experts")
    a = _check_logits(router_logits, "router_logits")
    require(a.shape[-1] == e, "router_logits", f"last dimension {e} (num_experts)", f"shape {a.shape}")
    idx = as_int_array(indices, "indices")
    require(idx.ndim >= 1, "indices", "at least 1 dimension [..., k]", f"shape {idx.shape}")
    require(
        idx.shape[:-1] == a.shape[:-1],
        "indices",
        f"leading dims {a.shape[:-1]} (those of router_logits)",
        f"shape {idx.shape}",
    )
    require(idx.shape[-1] >= 1, "indices", "k >= 1 slots (last dimension)", f"shape {idx.shape}")
    require(a.size >= 1, "router_logits", "at least one token", f"shape {a.shape}")
    vals = host_values(idx)
    if vals is not None:
        require(bool(np.all((vals >= 0) & (vals < e))), "indices", f"values in [0, {e})", f"range [{vals.min()}, {vals.max()}]")


def load_balancing_loss(router_logits, indices, num_experts, *, fraction="per_token"):
    """Switch Transformer auxiliary loss ``N * sum_i f_i * P_i`` (without the coefficient alpha).

    router_logits: [..., E], finite, T >= 1 tokens (every leading position is one token),
    E = num_experts. indices: integer [..., k], the same leading dims, values in [0, E).
    P_i = the mean over tokens of softmax(router_logits)_i; c_i = the number of (token, slot)
    pairs with indices == i. fraction="per_token" (default): f_i = c_i / T, so balanced routing
    gives k. fraction="per_assignment": f_i = c_i / (T k), so balanced routing gives 1.
    Returns a 0-d array in ``compute_dtype(router_logits)``.
    """
    check_load_balancing_loss(router_logits, indices, num_experts, fraction=fraction)
    e = int(num_experts)
    a, dt = _logits(router_logits, "router_logits")
    idx = as_int_array(indices, "indices")
    t = a.size // e
    k = idx.shape[-1]
    p = _softmax(a).reshape(t, e)  # [T, E]
    mean_p = np.sum(p, axis=0) / dt.type(t)  # [E]
    counts = np.bincount(idx.ravel(), minlength=e).astype(dt)  # [E]
    denom = t if fraction == "per_token" else t * k
    f = counts / dt.type(denom)  # [E]
    return np.asarray(dt.type(e) * np.sum(f * mean_p), dtype=dt)


def check_moe_combine(x, weights, indices, expert_fn):
    """The argument checks of moe_combine (the expert outputs are checked as they come)."""
    xa = as_float_array(x, "x", min_ndim=1)
    w = as_float_array(weights, "weights", min_ndim=1)
    idx = as_int_array(indices, "indices")
    require(callable(expert_fn), "expert_fn", "a callable expert_fn(e, rows)", type(expert_fn).__name__)
    require(idx.ndim >= 1, "indices", "at least 1 dimension [..., k]", f"shape {idx.shape}")
    require(idx.shape[:-1] == xa.shape[:-1], "indices", f"leading dims {xa.shape[:-1]} (those of x)", f"shape {idx.shape}")
    require(w.shape == idx.shape, "weights", f"shape {idx.shape} (shape of indices)", f"shape {w.shape}")
    vals = host_values(idx)
    if vals is not None and vals.size:
        require(bool(np.all(vals >= 0)), "indices", "values >= 0", f"minimum {vals.min()}")


def moe_combine(x, weights, indices, expert_fn):
    """``out[t] = sum_j weights[t, j] * expert_fn(indices[t, j], x[t])``, computed expert by expert.

    x: [..., d_in]; weights: [..., k] float; indices: [..., k] integers >= 0
    (same leading dims). expert_fn(e, rows) takes rows [n, d_in] (the tokens
    routed to expert e, in token order; a token listed twice under e appears
    twice) and returns [n, d_out]; it is called once per distinct expert, in
    ascending expert order, and never for an expert no token chose. Rows are
    independent: expert_fn must not mix rows.
    Summation: the k weighted outputs of a token are added in slot order
    j = 0, 1, ..., k-1, starting from zero. Dtype: ``compute_dtype(x, weights)``;
    expert outputs are converted to it. Returns [..., d_out]; with no tokens
    at all (no expert called) d_out is taken to be d_in (zeros [..., d_in]).
    """
    check_moe_combine(x, weights, indices, expert_fn)
    xa, w, idx = as_float_array(x, "x"), as_float_array(weights, "weights"), as_int_array(indices, "indices")
    dt = compute_dtype(xa, w)
    lead = xa.shape[:-1]
    n, k = int(np.prod(lead, dtype=np.int64)), idx.shape[-1]
    xf = xa.reshape(n, xa.shape[-1]).astype(dt, copy=False)  # [N, d_in]
    wf = w.reshape(n, k).astype(dt, copy=False)  # [N, k]
    idf = idx.reshape(n, k)  # [N, k]
    ys = None
    d_out = None
    for e in np.unique(idf):
        rows, slots = np.nonzero(idf == e)  # [m], [m]
        y = expert_fn(int(e), xf[rows])  # [m, d_out]
        try:
            y = np.asarray(y, dtype=dt)
        except Exception as exc:
            raise ArgumentError(f"expert_fn: expected an array of floats from expert {int(e)}, found {exc}") from None
        if d_out is None:
            require(y.ndim == 2, "expert_fn", f"an output [{len(rows)}, d_out] for expert {int(e)}", f"shape {y.shape}")
            d_out = y.shape[1]
            ys = np.zeros((n, k, d_out), dtype=dt)  # [N, k, d_out]
        require(y.shape == (len(rows), d_out), "expert_fn", f"an output of shape {(len(rows), d_out)} for expert {int(e)}", f"shape {y.shape}")
        ys[rows, slots] = y
    if ys is None:
        d_out = xa.shape[-1]
        return np.zeros((*lead, d_out), dtype=dt)
    out = np.zeros((n, d_out), dtype=dt)  # [N, d_out]
    for j in range(k):
        out = out + wf[:, j, None] * ys[:, j]
    return out.reshape(*lead, d_out)  # [..., d_out]


def _expert_weight(weight, name, num_experts, shape, dt):
    """A per-expert matrix getter for a dense [E, out, in] array or a callable e -> [out, in]."""
    if callable(weight):
        def get(e):
            m = as_float_array(weight(e), name)
            require(m.shape == shape, name, f"a matrix of shape {shape} for expert {e}", f"shape {m.shape}")
            return m.astype(dt, copy=False)

        return get
    a = as_float_array(weight, name)
    require(a.shape == (num_experts, *shape), name, f"shape {(num_experts, *shape)} [E, out, in]", f"shape {a.shape}")
    return lambda e: a[e].astype(dt, copy=False)


def check_gpt_oss_experts(t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, *, alpha=1.702,
                          limit=7.0):
    """The argument checks of gpt_oss_experts (dense expert weights [E, out, in] or callables)."""
    check_swiglu_oss(np.zeros((0, 2)), alpha=alpha, limit=limit)
    ta = as_float_array(t, "t", min_ndim=1)
    b1 = as_float_array(mlp1_bias, "mlp1_bias")
    b2 = as_float_array(mlp2_bias, "mlp2_bias")
    require(b1.ndim == 2 and b1.shape[1] % 2 == 0, "mlp1_bias", "shape [E, 2I] (even width)", f"shape {b1.shape}")
    e_count, two_i = b1.shape
    d = ta.shape[-1]
    require(b2.shape == (e_count, d), "mlp2_bias", f"shape ({e_count}, {d}) [E, d]", f"shape {b2.shape}")
    idx = as_int_array(indices, "indices")
    vals = host_values(idx)
    if vals is not None and vals.size:
        require(bool(np.all((vals >= 0) & (vals < e_count))), "indices", f"values in [0, {e_count})",
                f"range [{vals.min()}, {vals.max()}]")
    w = as_float_array(weights, "weights")
    require(w.shape == tuple(idx.shape), "weights", f"shape {tuple(idx.shape)} (shape of indices)", f"shape {w.shape}")
    require(tuple(idx.shape[:-1]) == tuple(ta.shape[:-1]), "indices", f"leading dims {ta.shape[:-1]} (those of t)",
            f"shape {idx.shape}")
    if not callable(mlp1_weight):
        m1 = as_float_array(mlp1_weight, "mlp1_weight")
        require(m1.shape == (e_count, two_i, d), "mlp1_weight", f"shape {(e_count, two_i, d)} [E, out, in]", f"shape {m1.shape}")
    if not callable(mlp2_weight):
        m2 = as_float_array(mlp2_weight, "mlp2_weight")
        require(m2.shape == (e_count, d, two_i // 2), "mlp2_weight", f"shape {(e_count, d, two_i // 2)} [E, out, in]",
                f"shape {m2.shape}")


def gpt_oss_experts(t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, *, alpha=1.702, limit=7.0):
    """gpt-oss expert block: ``out = sum_j w_j (W2_e swiglu_oss(W1_e t + b1_e) + b2_e)``, e = indices[..., j].

    t: [..., d] (the MLP-normed hidden state); weights, indices: [..., k] from
    ``router_topk_softmax``; mlp1_bias [E, 2I] (rows interleaved gate, linear); mlp2_bias [E, d];
    mlp1_weight: [E, 2I, d] or a callable e -> [2I, d]; mlp2_weight: [E, d, I] or a callable
    e -> [d, I] (so that only the experts used are decoded). E = mlp1_bias.shape[0].
    b2_e is added per expert, before weighting; slots are summed in order (``moe_combine``).
    Dtype: ``compute_dtype`` of t, weights and the biases (callable weights are converted to it).
    Returns [..., d].
    """
    check_gpt_oss_experts(t, weights, indices, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, alpha=alpha,
                          limit=limit)
    ta, idx = as_float_array(t, "t"), as_int_array(indices, "indices")
    b1, b2 = as_float_array(mlp1_bias, "mlp1_bias"), as_float_array(mlp2_bias, "mlp2_bias")
    e_count, two_i = b1.shape
    d = ta.shape[-1]
    dt = compute_dtype(ta, as_float_array(weights, "weights"), b1, b2)
    w1 = _expert_weight(mlp1_weight, "mlp1_weight", e_count, (two_i, d), dt)
    w2 = _expert_weight(mlp2_weight, "mlp2_weight", e_count, (d, two_i // 2), dt)
    b1 = b1.astype(dt, copy=False)
    b2 = b2.astype(dt, copy=False)

    def expert(e, rows):
        u = rows @ w1(e).T + b1[e]  # [n, 2I]
        a = swiglu_oss(u, alpha=alpha, limit=limit)  # [n, I]
        return a @ w2(e).T + b2[e]  # [n, d]

    return moe_combine(ta.astype(dt, copy=False), weights, idx, expert)
