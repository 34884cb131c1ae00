"""Hypothesis strategies for the conformance suite: configurations first, then arrays.

A case is (op, cfg, seed): `cfg` is a small dict of plain values (sizes, knobs, value scale) drawn
by Hypothesis, and `build_inputs(op, cfg, seed, dtype)` turns it deterministically into the op's
inputs (NumPy's Generator seeded with `seed` draws the values). So every case, however large, is
rebuilt from one line, which is what the report's repro uses.

Configuration rules (spec/conformance.md): query heads are a multiple of the kv heads, head dims
are even, caches make Tk = cache + Tq, windows are drawn below, at and above the key length, sinks
are absent, ordinary or extreme (+-30, -inf), k <= experts, sizes cross tiling edges (1, 31, 32,
33, 127, 128, 129 and odd widths). Values are finite, without subnormals, at scales 1e-3, 1 and 30.
Selections (routing, argmax, top-k/top-p, sampling) are drawn with a margin: the deciding scores
differ by far more than any rounding, so the exact budget applies.
"""

import copy

import numpy as np
from hypothesis import strategies as st

from ..ops import ops as reference_ops
from ..precision import bfloat16

EDGE_SIZES = (1, 31, 32, 33, 127, 128, 129)
SMALL_SIZES = (1, 2, 3, 5, 7, 8, 16)
SCALES = (1.0, 1e-3, 30.0)
DTYPES = {"float64": np.float64, "float32": np.float32, "bfloat16": bfloat16}

# ----------------------------------------------------------------------------- configuration strategies


def sizes(edges=EDGE_SIZES, small=SMALL_SIZES):
    """Lengths and widths: the small ones first (Hypothesis shrinks toward them), then tiling edges."""
    return st.sampled_from(tuple(dict.fromkeys(small + edges)))


def even_dims(values=(2, 4, 8, 16, 32, 64, 128)):
    """Head dims: always even (RoPE pairs), crossing 32/64/128 tiles."""
    return st.sampled_from(values)


def scales():
    return st.sampled_from(SCALES)


@st.composite
def head_configs(draw, max_kv=4, max_group=4):
    """(hq, hkv): hq = hkv * group, so the query heads divide into kv groups (group 1 = MHA)."""
    hkv = draw(st.integers(1, max_kv))
    group = draw(st.integers(1, max_group))
    return hkv * group, hkv


@st.composite
def windows(draw, tk):
    """None, or a window below, at or above the key length (1 is the smallest legal window)."""
    choice = draw(st.sampled_from(("none", "below", "at", "above", "one")))
    if choice == "none":
        return None
    if choice == "one":
        return 1
    if choice == "at":
        return tk
    if choice == "above":
        return tk + draw(st.integers(1, 3))
    return max(1, draw(st.integers(1, max(1, tk - 1))))


@st.composite
def attention_configs(draw, *, tq_sizes=(1, 2, 5, 8, 31, 32, 33, 64, 127, 128, 129), with_mask=True):
    """A whole attention call: heads, head dim, query length, cache length, window, sinks, mask."""
    hq, hkv = draw(head_configs())
    d = draw(even_dims((2, 4, 8, 16, 32, 64, 128)))
    tq = draw(st.sampled_from(tq_sizes))
    cache = draw(st.sampled_from((0, 0, 1, 3, 31, 32, 33)))
    tk = tq + cache
    causal = draw(st.sampled_from((True, True, True, False)))
    window = draw(windows(tk)) if causal else None
    sinks = draw(st.sampled_from(("none", "normal", "extreme", "neg_inf_some")))
    mask = draw(st.sampled_from(("none", "none", "random", "dead_row"))) if with_mask else "none"
    return dict(hq=hq, hkv=hkv, d=d, tq=tq, tk=tk, cache=cache, causal=causal, window=window, sinks=sinks,
                mask=mask, scale=draw(st.sampled_from((1.0, 1.0, 3.0))), custom_scale=draw(st.booleans()))


@st.composite
def moe_configs(draw):
    """Experts E, k <= E, tokens T, widths (odd included)."""
    e = draw(st.sampled_from((1, 2, 4, 8, 32, 33)))
    k = draw(st.integers(1, min(e, 4)))
    t = draw(sizes(edges=(31, 32, 33), small=(1, 2, 5)))
    d = draw(st.sampled_from((1, 3, 8, 32, 33)))
    return dict(e=e, k=k, t=t, d=d)


# ----------------------------------------------------------------------------- value helpers


def _vals(rng, shape, scale):
    """Finite normals times scale; subnormals cannot occur (|x| >= 1e-30 or exactly 0 never drawn)."""
    x = rng.standard_normal(shape) * scale
    tiny = 1e-30
    return np.where(np.abs(x) < tiny, tiny, x)


def _cast(a, dtype):
    return np.asarray(a, dtype=np.float64).astype(DTYPES[dtype])


