"""One comparison for every test and command: shape, dtype family, NaN/Inf pattern, then values vs the budget."""

import ast
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .._validate import is_float_dtype
from ..errors import ArgumentError
from ..precision import bfloat16, compute_dtype
from .kit import Budget, bind, compute_unit_roundoff, fixed, unit_roundoff

N_OFFENDERS = 5
INLINE_LIMIT = 256  # arrays up to this many elements are written into the repro literally


@dataclass
class Report:
    """The outcome of one comparison. `ok` is True when every check passed."""

    op: str
    ok: bool
    failure: str = None  # None | "shape" | "dtype" | "nan_inf" | "values"
    message: str = ""
    shape: tuple = None
    expected_dtype: str = None
    actual_dtype: str = None
    n_elements: int = 0
    n_over: int = 0
    share_over: float = 0.0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    worst_index: tuple = None
    worst_expected: object = None
    worst_actual: object = None
    worst_ulp: int = None  # ULP distance in the expected's dtype
    worst_ulp_actual_dtype: int = None  # the same in the actual's dtype, when it differs
    worst_bound: float = None
    budget_kind: str = None
    budget_formula: str = None  # the formula with its numbers filled in
    budget_reason: str = None
    budget_used: float = 0.0  # max over elements of err / bound (1.0 = exactly at the budget)
    offenders: list = field(default_factory=list)  # first few: dict(index, expected, actual, bound)
    backend: str = None
    kernel: str = None  # the backend's kernel under test
    dtype: str = None
    seed: object = None
    repro: str = None
    misreadings: list = field(default_factory=list)  # filled by the caller via misreadings.diagnose
    parts: list = field(default_factory=list)  # one Report per output for ops returning a tuple

    def to_dict(self):
        """A dict of JSON types only (non-finite floats as the strings 'inf', '-inf', 'nan')."""
        return _jsonable(asdict(self))

    def __str__(self):
        head = f"{self.op}: {'ok' if self.ok else 'FAIL (' + str(self.failure) + ')'}"
        if self.message:
            head += f" - {self.message}"
        lines = [head]
        ctx = ", ".join(f"{k} {v}" for k, v in (("backend", self.backend), ("kernel", self.kernel),
                                                   ("dtype", self.dtype), ("seed", self.seed)) if v is not None)
        if ctx:
            lines.append(f"  {ctx}")
        if self.failure in (None, "values") and not self.parts:
            lines.append(f"  {self.n_over} of {self.n_elements} elements over budget ({100 * self.share_over:.3g}%); "
                         f"max abs err {self.max_abs_err:.3g}, max rel err {self.max_rel_err:.3g}, "
                         f"budget used {self.budget_used:.3g}")
        if self.worst_index is not None:
            ulp = f", {self.worst_ulp} ulp ({self.expected_dtype})" if self.worst_ulp is not None else ""
            if self.worst_ulp_actual_dtype is not None:
                ulp += f", {self.worst_ulp_actual_dtype} ulp ({self.actual_dtype})"
            lines.append(f"  worst at {list(self.worst_index)}: expected {self.worst_expected!r}, "
                         f"actual {self.worst_actual!r}{ulp}, bound {self.worst_bound!r}")
        if self.budget_formula:
            lines.append(f"  budget ({self.budget_kind}): {self.budget_formula}")
            lines.append(f"  reason: {self.budget_reason}")
        for o in self.offenders:
            lines.append(f"    at {list(o['index'])}: expected {o['expected']!r}, actual {o['actual']!r}, bound {o['bound']!r}")
        for p in self.parts:
            lines.extend("  " + s for s in str(p).splitlines())
        if self.misreadings:
            lines.append(f"  matches misreading(s): {', '.join(self.misreadings)}")
        if self.repro and not self.ok:
            lines.append("  repro:")
            lines.extend("    " + s for s in self.repro.splitlines())
        return "\n".join(lines)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else ("nan" if f != f else ("inf" if f > 0 else "-inf"))
    if v is None or isinstance(v, str):
        return v
    return str(v)


