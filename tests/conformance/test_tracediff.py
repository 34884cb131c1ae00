"""Trace diff: the first divergent tensor for known-wrong variants on tiny models, downstream marking,
the tolerance rule, expert sets, end-to-end logit figures, trace files and `refimpl diff`."""

import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.conformance.suite import model_trace
from refimpl.conformance.tracediff import TRACE_C, canonical_key, diff_traces, load_trace, logit_metrics, save_trace
from refimpl.conformance.misreadings import MISREADINGS
from refimpl.errors import ArgumentError

U32 = 2.0**-24


@pytest.mark.parametrize("variant, arch, first", [
    ("window_off_by_one", "gpt_oss", "layers.0.attn.probs"),  # layer 0 slides (window 4), T = 12 > 4
    ("full_causal_on_sliding", "mistral", "layers.0.attn.probs"),
    ("gqa_tiled_heads", "llama", "layers.0.attn.probs"),
    ("rope_interleaved", "qwen3", "layers.0.attn.q"),
    ("yarn_no_concentration", "gpt_oss", "layers.0.attn.q"),
    ("sinks_ignored", "gpt_oss", "layers.0.attn.probs"),
    ("mxfp4_scale_bias_128", "gpt_oss_mxfp4", "layers.0.mlp.out"),  # routing is upstream of the experts
    ("mxfp4_nibbles_swapped", "gpt_oss_mxfp4", "layers.0.mlp.out"),
    ("softmax_all_experts", "gpt_oss", "layers.0.moe.expert_weights"),
    ("gelu_erf_for_tanh", "gpt2", "layers.0.mlp.out"),
    ("layernorm_unbiased_variance", "gpt2", "layers.0.attn_norm"),
])
def test_first_divergence_names_the_tensor(variant, arch, first):
    ref = model_trace(arch, dtype="float64")
    other = model_trace(arch, dtype="float32", ops=MISREADINGS[variant].ops())
    rep = diff_traces(ref, other, dtype="float32")
    assert rep.first == first, str(rep)
    names = [e.name for e in rep.entries]
    i = names.index(first)
    assert all(e.status == "ok" and not e.downstream for e in rep.entries[:i])
    assert rep.entries[i].status == "FIRST" and rep.entries[i].ratio > 1
    assert all(e.downstream for e in rep.entries[i + 1:])
    assert f"first divergence: {first}" in str(rep)


@pytest.mark.parametrize("arch", ["gpt2", "mixtral", "gpt_oss_mxfp4"])
@pytest.mark.parametrize("mode", ["float32", "bfloat16"])
def test_correct_runs_agree(arch, mode):
    ref = model_trace(arch, dtype="float64")
    rep = diff_traces(ref, model_trace(arch, dtype=mode), dtype=mode)
    assert rep.ok, str(rep)
    # headroom, measured (this machine, NumPy 2.x): dense models <= 0.26 of the tolerance; MoE models
    # up to 0.55 (mixtral float32, layers.1.mlp.out). The rule's constant C is calibrated, not derived
    # (tracediff docstring, spec/conformance.md); its scale max|ref| does not see the size of the expert
    # outputs whose weighted sum mlp.out is, which is where MoE runs come closest. The expert weights
    # carry the router logits' tolerance through the softmax (derived), which took them from 0.557 to
    # below 0.5. Asserted: a factor 1.5 below the tolerance for MoE tensors, 3 for dense ones.
    worst = max(rep.entries, key=lambda e: e.ratio)
    assert worst.ratio < (0.67 if arch in ("mixtral", "gpt_oss", "gpt_oss_mxfp4") else 0.33), (worst.name, worst.ratio)


def test_tolerance_rule_hand_case():
    ref = {"embed": np.array([[1.0, -4.0]]), "layers.0.out": np.array([[2.0, 0.5]]),
           "layers.1.out": np.array([[0.0, 8.0]]), "logits": np.array([[1.0, 2.0, 3.0]])}
    rep = diff_traces(ref, ref, dtype="float32")
    tol = {e.name: e.tol for e in rep.entries}
    assert tol["embed"] == TRACE_C * U32 * 1 * 4.0
    assert tol["layers.0.out"] == TRACE_C * U32 * 1 * 2.0
    assert tol["layers.1.out"] == TRACE_C * U32 * 2 * 8.0
    assert tol["logits"] == TRACE_C * U32 * 3 * 3.0  # final tensors count as layer num_layers = 2
    other = dict(ref)
    other["layers.0.out"] = ref["layers.0.out"] + np.array([[0.0, 0.9 * tol["layers.0.out"]]])
    assert diff_traces(ref, other, dtype="float32").ok
    other["layers.0.out"] = ref["layers.0.out"] + np.array([[0.0, 1.1 * tol["layers.0.out"]]])
    rep = diff_traces(ref, other, dtype="float32")
    assert rep.first == "layers.0.out" and [e.downstream for e in rep.entries] == [False, False, True, True]
    # u inferred from stored dtypes: a bfloat16 side makes the rule bfloat16's
    import ml_dtypes

    rep = diff_traces(ref, {k: v.astype(ml_dtypes.bfloat16) for k, v in ref.items()})
    assert rep.u == 2.0**-8 and rep.ok


