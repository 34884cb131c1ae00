"""`refimpl conform`: the property suite passes the reference, fails every misreading and
names it, skips what a backend lacks, tests every kernel; the strategies keep their rules."""

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.backends import Backend, NumpyBackend
from refimpl.cli import main
from refimpl.conformance import kit as S
from refimpl.conformance import ops as SO
from refimpl.conformance.suite import MODEL_ARCHS, run_op, run_suite, suite_ops
from refimpl.conformance.misreadings import MISREADINGS
from refimpl.conformance.ops import attention as A, moe as M
from refimpl.ops import OP_NAMES
from refimpl.ops import ops as ref_ops

RESULT_KEYS = {"schema_version", "backend", "backend_version", "spec", "dtype", "max_examples", "ok", "summary",
               "results"}
ROW_KEYS = {"op", "kernel", "dtype", "status", "cases", "failed_cases", "declined_cases", "failure", "max_abs_err", "budget_used",
            "reason", "misreadings", "conventions", "cfg", "seed", "seconds", "notes", "report", "text"}
STATUSES = ("pass", "fail", "convention", "skip", "error")


def _run(argv):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def _check_schema(d):
    assert set(d) == RESULT_KEYS
    assert d["schema_version"] == 2 and isinstance(d["ok"], bool)
    assert set(d["summary"]) == set(STATUSES)
    assert sum(d["summary"].values()) == len(d["results"])
    for r in d["results"]:
        assert set(r) == ROW_KEYS, r["op"]
        assert r["status"] in STATUSES
        assert isinstance(r["cases"], int) and isinstance(r["misreadings"], list)
        if r["status"] == "fail" and not r["op"].startswith("model:"):
            assert r["report"]["ok"] is False and "repro" in r["text"]


def test_conform_numpy_passes(tmp_path):
    path = tmp_path / "r.json"
    rc, out = _run(["conform", "--backend", "numpy", "--max-examples", "2", "--json", str(path)])
    assert rc == 0, out
    d = json.loads(path.read_text())
    _check_schema(d)
    assert d["ok"] and d["summary"]["fail"] == d["summary"]["error"] == 0
    ops = {r["op"] for r in d["results"]}
    assert set(suite_ops()) | {f"model:{a}" for a in MODEL_ARCHS} == ops
    kernels = {r["kernel"] for r in d["results"] if r["op"] == "attention"}
    assert kernels == {"dense", "online"}  # every kernel is a row of its own
    for line in ("attention[dense]", "attention[online]", "model:gpt_oss_mxfp4", "budget used", "pass"):
        assert line in out


def test_list_misreadings():
    rc, out = _run(["conform", "--list-misreadings"])
    assert rc == 0 and [line.split(":")[0] for line in out.splitlines()] == list(MISREADINGS)


def _variant_ops(name):
    return [op for op in MISREADINGS[name].overrides if op in suite_ops()]


@pytest.mark.parametrize("name", list(MISREADINGS))
def test_every_variant_fails_and_is_named(name, tmp_path):
    path = tmp_path / "r.json"
    ops = ",".join(_variant_ops(name))
    rc, out = _run(["conform", "--backend", f"misreading:{name}", "--ops", ops, "--max-examples", "3",
                    "--json", str(path)])
    assert rc == 1
    d = json.loads(path.read_text())
    _check_schema(d)
    if name == "mask_minus_1e10":  # the fully masked row: a named convention difference where it is the only one
        assert d["results"] and all(r["status"] in ("fail", "convention") for r in d["results"]), out[:2000]
        assert all(r["conventions"] == ["fully_masked_row"] for r in d["results"] if r["status"] == "convention")
        return
    assert d["results"] and all(r["status"] == "fail" for r in d["results"]), out[:2000]
    assert all(name in r["misreadings"] for r in d["results"]), [(r["op"], r["misreadings"]) for r in d["results"]]
    assert "(matches misreading" in out and name in out


