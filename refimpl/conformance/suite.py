"""The property suite: every op in the budget table that a backend implements, on drawn inputs,
against the float64 oracle, one row per (op, kernel variant); plus whole tiny models, trace-diffed.

    result = run_suite(get_backend("numpy"), dtype="float32", max_examples=20)
    print(format_table(result)); result.ok; result.to_dict()

Each op row runs the op's explicit examples (regression and power cases, strategies.EXAMPLES) and
then `max_examples` Hypothesis-drawn cases (derandomized, so runs repeat). A failure stops the row;
it carries compare()'s Report (with repro) and diagnose()'s list of matching known-wrong variants.
"""

import time
import traceback
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from refimpl.backends import BackendError, OpNotSupported, get_backend
from ..errors import ArgumentError, RefimplError
from ..ops import OP_NAMES
from ..ops import ops as reference_ops
from .._validate import is_float_dtype
from .budgets import BUDGETS
from .compare import compare
from .strategies import DTYPES, build_inputs, fresh, op_configs, repro_expression
from .variants import diagnose

SCHEMA_VERSION = 1
DEFAULT_MAX_EXAMPLES = 20
INLINE_LIMIT = 32  # larger inputs are rebuilt in the repro by build_inputs(op, cfg, seed, dtype)


@dataclass
class OpResult:
    """One row of the table: an op (or a whole model, "model:<arch>") under one kernel variant."""

    op: str
    kernel: str = "default"
    status: str = "pass"  # "pass" | "fail" | "skip" | "error"
    cases: int = 0
    max_abs_err: float = 0.0
    budget_used: float = 0.0
    reason: str = ""  # the skip reason or the failure message
    variant_match: list = field(default_factory=list)
    report: object = None  # the failing case's compare Report (ops) or DiffReport (models)
    cfg: dict = None  # the failing case's configuration (a regression case: build_inputs(op, cfg, seed, dtype))
    seed: int = None
    seconds: float = 0.0

    @property
    def ok(self):
        return self.status in ("pass", "skip")

    def status_text(self):
        if self.status == "pass":
            return "pass"
        if self.status == "skip":
            return f"skip: {self.reason}"
        match = f" (matches variant {', '.join(self.variant_match)})" if self.variant_match else ""
        return f"{'FAIL' if self.status == 'fail' else 'ERROR'}{match}"

    def to_dict(self):
        rep = self.report
        return dict(op=self.op, kernel=self.kernel, status=self.status, cases=self.cases,
                    max_abs_err=_num(self.max_abs_err), budget_used=_num(self.budget_used), reason=self.reason,
                    variant_match=list(self.variant_match), cfg=self.cfg, seed=self.seed,
                    seconds=round(self.seconds, 3), report=None if rep is None else rep.to_dict(),
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

    @property
    def ok(self):
        return all(r.ok for r in self.rows)

    def to_dict(self):
        counts = {s: sum(r.status == s for r in self.rows) for s in ("pass", "fail", "skip", "error")}
        return dict(schema_version=SCHEMA_VERSION, backend=self.backend, backend_version=self.version,
                    dtype=self.dtype, max_examples=self.max_examples, ok=self.ok, summary=counts,
                    results=[r.to_dict() for r in self.rows])


class _CaseFailure(Exception):
    def __init__(self, report, cfg, seed, variant_match):
        super().__init__(str(report))
        self.report, self.cfg, self.seed, self.variant_match = report, cfg, seed, variant_match


def _widen(inputs):
    """The oracle's inputs: float arrays widened exactly to float64, fresh Generators."""
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and is_float_dtype(v.dtype) else v)
            for k, v in fresh(inputs).items()}