# ----------------------------------------------------------------------------- ULP distance


def ulp_distance(a, b, dtype=None):
    """Number of representable values of `dtype` between a and b (elementwise, uint64; +0 and -0 are 0 apart).

    Both are rounded to `dtype` (default: a's dtype) first; a NaN anywhere gives the uint64 maximum.
    """
    dt = np.dtype(dtype) if dtype is not None else np.asarray(a).dtype
    if not is_float_dtype(dt):
        raise ArgumentError(f"dtype: expected a floating dtype, found {dt}")
    it = {2: np.int16, 4: np.int32, 8: np.int64}[dt.itemsize]
    x, y = np.asarray(a).astype(dt), np.asarray(b).astype(dt)
    ox, oy = (_ordered(v.view(it)) for v in (x, y))
    ux, uy = ox.astype(np.int64).view(np.uint64), oy.astype(np.int64).view(np.uint64)
    d = np.where(ox >= oy, ux - uy, uy - ux)  # wraps modulo 2^64: exact, the true distance is < 2^64
    nan = np.isnan(x.astype(np.float64)) | np.isnan(y.astype(np.float64))
    return np.where(nan, np.iinfo(np.uint64).max, d)


def _ordered(i):
    """Sign-magnitude bit patterns to integers that order like the floats (-0 and +0 both 0)."""
    lo = np.iinfo(i.dtype).min
    i = i.astype(np.int64)
    return np.where(i >= 0, i, lo - i)


# ----------------------------------------------------------------------------- compare


def _family(dt):
    dt = np.dtype(dt)
    if dt == np.bool_:
        return "bool"
    if dt.kind in "iu":
        return "int"
    if is_float_dtype(dt):
        return "float"
    return dt.kind


def _f64(a):
    return np.asarray(a).astype(np.float64)


def _py(v):
    v = v.item() if hasattr(v, "item") else v
    return float(v) if isinstance(v, float) else v


def compare(expected, actual, *, op, budget=None, inputs=None, context=None, ops=None, dtype=None):
    """Compare `actual` to `expected` for `op`; returns a Report (never raises on a mismatch).

    expected, actual: arrays (or tuples of arrays for ops returning several outputs).
    budget: None (the op's row of BUDGETS), a Budget, or (atol, rtol). inputs: the op's inputs (dict by
    argument name, or a tuple of positional arguments), needed by every budget but "exact".
    context: optional dict with backend, kernel, dtype, seed, with_kernel (op, kernel) and strategy (a Python expression that
    rebuilds the inputs dict from `seed`, used by the repro for arrays too large to inline).
    ops: the namespace whose semantics `expected` follows (default the reference), for the budget.
    dtype: the float dtype the spec promises for the output (a tuple for several outputs; None: only
    the dtype family is checked). The output must have it, and is judged with its budget.
    """
    context = dict(context or {})
    if budget is None:
        from .ops import get_budget

        budget = get_budget(op)
    elif isinstance(budget, tuple):
        budget = fixed(*budget)
    if not isinstance(budget, Budget):
        raise ArgumentError(f"budget: expected None, a Budget or (atol, rtol), found {type(budget).__name__}")
    bound_inputs = bind(op, inputs) if inputs is not None and _has_op(op) else inputs
    repro = make_repro(op, bound_inputs, context) if bound_inputs is not None else None
    if isinstance(expected, (tuple, list)):
        return _compare_parts(expected, actual, op, budget, bound_inputs, context, repro, ops, dtype)
    rep = _compare_one(expected, actual, op, budget, bound_inputs, context, ops, dtype)
    rep.repro = repro
    return rep


def _has_op(op):
    from ..ops import ops

    return hasattr(ops, op)


def _base(op, context, **kw):
    return Report(op=op, backend=context.get("backend"), kernel=context.get("kernel"),
                  dtype=context.get("dtype"), seed=context.get("seed"), **kw)