def _margin_logits(rng, shape, gap=0.5, offset=None):
    """Rows whose entries are a permutation of a grid with spacing `gap` plus jitter < gap/4:
    every pair differs by at least gap/2, far above any rounding (bfloat16 included)."""
    n = shape[-1]
    base = np.argsort(rng.random(shape), axis=-1).astype(np.float64) * gap  # [..., n]
    jitter = rng.random(shape) * gap / 4
    off = -(n * gap) / 2 if offset is None else offset
    return base + jitter + off


class PowerOfTwoScale:
    """An exact norm stand-in: x * s with s a vector of +-powers of two (exact in every float dtype)."""

    def __init__(self, s):
        self.s = np.asarray(s, dtype=np.float64)

    def __call__(self, x):
        x = np.asarray(x)
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        return x.astype(dt) * self.s.astype(dt)

    def __repr__(self):
        return f"PowerOfTwoScale({self.s.tolist()})"


class RollHalf:
    """An exact sublayer stand-in: -0.5 * roll(x, 1) along the last axis."""

    def __call__(self, x):
        x = np.asarray(x)
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        return np.roll(x.astype(dt), 1, axis=-1) * dt.type(-0.5)

    def __repr__(self):
        return "RollHalf()"


class ExactExpert:
    """expert_fn(e, rows) = sign_e 2^(e mod 3 - 1) roll(rows, e): exact, and different per expert."""

    def __call__(self, e, rows):
        rows = np.asarray(rows)
        dt = rows.dtype if rows.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        f = (-1.0 if e % 2 else 1.0) * 2.0 ** (int(e) % 3 - 1)
        return np.roll(rows.astype(dt), int(e), axis=-1) * dt.type(f)

    def __repr__(self):
        return "ExactExpert()"


def fresh(inputs):
    """The inputs with every Generator replaced by an independent copy in the same state."""
    return {k: (copy.deepcopy(v) if isinstance(v, np.random.Generator) else v) for k, v in inputs.items()}


# ----------------------------------------------------------------------------- per-op cases
#
# _CFG[op]: a strategy of cfg dicts; _BUILD[op](cfg, rng, dtype, seed) -> inputs dict.

_CFG, _BUILD, EXAMPLES = {}, {}, {}


def _op(name, cfg_strategy, examples=()):
    def register(fn):
        _CFG[name] = cfg_strategy
        _BUILD[name] = fn
        EXAMPLES[name] = list(examples)
        return fn

    return register


def _rows(t=sizes(edges=(31, 32, 33), small=(1, 2, 3)), n=sizes()):
    return st.fixed_dictionaries(dict(t=t, n=n, scale=scales()))


@_op("embedding", st.fixed_dictionaries(dict(t=sizes(), v=st.sampled_from((1, 7, 97)), d=sizes(), scale=scales())),
     [dict(t=5, v=7, d=33, scale=1.0)])
def _(c, g, dt, seed):
    return dict(ids=g.integers(0, c["v"], size=c["t"]), weight=_cast(_vals(g, (c["v"], c["d"]), c["scale"]), dt))


@_op("learned_positions", st.fixed_dictionaries(dict(p=st.sampled_from((1, 8, 33, 129)), d=sizes(), frac=st.floats(0, 1),
                                                     off=st.floats(0, 1), scale=scales())),
     [dict(p=33, d=8, frac=0.5, off=0.5, scale=1.0)])
def _(c, g, dt, seed):
    p = c["p"]
    length = max(1, int(round(c["frac"] * p)))
    offset = int(round(c["off"] * (p - length)))
    return dict(wpe=_cast(_vals(g, (p, c["d"]), c["scale"]), dt), length=length, offset=offset)


@_op("linear", st.fixed_dictionaries(dict(t=sizes(), k=sizes(), n=sizes(edges=(31, 32, 33, 129)), bias=st.booleans(),
                                          scale=scales())),
     [dict(t=3, k=33, n=5, bias=True, scale=1.0)])
def _(c, g, dt, seed):
    k = c["k"]
    return dict(x=_cast(_vals(g, (c["t"], k), c["scale"]), dt), weight=_cast(_vals(g, (c["n"], k), 1 / np.sqrt(k)), dt),
                bias=_cast(_vals(g, c["n"], 1.0), dt) if c["bias"] else None)


@_op("layer_norm", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(),
                                              offset=st.sampled_from((0.0, 3.0)), eps=st.sampled_from((1e-5, 1e-6)))),
     [dict(t=3, n=4, scale=1.0, offset=0.0, eps=1e-5), dict(t=2, n=33, scale=1.0, offset=3.0, eps=1e-5)])
def _(c, g, dt, seed):
    n = c["n"]
    x = _vals(g, (c["t"], n), c["scale"]) + c["offset"] * c["scale"]
    return dict(x=_cast(x, dt), weight=_cast(_vals(g, n, 1.0), dt), bias=_cast(_vals(g, n, 1.0), dt), eps=c["eps"])


@_op("rms_norm", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(),
                                            eps=st.sampled_from((1e-5, 1e-6)), cast=st.sampled_from((False, False, True)))),
     [dict(t=3, n=16, scale=1e-3, eps=1e-5, cast=False), dict(t=2, n=129, scale=1.0, eps=1e-6, cast=False)])
