"""The property suite: every op with a budget that a backend implements, one row per (op, kernel),
on drawn inputs against the float64 oracle; plus whole tiny models, trace-diffed and decoded.

    result = run_suite(resolve_backend("numpy"), dtype="float32", max_examples=20)
    print(format_table(result)); result.ok; result.to_dict()

A row runs every case: the op's explicit examples (regression and power cases) and then
`max_examples` Hypothesis-drawn cases (derandomized, so runs repeat). It never stops at a failure:
it counts the failing cases and reports the smallest one (fewest input elements) with compare()'s
Report, a repro that runs the failing kernel, and the misreadings it clearly matches. A case the
kernel declines (OpNotSupported) is counted as declined, not as an error.

Rules applied to every case (spec/conformance.md):
- the dtype rule: the output must have the dtype the reference returns for the same inputs (float64
  in, float64 out) and is judged with that dtype's budget, whatever the kernel returned;
- `sample` is judged on its distribution: SAMPLE_DRAWS seeded draws per case, each equal to the
  reference's draw unless the uniform lies within rounding of a CDF boundary;
- a difference only on fully masked attention rows (no visible key, no sink) is reported as the
  named convention difference "fully_masked_row", and the rest of the output is still judged.
"""

import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from refimpl.backends import OpNotSupported
from .._validate import is_float_dtype
from ..errors import ArgumentError, RefimplError
from ..ops import ops as reference_ops
from .compare import compare
from .kit import DTYPES, fresh
from .misreadings import diagnose
from .ops import BUDGETS, build_inputs, examples, op_configs, repro_expression
from .selection import backend_name, kernel_names, resolve_backend, with_kernel

SCHEMA_VERSION = 2
DEFAULT_MAX_EXAMPLES = 20
DEFAULT_DTYPES = ("float32", "float64")  # float64 too: float32 work inside a float64 run is a bug to catch
INLINE_LIMIT = 32  # larger inputs are rebuilt in the repro by build_inputs(op, cfg, seed, dtype)
SAMPLE_DRAWS = 64  # seeded draws per `sample` case
CONVENTIONS = {
    "fully_masked_row": "a query row with no visible key and no sink (softmax_with_sinks: all scores -inf, no "
                        "sink): the spec gives zeros; HF eager attention gives a uniform row (a -1e10 / "
                        "finfo.min mask) or NaN (a -inf mask, torch.softmax)",
}


@dataclass
class OpResult:
    """One row of the table: an op (or a whole model, "model:<arch>") under one kernel."""

    op: str
    kernel: str = "default"
    dtype: str = "float32"
    status: str = "pass"  # "pass" | "fail" | "convention" | "skip" | "error"
    cases: int = 0
    failed_cases: int = 0
    declined_cases: int = 0
    failure: str = None  # the smallest failing case's kind: "shape" | "dtype" | "nan_inf" | "values"
    max_abs_err: float = 0.0
    budget_used: float = 0.0
    reason: str = ""  # the skip reason or the failure message
    misreadings: list = field(default_factory=list)
    conventions: list = field(default_factory=list)
    report: object = None  # the smallest failing case's compare Report (ops) or DiffReport (models)
    cfg: dict = None  # the smallest failing case (a regression case: build_inputs(op, cfg, seed, dtype))
    seed: int = None
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return self.status in ("pass", "skip")

    def status_text(self):
        if self.status == "pass":
            return "pass" + (f" ({self.declined_cases} case(s) declined)" if self.declined_cases else "")
        if self.status == "skip":
            return f"skip: {self.reason}"
        if self.status == "error":
            return "ERROR"
        if self.status == "convention":
            return f"CONVENTION {', '.join(self.conventions)}"
        kind = {"nan_inf": " (NaN/Inf pattern)", "dtype": " (dtype)", "shape": " (shape)"}.get(self.failure, "")
        counted = f" {self.failed_cases}/{self.cases} cases" if self.cases else ""
        match = f" (matches misreading {', '.join(self.misreadings)})" if self.misreadings else ""
        conv = f" (and convention {', '.join(self.conventions)})" if self.conventions else ""
        return f"FAIL{kind}{counted}{match}{conv}"

    def to_dict(self):
        rep = self.report
        return dict(op=self.op, kernel=self.kernel, dtype=self.dtype, status=self.status, cases=self.cases,
                    failed_cases=self.failed_cases, declined_cases=self.declined_cases, failure=self.failure,
                    max_abs_err=_num(self.max_abs_err), budget_used=_num(self.budget_used), reason=self.reason,
                    misreadings=list(self.misreadings), conventions=list(self.conventions), cfg=self.cfg,
                    seed=self.seed, seconds=round(self.seconds, 3), notes=list(self.notes),
                    report=None if rep is None else rep.to_dict(),
                    text=None if rep is None or self.status == "pass" else str(rep))


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else ("inf" if v > 0 else "nan")