def _compare_parts(expected, actual, op, budget, inputs, context, repro, ops, dtype=None):
    if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
        n = len(actual) if isinstance(actual, (tuple, list)) else "a single array"
        rep = _base(op, context, ok=False, failure="shape",
                    message=f"expected a tuple of {len(expected)} outputs, found {n}")
        rep.repro = repro
        return rep
    dts = dtype if isinstance(dtype, (tuple, list)) else (dtype,) * len(expected)
    parts = [_compare_one(e, a, f"{op}[{k}]", budget.part(k), inputs, context, ops, dt)
             for k, (e, a, dt) in enumerate(zip(expected, actual, dts))]
    bad = [p for p in parts if not p.ok]
    lead = bad[0] if bad else max(parts, key=lambda p: p.budget_used)
    rep = _base(op, context, ok=not bad, failure=lead.failure if bad else None,
                message=(f"output {parts.index(lead)}: {lead.message}" if bad else ""))
    for name in ("n_elements", "n_over"):
        setattr(rep, name, sum(getattr(p, name) for p in parts))
    rep.share_over = rep.n_over / rep.n_elements if rep.n_elements else 0.0
    rep.max_abs_err = max(p.max_abs_err for p in parts)
    rep.max_rel_err = max(p.max_rel_err for p in parts)
    rep.budget_used = max(p.budget_used for p in parts)
    rep.budget_kind, rep.budget_reason = budget.kind, budget.reason
    rep.budget_formula = budget.formula
    rep.parts, rep.repro = parts, repro
    return rep


def _compare_one(expected, actual, op, budget, inputs, context, ops, dtype=None):
    e, a = np.asarray(expected), np.asarray(actual)
    rep = _base(op, context, ok=False, shape=tuple(e.shape), expected_dtype=str(e.dtype), actual_dtype=str(a.dtype),
                n_elements=int(e.size), budget_kind=budget.kind, budget_reason=budget.reason)
    if a.shape != e.shape:
        rep.failure, rep.message = "shape", f"expected shape {e.shape}, found {a.shape}"
        return rep
    fe, fa = _family(e.dtype), _family(a.dtype)
    if fe != fa:
        rep.failure, rep.message = "dtype", f"expected a {fe} dtype ({e.dtype}), found {a.dtype}"
        return rep
    if dtype is not None and fe == "float" and np.dtype(a.dtype) != np.dtype(dtype):
        rep.failure = "dtype"
        rep.message = (f"expected a {np.dtype(dtype)} output (the dtype the spec promises for these inputs), "
                       f"found {a.dtype}")
        return rep
    if fe != "float":
        return _values(rep, e.astype(np.int64) if fe != "bool" else e, a.astype(np.int64) if fa != "bool" else a,
                       np.zeros(e.shape), "|err| = 0 (integers and booleans compare exactly)", context)
    e64, a64 = _f64(e), _f64(a)
    pattern = (np.isnan(e64) != np.isnan(a64)) | (np.isposinf(e64) != np.isposinf(a64)) | (np.isneginf(e64) != np.isneginf(a64))
    if pattern.any():
        idx = [tuple(int(i) for i in ix) for ix in np.argwhere(pattern)[:N_OFFENDERS]]
        rep.failure = "nan_inf"
        rep.n_over = int(pattern.sum())
        rep.share_over = rep.n_over / max(e.size, 1)
        rep.message = f"NaN/Inf pattern differs at {rep.n_over} element(s)"
        rep.offenders = [dict(index=i, expected=_py(e64[i]), actual=_py(a64[i]), bound=None) for i in idx]
        rep.worst_index, rep.worst_expected, rep.worst_actual = idx[0], _py(e64[idx[0]]), _py(a64[idx[0]])
        return rep
    bound, filled = _bound(budget, e, a if dtype is None else a.astype(dtype), inputs, ops)
    return _values(rep, e, a, bound, filled, context)