def test_nan_pattern_and_shape_are_divergences():
    ref = {"embed": np.ones((2, 3)), "final_norm": np.ones((2, 3))}
    rep = diff_traces(ref, {"embed": np.array([[1, 1, np.nan], [1, 1, 1.0]]), "final_norm": np.ones((2, 3))})
    assert rep.first == "embed" and "NaN/Inf" in rep.entries[0].message
    rep = diff_traces(ref, {"embed": np.ones((2, 3)), "final_norm": np.ones((3, 2))})
    assert rep.first == "final_norm" and rep.entries[1].status == "shape"
    # a leading batch of 1 (an engine's [1, T, d] dump) compares with [T, d]
    assert diff_traces(ref, {k: v[None] for k, v in ref.items()}).ok
    # a tensor missing from the other side is listed, not a failure
    rep = diff_traces(ref, {"embed": np.ones((2, 3))})
    assert rep.ok and rep.entries[1].status == "only_ref"
    with pytest.raises(ArgumentError, match="dtype"):
        diff_traces(ref, ref, dtype="int8")


def test_experts_compare_as_sets_per_token():
    logits = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 5.0, 4.0]])
    idx = np.array([[0, 1], [2, 3]])
    w = np.array([[0.7, 0.3], [0.6, 0.4]])
    ref = {"layers.0.moe.router_logits": logits, "layers.0.moe.experts": idx, "layers.0.moe.expert_weights": w}
    swapped = {**ref, "layers.0.moe.experts": idx[:, ::-1], "layers.0.moe.expert_weights": w[:, ::-1]}
    assert diff_traces(ref, swapped, dtype="float32").ok  # another slot order, same routing
    wrong = {**ref, "layers.0.moe.experts": np.array([[0, 2], [2, 3]])}
    rep = diff_traces(ref, wrong, dtype="float32")
    assert rep.first == "layers.0.moe.experts" and "token [0]" in rep.entries[1].message
    tie = {**ref, "layers.0.moe.router_logits": np.array([[3.0, 2.0, 2.0, 0.0], [0.0, 1.0, 5.0, 4.0]])}
    rep = diff_traces(tie, {**tie, "layers.0.moe.experts": np.array([[0, 2], [2, 3]])}, dtype="float32")
    assert rep.entries[1].status == "ok" and "tie" in rep.entries[1].message


def test_logit_metrics_hand_worked():
    r = np.array([[0.0, math.log(3.0)], [2.0, 0.0]])  # p = (1/4, 3/4), argmax 1; argmax 0
    o = np.array([[math.log(3.0), 0.0], [2.0, 0.0]])  # q = (3/4, 1/4), argmax 0; same as ref
    m = logit_metrics(r, o, topk=1)
    assert m["greedy_agreement"] == 0.5 and m["greedy_first_diff"] == 0
    assert m["topk_overlap"] == 0.5 and m["topk"] == 1
    kl0 = 0.25 * math.log((1 / 4) / (3 / 4)) + 0.75 * math.log((3 / 4) / (1 / 4))  # = 0.5 ln 3
    assert m["kl_mean"] == pytest.approx(kl0 / 2, rel=1e-12) and m["kl_next"] == pytest.approx(0.0, abs=1e-15)
    assert m["cosine_next"] == pytest.approx(1.0, rel=1e-15) and m["cosine_mean"] == pytest.approx(0.5, rel=1e-12)
    g = np.random.default_rng(0).standard_normal((4, 50))
    m = logit_metrics(g, g)
    assert m["greedy_agreement"] == 1 and m["topk_overlap"] == 1 and m["kl_next"] == 0 and m["topk"] == 10


def test_trace_files_round_trip(tmp_path):
    tr = model_trace("mixtral", dtype="float32")
    p = tmp_path / "t.safetensors"
    save_trace(p, tr, ids=[1, 2, 3], metadata={"producer": "test"})
    back, meta = load_trace(p)
    assert list(back) == list(tr) and json.loads(meta["ids"]) == [1, 2, 3] and meta["producer"] == "test"
    for k in tr:
        np.testing.assert_array_equal(back[k], tr[k])
    # a dump from another engine, without the order entry: names are put in forward order
    from refimpl.checkpoints.safetensors_io import save_safetensors

    save_safetensors(tmp_path / "u.safetensors", tr)
    back, _ = load_trace(tmp_path / "u.safetensors")
    assert list(back) == list(tr) == sorted(tr, key=canonical_key)