def _(c, g, dt, seed):
    n = c["n"]
    return dict(x=_cast(_vals(g, (c["t"], n), c["scale"]), dt), weight=_cast(1 + 0.1 * g.standard_normal(n), dt),
                eps=c["eps"], cast_before_scale=c["cast"])


def _residual_inputs(c, g, dt):
    n = c["n"]
    s = 2.0 ** g.integers(-2, 3, size=n) * np.where(g.random(n) < 0.5, -1.0, 1.0)
    return dict(x=_cast(_vals(g, (c["t"], n), c["scale"]), dt), norm=PowerOfTwoScale(s), sublayer=RollHalf())


_RES = st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(1, 2, 3)), n=sizes(edges=(31, 32, 33), small=(2, 3, 8)),
                                  scale=scales()))


@_op("pre_norm_residual", _RES, [dict(t=3, n=8, scale=1.0)])
def _(c, g, dt, seed):
    return _residual_inputs(c, g, dt)


@_op("post_norm_residual", _RES, [dict(t=3, n=8, scale=1.0)])
def _(c, g, dt, seed):
    return _residual_inputs(c, g, dt)


@_op("gelu", st.fixed_dictionaries(dict(n=sizes(), scale=scales(), approximate=st.sampled_from(("tanh", "none")))),
     [dict(n=33, scale=3.0, approximate="tanh"), dict(n=33, scale=3.0, approximate="none")])
def _(c, g, dt, seed):
    return dict(x=_cast(_vals(g, (2, c["n"]), 2 * c["scale"]), dt), approximate=c["approximate"])


@_op("silu", st.fixed_dictionaries(dict(n=sizes(), scale=scales())), [dict(n=33, scale=3.0)])
def _(c, g, dt, seed):
    return dict(x=_cast(_vals(g, (2, c["n"]), 3 * c["scale"]), dt))


@_op("swiglu", st.fixed_dictionaries(dict(n=sizes(), scale=scales())), [dict(n=33, scale=3.0)])
def _(c, g, dt, seed):
    return dict(gate=_cast(_vals(g, (2, c["n"]), 3 * c["scale"]), dt), up=_cast(_vals(g, (2, c["n"]), c["scale"]), dt))


@_op("swiglu_oss", st.fixed_dictionaries(dict(n=sizes(), scale=st.sampled_from((4.0, 1.0, 1e-3, 30.0)),
                                              layout=st.sampled_from(("interleaved", "interleaved", "halves")),
                                              limit=st.sampled_from((7.0, 7.0, None)))),
     [dict(n=16, scale=6.0, layout="interleaved", limit=7.0)])
def _(c, g, dt, seed):
    return dict(h=_cast(_vals(g, (3, 2 * c["n"]), c["scale"]), dt), layout=c["layout"], limit=c["limit"])


@_op("swiglu_oss_bf16", st.fixed_dictionaries(dict(n=sizes(), scale=st.sampled_from((4.0, 1.0, 1e-3, 30.0)),
                                                   limit=st.sampled_from((7.0, 7.0, None)))),
     [dict(n=16, scale=6.0, limit=7.0)])
def _(c, g, dt, seed):
    h = reference_ops.round_to_storage(_vals(g, (3, 2 * c["n"]), c["scale"]), "bfloat16")  # bf16-valued, as the model gives
    return dict(h=_cast(h, dt), limit=c["limit"])


@_op("round_to_storage", st.fixed_dictionaries(dict(n=sizes(), scale=scales(),
                                                    target=st.sampled_from(("float64", "float32", "bfloat16")))),
     [dict(n=33, scale=1.0, target="bfloat16")])
def _(c, g, dt, seed):
    return dict(x=_cast(_vals(g, (2, c["n"]), c["scale"]), dt), dtype=c["target"])


@_op("add", st.fixed_dictionaries(dict(n=sizes(), scale=scales(), row=st.booleans())),
     [dict(n=33, scale=1.0, row=True)])
def _(c, g, dt, seed):
    y = _vals(g, (c["n"],) if c["row"] else (3, c["n"]), c["scale"])
    return dict(x=_cast(_vals(g, (3, c["n"]), c["scale"]), dt), y=_cast(y, dt))


@_op("scale", st.fixed_dictionaries(dict(n=sizes(), scale=scales(), factor=st.sampled_from((0.125, 0.08838834764831845, 3.0)))),
     [dict(n=33, scale=1.0, factor=0.125)])
def _(c, g, dt, seed):
    x = _vals(g, (3, c["n"]), c["scale"])
    x[0, 0] = -np.inf  # a masked score
    return dict(x=_cast(x, dt), factor=c["factor"])


@_op("gelu_mlp", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(1, 3)), d=sizes(edges=(31, 32, 33)),
                                            f=sizes(edges=(31, 32, 33, 128)), bias=st.booleans(),
                                            approximate=st.sampled_from(("tanh", "none")))),
     [dict(t=3, d=8, f=33, bias=True, approximate="tanh")])