def run_op(backend, op, *, kernel=None, dtype="float32", max_examples=DEFAULT_MAX_EXAMPLES, shrink=False,
           spec=None, examples=True):
    """Check `op` of `backend` (kernel variant `kernel`, default the backend's first) on drawn inputs.

    Returns an OpResult: "skip" with the backend's reason when it lacks the op (or the dtype),
    "fail" with the Report and the variant diagnosis of the first failing case, "error" when the
    backend raised something other than OpNotSupported.
    """
    t0 = time.perf_counter()
    kernel = kernel or (backend.kernel_names(op) or ["default"])[0]
    res = OpResult(op=op, kernel=kernel)
    reason = backend.unsupported_reason(op, dtype=DTYPES[dtype])
    if reason:
        res.status, res.reason = "skip", reason
        return res
    b = backend.with_kernel(op, kernel) if kernel != backend.kernel_name(op) else backend
    fn = getattr(b.as_ops(fallback=False), op)
    ref = getattr(reference_ops, op)
    name = spec or b.name
    skipped = []

    def check(cfg, seed, in_hypothesis):
        inputs = build_inputs(op, cfg, seed, dtype)
        try:
            expected = ref(**_widen(inputs))
        except ArgumentError:
            if in_hypothesis:
                reject()
            raise
        try:
            actual = fn(**fresh(inputs))
        except OpNotSupported as exc:
            skipped.append(exc.reason)
            return
        ctx = dict(backend=name, variant=kernel, dtype=dtype, seed=seed, strategy=repro_expression(op, cfg, dtype),
                   inline_limit=INLINE_LIMIT)
        rep = compare(expected, actual, op=op, inputs=inputs, context=ctx)
        res.cases += 1
        res.max_abs_err = max(res.max_abs_err, rep.max_abs_err)
        res.budget_used = max(res.budget_used, rep.budget_used)
        if not rep.ok:
            try:
                rep.variant_match = diagnose(op, fresh(inputs), actual)
            except Exception:  # a diagnosis never hides the failure itself
                rep.variant_match = []
            raise _CaseFailure(rep, cfg, seed, rep.variant_match)

    try:
        if examples:
            for cfg in _examples(op):
                check(cfg, 0, False)
        if max_examples > 0:
            phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

            @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None, phases=phases,
                      suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
            @given(cfg=op_configs(op), seed=st.integers(0, 2**32 - 1))
            def prop(cfg, seed):
                check(cfg, seed, True)

            prop()
    except _CaseFailure as f:
        res.status, res.report, res.cfg, res.seed, res.variant_match = "fail", f.report, f.cfg, f.seed, f.variant_match
        res.reason = f.report.message
    except BaseExceptionGroup as g:  # noqa: F821 - Python 3.11
        first = g.exceptions[0]
        if isinstance(first, _CaseFailure):
            res.status, res.report, res.cfg, res.seed = "fail", first.report, first.cfg, first.seed
            res.variant_match, res.reason = first.variant_match, first.report.message
        else:
            res.status, res.reason = "error", _exc_text(first)
    except HypothesisException as exc:
        res.status, res.reason = "error", f"hypothesis: {type(exc).__name__}: {exc}"
    except Exception as exc:
        inner = getattr(exc, "__cause__", None)
        if isinstance(inner, _CaseFailure):
            res.status, res.report, res.cfg, res.seed = "fail", inner.report, inner.cfg, inner.seed
            res.variant_match, res.reason = inner.variant_match, inner.report.message
        else:
            res.status, res.reason = "error", _exc_text(exc)
    if res.status == "pass" and res.cases == 0 and skipped:
        res.status, res.reason = "skip", f"{op}: {skipped[0]}"
    res.seconds = time.perf_counter() - t0
    return res


def _exc_text(exc):
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"raised {type(exc).__name__}: {exc}{where}"


def _examples(op):
    from .strategies import EXAMPLES

    return EXAMPLES.get(op, [])


# ----------------------------------------------------------------------------- whole models

MODEL_ARCHS = ("gpt2", "llama", "qwen3", "mistral", "mixtral", "gpt_oss", "gpt_oss_mxfp4")
MODEL_IDS = (3, 17, 42, 5, 88, 1, 64, 23, 9, 71, 30, 12)  # T = 12 > every tiny sliding window


def model_trace(arch, *, dtype="float64", ops=reference_ops, ids=MODEL_IDS, seed=0):
    """The trace of the tiny model `arch` (refimpl.conformance.tiny) run in precision mode `dtype`."""
    from ..model import forward, prepare_weights
    from .tiny import tiny_model

    cfg, w = tiny_model(arch, seed=seed)
    tr = {}
    forward(cfg, prepare_weights(cfg, w, dtype), np.asarray(ids), mode=dtype, trace=tr, ops=ops)
    return tr


def run_model(backend, arch, *, dtype="float32", spec=None):
    """The tiny model `arch` through backend.as_ops() in mode `dtype` vs the float64 reference, trace-diffed."""
    from .tracediff import diff_traces

    t0 = time.perf_counter()
    res = OpResult(op=f"model:{arch}", kernel="default")
    try:
        ops = backend.as_ops()
        ref = model_trace(arch, dtype="float64")
        other = model_trace(arch, dtype=dtype, ops=ops)
        rep = diff_traces(ref, other, dtype=dtype, backend=spec or backend.name)
    except RefimplError as exc:
        res.status, res.reason = "error", _exc_text(exc)
        res.seconds = time.perf_counter() - t0
        return res
    except Exception as exc:
        res.status, res.reason = "error", _exc_text(exc)
        res.seconds = time.perf_counter() - t0
        return res
    res.cases = len(rep.entries)
    res.max_abs_err = max((e.max_abs_err for e in rep.entries if np.isfinite(e.max_abs_err)), default=0.0)
    res.budget_used = max((e.ratio for e in rep.entries), default=0.0)
    res.report = rep
    if ops.fallbacks:
        rep.notes.append(f"ops run by the reference (backend lacks them): {', '.join(ops.fallbacks)}")
    if not rep.ok:
        res.status = "fail"
        res.reason = f"first divergence at {rep.first}"
        res.variant_match = _diagnose_model(arch, other, dtype)
    res.seconds = time.perf_counter() - t0
    return res