def _bound(budget, e, a, inputs, ops):
    """The total bound (both sides' budgets + narrow-storage rounding) and the filled-in formula."""
    if budget.kind == "exact" or budget.bound_fn is None:
        return np.zeros(e.shape), budget.formula
    if inputs is None and budget.op != "fixed":
        raise ArgumentError(f"inputs: expected the inputs of op {budget.op!r} to evaluate its {budget.kind} budget")
    e64 = _f64(e)
    ua, ue = max(compute_unit_roundoff(a.dtype), _inputs_u(inputs)), compute_unit_roundoff(e.dtype)
    total, params = budget.bound(e64, inputs, ua, ops)
    total = np.array(total, dtype=np.float64)
    if budget.op != "fixed":
        total = total + budget.bound(e64, inputs, ue, ops)[0]
    terms = [f"u_actual={ua:.3g}", f"u_expected={ue:.3g}"] if budget.op != "fixed" else []
    for dt in {np.dtype(a.dtype), np.dtype(e.dtype)}:
        if dt in (bfloat16, np.dtype(np.float16)):
            total = total + unit_roundoff(dt) * np.abs(e64)
            terms.append(f"+ {unit_roundoff(dt):.3g}|y| ({dt} storage)")
    nums = ", ".join([f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()] + terms)
    bmax = float(np.max(total)) if total.size else 0.0
    return total, f"{budget.formula}; sum of both sides' bounds; {nums}; largest bound {bmax:.3g}"


def _inputs_u(inputs):
    """u of the dtype the actual side computed in, judged by its float array inputs (0 if none).

    An op may return a wider dtype than it computed in (a composite whose callable widens), so the
    actual side's u is the larger of its output's and its inputs' compute u.
    """
    arrays = [v for v in (inputs or {}).values() if isinstance(v, np.ndarray) and is_float_dtype(v.dtype)]
    return compute_unit_roundoff(compute_dtype(*arrays)) if arrays else 0.0


def _values(rep, e, a, bound, filled, context):
    e64, a64 = _f64(e), _f64(a)
    finite = np.isfinite(e64) & np.isfinite(a64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(a64 - e64), 0.0)
    nz = finite & (e64 != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(nz, err / np.where(nz, np.abs(e64), 1.0), 0.0)  # relative error only where expected != 0
    over = err > bound
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / bound)
    rep.budget_formula = filled
    rep.n_over = int(over.sum())
    rep.share_over = rep.n_over / e.size if e.size else 0.0
    rep.max_abs_err = float(err.max()) if e.size else 0.0
    rep.max_rel_err = float(rel.max()) if e.size else 0.0
    rep.budget_used = float(ratio.max()) if e.size else 0.0
    if e.size:
        w = np.unravel_index(int(np.argmax(ratio if rep.budget_used > 0 else err)), e.shape)
        w = tuple(int(i) for i in w)
        rep.worst_index, rep.worst_expected, rep.worst_actual = w, _py(e[w]), _py(a[w])
        rep.worst_bound = float(bound[w])
        same_sign = np.sign(e64[w]) == np.sign(a64[w]) and e64[w] != 0 and np.isfinite(e64[w]) and np.isfinite(a64[w])
        if _family(e.dtype) == "float" and same_sign:  # no ULP count across zero (it counts subnormals)
            rep.worst_ulp = int(ulp_distance(e[w], a[w], e.dtype))
            if np.dtype(a.dtype) != np.dtype(e.dtype):
                rep.worst_ulp_actual_dtype = int(ulp_distance(e[w], a[w], a.dtype))
        rep.offenders = [dict(index=tuple(int(i) for i in ix), expected=_py(e[tuple(ix)]), actual=_py(a[tuple(ix)]),
                              bound=float(bound[tuple(ix)])) for ix in np.argwhere(over)[:N_OFFENDERS]]
    rep.ok = rep.n_over == 0
    if not rep.ok:
        rep.failure = "values"
        if not np.any(bound > 0):  # an exact budget: any difference is a failure, no ratio to give
            rep.message = f"{rep.n_over} of {e.size} elements differ (exact budget)"
        else:
            rep.message = f"{rep.n_over} of {e.size} elements over budget (budget used {rep.budget_used:.3g}x)"
    return rep