@dataclass
class SuiteResult:
    backend: str
    version: str
    dtype: str
    max_examples: int
    rows: list
    spec: str = None

    @property
    def ok(self):
        return all(r.ok for r in self.rows)

    def to_dict(self):
        counts = {s: sum(r.status == s for r in self.rows) for s in ("pass", "fail", "convention", "skip", "error")}
        return dict(schema_version=SCHEMA_VERSION, backend=self.backend, backend_version=self.version,
                    spec=self.spec, dtype=self.dtype, max_examples=self.max_examples, ok=self.ok, summary=counts,
                    results=[r.to_dict() for r in self.rows])


def _widen(inputs):
    """The oracle's inputs: float arrays widened exactly to float64, fresh Generators."""
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and is_float_dtype(v.dtype) else v)
            for k, v in fresh(inputs).items()}


def _size(inputs):
    return sum(int(np.size(v)) for v in inputs.values() if isinstance(v, np.ndarray))


def _promised_dtype(out):
    if isinstance(out, (tuple, list)):
        return tuple(_promised_dtype(o) for o in out)
    a = np.asarray(out)
    return a.dtype if is_float_dtype(a.dtype) else None


def _ops_of(backend, fallback):
    try:
        return backend.as_ops(fallback=fallback)
    except TypeError:  # an as_ops() without the keyword
        return backend.as_ops()


# ----------------------------------------------------------------------------- one case


@dataclass
class _Case:
    cfg: dict
    seed: int
    inputs: dict
    report: object
    size: int
    conventions: list = field(default_factory=list)
    only_convention: bool = False  # the case differs only by a named convention


def _convention_split(op, inputs, expected, actual, ctx, dtype):
    """(report of the rest, [convention names]) when a failure lies only on fully masked rows
    (attention ops and softmax_with_sinks; the rows: ops/attention.py fully_masked_output)."""
    from .ops.attention import fully_masked_output

    if not isinstance(actual, np.ndarray):
        return None
    e, a = np.asarray(expected), np.asarray(actual)
    if a.shape != e.shape:
        return None
    mask = fully_masked_output(op, inputs, e.shape)
    if mask is None:
        return None
    a2 = np.where(mask, e.astype(a.dtype), a)
    if np.array_equal(a2, a, equal_nan=True):
        return None
    rest = compare(expected, a2, op=op, inputs=inputs, context=ctx, dtype=dtype)
    return rest, ["fully_masked_row"]