def _(c, g, dt, seed):
    d, f = c["d"], c["f"]
    return dict(x=_cast(_vals(g, (c["t"], d), 1.0), dt), fc_weight=_cast(_vals(g, (f, d), 2 / np.sqrt(d)), dt),
                fc_bias=_cast(_vals(g, f, 0.5), dt) if c["bias"] else None,
                proj_weight=_cast(_vals(g, (d, f), 1 / np.sqrt(f)), dt),
                proj_bias=_cast(_vals(g, d, 0.5), dt) if c["bias"] else None, approximate=c["approximate"])


@_op("swiglu_mlp", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33), small=(1, 3)), d=sizes(edges=(31, 32, 33)),
                                              i=sizes(edges=(31, 32, 33, 128)))),
     [dict(t=3, d=8, i=33)])
def _(c, g, dt, seed):
    d, i = c["d"], c["i"]
    return dict(x=_cast(_vals(g, (c["t"], d), 1.0), dt), gate_weight=_cast(_vals(g, (i, d), 2 / np.sqrt(d)), dt),
                up_weight=_cast(_vals(g, (i, d), 1 / np.sqrt(d)), dt), down_weight=_cast(_vals(g, (d, i), 1 / np.sqrt(i)), dt))


@_op("dropout", st.fixed_dictionaries(dict(n=sizes(), p=st.sampled_from((0.0, 0.1, 0.5, 0.9)), training=st.booleans(),
                                           scale=scales())),
     [dict(n=33, p=0.5, training=True, scale=1.0)])
def _(c, g, dt, seed):
    return dict(x=_cast(_vals(g, (2, c["n"]), c["scale"]), dt), p=c["p"], rng=np.random.default_rng(seed),
                training=c["training"])


_HD = st.sampled_from((2, 4, 8, 16, 64, 128, 256))
_BASE = st.sampled_from((10000.0, 500000.0, 150000.0, 1e6))


@_op("inv_freq_default", st.fixed_dictionaries(dict(head_dim=_HD, base=_BASE)), [dict(head_dim=64, base=10000.0)])
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"])


@_op("inv_freq_linear", st.fixed_dictionaries(dict(head_dim=_HD, base=_BASE, factor=st.sampled_from((1.0, 2.0, 8.0)))),
     [dict(head_dim=64, base=10000.0, factor=4.0)])
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], factor=c["factor"])


@_op("inv_freq_llama3", st.fixed_dictionaries(dict(head_dim=st.sampled_from((16, 64, 128)), base=_BASE,
                                                   factor=st.sampled_from((8.0, 32.0)), l0=st.sampled_from((2048, 8192)))),
     [dict(head_dim=128, base=500000.0, factor=8.0, l0=8192)])
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], factor=c["factor"], low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=c["l0"])


_YARN = st.fixed_dictionaries(dict(head_dim=st.sampled_from((16, 64, 128)), base=st.sampled_from((150000.0, 10000.0, 1e6)),
                                   factor=st.sampled_from((32.0, 4.0, 40.0)), l0=st.sampled_from((4096, 2048)),
                                   truncate=st.booleans()))
_YARN_EX = [dict(head_dim=64, base=150000.0, factor=32.0, l0=4096, truncate=False)]


@_op("inv_freq_yarn", _YARN, _YARN_EX)
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], factor=c["factor"], original_max_position_embeddings=c["l0"],
                truncate=c["truncate"])


@_op("yarn_correction_range", _YARN, _YARN_EX)
def _(c, g, dt, seed):
    return dict(head_dim=c["head_dim"], base=c["base"], original_max_position_embeddings=c["l0"], truncate=c["truncate"])


@_op("rope_frequencies", st.fixed_dictionaries(dict(head_dim=st.sampled_from((16, 64, 128)), base=_BASE,
                                                    kind=st.sampled_from(("none", "linear", "llama3", "yarn", "yarn")),
                                                    truncate=st.booleans(), with_max=st.booleans())),
     [dict(head_dim=64, base=150000.0, kind="yarn", truncate=False, with_max=True)])
def _(c, g, dt, seed):
    kind = c["kind"]
    rs, mx = None, None
    if kind == "linear":
        rs = {"rope_type": "linear", "factor": 4.0}
    elif kind == "llama3":
        rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    elif kind == "yarn":
        rs = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
              "original_max_position_embeddings": 4096, "truncate": c["truncate"]}
        mx = 131072 if c["with_max"] else None
    return dict(head_dim=c["head_dim"], base=c["base"], rope_scaling=rs, max_position_embeddings=mx)


@_op("rope_cos_sin", st.fixed_dictionaries(dict(head_dim=st.sampled_from((2, 16, 64, 128)), t=sizes(edges=(31, 32, 33, 129)),
                                                start=st.sampled_from((0, 1, 4095, 100000)),
                                                scaling=st.sampled_from((1.0, 1.3465735902799727)))),
     [dict(head_dim=64, t=33, start=0, scaling=1.0)])
def _(c, g, dt, seed):
    inv = reference_ops.inv_freq_default(c["head_dim"], base=10000.0)
    return dict(inv_freq=_cast(inv, dt), positions=np.arange(c["start"], c["start"] + c["t"]),
                attention_scaling=c["scaling"])