def _tiny(dt):
    try:
        return float(np.finfo(dt).tiny)
    except Exception:
        import ml_dtypes

        return float(ml_dtypes.finfo(dt).tiny)


# ----------------------------------------------------------------------------- repro


def _literal(v):
    """A Python expression for a float/int/bool/None/str or a nested list of them (nan/inf as np.nan/np.inf)."""
    if isinstance(v, list):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    if isinstance(v, float):
        if v != v:
            return "np.nan"
        if math.isinf(v):
            return "np.inf" if v > 0 else "-np.inf"
    return repr(v)


def _dtype_expr(dt):
    dt = np.dtype(dt)
    return "ml_dtypes.bfloat16" if dt == bfloat16 else f"np.{dt.name}" if dt.name != "bool" else "bool"


def _value_expr(name, v, context):
    """(expression or None, comment) rebuilding one input."""
    if isinstance(v, np.ndarray) or isinstance(v, np.generic):
        a = np.asarray(v)
        if a.size > context.get("inline_limit", INLINE_LIMIT):
            return None, f"{name}: shape {a.shape} {a.dtype}, too large to inline"
        vals = a.astype(np.float64).tolist() if a.dtype == bfloat16 else a.tolist()
        return f"np.array({_literal(vals)}, dtype={_dtype_expr(a.dtype)})", None
    if isinstance(v, np.random.Generator):
        seed = context.get("seed")
        return (f"np.random.default_rng({seed!r})", None) if seed is not None else (None, f"{name}: a Generator (no seed in context)")
    if isinstance(v, type) or isinstance(v, np.dtype):
        return _dtype_expr(v), None
    if callable(v):
        return None, f"{name}: a callable ({getattr(v, '__name__', type(v).__name__)}), rebuild it by hand"
    if v is None or isinstance(v, (bool, int, float, str, dict, list, tuple)):
        try:
            text = repr(v)
            ast.literal_eval(text)  # only plain literals are written as they are
            return text, None
        except Exception:
            return None, f"{name}: {type(v).__name__} not written literally"
    return None, f"{name}: {type(v).__name__} not written literally"


def make_repro(op, inputs, context):
    """A copy-pasteable Python snippet that rebuilds the inputs and reruns the comparison."""
    lines = ["import numpy as np", "import ml_dtypes", "from refimpl.ops import ops",
             "from refimpl.conformance import compare", ""]
    exprs, notes = {}, []
    for name, v in inputs.items():
        expr, note = _value_expr(name, v, context)
        exprs[name] = expr
        if note:
            notes.append(note)
    if any(x is None for x in exprs.values()) and context.get("strategy"):
        lines += [f"seed = {context.get('seed')!r}", f"inputs = {context['strategy']}  # the strategy that drew them"]
    else:
        for n in notes:
            lines.append(f"# {n}")
        lines.append("inputs = dict(")
        lines += [f"    {n}={x if x is not None else 'None'}," for n, x in exprs.items()]
        lines.append(")")
    lines += [
        "oracle = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind in 'fV' else v) "
        "for k, v in inputs.items()}",
        f"expected = ops.{op}(**oracle)",
        "from refimpl.conformance.selection import resolve_backend, with_kernel",
        f"backend = resolve_backend({context.get('backend') or 'numpy'!r})",
        *([f"backend = with_kernel(backend, {context['with_kernel'][0]!r}, {context['with_kernel'][1]!r})  "
           "# the failing kernel"] if context.get("with_kernel") else []),
        f"actual = backend.as_ops().{op}(**inputs)",
        f"print(compare(expected, actual, op={op!r}, inputs=inputs))",
    ]
    return "\n".join(lines)