def test_drawn_cases_alone_catch_a_variant():
    # the power does not rest on the explicit examples only: Hypothesis-drawn cases find it too
    r = run_op(MISREADINGS["window_off_by_one"].backend(), "visibility_mask", max_examples=30, with_examples=False)
    assert r.status == "fail" and "window_off_by_one" in r.misreadings and r.cfg["window"] is not None


class OnlyRmsNorm(Backend):
    """Implements one op, in float32, the way a third-party kernel would."""

    name = "only-rms"

    def capabilities(self):
        cap = super().capabilities()
        cap["dtypes"] = {"float32"}
        return cap

    def rms_norm(self, x, weight, *, eps=1e-5, cast_before_scale=False):
        x = np.asarray(x, dtype=np.float32)
        s = np.max(np.abs(x), axis=-1, keepdims=True)
        s = np.where(s > np.float32(2.0**60), s, np.float32(1))  # rows whose squares could overflow, scaled
        u = x / s
        with np.errstate(under="ignore"):
            inv = np.float32(1) / np.sqrt(np.mean(u * u, axis=-1, keepdims=True) + np.float32(eps) / (s * s))
        return u * inv * np.asarray(weight, dtype=np.float32)


def test_missing_ops_and_dtypes_skip_with_reason():
    res = run_suite(OnlyRmsNorm(), ops=["rms_norm", "layer_norm", "attention"], dtype="float32", max_examples=3)
    rows = {r.op: r for r in res.rows}
    assert rows["rms_norm"].status == "pass" and rows["rms_norm"].cases >= 3
    assert rows["layer_norm"].status == "skip" and "not implemented by backend 'only-rms'" in rows["layer_norm"].reason
    assert res.ok  # skips are not failures
    res = run_suite(OnlyRmsNorm(), ops=["rms_norm"], dtype="float64", max_examples=1)
    assert res.rows[0].status == "skip" and "dtype float64" in res.rows[0].reason


class TwoLinearKernels(NumpyBackend):
    """linear has a correct kernel and a tiled one that drops the last partial tile of 32 (a tiling-edge bug)."""

    name = "two-linear"

    def _tiled(x, weight, bias=None):
        k = np.shape(x)[-1]
        keep = max(32, k - k % 32)
        return ref_ops.linear(np.asarray(x)[..., :keep], np.asarray(weight)[:, :keep], bias)

    kernels = {"linear": {"plain": ref_ops.linear, "tiled": _tiled}}


def test_each_kernel_variant_is_tested_and_a_tiling_bug_is_caught():
    res = run_suite(TwoLinearKernels(), ops=["linear"], max_examples=20)
    rows = {r.kernel: r for r in res.rows}
    assert rows["plain"].status == "pass"
    bad = rows["tiled"]
    assert bad.status == "fail" and bad.misreadings == []  # wrong, but not a known misreading
    assert bad.cfg["k"] > 32 and bad.cfg["k"] % 32  # found at a tiling edge
    assert "regression case" not in str(bad.report) and "repro:" in str(bad.report)
    assert "with_kernel(backend, 'linear', 'tiled')" in str(bad.report)  # the repro runs the failing kernel
    assert bad.cases >= 20 and 1 <= bad.failed_cases < bad.cases  # every case ran; the failures are counted
    assert not res.ok


class Raises(NumpyBackend):
    name = "raises"

    def softmax(self, x, axis=-1):
        raise RuntimeError("kernel launch failed")


def test_backend_exception_is_an_error_row():
    r = run_op(Raises(), "softmax", max_examples=2)
    assert r.status == "error" and "RuntimeError: kernel launch failed" in r.reason and not r.ok


def test_bfloat16_inputs_pass_on_reference():
    res = run_suite(NumpyBackend(), ops=["linear", "attention", "swiglu_oss", "router_topk_softmax"], dtype="bfloat16",
                    max_examples=5)
    assert res.ok, [(r.op, r.reason) for r in res.rows]