def _diagnose_model(arch, other, dtype):
    """Known-wrong variants whose whole-model trace matches `other` where the reference's does not."""
    from .tracediff import diff_traces
    from .variants import VARIANTS

    names = []
    for v in VARIANTS.values():
        try:
            tr = model_trace(arch, dtype="float64", ops=v.ops())
        except Exception:
            continue
        if diff_traces(tr, other, dtype=dtype).ok:
            names.append(v.name)
    return names


# ----------------------------------------------------------------------------- the suite


def suite_ops(backend=None, ops=None):
    """The op names the suite checks: every op of the budget table (or the given subset, validated)."""
    names = [op for op in OP_NAMES if op in BUDGETS]
    if ops is None:
        return names
    unknown = [o for o in ops if o not in names and not (o.startswith("model:") and o[6:] in MODEL_ARCHS)]
    if unknown:
        raise ArgumentError(f"ops: expected op names of the budget table or model:<arch> ({', '.join(MODEL_ARCHS)}), "
                            f"found {unknown}")
    return [o for o in ops if not o.startswith("model:")]


def run_suite(backend, *, ops=None, dtype="float32", max_examples=DEFAULT_MAX_EXAMPLES, models=None, shrink=False,
              spec=None, progress=None):
    """Run every op (each kernel variant) and, unless `ops` restricts them, every tiny model.

    backend: a Backend or a spec for get_backend. ops: op names and/or "model:<arch>" (default all).
    models: arch names to run (default: all when `ops` is None, else those named as model:<arch>).
    progress: optional callable(OpResult) called after each row.
    """
    if dtype not in DTYPES:
        raise ArgumentError(f"dtype: expected one of {sorted(DTYPES)}, found {dtype!r}")
    if backend is None or isinstance(backend, str):
        spec = spec or backend
        backend = get_backend(backend)
    names = suite_ops(backend, ops)
    if models is None:
        models = list(MODEL_ARCHS) if ops is None else [o[6:] for o in ops if o.startswith("model:")]
    rows = []
    for op in names:
        for kernel in backend.kernel_names(op) or ["default"]:
            r = run_op(backend, op, kernel=kernel, dtype=dtype, max_examples=max_examples, shrink=shrink, spec=spec)
            rows.append(r)
            if progress:
                progress(r)
    for arch in models:
        r = run_model(backend, arch, dtype=dtype, spec=spec)
        rows.append(r)
        if progress:
            progress(r)
    return SuiteResult(backend=spec or backend.name, version=str(getattr(backend, "version", "")), dtype=dtype,
                       max_examples=max_examples, rows=rows)


def format_row(r):
    op = r.op if r.kernel in ("default", None) else f"{r.op}[{r.kernel}]"
    return f"{op:<34} {r.cases:>5} {r.max_abs_err:>11.3g} {r.budget_used:>11.3g}  {r.status_text()}"


def format_table(result, *, details=True):
    """The per-op table (op, cases, max abs err, budget used, status), then each failure's report."""
    lines = [f"backend {result.backend} {result.version}, dtype {result.dtype}, max examples {result.max_examples}",
             f"{'op':<34} {'cases':>5} {'max abs err':>11} {'budget used':>11}  status", "-" * 81]
    lines += [format_row(r) for r in result.rows]
    bad = [r for r in result.rows if not r.ok]
    n = {s: sum(r.status == s for r in result.rows) for s in ("pass", "fail", "error", "skip")}
    lines.append("-" * 81)
    lines.append(f"{n['pass']} pass, {n['fail']} fail, {n['error']} error, {n['skip']} skip: {'OK' if result.ok else 'FAILED'}")
    if details:
        for r in bad:
            lines.append("")
            lines.append(f"=== {r.op} [{r.kernel}]: {r.status_text()}")
            if r.report is not None:
                lines.append(str(r.report))
            else:
                lines.append(r.reason)
            if r.cfg is not None:
                lines.append(f"  regression case: build_inputs({r.op!r}, {r.cfg!r}, {r.seed!r}, {result.dtype!r})")
    return "\n".join(lines)
