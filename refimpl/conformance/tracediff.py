"""Whole-model first divergence: compare two traces (spec/trace.md names) tensor by tensor.

    ref = refimpl.load(path, dtype="float64").trace(ids)
    save_trace("ref.safetensors", ref, ids=ids)
    rep = diff_traces(ref, load_trace("engine.safetensors")[0], dtype="bfloat16")
    print(rep)          # the first tensor over its tolerance, everything after it marked downstream
    rep.metrics         # greedy agreement, top-10 overlap, KL(p_ref || p_other), logit cosine

Tolerance rule (spec/conformance.md): tensor t of layer L passes when
    max |other - ref| <= C * u * (1 + L) * max |ref|       (C = TRACE_C = 32)
with u the unit roundoff of the coarser side (float64 2^-53, float32 2^-24, bfloat16 2^-8),
L = the block index (embed: 0, final_norm and logits: the number of layers). Expert weights, a
softmax of the router logits, get that tolerance times max(1, 2 max|router logits|) (the logits'
absolute error carried through the softmax, see _softmax_gain). Expert indices are compared exactly
as a set per token (any order), unless the router logits at the k-th/(k+1)-th boundary tie within
the router logits' tolerance.

Tolerance floors (`floors=`, correct_run_floors): `refimpl diff --model` also runs the reference at
the other trace's precision and widens a tensor's tolerance to 4 times that correct run's distance
from float64 where the rule is tighter than that (a model whose weights amplify errors).

What the rule is and is not: the growth (1 + L) and the softmax gain are derived; C = 32 is
calibrated, not derived: a forward pass's rounding error has no useful a-priori bound (it depends on
the weights' conditioning), so C is chosen to hold correct float32 and bfloat16 runs of the tiny
models with headroom (largest ratio measured over them: about 0.5, spec/conformance.md) while 32 u
(1+L) stays far below what any misreading produces.
"""

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ArgumentError, RefimplError


class TraceFileError(RefimplError):
    """A trace file that cannot be compared: unreadable, not safetensors/.npz, empty, or disjoint names."""
from ..precision import bfloat16

TRACE_C = 32.0
TOPK = 10
_U = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}

# the order of names inside one block (spec/trace.md)
_BLOCK_ORDER = ("attn_norm", "attn.q", "attn.k", "attn.v", "attn.probs", "attn.out", "resid_mid", "mlp_norm",
                "moe.router_logits", "moe.experts", "moe.expert_weights", "mlp.out", "out")
_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")


def _dtype_name(dt):
    dt = np.dtype(dt)
    return "bfloat16" if dt == bfloat16 else dt.name


def unit_roundoff_of(*dtypes):
    """u of the coarsest of the given precision names or dtypes (float64 if none is a float type)."""
    u = _U["float64"]
    for d in dtypes:
        if d is None:
            continue
        name = d if isinstance(d, str) else _dtype_name(d)
        if name in _U:
            u = max(u, _U[name])
    return u


def canonical_key(name):
    """Sort key that puts spec/trace.md names in forward order (unknown names last, by name)."""
    if name == "embed":
        return (0, 0, 0, name)
    m = _LAYER.match(name)
    if m:
        rest = m.group(2)
        pos = _BLOCK_ORDER.index(rest) if rest in _BLOCK_ORDER else len(_BLOCK_ORDER)
        return (1, int(m.group(1)), pos, name)
    if name == "final_norm":
        return (2, 0, 0, name)
    if name == "logits":
        return (2, 1, 0, name)
    return (3, 0, 0, name)


def layer_of(name, num_layers):
    """The block index used by the tolerance rule: embed 0, layers.L.* L, final_norm/logits num_layers."""
    m = _LAYER.match(name)
    if m:
        return int(m.group(1))
    if name == "embed":
        return 0
    return num_layers


# ----------------------------------------------------------------------------- files


def save_trace(path, trace, *, ids=None, metadata=None):
    """Write a trace (ordered map name -> array) to a safetensors file; the order, and optionally the
    token ids and free-form string metadata, go into the header's __metadata__."""
    from ..checkpoints.safetensors_io import save_safetensors

    meta = {"format": "refimpl-trace", "order": json.dumps(list(trace))}
    if ids is not None:
        meta["ids"] = json.dumps([int(i) for i in np.asarray(ids).ravel()])
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return save_safetensors(path, {k: np.ascontiguousarray(np.asarray(v)) for k, v in trace.items()}, meta)