def _check_sample(fn, inputs, ctx, dtype):
    """The distribution check of `sample`: SAMPLE_DRAWS seeded draws against the reference's draws.

    The reference draw is exact given the uniform u (spec/sampling.md): token = min i with
    u C_(V-1) < C_i. A different token is accepted only where u C_(V-1) lies within a relative 1e-6
    of the boundary C_(ref) or C_(ref-1) (rounding of the cumulative sums in another order).
    """
    from .compare import Report

    t = float(inputs["temperature"])
    logits = inputs["logits"]
    x64 = np.asarray(logits, dtype=np.float64)
    bad, total = 0, 0
    first = None
    for draw in range(SAMPLE_DRAWS if t > 0 else 1):
        seed = 1000 + draw
        kw = dict(inputs, rng=np.random.default_rng(seed))
        kw64 = dict(kw, logits=x64, rng=np.random.default_rng(seed))
        want = np.asarray(reference_ops.sample(**kw64))
        got = np.asarray(fn(**dict(kw, rng=np.random.default_rng(seed))))
        total += want.size
        if got.shape != want.shape or got.dtype.kind not in "iu":
            return compare(want, got, op="sample", context=ctx)
        diff = want != got
        if diff.any() and t > 0:
            y = reference_ops.apply_temperature(x64, t)
            if inputs.get("top_k") is not None:
                y = reference_ops.top_k_filter(y, inputs["top_k"])
            if inputs.get("top_p") is not None:
                y = reference_ops.top_p_filter(y, inputs["top_p"])
            ee = np.exp(y - y.max(axis=-1, keepdims=True))
            c = np.cumsum(ee, axis=-1)
            u = np.random.default_rng(seed).random(size=x64.shape[:-1])
            target = u[..., None] * c[..., -1:]
            near = np.any(np.abs(c - target) <= 1e-6 * c[..., -1:], axis=-1)
            diff = diff & ~near
        n = int(np.sum(diff))
        if n and first is None:
            first = (seed, want, got)
        bad += n
    rep = Report(op="sample", ok=bad == 0, n_elements=total, n_over=bad, share_over=bad / max(total, 1),
                 backend=ctx.get("backend"), kernel=ctx.get("kernel"), dtype=ctx.get("dtype"), seed=ctx.get("seed"),
                 budget_kind="exact", budget_formula=f"{SAMPLE_DRAWS} seeded draws per case equal the reference's "
                 "(except within rounding of a CDF boundary)", budget_reason="spec/sampling.md: inverse-CDF draw")
    if bad:
        seed, want, got = first
        rep.failure = "values"
        rep.budget_used = math.inf
        rep.message = (f"{bad} of {total} draws differ from the reference's distribution "
                       f"(first at draw seed {seed}: expected {np.asarray(want).tolist()}, found {np.asarray(got).tolist()})")
    return rep


# ----------------------------------------------------------------------------- op rows


class _Stop(Exception):
    """Raised inside a row to end it at its first failure (stop_at_first_failure=True)."""


