"""Mixture of experts: routers, expert choice, load-balancing loss, combine, gpt-oss experts.

This family's budgets (BUDGETS), input cases (registered with kit.case) and known-wrong
readings (MISREADINGS) live together; see spec/budgets.md and spec/conformance.md.
"""


import numpy as np
from hypothesis import strategies as st

from ...ops import ops as reference_ops
from ..kit import (
    Budget,
    FLOAT_TINY,
    Misreading,
    ROUTE,
    SOFTMAX_REASON,
    as_dtype,
    case,
    exact,
    f64,
    gamma,
    linear_bound,
    make_rng,
    margin_logits,
    margin_ok,
    normal_values,
    oss_parts,
    oss_split,
    sizes,
    softmax_rel,
)


# ----------------------------------------------------------------------------- budgets


def _routing_full(logits, u):
    x = f64(logits)
    p = reference_ops.softmax(x)
    return p, softmax_rel(x, p, 0.0, u)


def _b_router_topk_softmax_w(i, y, u, ops=reference_ops):
    x = f64(i["logits"])
    _, idx = ops.router_topk_softmax(x, i["k"])
    sel = np.take_along_axis(x, idx, axis=-1)
    return y * softmax_rel(sel, y, 0.0, u) + FLOAT_TINY[u], {"k": i["k"], "u": u}


def _b_router_softmax_topk_w(i, y, u, ops=reference_ops):
    p, rel = _routing_full(i["logits"], u)
    _, idx = ops.router_softmax_topk(f64(i["logits"]), i["k"])
    rs = np.take_along_axis(rel, idx, axis=-1)
    if i["renormalize"]:
        rs = rs + (y * rs).sum(axis=-1, keepdims=True) + gamma(i["k"], u) + u
    return y * rs + FLOAT_TINY[u], {"k": i["k"], "u": u}


def _b_expert_choice_gates(i, y, u, ops=reference_ops):
    p, rel = _routing_full(i["logits"], u)
    _, idx = ops.expert_choice(f64(i["logits"]), i["capacity"])
    r = np.take_along_axis(np.swapaxes(rel, -1, -2), idx, axis=-1)
    return y * r + FLOAT_TINY[u], {"u": u}


def _b_load_balancing_loss(i, y, u, ops=reference_ops):
    x = f64(i["router_logits"])
    e = int(i["num_experts"])
    p, rel = _routing_full(x, u)
    p, rel = p.reshape(-1, e), rel.reshape(-1, e)
    t = p.shape[0]
    idx = np.asarray(i["indices"])
    k = idx.shape[-1]
    counts = np.bincount(idx.ravel(), minlength=e)
    f = counts / (t if i["fraction"] == "per_token" else t * k)
    mean_p = p.mean(axis=0)
    # P_i = sum_t p_ti / T: sum_t p rel / T + gamma_(T+1) P_i; f_i: u; f_i P_i: u; N sum over E: gamma_(E+1).
    bp = (p * rel).sum(axis=0) / t + gamma(t + 1, u) * mean_p
    b = e * (f * bp + 2 * u * f * mean_p).sum() + gamma(e + 1, u) * e * (f * mean_p).sum()
    return np.full(y.shape, b), {"T": t, "E": e, "u": u}


def _b_moe_combine(i, y, u, ops=reference_ops):
    # sum over k slots of w_j y_j, from zero: k products and k-1 additions -> gamma_k sum |w_j y_j|.
    w = np.abs(f64(i["weights"]))
    fn = i["expert_fn"]
    absum = reference_ops.moe_combine(f64(i["x"]), w, i["indices"], lambda e, r: np.abs(f64(fn(e, r))))
    k = w.shape[-1]
    return gamma(k, u) * absum, {"k": k, "u": u}