def test_bad_arguments():
    rc = main(["conform", "--backend", "numpy", "--ops", "no_such_op"])
    assert rc == 2
    rc = main(["conform", "--backend", "no-such-backend"])
    assert rc == 2


# ----------------------------------------------------------------------------- strategies


def test_every_op_has_a_strategy_and_its_examples_build():
    assert set(OP_NAMES) <= set(SO.supported_ops())
    for op in OP_NAMES:
        assert S.EXAMPLES[op], op
        for cfg in S.EXAMPLES[op]:
            a = SO.build_inputs(op, cfg, 0, "float32")
            b = SO.build_inputs(op, cfg, 0, "float32")  # deterministic: the repro rebuilds the same case
            for k in a:
                if isinstance(a[k], np.ndarray):
                    np.testing.assert_array_equal(a[k], b[k])


@settings(max_examples=40)
@given(A.attention_configs())
def test_attention_configs_keep_their_rules(c):
    assert c["hq"] % c["hkv"] == 0 and c["d"] % 2 == 0
    assert c["tk"] == c["tq"] + c["cache"]
    assert c["window"] is None or c["window"] >= 1
    x = SO.build_inputs("attention", c, 1, "float32")
    q = x["q"]
    assert q.shape == (c["tq"], c["hq"], c["d"]) and x["k"].shape == (c["tk"], c["hkv"], c["d"])
    nz = np.abs(q[q != 0])
    assert np.all(np.isfinite(q)) and np.all(nz >= np.finfo(np.float32).tiny)  # no subnormals


def test_windows_reach_below_at_and_above():
    seen = set()

    @settings(max_examples=60, derandomize=True, database=None)
    @given(st.data())
    def draw(data):
        tk = data.draw(st.sampled_from((1, 8, 33)))
        w = data.draw(A.windows(tk))
        seen.add("none" if w is None else "below" if w < tk else "at" if w == tk else "above")

    draw()
    assert seen == {"none", "below", "at", "above"}


@settings(max_examples=40)
@given(M.moe_configs(), st.integers(0, 2**32 - 1))
def test_routing_inputs_have_a_margin(c, seed):
    assert 1 <= c["k"] <= c["e"]
    x = SO.build_inputs("router_topk_softmax", c, seed, "bfloat16")["logits"].astype(np.float64)
    s = -np.sort(-x, axis=-1)
    if s.shape[-1] > 1:
        assert np.min(s[:, :-1] - s[:, 1:]) >= 0.5 / 2 - 0.07  # grid 0.5, jitter < 1/8, bf16 rounding < 0.07


def test_sizes_cross_tiling_edges():
    values = set(S.sizes().wrapped_strategy.elements) if hasattr(S.sizes(), "wrapped_strategy") else None
    values = values or set(S.sizes().elements)
    assert {1, 31, 32, 33, 127, 128, 129} <= values


@settings(max_examples=30)
@given(A.attention_configs(), st.integers(0, 2**32 - 1))
def test_bfloat16_piece_inputs_follow_the_configuration(c, seed):
    """softmax_with_sinks scores are -inf exactly where the configuration hides a key (loops over the
    rule: causal j <= p, window p - W < j, mask), sinks drawn as the config says; attention_values
    gets probabilities (rows sum to <= 1) and v of Hkv heads."""
    x = SO.build_inputs("softmax_with_sinks", c, seed, "float32")
    s = x["scores"]
    assert s.shape == (c["hq"], c["tq"], c["tk"])
    mask = SO.build_inputs("attention_scores", {**c, "score_scale": "one"}, seed, "float32")["mask"]  # same draws
    for i in range(c["tq"]):
        p = c["cache"] + i
        for j in range(c["tk"]):
            vis = (not c["causal"] or j <= p) and (c["window"] is None or j > p - c["window"])
            vis = vis and (mask is None or bool(mask[i, j]))
            assert bool(np.isneginf(s[:, i, j]).all()) == (not vis) and bool(np.isfinite(s[:, i, j]).all()) == vis
    assert (x["sinks"] is None) == (c["sinks"] == "none")
    if c["sinks"] == "extreme":
        assert set(np.abs(x["sinks"]).tolist()) <= {30.0}
    y = SO.build_inputs("attention_values", {**c, "with_visible": True}, seed, "float64")
    assert y["v"].shape == (c["tk"], c["hkv"], c["d"]) and y["visible"].shape == (c["tq"], c["tk"])
    assert np.all(y["probs"] >= 0) and np.all(y["probs"].sum(axis=-1) <= 1 + 1e-12)  # float64 sums of <= Tk terms
    assert np.all(y["probs"][:, ~y["visible"]] == 0)