def run_op(backend, op, *, kernel=None, dtype="float32", max_examples=DEFAULT_MAX_EXAMPLES, spec=None,
           with_examples=True, diagnose_failures=True, stop_at_first_failure=False):
    """Check `op` of `backend` (kernel `kernel`, default the backend's first) on every case.

    Returns an OpResult: "skip" with the backend's reason when it lacks the op (or the dtype) or
    declines every case; "fail" with the count of failing cases and the smallest one's Report and
    misreadings; "convention" when the only difference is a named convention; "error" when the
    backend raised something other than OpNotSupported. stop_at_first_failure: end the row at its
    first failing case (the verdict is the same; the count and the smallest case are not; for tests
    that only need the verdict, such as the mutation corpus).
    """
    t0 = time.perf_counter()
    names = kernel_names(backend, op)
    kernel = kernel or names[0]
    res = OpResult(op=op, kernel=kernel, dtype=dtype)
    reason = backend.unsupported_reason(op, dtype=DTYPES[dtype]) if hasattr(backend, "unsupported_reason") else None
    if reason:
        res.status, res.reason = "skip", reason
        return res
    b = with_kernel(backend, op, kernel)
    fn = getattr(_ops_of(b, False), op)
    ref = getattr(reference_ops, op)
    name = spec or getattr(backend, "name", str(backend))
    failures, declined, errors = [], [], []

    def check(cfg, seed, in_hypothesis):
        inputs = build_inputs(op, cfg, seed, dtype)
        try:
            expected = ref(**_widen(inputs))
            promised = _promised_dtype(ref(**fresh(inputs))) if dtype != "float64" else _promised_dtype(expected)
        except ArgumentError:
            if in_hypothesis:
                reject()
            raise
        ctx = dict(backend=name, kernel=kernel, dtype=dtype, seed=seed, strategy=repro_expression(op, cfg, dtype),
                   inline_limit=INLINE_LIMIT, with_kernel=None if kernel == names[0] else (op, kernel))
        try:
            if op == "sample":
                rep = _check_sample(fn, inputs, ctx, dtype)
            else:
                actual = fn(**fresh(inputs))
                rep = compare(expected, actual, op=op, inputs=inputs, context=ctx, dtype=promised)
        except OpNotSupported as exc:
            declined.append(getattr(exc, "reason", str(exc)))
            return
        except (RefimplError, ArithmeticError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            errors.append((cfg, seed, exc))
            res.cases += 1
            if stop_at_first_failure:
                raise _Stop()
            return
        res.cases += 1
        if np.isfinite(rep.max_abs_err):
            res.max_abs_err = max(res.max_abs_err, rep.max_abs_err)
        res.budget_used = max(res.budget_used, rep.budget_used)
        if not rep.ok:
            conv, only = [], False
            if op != "sample":
                split = _convention_split(op, inputs, expected, actual, ctx, promised)
                if split is not None:
                    rest, conv = split
                    if rest.ok:
                        only = True
                    else:
                        rep = rest
            failures.append(_Case(cfg, seed, inputs, rep, _size(inputs), conv, only))
            if stop_at_first_failure and not only:
                raise _Stop()

    try:
        if with_examples:
            for cfg in examples(op):
                check(cfg, 0, False)
        if max_examples > 0:
            @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                      print_blob=False, report_multiple_bugs=False)
            @given(cfg=op_configs(op), seed=st.integers(0, 2**32 - 1))
            def prop(cfg, seed):
                check(cfg, seed, True)

            prop()
    except _Stop:
        pass
    except HypothesisException as exc:
        res.status, res.reason = "error", f"hypothesis: {type(exc).__name__}: {exc}"
    except Exception as exc:
        res.status, res.reason = "error", _exc_text(exc)
    res.declined_cases = len(declined)
    if res.status != "error":
        _settle(res, op, failures, errors, declined, fn, diagnose_failures)
    res.seconds = time.perf_counter() - t0
    return res


def _settle(res, op, failures, errors, declined, fn, diagnose_failures):
    """The row's status from its failing cases (the smallest one reported) and errors."""
    if failures:
        real = [f for f in failures if not f.only_convention]
        conv = sorted({c for f in failures for c in f.conventions})
        res.conventions = conv
        res.failed_cases = len(failures)
        pick = min(real or failures, key=lambda f: (f.size, f.seed))
        res.report, res.cfg, res.seed = pick.report, pick.cfg, pick.seed
        res.failure = pick.report.failure if not pick.report.ok else None
        if real:
            res.status = "fail"
            res.reason = pick.report.message
            if diagnose_failures and op != "sample":
                try:
                    actual = fn(**fresh(pick.inputs))
                    res.misreadings = diagnose(op, fresh(pick.inputs), actual)
                except Exception:  # a diagnosis never hides the failure itself
                    res.misreadings = []
                pick.report.misreadings = list(res.misreadings)
        else:
            res.status = "convention"
            res.reason = "; ".join(f"{c}: {CONVENTIONS[c]}" for c in conv)
    elif errors:
        cfg, seed, exc = errors[0]
        res.status, res.cfg, res.seed = "error", cfg, seed
        res.failed_cases = len(errors)
        res.reason = _exc_text(exc)
    elif res.cases == 0 and declined:
        res.status, res.reason = "skip", f"{op}: every case declined ({declined[0]})"