def _b_gpt_oss_experts(i, y, u, ops=reference_ops):
    t = f64(i["t"])
    b1, b2 = f64(i["mlp1_bias"]), f64(i["mlp2_bias"])
    get = []
    for name in ("mlp1_weight", "mlp2_weight"):
        wt = i[name]
        get.append((lambda e, wt=wt: f64(wt(e))) if callable(wt) else (lambda e, wt=wt: f64(wt[e])))
    alpha, limit = float(i["alpha"]), i["limit"]

    def parts(e, rows):
        w1, w2 = get[0](e), get[1](e)
        h = rows @ w1.T + b1[e]
        bh = linear_bound(rows, w1, b1[e], None, u)
        a, dg, dl, ba = oss_parts(h, alpha, limit, "interleaved", u)
        bg, bl = oss_split(bh, "interleaved")
        ba = ba + np.abs(dg) * bg + np.abs(dl) * bl
        return a @ w2.T + b2[e], linear_bound(a, w2, b2[e], ba, u)

    w = np.abs(f64(i["weights"]))
    by = reference_ops.moe_combine(t, w, i["indices"], lambda e, r: parts(e, r)[1])
    absy = reference_ops.moe_combine(t, w, i["indices"], lambda e, r: np.abs(parts(e, r)[0]))
    k = w.shape[-1]
    return by + gamma(k, u) * absy, {"k": k, "u": u}


BUDGETS = [
    Budget("router_topk_softmax", "error_model", "weights: softmax bound over the k selected logits; indices exact",
           SOFTMAX_REASON + "; " + ROUTE, parts=(
               Budget("router_topk_softmax", "error_model", "softmax over the k selected logits", SOFTMAX_REASON,
                      _b_router_topk_softmax_w),
               exact("router_topk_softmax", ROUTE))),
    Budget("router_softmax_topk", "error_model",
           "weights: softmax over E, gathered (+ the renormalisation: + sum w rel + gamma_k + u); indices exact",
           SOFTMAX_REASON + "; " + ROUTE, parts=(
               Budget("router_softmax_topk", "error_model", "softmax over E, gathered, renormalised", SOFTMAX_REASON,
                      _b_router_softmax_topk_w),
               exact("router_softmax_topk", ROUTE))),
    Budget("expert_choice", "error_model", "gates: softmax over E, gathered; indices exact", SOFTMAX_REASON + "; " + ROUTE,
           parts=(Budget("expert_choice", "error_model", "softmax over E, gathered", SOFTMAX_REASON, _b_expert_choice_gates),
                  exact("expert_choice", ROUTE))),
    Budget("load_balancing_loss", "error_model",
           "|err| <= N sum_i f_i (B_P,i + 2u P_i) + gamma_(E+1) N sum_i f_i P_i, "
           "B_P,i = sum_t p_ti rel_ti / T + gamma_(T+1) P_i", "softmax bound, a mean over T, a dot over E",
           _b_load_balancing_loss),
    Budget("moe_combine", "error_model", "|err| <= gamma_k sum_j |w_j| |y_j|, y_j = expert_fn outputs",
           "k products and k-1 additions per element; expert_fn's error is its own op's", _b_moe_combine),
    Budget("gpt_oss_experts", "error_model",
           "sum_j |w_j| B_y,j + gamma_k sum_j |w_j y_j|; B_y: linear, swiglu_oss through its derivatives, linear",
           "composition per expert, then the weighted sum", _b_gpt_oss_experts),
]


# ----------------------------------------------------------------------------- cases


@st.composite
def moe_configs(draw):
    """Experts E, k <= E, tokens T, widths (odd included)."""
    e = draw(st.sampled_from((1, 2, 4, 8, 32, 33)))
    k = draw(st.integers(1, min(e, 4)))
    t = draw(sizes(edges=(31, 32, 33), small=(1, 2, 5)))
    d = draw(st.sampled_from((1, 3, 8, 32, 33)))
    # duplicate expert slots (a token routed twice to one expert: both slots count) need k >= 2
    dup = draw(st.sampled_from((False, False, True))) and k >= 2
    return dict(e=e, k=k, t=t, d=d, dup=dup)


class ExactExpert:
    """expert_fn(e, rows) = sign_e 2^(e mod 3 - 1) roll(rows, e): exact, and different per expert."""

    def __call__(self, e, rows):
        rows = np.asarray(rows)
        dt = rows.dtype if rows.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        f = (-1.0 if e % 2 else 1.0) * 2.0 ** (int(e) % 3 - 1)
        return np.roll(rows.astype(dt), int(e), axis=-1) * dt.type(f)

    def __repr__(self):
        return "ExactExpert()"


@case("router_topk_softmax", moe_configs(), [dict(e=8, k=2, t=5, d=8)])
def _(c, g, dt, seed):
    return dict(logits=as_dtype(margin_logits(g, (c["t"], c["e"])), dt), k=c["k"])


@case("router_softmax_topk", st.tuples(moe_configs(), st.booleans()).map(lambda a: {**a[0], "renormalize": a[1]}),
     [dict(e=8, k=2, t=5, d=8, renormalize=True)])
