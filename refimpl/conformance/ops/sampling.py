"""Next-token selection: softmax, log_softmax, greedy, temperature, top-k, top-p, sample.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""


import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    Budget,
    FLOAT_TINY,
    SOFTMAX_REASON,
    as_dtype,
    case,
    exact,
    f64,
    gamma,
    lib_rel,
    margin_logits,
    normal_values,
    scales,
    sizes,
    softmax_rel,
)


# ----------------------------------------------------------------------------- budgets


def _b_softmax(i, y, u, ops=reference_ops):
    x = np.moveaxis(f64(i["x"]), i["axis"], -1)
    p = np.moveaxis(y, i["axis"], -1)
    with np.errstate(invalid="ignore"):
        b = np.where(p > 0, p * softmax_rel(x, p, 0.0, u) + FLOAT_TINY[u], 0.0)
    return np.moveaxis(b, -1, i["axis"]), {"n": x.shape[-1], "u": u}


def _b_log_softmax(i, y, u, ops=reference_ops):
    # y_j = z_j - log S, z = x - m, S = sum_l exp(z_l): the shift u|z_j|; S's relative error
    # sum_l p_l (u|z_l| + lib_exp) + gamma_n is log S's absolute error; log adds lib_log |log S|; the
    # last subtraction u|y_j|. -inf entries are -inf on both sides (exact).
    x = np.moveaxis(f64(i["x"]), i["axis"], -1)
    ly = np.moveaxis(y, i["axis"], -1)
    m = np.max(x, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.where(np.isfinite(x), x - m, 0.0)
        p = np.exp(ly)
        log_s = np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
        rel_s = (p * (u * np.abs(z) + lib_rel(u, "exp"))).sum(axis=-1, keepdims=True) + gamma(x.shape[-1], u)
        b = np.where(np.isfinite(ly), u * np.abs(z) + rel_s + lib_rel(u, "log") * np.abs(log_s) + u * np.abs(ly), 0.0)
    return np.moveaxis(b, -1, i["axis"]), {"n": x.shape[-1], "u": u}


def _b_apply_temperature(i, y, u, ops=reference_ops):
    return 2 * u * np.abs(y), {"u": u, "c": 2}


BUDGETS = [
    Budget("softmax", "error_model", "|err| <= p_j (eta_j + sum_l p_l eta_l + gamma_n + u) + tiny, "
           "eta_j = 2u|x_j - m| + 2L u + (2L+2) u ln S (logsumexp form admitted)", SOFTMAX_REASON, _b_softmax),
    Budget("log_softmax", "error_model", "|err| <= u|z_j| + sum_l p_l (u|z_l| + lib) + gamma_n + lib |log S| + u|y_j|, "
           "z = x - m, S = sum exp(z)", "the shift u|z|; exp lib and the sum gamma_n make S's relative error, which is "
           "log S's absolute error; log lib; the subtraction u", _b_log_softmax),
    exact("greedy", "argmax: exact when the top two logits differ (drawn with a margin); ties go to the lowest index"),
    Budget("apply_temperature", "ulp", "|err| <= 2u |y|", "the temperature's rounding and one division (or *1/T)",
           _b_apply_temperature),
    exact("top_k_filter", "a selection with -inf for the rest; ties at the threshold are all kept"),
    exact("top_p_filter", "a selection; exact when no prefix sum lies within its rounding of p (margin)"),
    exact("sample", "inverse-CDF draw from the same Generator; exact away from CDF boundaries (margin)"),
]


# ----------------------------------------------------------------------------- cases


@case("softmax", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(), axis=st.sampled_from((-1, 0)))),
     [dict(t=3, n=33, scale=3.0, axis=-1)])
def _(c, g, dt, seed):
    return dict(x=as_dtype(normal_values(g, (c["t"], c["n"]), 3 * c["scale"]), dt), axis=c["axis"])


@case("log_softmax", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(),
                                               axis=st.sampled_from((-1, 0)))),
      [dict(t=3, n=33, scale=3.0, axis=-1)])
def _(c, g, dt, seed):
    return dict(x=as_dtype(normal_values(g, (c["t"], c["n"]), 3 * c["scale"]), dt), axis=c["axis"])


_VOCAB = st.fixed_dictionaries(dict(t=st.sampled_from((1, 2, 5)), v=sizes(edges=(31, 32, 33, 129), small=(2, 3, 8))))


# Where selections separate right from wrong: exact ties (the spec's rule: lowest index for greedy,
# every tied value kept at the top-k threshold), +inf and -inf entries.
_SPECIAL = st.sampled_from(("none", "none", "ties", "inf"))


def _special(x, kind, g, k=1):
    """Rows with a tie at rank k (value of rank k-1 copied to a later-ranked entry), or +-inf entries."""
    x = np.array(x, dtype=np.float64)
    n = x.shape[-1]
    if kind == "ties" and n >= 2:
        order = np.argsort(-x, axis=-1, kind="stable")
        r = min(max(k, 1), n - 1)
        src = np.take_along_axis(x, order[..., r - 1:r], axis=-1)
        np.put_along_axis(x, order[..., r:r + 1], src, axis=-1)
    elif kind == "inf" and n >= 3:
        x[..., 0] = -np.inf
        x[..., n // 2] = np.inf if k == "pos" else x[..., n // 2]
    return x


@case("greedy", st.tuples(_VOCAB, _SPECIAL).map(lambda a: {**a[0], "special": a[1]}),
      [dict(t=3, v=33), dict(t=2, v=5, special="ties"), dict(t=2, v=5, special="inf")])
def _(c, g, dt, seed):
    x = margin_logits(g, (c["t"], c["v"]))
    kind = c.get("special", "none")
    x = _special(x, kind, g, k="pos" if kind == "inf" else 1)
    if kind == "inf" and c["v"] >= 3:
        x[..., -1] = np.inf  # two +inf: a tie at +inf goes to the lower index
    return dict(logits=as_dtype(x, dt))


@case("apply_temperature", st.tuples(_VOCAB, st.sampled_from((0.7, 1.0, 2.0, 1e-2))).map(lambda a: {**a[0], "temp": a[1]}),
     [dict(t=3, v=33, temp=0.7)])
def _(c, g, dt, seed):
    return dict(logits=as_dtype(normal_values(g, (c["t"], c["v"]), 3.0), dt), temperature=c["temp"])


@case("top_k_filter", st.tuples(_VOCAB, st.floats(0, 1), _SPECIAL).map(lambda a: {**a[0], "kf": a[1], "special": a[2]}),
      [dict(t=3, v=33, kf=0.3), dict(t=2, v=5, kf=0.4, special="ties")])
def _(c, g, dt, seed):
    k = max(1, int(round(c["kf"] * c["v"])))
    x = _special(margin_logits(g, (c["t"], c["v"])), c.get("special", "none"), g, k=k)
    return dict(logits=as_dtype(x, dt), k=k)


def _top_p_with_margin(x, frac):
    """A p halfway between two consecutive prefix sums of the sorted probabilities (row 0 decides;
    every row is checked to keep its prefix sums away from p)."""
    q = reference_ops.softmax(np.asarray(x, dtype=np.float64))
    qs = -np.sort(-q, axis=-1)
    incl = np.cumsum(qs, axis=-1)
    j = min(int(frac * (q.shape[-1] - 1)), q.shape[-1] - 2) if q.shape[-1] > 1 else 0
    p = float((incl[0, j] + incl[0, j + 1]) / 2) if q.shape[-1] > 1 else 0.5
    ok = bool(np.all(np.abs(incl - p) > 1e-4))
    return min(p, 0.999), ok


@case("top_p_filter", st.tuples(_VOCAB, st.floats(0, 1), st.sampled_from((1, 1, 2, 3, 8)), st.booleans()).map(
    lambda a: {**a[0], "pf": a[1], "min_keep": a[2], "exact": a[3]}),
      [dict(t=3, v=33, pf=0.3, min_keep=1), dict(t=1, v=4, pf=0.0, min_keep=3), dict(t=1, v=4, pf=0.5, min_keep=1, exact=True)])
def _(c, g, dt, seed):
    if c.get("exact"):  # the spec's boundary rule on exact sums: four equal logits, p at a prefix sum
        v = max(c["v"], 2)
        p = {0: 0.25, 1: 0.5, 2: 0.75}[int(c["pf"] * 2.999)] if v == 4 else float(int(c["pf"] * (v - 1)) + 1) / v
        return dict(logits=as_dtype(np.zeros((c["t"], v)) + 0.5, dt), p=min(p, 1.0), min_keep=c["min_keep"])
    for _ in range(50):
        x = as_dtype(margin_logits(g, (c["t"], c["v"]), gap=0.7), dt)
        p, ok = _top_p_with_margin(x, c["pf"])
        if ok:
            break
    return dict(logits=x, p=p, min_keep=c["min_keep"])


@case("sample", st.tuples(_VOCAB, st.sampled_from((0.0, 0.5, 0.7, 1.0, 2.0)), st.sampled_from((None, 1, 5)),
                          st.sampled_from((None, 0.5, 0.9))).map(
    lambda a: {**a[0], "temp": a[1], "top_k": a[2], "top_p": a[3]}),
      [dict(t=3, v=33, temp=0.7, top_k=None, top_p=None), dict(t=4, v=8, temp=0.5, top_k=None, top_p=0.5),
       dict(t=4, v=8, temp=2.0, top_k=5, top_p=0.9)])
def _(c, g, dt, seed):
    x = as_dtype(margin_logits(g, (c["t"], c["v"])), dt)
    top_p = c["top_p"]
    if top_p is not None:  # p placed between two prefix sums of the distribution the filter really sees
        y = x.astype(np.float64)
        if c["temp"] > 0:
            y = reference_ops.apply_temperature(y, c["temp"])
        if c["top_k"] is not None:
            y = reference_ops.top_k_filter(y, c["top_k"])
        top_p, _ = _top_p_with_margin(y, top_p)
    rng_seed = seed
    if c["temp"] > 0:
        # choose the Generator seed so that the draw u * C_total stays away from every C_i
        y = reference_ops.apply_temperature(x.astype(np.float64), c["temp"])
        if c["top_k"] is not None:
            y = reference_ops.top_k_filter(y, c["top_k"])
        if top_p is not None:
            y = reference_ops.top_p_filter(y, top_p)
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        cum = np.cumsum(e, axis=-1)
        for k in range(200):
            u = np.random.default_rng(seed + k).random(size=x.shape[:-1])
            if np.all(np.abs(cum - u[..., None] * cum[..., -1:]) > 1e-5 * cum[..., -1:]):
                rng_seed = seed + k
                break
    return dict(logits=x, temperature=c["temp"], top_k=c["top_k"], top_p=top_p, rng=np.random.default_rng(rng_seed))


# ----------------------------------------------------------------------------- misreadings


MISREADINGS = [
]