def _exc_text(exc):
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"raised {type(exc).__name__}: {exc}{where}"


# ----------------------------------------------------------------------------- whole models

MODEL_ARCHS = ("gpt2", "llama", "qwen3", "mistral", "mixtral", "gpt_oss", "gpt_oss_mxfp4")
MODEL_IDS = (3, 17, 42, 5, 88, 1, 64, 23, 9, 71, 30, 12)  # T = 12 > every tiny sliding window
PREFILL = 8  # the decode check: prefill MODEL_IDS[:PREFILL], then one token at a time with a KV cache


class FallbackOps:
    """An op namespace over a backend: an op it lacks, or a case it declines, runs the reference.

    `fallbacks`: the op names that ran the reference at least once.
    """

    def __init__(self, backend):
        self._ops = _ops_of(backend, True)
        self.fallbacks = list(getattr(self._ops, "fallbacks", ()))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        own = getattr(self._ops, name)
        ref = getattr(reference_ops, name)

        def op(*args, **kwargs):
            try:
                return own(*args, **kwargs)
            except OpNotSupported:
                if name not in self.fallbacks:
                    self.fallbacks.append(name)
                return ref(*args, **kwargs)

        return op


def model_trace(arch, *, dtype="float64", ops=reference_ops, ids=MODEL_IDS, seed=0, prefill=None):
    """The trace of the tiny model `arch` (refimpl.conformance.tiny) run in precision `dtype`.

    prefill: None (one forward over all ids), or n: a forward over ids[:n] with a KV cache, then one
    forward per remaining token; the returned trace then holds "decode.logits" [T - n, V] as well.
    """
    from ..model import forward, prepare_weights
    from .tiny import tiny_model

    cfg, w = tiny_model(arch, seed=seed)
    pw = prepare_weights(cfg, w, dtype)
    tr = {}
    forward(cfg, pw, np.asarray(ids), dtype=dtype, trace=tr, ops=ops)
    if prefill is not None:
        from ..model.kvcache import KVCache

        cache_dtype = np.float64 if dtype == "float64" else np.float32
        cache = KVCache(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, dtype=cache_dtype)
        forward(cfg, pw, np.asarray(ids[:prefill]), cache=cache, dtype=dtype, ops=ops)
        steps = [np.asarray(forward(cfg, pw, np.asarray(ids[i:i + 1]), cache=cache, dtype=dtype, ops=ops))[-1]
                 for i in range(prefill, len(ids))]
        tr["decode.logits"] = np.stack(steps)
    return tr


def decode_layer_logits(backend, arch, *, dtype="float32", ids=MODEL_IDS, prefill=PREFILL, seed=0):
    """Decode logits [T - prefill, V] of the tiny model `arch` run device-resident on the backend
    (`refimpl.Model(..., backend=backend)`: the path on which a backend's `decode_layer` runs each layer
    of a one-token step in one call), or None when the backend does not define `decode_layer`."""
    from refimpl.backends.base import Backend

    if getattr(type(backend), "decode_layer", Backend.decode_layer) is Backend.decode_layer:
        return None
    from ..api import Model
    from ..model import forward
    from .tiny import tiny_model

    cfg, w = tiny_model(arch, seed=seed)
    m = Model(cfg, w, dtype=dtype, backend=backend)
    cache = m.new_cache()
    forward(cfg, m.weights, np.asarray(ids[:prefill]), cache=cache, dtype=m.precision, ops=m.ops)
    steps = [np.asarray(backend.to_host(forward(cfg, m.weights, np.asarray(ids[i:i + 1]), cache=cache,
                                                dtype=m.precision, ops=m.ops)))[-1] for i in range(prefill, len(ids))]
    return np.stack(steps)


def _kernel_choices(backend):
    """[(label, backend)]: the default kernels, then each non-default kernel of each op, one at a time."""
    out = [("default", backend)]
    for op in BUDGETS:
        try:
            names = kernel_names(backend, op)
        except Exception:
            continue
        for k in names[1:]:
            out.append((f"{op}={k}", with_kernel(backend, op, k)))
    return out