def _(c, g, dt, seed):
    return dict(logits=as_dtype(margin_logits(g, (c["t"], c["e"])), dt), k=c["k"], renormalize=c["renormalize"])


@case("expert_choice", st.tuples(moe_configs(), st.floats(0, 1)).map(lambda a: {**a[0], "cap": a[1]}),
     [dict(e=4, k=2, t=8, d=8, cap=0.5)])
def _(c, g, dt, seed):
    t = c["t"]
    cap = max(1, min(t, int(round(c["cap"] * t))))
    for _ in range(50):
        logits = as_dtype(g.standard_normal((t, c["e"])) * 2, dt)
        if margin_ok(reference_ops.softmax(logits.astype(np.float64)).T, cap):
            break
    return dict(logits=logits, capacity=cap)


@case("load_balancing_loss", st.tuples(moe_configs(), st.sampled_from(("per_token", "per_assignment"))).map(
    lambda a: {**a[0], "fraction": a[1]}), [dict(e=8, k=2, t=5, d=8, fraction="per_token")])
def _(c, g, dt, seed):
    logits = as_dtype(margin_logits(g, (c["t"], c["e"])), dt)
    idx = np.argsort(-logits.astype(np.float64), axis=-1, kind="stable")[..., :c["k"]]
    return dict(router_logits=logits, indices=idx, num_experts=c["e"], fraction=c["fraction"])


def _routing(c, g, dt):
    t, e, k = c["t"], c["e"], c["k"]
    idx = np.argsort(g.random((t, e)), axis=-1)[:, :k]  # [T, k] distinct experts per token
    if c.get("dup") and k >= 2:
        idx[::2, 1] = idx[::2, 0]  # every other token: slot 1 repeats slot 0's expert
    w = g.random((t, k)) + 0.1
    return as_dtype(w / w.sum(axis=-1, keepdims=True), dt), idx


@case("moe_combine", moe_configs(), [dict(e=4, k=2, t=5, d=8), dict(e=4, k=2, t=4, d=3, dup=True)])
def _(c, g, dt, seed):
    w, idx = _routing(c, g, dt)
    return dict(x=as_dtype(normal_values(g, (c["t"], c["d"]), 1.0), dt), weights=w, indices=idx, expert_fn=ExactExpert())


@case("gpt_oss_experts", st.tuples(moe_configs(), st.sampled_from((1, 8, 33)), st.sampled_from((8.0, 1.0)),
                                   st.sampled_from((1.702, 1.702, 1.0)), st.sampled_from((7.0, 7.0, None, 3.0))).map(
    lambda a: {**a[0], "i": a[1], "hscale": a[2], "alpha": a[3], "limit": a[4]}),
    [dict(e=4, k=2, t=5, d=8, i=8, hscale=8.0), dict(e=2, k=2, t=4, d=4, i=4, hscale=8.0, alpha=1.0, limit=None, dup=True),
     dict(e=2, k=1, t=3, d=4, i=4, hscale=8.0, alpha=1.702, limit=3.0)])
def _(c, g, dt, seed):
    e, d, i = c["e"], c["d"], c["i"]
    w, idx = _routing(c, g, dt)
    return dict(alpha=c.get("alpha", 1.702), limit=c.get("limit", 7.0),
                t=as_dtype(normal_values(g, (c["t"], d), 1.0), dt), weights=w, indices=idx,
                mlp1_weight=as_dtype(normal_values(g, (e, 2 * i, d), c["hscale"] / np.sqrt(d)), dt),
                mlp1_bias=as_dtype(normal_values(g, (e, 2 * i), 0.5), dt),
                mlp2_weight=as_dtype(normal_values(g, (e, d, i), 1 / np.sqrt(i)), dt), mlp2_bias=as_dtype(normal_values(g, (e, d), 0.5), dt))


# ----------------------------------------------------------------------------- misreadings


def _softmax_all_experts(logits, k):
    return reference_ops.router_softmax_topk(logits, k, renormalize=False)


def _ex_router():
    return "router_topk_softmax", dict(logits=make_rng(3).standard_normal((5, 8)) * 2, k=2)


MISREADINGS = [
    Misreading("softmax_all_experts", "router softmax over all experts, then top-k, not renormalised "
            "(renormalised it would equal top-k-then-softmax exactly)",
            {"router_topk_softmax": _softmax_all_experts}, _ex_router),
]