def _run(argv):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def test_cli_diff_two_files(tmp_path):
    ref = model_trace("gpt_oss", dtype="float64")
    save_trace(tmp_path / "ref.safetensors", ref)
    save_trace(tmp_path / "ok.safetensors", model_trace("gpt_oss", dtype="float32"))
    save_trace(tmp_path / "bad.safetensors", model_trace("gpt_oss", dtype="float32", ops=MISREADINGS["window_off_by_one"].ops()))
    rc, out = _run(["diff", str(tmp_path / "ref.safetensors"), str(tmp_path / "ok.safetensors")])
    assert rc == 0 and "traces agree" in out and "greedy_agreement 1" in out
    rc, out = _run(["diff", str(tmp_path / "ref.safetensors"), str(tmp_path / "bad.safetensors"),
                    "--json", str(tmp_path / "d.json")])
    assert rc == 1 and "first divergence: layers.0.attn.probs" in out
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["first"] == "layers.0.attn.probs" and d["ok"] is False
    assert set(d["metrics"]) == {"greedy_agreement", "greedy_first_diff", "topk", "topk_overlap", "kl_next",
                                 "kl_mean", "cosine_next", "cosine_mean"}
    assert main(["diff", str(tmp_path / "ref.safetensors")]) == 2  # one file is a usage error


def test_cli_diff_against_model(tmp_path):
    from helpers_tiny import make_checkpoint

    from refimpl.api import load

    ckpt, _, _ = make_checkpoint(tmp_path, "llama")
    ids = [1, 5, 7, 2, 9, 11]
    m32 = load(str(ckpt), dtype="float32")
    save_trace(tmp_path / "engine.safetensors", m32.trace(ids), ids=ids)
    rc, out = _run(["diff", "--model", str(ckpt), "--against", str(tmp_path / "engine.safetensors"),
                    "--save-ref", str(tmp_path / "ref.safetensors")])
    assert rc == 0, out
    assert load_trace(tmp_path / "ref.safetensors")[0]["logits"].dtype == np.float64
    bad = load(str(ckpt), dtype="float32", backend=MISREADINGS["rope_interleaved"].backend())
    save_trace(tmp_path / "bad.safetensors", bad.trace(ids))
    rc, out = _run(["diff", "--model", str(ckpt), "--against", str(tmp_path / "bad.safetensors"), "--ids", "1,5,7,2,9,11"])
    assert rc == 1 and "first divergence: layers.0.attn.q" in out


def test_diff_refuses_disjoint_and_empty_and_reads_npz(tmp_path):
    ref = {"embed": np.ones((2, 3)), "logits": np.ones((2, 4))}
    save_trace(tmp_path / "ref.safetensors", ref)
    save_trace(tmp_path / "disjoint.safetensors", {"hidden.0": np.ones((2, 3))})
    rc, out = _run(["diff", str(tmp_path / "ref.safetensors"), str(tmp_path / "disjoint.safetensors")])
    assert rc == 2  # refused, not "traces agree"
    np.savez(tmp_path / "t.npz", **ref)
    rc, out = _run(["diff", str(tmp_path / "ref.safetensors"), str(tmp_path / "t.npz")])
    assert rc == 0 and "traces agree" in out
    (tmp_path / "junk.bin").write_bytes(b"\xff" * 64)
    with pytest.raises(Exception, match="not a safetensors file"):
        load_trace(tmp_path / "junk.bin")
    np.savez(tmp_path / "empty.npz")
    rc, _ = _run(["diff", str(tmp_path / "ref.safetensors"), str(tmp_path / "empty.npz")])
    assert rc == 2


def test_diff_honours_the_stored_dtype(tmp_path):
    ref = model_trace("llama", dtype="float64")
    bf = {k: np.asarray(v, dtype=np.float32) for k, v in model_trace("llama", dtype="bfloat16").items()}
    save_trace(tmp_path / "ref.safetensors", ref)
    save_trace(tmp_path / "bf.safetensors", bf, metadata={"dtype": "bfloat16"})  # stored as float32, as HF dumps are
    rc, out = _run(["diff", str(tmp_path / "ref.safetensors"), str(tmp_path / "bf.safetensors")])
    assert rc == 0 and "stored dtype bfloat16" in out, out


def test_diff_with_model_names_the_misreading(tmp_path):
    from helpers_tiny import make_checkpoint

    from refimpl.api import load

    ckpt, _, _ = make_checkpoint(tmp_path, "llama")
    ids = [1, 5, 7, 2, 9, 11]
    bad = load(str(ckpt), dtype="float32", backend=MISREADINGS["rope_interleaved"].backend())
    save_trace(tmp_path / "bad.safetensors", bad.trace(ids), ids=ids)
    rc, out = _run(["diff", "--model", str(ckpt), "--against", str(tmp_path / "bad.safetensors")])
    assert rc == 1 and "reproduced by: rope_interleaved" in out, out