def run_model(backend, arch, *, dtype="float32", spec=None, kernel="default"):
    """The tiny model `arch` through the backend (kernel choice `kernel`: "default" or "op=name") in
    precision `dtype` vs the float64 reference: the full forward trace-diffed, and the logits of a
    prefill + token-by-token decode with a KV cache against the full forward's last positions."""
    from .tracediff import diff_traces

    t0 = time.perf_counter()
    res = OpResult(op=f"model:{arch}", kernel=kernel, dtype=dtype)
    b = backend
    if kernel != "default":
        op, _, k = kernel.partition("=")
        b = with_kernel(backend, op, k)
    try:
        ops = FallbackOps(b)
        ref = model_trace(arch, dtype="float64", prefill=PREFILL)
        other = model_trace(arch, dtype=dtype, ops=ops, prefill=PREFILL)
        layers = decode_layer_logits(b, arch, dtype=dtype)  # the backend's one-call layers, if it has them
        if layers is not None:
            ref["decode_layer.logits"], other["decode_layer.logits"] = ref["decode.logits"], layers
        rep = diff_traces(ref, other, dtype=dtype, backend=spec or backend_name(backend))
    except Exception as exc:
        res.status, res.reason = "error", _exc_text(exc)
        res.seconds = time.perf_counter() - t0
        return res
    res.cases = len(rep.entries)
    res.max_abs_err = max((e.max_abs_err for e in rep.entries if np.isfinite(e.max_abs_err)), default=0.0)
    res.budget_used = max((e.ratio for e in rep.entries), default=0.0)
    res.report = rep
    if ops.fallbacks:
        note = f"ops run by the reference (the backend lacks or declined them): {', '.join(ops.fallbacks)}"
        rep.notes.append(note)
        res.notes.append(note)
    if not rep.ok:
        res.status = "fail"
        res.failed_cases = sum(e.status in ("FIRST", "over", "shape") for e in rep.entries)
        res.reason = f"first divergence at {rep.first}"
        res.misreadings = diagnose_model(arch, other, dtype)
    res.seconds = time.perf_counter() - t0
    return res


def diagnose_model(arch, other, dtype):
    """Misreadings whose whole-model trace matches `other` where the reference's does not."""
    from .misreadings import MISREADINGS
    from .tracediff import diff_traces

    names = []
    for m in MISREADINGS.values():
        try:
            tr = model_trace(arch, dtype="float64", ops=m.ops(), prefill=PREFILL)
        except Exception:
            continue
        if diff_traces(tr, other, dtype=dtype).ok:
            names.append(m.name)
    return names


# ----------------------------------------------------------------------------- the suite


def suite_ops(backend=None, ops=None):
    """The op names the suite checks: every op of the budget table (or the given subset, validated)."""
    names = list(BUDGETS)
    if ops is None:
        return names
    unknown = [o for o in ops if o not in names and not (o.startswith("model:") and o[6:] in MODEL_ARCHS)]
    if unknown:
        raise ArgumentError(f"--ops: unknown name(s) {', '.join(unknown)}; valid: {', '.join(names)}, "
                            f"{', '.join('model:' + a for a in MODEL_ARCHS)}")
    return [o for o in ops if not o.startswith("model:")]


def dtype_list(dtype):
    """("float32",) from "float32", ("float32", "float64") from "float32,float64" or a list; "all": every dtype."""
    if dtype is None:
        return DEFAULT_DTYPES
    if isinstance(dtype, str):
        dtype = tuple(DTYPES) if dtype == "all" else tuple(d.strip() for d in dtype.split(",") if d.strip())
    bad = [d for d in dtype if d not in DTYPES]
    if bad or not dtype:
        raise ArgumentError(f"dtype: expected a comma-separated list of {', '.join(DTYPES)} (or 'all'), found {dtype!r}")
    return tuple(dict.fromkeys(dtype))