def test_attention_scores_draws_every_scale():
    seen = set()

    @settings(max_examples=40, derandomize=True, database=None)
    @given(SO.op_configs("attention_scores"))
    def draw(c):
        seen.add(SO.build_inputs("attention_scores", c, 0, "float32")["scale"] is None and "default"
                 or c["score_scale"])

    draw()
    assert seen == {"default", "custom", "one"}


def _declining_rms_norm(x, weight, *, eps=1e-5, cast_before_scale=False):
    """rms_norm that declines rows wider than 8 (a kernel with a size limit)."""
    from refimpl.backends import OpNotSupported

    if np.shape(x)[-1] > 8:
        raise OpNotSupported("rms_norm", "declining", "rows wider than 8")
    return ref_ops.rms_norm(x, weight, eps=eps, cast_before_scale=cast_before_scale)


def DecliningRmsNorm():
    return NumpyBackend({"rms_norm": _declining_rms_norm}, name="declining")


def test_model_rows_decode_with_a_cache_and_fall_back_on_declined_cases():
    from refimpl.conformance.suite import run_model

    r = run_model(DecliningRmsNorm(), "llama", dtype="float32")
    assert r.status == "pass", r.reason
    names = [e.name for e in r.report.entries]
    assert "decode.logits" in names  # prefill + token-by-token decode with a KV cache, compared too
    assert any("rms_norm" in n for n in r.notes)  # the declined op ran the reference, and says so
    row = run_op(DecliningRmsNorm(), "rms_norm", dtype="float32", max_examples=5)
    assert row.status == "pass" and row.declined_cases > 0  # declined cases are counted, not errors


class _OneCallLayers(NumpyBackend):
    """A backend whose decode_layer runs each layer in one call: `skip_mlp` leaves out the MLP's
    residual branch in one layer (a fused kernel that forgot a term), else the reference's own ops."""

    def __init__(self, skip_mlp):
        super().__init__(name="one-call-layers")
        self.skip_mlp = skip_mlp

    def decode_layer(self, config, weights, precision, x, cache):
        from refimpl.model.forward import Forward, _attention_block, _mlp_block

        def step(L, h, cache, cos, sin):
            f = Forward(config, weights, self.ops(), precision, cache, None, cache.length(L))
            p = f"layers.{L}"
            h = f.ops.pre_norm_residual(h, lambda t: f.norm(t, p + ".attn_norm"),
                                        lambda t: _attention_block(f, t, L, cos, sin))
            if self.skip_mlp and L == config.num_layers - 1:
                return h
            return f.ops.pre_norm_residual(h, lambda t: f.norm(t, p + ".mlp_norm"), lambda t: _mlp_block(f, t, L))

        return step


@pytest.mark.parametrize("skip_mlp", [False, True])
def test_model_rows_judge_a_backends_one_call_decode_layers(skip_mlp):
    from refimpl.conformance.suite import run_model

    r = run_model(_OneCallLayers(skip_mlp), "llama", dtype="float32")
    names = [e.name for e in r.report.entries]
    assert "decode_layer.logits" in names  # the device-resident decode, where decode_layer runs
    if skip_mlp:
        assert r.status == "fail" and "decode_layer.logits" in r.reason, r.reason
    else:
        assert r.status == "pass", r.reason