_ROPE = st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), h=st.sampled_from((1, 2, 3)),
                                   d=st.sampled_from((2, 8, 16, 64, 128)), pairing=st.sampled_from(("half", "interleaved")),
                                   partial=st.sampled_from((False, False, True)), scale=scales()))
_ROPE_EX = [dict(t=5, h=2, d=8, pairing="half", partial=False, scale=1.0),
            dict(t=3, h=2, d=16, pairing="interleaved", partial=True, scale=1.0)]


def _rope_inputs(c, g, dt):
    d = c["d"]
    rd = d // 2 if c["partial"] and d % 4 == 0 else None
    half = (rd or d) // 2
    ang = g.uniform(0, 7, size=(c["t"], half))
    return dict(x=_cast(_vals(g, (c["t"], c["h"], d), c["scale"]), dt), cos=_cast(np.cos(ang), dt),
                sin=_cast(np.sin(ang), dt), pairing=c["pairing"], rotary_dim=rd)


@_op("apply_rope", _ROPE, _ROPE_EX[:1])
def _(c, g, dt, seed):
    return _rope_inputs(c, g, dt)


@_op("rope_terms", _ROPE, _ROPE_EX)
def _(c, g, dt, seed):
    return _rope_inputs(c, g, dt)


@_op("visibility_mask", st.builds(lambda a: a, attention_configs(with_mask=False)),
     [dict(hq=1, hkv=1, d=2, tq=8, tk=8, cache=0, causal=True, window=3, sinks="none", mask="none", scale=1.0, custom_scale=False)])
def _(c, g, dt, seed):
    return dict(q_len=c["tq"], k_len=c["tk"], q_offset=c["cache"] if c["cache"] else None, window=c["window"],
                causal=c["causal"])


@_op("repeat_kv", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), hkv=st.integers(1, 4), n_rep=st.integers(1, 4),
                                             d=st.sampled_from((2, 8, 64)))),
     [dict(t=3, hkv=2, n_rep=2, d=8)])
def _(c, g, dt, seed):
    return dict(k=_cast(_vals(g, (c["t"], c["hkv"], c["d"]), 1.0), dt), n_rep=c["n_rep"])