def run_suite(backend, *, ops=None, dtype=DEFAULT_DTYPES, max_examples=DEFAULT_MAX_EXAMPLES, models=None, spec=None,
              progress=None):
    """Run every op (each kernel) and, unless `ops` restricts them, every tiny model (each kernel choice).

    backend: a Backend or a spec for resolve_backend. ops: op names and/or "model:<arch>" (default all).
    models: arch names to run (default: all when `ops` is None, else those named as model:<arch>).
    progress: optional callable(OpResult) called after each row.
    """
    dtypes = dtype_list(dtype)
    if backend is None or isinstance(backend, str):
        spec = spec or backend
        backend = resolve_backend(backend)
    names = suite_ops(backend, ops)
    if models is None:
        models = list(MODEL_ARCHS) if ops is None else [o[6:] for o in ops if o.startswith("model:")]
    rows = []
    for op in names:
        for kernel in kernel_names(backend, op):
            for dt in dtypes:
                r = run_op(backend, op, kernel=kernel, dtype=dt, max_examples=max_examples, spec=spec)
                rows.append(r)
                if progress:
                    progress(r)
    choices = [label for label, _ in _kernel_choices(backend)] if models else []
    for arch in models:
        for label in choices:
            for dt in dtypes:
                r = run_model(backend, arch, dtype=dt, spec=spec, kernel=label)
                rows.append(r)
                if progress:
                    progress(r)
    return SuiteResult(backend=backend_name(backend), version=str(getattr(backend, "version", "")), dtype=",".join(dtypes),
                       max_examples=max_examples, rows=rows, spec=spec)


def _err_text(r):
    if r.failure == "nan_inf":
        return "NaN/Inf"
    return f"{r.max_abs_err:.3g}"


def format_row(r):
    op = r.op if r.kernel in ("default", None) else f"{r.op}[{r.kernel}]"
    used = "NaN/Inf" if r.failure == "nan_inf" else ("inf" if not np.isfinite(r.budget_used) else f"{r.budget_used:.3g}")
    return f"{op:<40} {r.dtype:<8} {r.cases:>5} {_err_text(r):>11} {used:>11}  {r.status_text()}"


def format_table(result, *, details=True):
    """The per-op table (op, cases, max abs err, budget used, status), then each failure's report."""
    spec = f" (spec {result.spec})" if result.spec and result.spec != result.backend.split(" ")[0] else ""
    lines = [f"backend {result.backend}{spec}, dtype {result.dtype}, max examples {result.max_examples}",
             f"{'op':<40} {'dtype':<8} {'cases':>5} {'max abs err':>11} {'budget used':>11}  status", "-" * 96]
    lines += [format_row(r) for r in result.rows]
    bad = [r for r in result.rows if not r.ok]
    n = {s: sum(r.status == s for r in result.rows) for s in ("pass", "fail", "convention", "error", "skip")}
    lines.append("-" * 96)
    lines.append(f"{n['pass']} pass, {n['fail']} fail, {n['convention']} convention difference, {n['error']} error, "
                 f"{n['skip']} skip: {'OK' if result.ok else 'FAILED'}")
    if details:
        for r in bad:
            lines.append("")
            lines.append(f"=== {r.op} [{r.kernel}] {r.dtype}: {r.status_text()}")
            if r.failed_cases and r.cases:
                lines.append(f"  {r.failed_cases} of {r.cases} cases failed; the smallest failing case:")
            if r.report is not None:
                lines.append(str(r.report))
            else:
                lines.append(r.reason)
            for c in r.conventions:
                lines.append(f"  convention difference {c}: {CONVENTIONS[c]}")
            if r.cfg is not None:
                lines.append(f"  regression case: build_inputs({r.op!r}, {r.cfg!r}, {r.seed!r}, {r.dtype!r})")
    return "\n".join(lines)