def load_trace(path):
    """(ordered dict name -> array, metadata dict) from a trace file: a safetensors file written by
    save_trace or any engine (names of spec/trace.md; without an "order" entry, names are put in
    forward order), or a NumPy .npz archive (no pickles). Anything else: TraceFileError."""
    import os

    if not os.path.isfile(path):
        raise TraceFileError(f"{path}: expected a trace file (safetensors or .npz), found "
                             f"{'a directory' if os.path.isdir(path) else 'nothing'}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"PK":  # a zip archive: NumPy's .npz
        try:
            with np.load(path, allow_pickle=False) as z:
                trace = {n: np.array(z[n]) for n in z.files}
        except Exception as exc:
            raise TraceFileError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
        return {n: trace[n] for n in sorted(trace, key=canonical_key)}, {}
    size = os.path.getsize(path)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if len(head) < 8 or n < 2 or n > size - 8:
        raise TraceFileError(f"{path}: not a safetensors file (nor .npz): the first 8 bytes are not a header "
                             f"length that fits the file ({size} bytes)")
    from ..checkpoints.safetensors_io import open_safetensors

    try:
        f = open_safetensors(path)
    except RefimplError as exc:
        raise TraceFileError(f"{path}: not a safetensors file (nor .npz): {exc}") from None
    meta = dict(f.metadata)
    names = list(f)
    order = None
    if "order" in meta:
        try:
            order = [n for n in json.loads(meta["order"]) if n in names]
        except ValueError:
            order = None
    if order is None or set(order) != set(names):
        order = sorted(names, key=canonical_key)
    return {n: np.array(f[n]) for n in order}, meta


def stored_dtype(meta):
    """The precision a trace file says it was computed in (metadata "dtype"), or None."""
    d = (meta or {}).get("dtype")
    return d if d in _U else None


def check_overlap(ref, other, ref_name="reference", other_name="other"):
    """TraceFileError (exit 2 in `refimpl diff`) when a trace is empty or the two share no tensor name."""
    for t, nm in ((ref, ref_name), (other, other_name)):
        if not t:
            raise TraceFileError(f"{nm}: the trace holds no tensor; nothing to compare")
    if not set(ref) & set(other):
        def names(t):
            ns = list(t)
            return ", ".join(ns[:12]) + (f" ... ({len(ns)} in all)" if len(ns) > 12 else "")
        raise TraceFileError(f"the traces share no tensor name (spec/trace.md names expected):\n"
                             f"  {ref_name}: {names(ref)}\n  {other_name}: {names(other)}")


# ----------------------------------------------------------------------------- the diff


@dataclass
class TensorDiff:
    name: str
    status: str  # "ok" | "FIRST" | "over" | "shape" | "only_ref" | "only_other"
    downstream: bool = False
    shape: tuple = None
    max_abs_err: float = 0.0
    tol: float = 0.0
    ratio: float = 0.0  # max_abs_err / tol
    worst_index: tuple = None
    message: str = ""

    def to_dict(self):
        f = lambda v: v if v is None or math.isfinite(v) else ("inf" if v > 0 else "nan")  # noqa: E731
        return dict(name=self.name, status=self.status, downstream=self.downstream,
                    shape=None if self.shape is None else list(self.shape), max_abs_err=f(float(self.max_abs_err)),
                    tol=f(float(self.tol)), ratio=f(float(self.ratio)),
                    worst_index=None if self.worst_index is None else list(self.worst_index), message=self.message)


@dataclass
class DiffReport:
    entries: list
    first: str = None  # the first tensor over its tolerance (None: none)
    metrics: dict = field(default_factory=dict)
    u: float = 0.0
    c: float = TRACE_C
    num_layers: int = 0
    backend: str = None
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return self.first is None

    def to_dict(self):
        return dict(ok=self.ok, first=self.first, u=self.u, c=self.c, num_layers=self.num_layers,
                    backend=self.backend, rule="max|other - ref| <= c * u * (1 + L) * max|ref|",
                    entries=[e.to_dict() for e in self.entries], metrics=_json_metrics(self.metrics),
                    notes=list(self.notes))

    def __str__(self):
        head = "traces agree" if self.ok else f"first divergence: {self.first}"
        lines = [f"{head}  (rule: max|err| <= {self.c:g} * u * (1 + L) * max|ref|, u = {self.u:.3g})"]
        lines.append(f"  {'tensor':<32} {'max abs err':>11} {'tol':>10} {'ratio':>8}  status")
        for e in self.entries:
            st = e.status + (" (downstream)" if e.downstream and e.status in ("ok", "over") else "")
            if e.message:
                st += f" - {e.message}"
            lines.append(f"  {e.name:<32} {e.max_abs_err:>11.3g} {e.tol:>10.3g} {e.ratio:>8.3g}  {st}")
        if self.metrics:
            m = self.metrics
            lines.append("  end to end (logits): " + ", ".join(_metric_text(k, v) for k, v in m.items()))
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


def _metric_text(k, v):
    if isinstance(v, float):
        return f"{k} {v:.4g}"
    return f"{k} {v}"


def _json_metrics(m):
    out = {}
    for k, v in m.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = "inf" if v > 0 else "nan"
        out[k] = v
    return out


def _squeeze_batch(a, shape):
    """Drop a leading batch dimension of 1 so [1, T, d] compares with [T, d]."""
    if a.shape != shape and a.ndim == len(shape) + 1 and a.shape[0] == 1 and a.shape[1:] == shape:
        return a[0]
    return a


def _canonical_experts(idx, weights=None):
    """Slots of each token sorted by expert index (and the weights permuted alike)."""
    order = np.argsort(idx, axis=-1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=-1)
    return idx, (None if weights is None else np.take_along_axis(weights, order, axis=-1))


def diff_traces(ref, other, *, dtype=None, u=None, c=TRACE_C, num_layers=None, backend=None, topk=TOPK,
                floors=None):
    """DiffReport of `other` against `ref` (both ordered maps name -> array, spec/trace.md names).

    dtype: the precision of the coarser side ("float64", "float32", "bfloat16"), or None to infer it
    from the stored dtypes; u: the unit roundoff directly (overrides dtype). c: the rule's constant.
    num_layers: default 1 + the largest layer index in `ref`. floors: name -> an absolute tolerance
    floor (see correct_run_floors); a tensor's tolerance is the larger of the rule's and its floor.
    Entries follow `ref`'s order; the first tensor over its tolerance is reported and everything
    after it is marked downstream.
    """
    if not hasattr(ref, "items") or not hasattr(other, "items"):
        raise ArgumentError("ref: expected two maps name -> array (traces), found "
                            f"{type(ref).__name__} and {type(other).__name__}")
    ref = {k: np.asarray(v) for k, v in ref.items()}
    other = {k: np.asarray(v) for k, v in other.items()}
    if u is None:
        if dtype is not None:
            if dtype not in _U:
                raise ArgumentError(f"dtype: expected one of {sorted(_U)}, found {dtype!r}")
            u = _U[dtype]
        else:
            u = unit_roundoff_of(*[v.dtype for v in ref.values()], *[v.dtype for v in other.values()])
    if num_layers is None:
        ls = [int(m.group(1)) for m in (_LAYER.match(n) for n in ref) if m]
        num_layers = (max(ls) + 1) if ls else 0

    names = list(ref)
    entries, first = [], None
    for name in names:
        r = ref[name]
        if name not in other:
            entries.append(TensorDiff(name, "only_ref", downstream=first is not None, shape=r.shape,
                                      message="not in the other trace"))
            continue
        o = _squeeze_batch(other[name], r.shape)
        r = _squeeze_batch(r, o.shape)
        L = layer_of(name, num_layers)
        ent = TensorDiff(name, "ok", downstream=first is not None, shape=tuple(r.shape))
        if o.shape != r.shape:
            ent.status, ent.message = "shape", f"ref shape {r.shape}, other {o.shape}"
            ent.ratio = math.inf
        elif name.endswith("moe.experts"):
            _experts_entry(ent, r, o, ref, other, name, u, c, L)
        else:
            r64, o64 = r.astype(np.float64), o.astype(np.float64)
            if name.endswith("moe.expert_weights"):
                ei = name[: -len("expert_weights")] + "experts"
                if ei in ref and ei in other and np.shape(other[ei]) == r.shape:
                    _, r64 = _canonical_experts(np.asarray(ref[ei]), r64)
                    _, o64 = _canonical_experts(_squeeze_batch(np.asarray(other[ei]), r.shape), o64)
            scale = float(np.max(np.abs(np.where(np.isfinite(r64), r64, 0.0)))) if r64.size else 0.0
            if name.endswith("moe.expert_weights"):
                scale *= _softmax_gain(ref, name[: -len("expert_weights")] + "router_logits")
            ent.tol = max(c * u * (1 + L) * scale, float((floors or {}).get(name, 0.0)))
            pattern = (np.isnan(r64) != np.isnan(o64)) | (np.isinf(r64) != np.isinf(o64)) | \
                      (np.isinf(r64) & np.isinf(o64) & (np.sign(r64) != np.sign(o64)))
            with np.errstate(invalid="ignore"):
                err = np.where(np.isfinite(r64) & np.isfinite(o64), np.abs(o64 - r64), 0.0)
            err = np.where(pattern, np.inf, err)
            if err.size:
                w = np.unravel_index(int(np.argmax(err)), err.shape)
                ent.worst_index = tuple(int(i) for i in w)
                ent.max_abs_err = float(err[w])
            ent.ratio = ent.max_abs_err / ent.tol if ent.tol > 0 else (0.0 if ent.max_abs_err == 0 else math.inf)
            if pattern.any():
                ent.message = f"NaN/Inf pattern differs at {int(pattern.sum())} element(s)"
            if ent.ratio > 1:
                ent.status = "over"
        if ent.status in ("over", "shape") and first is None:
            first = name
            ent.status = "FIRST" if ent.status == "over" else ent.status
            ent.downstream = False
        entries.append(ent)
    rep = DiffReport(entries=entries, first=first, u=u, c=c, num_layers=num_layers, backend=backend)
    extra = [n for n in other if n not in ref]
    if extra:
        rep.notes.append(f"only in the other trace: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    if "logits" in ref and "logits" in other:
        o = _squeeze_batch(other["logits"], ref["logits"].shape)
        if o.shape == ref["logits"].shape:
            rep.metrics = logit_metrics(ref["logits"], o, topk=topk)
    return rep


FLOOR_K = 4.0


def precision_of_u(u):
    """The precision name whose unit roundoff is u ("float64", "float32", "bfloat16", "float16"), or None."""
    for k, v in _U.items():
        if v == u:
            return k
    return None


def correct_run_floors(ref, correct, k=FLOOR_K):
    """name -> k * max|correct - ref|: tolerance floors from a correct run at the other side's precision.

    The rule's C u (1 + L) max|ref| assumes errors that grow additively layer by layer; a model whose
    weights amplify errors (the tiny gpt-oss: MXFP4 experts with scales up to 2^3 sum terms of 1e5 into
    outputs of 1e4) breaks that, and refimpl's own float32 run is then over the rule at `mlp.out`.
    `refimpl diff --model` therefore also runs the reference at the other trace's precision (a correct
    engine by construction) and lets any engine be k = 4 times as far from float64 as that run is,
    tensor by tensor. A floor only widens a tolerance where a correct run needs it; where the correct
    run is well inside the rule nothing changes. Expert indices (compared exactly) get no floor.
    """
    out = {}
    for name, r in ref.items():
        if name not in correct or name.endswith("moe.experts"):
            continue
        r64 = np.asarray(r, dtype=np.float64)
        o64 = _squeeze_batch(np.asarray(correct[name]), r64.shape).astype(np.float64)
        if o64.shape != r64.shape or not r64.size:
            continue
        with np.errstate(invalid="ignore"):
            err = np.where(np.isfinite(r64) & np.isfinite(o64), np.abs(o64 - r64), 0.0)
        out[name] = k * float(np.max(err))
    return out


def _softmax_gain(ref, logits_name):
    """max(1, 2 max|router logits|): the expert weights are a softmax of the router logits, and an
    absolute error e in every logit (the rule allows e = C u (1+L) max|logits|) is a relative error of
    at most 2e in each weight (d ln p_j = dx_j - sum_l p_l dx_l). So the weights' tolerance is their
    scale times this gain: the rule carried through the softmax, not a wider constant."""
    if logits_name not in ref:
        return 1.0
    lg = np.asarray(ref[logits_name], dtype=np.float64)
    return max(1.0, 2.0 * float(np.max(np.abs(np.where(np.isfinite(lg), lg, 0.0))))) if lg.size else 1.0


def _experts_entry(ent, r, o, ref, other, name, u, c, L):
    ri, oi = _canonical_experts(r.astype(np.int64))[0], _canonical_experts(o.astype(np.int64))[0]
    bad = np.any(ri != oi, axis=-1)  # [T]
    ent.max_abs_err = float(np.max(np.abs(ri - oi))) if ri.size else 0.0
    if not bad.any():
        return
    logits_name = name[: -len("experts")] + "router_logits"
    ties = np.zeros_like(bad)
    if logits_name in ref:
        lg = np.asarray(ref[logits_name], dtype=np.float64).reshape(*bad.shape, -1)
        k = r.shape[-1]
        s = -np.sort(-lg, axis=-1)
        if s.shape[-1] > k:
            tol = c * u * (1 + L) * float(np.max(np.abs(lg)))
            ties = (s[..., k - 1] - s[..., k]) <= 2 * tol
    real = bad & ~ties
    where = np.argwhere(bad)[0]
    ent.worst_index = tuple(int(i) for i in where)
    if real.any():
        t = tuple(int(i) for i in np.argwhere(real)[0])
        ent.status, ent.ratio = "over", math.inf
        ent.message = f"experts differ at token {list(t)}: ref {ri[t].tolist()}, other {oi[t].tolist()}"
    else:
        ent.message = f"{int(bad.sum())} token(s) differ only where the router logits tie within tolerance"


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def logit_metrics(ref_logits, other_logits, *, topk=TOPK):
    """End-to-end figures of two logits [.., T, V] (float64):

    greedy_agreement: share of positions whose argmax agrees; greedy_first_diff: the first position
    (flattened) where it differs, or None; topk_overlap: mean over positions of |top-k ref & top-k
    other| / k (k = min(topk, V)); kl_next: KL(p_ref || p_other) of the last position's next-token
    distribution (natural log); kl_mean: the same averaged over positions; cosine_mean /
    cosine_next: cosine similarity of the logit vectors.
    """
    r = np.asarray(ref_logits, dtype=np.float64)
    o = np.asarray(other_logits, dtype=np.float64)
    v = r.shape[-1]
    r2, o2 = r.reshape(-1, v), o.reshape(-1, v)
    ga, gb = np.argmax(r2, axis=-1), np.argmax(o2, axis=-1)
    diff = np.nonzero(ga != gb)[0]
    k = min(topk, v)
    ta = np.argsort(-r2, axis=-1, kind="stable")[:, :k]
    tb = np.argsort(-o2, axis=-1, kind="stable")[:, :k]
    overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ta, tb)])
    lp, lq = _log_softmax(r2), _log_softmax(o2)
    with np.errstate(invalid="ignore"):
        kl = np.sum(np.exp(lp) * (lp - lq), axis=-1)  # [N]
    kl = np.maximum(kl, 0.0)
    nr, no = np.linalg.norm(r2, axis=-1), np.linalg.norm(o2, axis=-1)
    cos = np.sum(r2 * o2, axis=-1) / np.maximum(nr * no, np.finfo(np.float64).tiny)
    return dict(greedy_agreement=float(np.mean(ga == gb)), greedy_first_diff=int(diff[0]) if diff.size else None,
                topk=k, topk_overlap=float(overlap), kl_next=float(kl[-1]), kl_mean=float(np.mean(kl)),
                cosine_next=float(cos[-1]), cosine_mean=float(np.mean(cos)))