def _attention_inputs(c, g, dt, with_v=True):
    hq, hkv, d, tq, tk = c["hq"], c["hkv"], c["d"], c["tq"], c["tk"]
    s = c["scale"]
    out = dict(q=_cast(_vals(g, (tq, hq, d), s), dt), k=_cast(_vals(g, (tk, hkv, d), 1.0), dt))
    if with_v:
        out["v"] = _cast(_vals(g, (tk, hkv, d), 1.0), dt)
    sinks = None
    if c["sinks"] == "normal":
        sinks = g.standard_normal(hq)
    elif c["sinks"] == "extreme":
        sinks = np.where(g.random(hq) < 0.5, 30.0, -30.0)
    elif c["sinks"] == "neg_inf_some":
        sinks = np.where(np.arange(hq) % 2 == 0, -np.inf, g.standard_normal(hq))
    out["sinks"] = None if sinks is None else _cast(sinks, dt)
    out["window"] = c["window"]
    out["causal"] = c["causal"]
    out["q_offset"] = c["cache"] if c["cache"] else None
    out["scale"] = 0.5 / np.sqrt(d) if c.get("custom_scale") else None
    mask = None
    if c["mask"] == "random":
        mask = g.random((tq, tk)) < 0.8
    elif c["mask"] == "dead_row":
        mask = np.ones((tq, tk), dtype=bool)
        mask[tq // 2] = False
    out["mask"] = mask
    return out


_ATT_EX = [dict(hq=4, hkv=2, d=8, tq=8, tk=8, cache=0, causal=True, window=3, sinks="normal", mask="none", scale=1.0,
                custom_scale=False),
           dict(hq=4, hkv=2, d=8, tq=4, tk=4, cache=0, causal=True, window=None, sinks="none", mask="dead_row", scale=1.0,
                custom_scale=False),
           dict(hq=2, hkv=1, d=16, tq=33, tk=66, cache=33, causal=True, window=40, sinks="neg_inf_some", mask="none",
                scale=1.0, custom_scale=False)]


@_op("attention_probs", attention_configs(), _ATT_EX)
def _(c, g, dt, seed):
    return _attention_inputs(c, g, dt)


@_op("attention", attention_configs(), _ATT_EX)
def _(c, g, dt, seed):
    return _attention_inputs(c, g, dt)


@_op("attention_online", st.tuples(attention_configs(), st.sampled_from((32, 1, 7, 128))).map(
    lambda a: {**a[0], "block_size": a[1]}), [{**e, "block_size": 32} for e in _ATT_EX])
def _(c, g, dt, seed):
    return {**_attention_inputs(c, g, dt), "block_size": c["block_size"]}


# The bfloat16-mode pieces of attention. Scores: the scale is the default 1/sqrt(D), a custom one, or
# 1.0 (the plain dot products the bfloat16 mode asks for). Softmax: drawn scores with -inf where the
# configuration's visibility (window, causal, mask, dead rows) hides a key, sinks absent, ordinary,
# extreme or partly -inf. Values: probabilities from that softmax, with or without the `visible` mask.

_SCORE_SCALES = ("default", "custom", "one")


@_op("attention_scores", st.tuples(attention_configs(), st.sampled_from(_SCORE_SCALES)).map(
    lambda a: {**a[0], "score_scale": a[1]}),
     [{**e, "score_scale": s} for e, s in zip(_ATT_EX, ("default", "one", "custom"))])
def _(c, g, dt, seed):
    out = _attention_inputs(c, g, dt, with_v=False)
    del out["sinks"]
    out["scale"] = {"default": None, "one": 1.0, "custom": 0.5 / np.sqrt(c["d"])}[c.get("score_scale", "default")]
    return out


def _visible(c, mask):
    """[Tq, Tk]: the configuration's visibility_mask AND its mask."""
    vis = reference_ops.visibility_mask(c["tq"], c["tk"], q_offset=c["cache"] if c["cache"] else None,
                                        window=c["window"], causal=c["causal"])
    return vis if mask is None else vis & mask


def _softmax_inputs(c, g, dt):
    """(scores [Hq, Tq, Tk] float64 with -inf where not visible, sinks [Hq] float64 or None, visible [Tq, Tk])."""
    a = _attention_inputs(c, g, dt, with_v=False)
    vis = _visible(c, a["mask"])
    s = _vals(g, (c["hq"], c["tq"], c["tk"]), 3 * c["scale"])  # [Hq, Tq, Tk]
    s = np.where(vis, s, -np.inf)
    snk = None if a["sinks"] is None else np.asarray(a["sinks"], dtype=np.float64)
    return s, snk, vis


@_op("softmax_with_sinks", attention_configs(), _ATT_EX)
def _(c, g, dt, seed):
    s, snk, _ = _softmax_inputs(c, g, dt)
    return dict(scores=_cast(s, dt), sinks=None if snk is None else _cast(snk, dt))


@_op("attention_values", st.tuples(attention_configs(), st.booleans()).map(lambda a: {**a[0], "with_visible": a[1]}),
     [{**e, "with_visible": w} for e, w in zip(_ATT_EX, (True, False, True))])
def _(c, g, dt, seed):
    s, snk, vis = _softmax_inputs(c, g, dt)
    p = reference_ops.softmax_with_sinks(s, snk)  # [Hq, Tq, Tk], float64
    v = _vals(g, (c["tk"], c["hkv"], c["d"]), 1.0)  # [Tk, Hkv, Dv]
    return dict(probs=_cast(p, dt), v=_cast(v, dt), visible=vis if c.get("with_visible") else None)


def _margin_ok(scores, count, rel=1e-4):
    """True when, per row, the top count+1 sorted scores are pairwise separated by > rel * (max |s| + 1e-30)."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64), axis=-1)[..., :count + 1]  # [..., count+1]
    if s.shape[-1] < 2:
        return True
    gaps = s[..., :-1] - s[..., 1:]
    return bool(np.all(gaps > rel * (np.abs(s).max() + 1e-30)))


@_op("router_topk_softmax", moe_configs(), [dict(e=8, k=2, t=5, d=8)])
def _(c, g, dt, seed):
    return dict(logits=_cast(_margin_logits(g, (c["t"], c["e"])), dt), k=c["k"])


@_op("router_softmax_topk", st.tuples(moe_configs(), st.booleans()).map(lambda a: {**a[0], "renormalize": a[1]}),
     [dict(e=8, k=2, t=5, d=8, renormalize=True)])
def _(c, g, dt, seed):
    return dict(logits=_cast(_margin_logits(g, (c["t"], c["e"])), dt), k=c["k"], renormalize=c["renormalize"])


@_op("route_experts", st.tuples(moe_configs(), st.sampled_from(("topk_softmax", "softmax_topk"))).map(
    lambda a: {**a[0], "rule": a[1]}), [dict(e=8, k=2, t=5, d=8, rule="topk_softmax")])
def _(c, g, dt, seed):
    return dict(logits=_cast(_margin_logits(g, (c["t"], c["e"])), dt), k=c["k"], rule=c["rule"])


@_op("expert_choice", st.tuples(moe_configs(), st.floats(0, 1)).map(lambda a: {**a[0], "cap": a[1]}),
     [dict(e=4, k=2, t=8, d=8, cap=0.5)])
def _(c, g, dt, seed):
    t = c["t"]
    cap = max(1, min(t, int(round(c["cap"] * t))))
    for _ in range(50):
        logits = _cast(g.standard_normal((t, c["e"])) * 2, dt)
        if _margin_ok(reference_ops.softmax(logits.astype(np.float64)).T, cap):
            break
    return dict(logits=logits, capacity=cap)


@_op("load_balancing_loss", st.tuples(moe_configs(), st.sampled_from(("per_token", "per_assignment"))).map(
    lambda a: {**a[0], "fraction": a[1]}), [dict(e=8, k=2, t=5, d=8, fraction="per_token")])
def _(c, g, dt, seed):
    logits = _cast(_margin_logits(g, (c["t"], c["e"])), dt)
    idx = np.argsort(-logits.astype(np.float64), axis=-1, kind="stable")[..., :c["k"]]
    return dict(router_logits=logits, indices=idx, num_experts=c["e"], fraction=c["fraction"])


def _routing(c, g, dt):
    t, e, k = c["t"], c["e"], c["k"]
    idx = np.argsort(g.random((t, e)), axis=-1)[:, :k]  # [T, k] distinct experts per token
    w = g.random((t, k)) + 0.1
    return _cast(w / w.sum(axis=-1, keepdims=True), dt), idx


@_op("moe_combine", moe_configs(), [dict(e=4, k=2, t=5, d=8)])
def _(c, g, dt, seed):
    w, idx = _routing(c, g, dt)
    return dict(x=_cast(_vals(g, (c["t"], c["d"]), 1.0), dt), weights=w, indices=idx, expert_fn=ExactExpert())


@_op("gpt_oss_experts", st.tuples(moe_configs(), st.sampled_from((1, 8, 33)), st.sampled_from((8.0, 1.0))).map(
    lambda a: {**a[0], "i": a[1], "hscale": a[2]}), [dict(e=4, k=2, t=5, d=8, i=8, hscale=8.0)])
def _(c, g, dt, seed):
    e, d, i = c["e"], c["d"], c["i"]
    w, idx = _routing(c, g, dt)
    return dict(t=_cast(_vals(g, (c["t"], d), 1.0), dt), weights=w, indices=idx,
                mlp1_weight=_cast(_vals(g, (e, 2 * i, d), c["hscale"] / np.sqrt(d)), dt),
                mlp1_bias=_cast(_vals(g, (e, 2 * i), 0.5), dt),
                mlp2_weight=_cast(_vals(g, (e, d, i), 1 / np.sqrt(i)), dt), mlp2_bias=_cast(_vals(g, (e, d), 0.5), dt))


@_op("decode_e8m0", st.fixed_dictionaries(dict(n=sizes(), lo=st.sampled_from((0, 100, 120)))), [dict(n=33, lo=100)])
def _(c, g, dt, seed):
    return dict(scales=g.integers(c["lo"], 255 - c["lo"] // 2, size=(2, c["n"]), dtype=np.uint8))


def _mx(g, out, groups):
    return (g.integers(0, 256, size=(out, groups, 16), dtype=np.uint8),
            g.integers(118, 136, size=(out, groups), dtype=np.uint8))


@_op("decode_mxfp4", st.fixed_dictionaries(dict(out=sizes(edges=(31, 32, 33)), groups=st.integers(1, 5))),
     [dict(out=3, groups=2)])
def _(c, g, dt, seed):
    b, s = _mx(g, c["out"], c["groups"])
    return dict(blocks=b, scales=s)


@_op("encode_mxfp4", st.fixed_dictionaries(dict(out=sizes(edges=(31, 32, 33)), groups=st.integers(1, 4), scale=scales())),
     [dict(out=3, groups=2, scale=1.0)])
def _(c, g, dt, seed):
    return dict(w=_cast(_vals(g, (c["out"], 32 * c["groups"]), c["scale"]), dt))


@_op("mxfp4_linear", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), out=sizes(edges=(31, 32, 33)),
                                                groups=st.integers(1, 4), bias=st.booleans())),
     [dict(t=3, out=5, groups=2, bias=True)])
def _(c, g, dt, seed):
    b, s = _mx(g, c["out"], c["groups"])
    return dict(x=_cast(_vals(g, (c["t"], 32 * c["groups"]), 1.0), dt), blocks=b, scales=s,
                bias=_cast(_vals(g, c["out"], 1.0), dt) if c["bias"] else None)


_QTYPES = ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K")


def _packed(g, qtype, out, blocks):
    from ..ops.quant import QTYPES, random_packed

    n_in = QTYPES[qtype][0] * blocks
    return random_packed(g, qtype, (out, n_in)), (out, n_in)


@_op("dequantize_gguf", st.fixed_dictionaries(dict(q=st.sampled_from(_QTYPES), out=sizes(edges=(31, 32, 33)),
                                                   blocks=st.integers(1, 3))),
     [dict(q=q, out=3, blocks=2) for q in _QTYPES])
def _(c, g, dt, seed):
    b, shape = _packed(g, c["q"], c["out"], c["blocks"])
    return dict(blocks=b, qtype=c["q"], shape=shape)


@_op("gguf_embedding", st.fixed_dictionaries(dict(q=st.sampled_from(_QTYPES), out=sizes(edges=(31, 32, 33)),
                                                  blocks=st.integers(1, 2), t=sizes(edges=(31, 32, 33)))),
     [dict(q=q, out=7, blocks=1, t=5) for q in _QTYPES])
def _(c, g, dt, seed):
    b, shape = _packed(g, c["q"], c["out"], c["blocks"])
    return dict(ids=g.integers(0, c["out"], size=c["t"]), blocks=b, qtype=c["q"], shape=shape)


@_op("gguf_linear", st.fixed_dictionaries(dict(q=st.sampled_from(_QTYPES), t=sizes(edges=(1, 7, 8, 9, 33)),
                                              out=sizes(edges=(15, 16, 17, 33)), blocks=st.integers(1, 3),
                                              bias=st.booleans())),
     [dict(q=q, t=t, out=5, blocks=2, bias=True) for q in _QTYPES for t in (1, 3, 9)])
def _(c, g, dt, seed):
    b, shape = _packed(g, c["q"], c["out"], c["blocks"])
    return dict(x=_cast(_vals(g, (c["t"], shape[1]), 1.0), dt), blocks=b, qtype=c["q"], shape=shape,
                bias=_cast(_vals(g, c["out"], 1.0), dt) if c["bias"] else None)


@_op("softmax", st.fixed_dictionaries(dict(t=sizes(edges=(31, 32, 33)), n=sizes(), scale=scales(), axis=st.sampled_from((-1, 0)))),
     [dict(t=3, n=33, scale=3.0, axis=-1)])
def _(c, g, dt, seed):
    return dict(x=_cast(_vals(g, (c["t"], c["n"]), 3 * c["scale"]), dt), axis=c["axis"])


_VOCAB = st.fixed_dictionaries(dict(t=st.sampled_from((1, 2, 5)), v=sizes(edges=(31, 32, 33, 129), small=(2, 3, 8))))


@_op("greedy", _VOCAB, [dict(t=3, v=33)])
def _(c, g, dt, seed):
    return dict(logits=_cast(_margin_logits(g, (c["t"], c["v"])), dt))


@_op("apply_temperature", st.tuples(_VOCAB, st.sampled_from((0.7, 1.0, 2.0, 1e-2))).map(lambda a: {**a[0], "temp": a[1]}),
     [dict(t=3, v=33, temp=0.7)])
def _(c, g, dt, seed):
    return dict(logits=_cast(_vals(g, (c["t"], c["v"]), 3.0), dt), temperature=c["temp"])


@_op("top_k_filter", st.tuples(_VOCAB, st.floats(0, 1)).map(lambda a: {**a[0], "kf": a[1]}), [dict(t=3, v=33, kf=0.3)])
def _(c, g, dt, seed):
    return dict(logits=_cast(_margin_logits(g, (c["t"], c["v"])), dt), k=max(1, int(round(c["kf"] * c["v"]))))


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


@_op("top_p_filter", st.tuples(_VOCAB, st.floats(0, 1), st.sampled_from((1, 1, 2))).map(
    lambda a: {**a[0], "pf": a[1], "min_keep": a[2]}), [dict(t=3, v=33, pf=0.3, min_keep=1)])
def _(c, g, dt, seed):
    for _ in range(50):
        x = _cast(_margin_logits(g, (c["t"], c["v"]), gap=0.7), dt)
        p, ok = _top_p_with_margin(x, c["pf"])
        if ok:
            break
    return dict(logits=x, p=p, min_keep=c["min_keep"])


@_op("sample", st.tuples(_VOCAB, st.sampled_from((0.0, 0.7, 1.0)), st.sampled_from((None, 5)), st.sampled_from((None, 0.9))).map(
    lambda a: {**a[0], "temp": a[1], "top_k": a[2], "top_p": a[3]}), [dict(t=3, v=33, temp=0.7, top_k=None, top_p=None)])
def _(c, g, dt, seed):
    x = _cast(_margin_logits(g, (c["t"], c["v"])), dt)
    top_p = c["top_p"]
    if top_p is not None:
        top_p, _ = _top_p_with_margin(x, 0.5)
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


# ----------------------------------------------------------------------------- public entry points


def supported_ops():
    """Ops that have a case strategy (every op of refimpl.ops)."""
    return tuple(_CFG)


def op_configs(op):
    """The Hypothesis strategy of cfg dicts for `op`."""
    if op not in _CFG:
        from ..errors import ArgumentError

        raise ArgumentError(f"op: expected an op with a case strategy, found {op!r}")
    return _CFG[op]


def build_inputs(op, cfg, seed, dtype="float32"):
    """The inputs dict of `op` for configuration `cfg`, values drawn from default_rng(seed), floats in `dtype`."""
    if dtype not in DTYPES:
        from ..errors import ArgumentError

        raise ArgumentError(f"dtype: expected one of {sorted(DTYPES)}, found {dtype!r}")
    op_configs(op)
    return _BUILD[op](dict(cfg), np.random.default_rng(seed), dtype, int(seed))


def cases(op, dtype="float32"):
    """A strategy of (cfg, seed, inputs) for `op`."""
    return st.tuples(op_configs(op), st.integers(0, 2**32 - 1)).map(
        lambda a: (a[0], a[1], build_inputs(op, a[0], a[1], dtype)))


def repro_expression(op, cfg, dtype):
    """A Python expression (using a variable `seed`) that rebuilds the inputs of a case."""
    return (f"__import__('refimpl.conformance.strategies', fromlist=['build_inputs'])"
            f".build_inputs({op!r}, {cfg!r}, seed, {dtype!r})")
