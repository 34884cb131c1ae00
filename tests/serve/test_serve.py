"""`refimpl serve` driven by the real `openai` client and httpx, on 127.0.0.1.

Expected answers come from the model itself through its public API (Model.generate, Model.logits)
with ids and texts built here from bytes, never from the server's own code: the server must answer
exactly what the reference computes. Log-probabilities are checked against a log-sum-exp written
in this file over the full-prefix logits (the server takes them from the cached decode).
"""

import tiny_serving

tiny_serving.require()

import copy
import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from refimpl.text.chat import render_chatml
from tiny_serving import IM_END, IM_START, MODEL_ID, chatml_model

SPECIAL = {IM_START: "<|im_start|>", IM_END: "<|im_end|>"}
HTTP = httpx.Client(trust_env=False, timeout=60)  # straight to 127.0.0.1, never through a proxy


def text_of(ids, skip_special=False):
    """What a byte-vocabulary answer says: the bytes joined, read as UTF-8 (bad bytes -> U+FFFD)."""
    out = b"".join(bytes([t]) if t < 256 else (b"" if skip_special else SPECIAL[t].encode()) for t in ids)
    return out.decode("utf-8", errors="replace")


def chat_ids(text):
    """Ids of a ChatML text over the byte vocabulary, written out here (not the tokenizer's code)."""
    ids, i = [], 0
    while i < len(text):
        for t, s in SPECIAL.items():
            if text.startswith(s, i):
                ids.append(t)
                i += len(s)
                break
        else:
            ids += list(text[i].encode())
            i += 1
    return ids


def ref_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.sum(np.exp(x - m)))


def sse_lines(server, path, body):
    """The raw data: lines of a streamed answer."""
    with HTTP.stream("POST", server.url + path, json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]


# ------------------------------------------------------------------------------------- endpoints

def test_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    assert client.models.retrieve(MODEL_ID).owned_by == "refimpl"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=0.8, top_p=0.9, seed=7),
                                      dict(temperature=1.3, seed=123, extra_body={"top_k": 20})])
def test_completion_is_the_reference_generate(client, tiny, sampling):
    """Greedy and seeded sampling: the server's text and usage are Model.generate's, and repeat exactly."""
    prompt = "The quick brown fox"
    r = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=12, **sampling)
    kw = {k: v for k, v in sampling.items() if k != "extra_body"} | sampling.get("extra_body", {})
    ids = list(prompt.encode())
    want = tiny.generate(ids, max_new_tokens=12, **kw)
    c = r.choices[0]
    assert c.text == text_of([t for t in want if t != IM_END])
    assert c.finish_reason == ("stop" if want[-1] == IM_END else "length")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        len(ids), len(want), len(ids) + len(want))
    again = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=12, **sampling)
    assert again.choices[0].text == c.text


def test_completion_stream_equals_plain_and_ends_with_done(client, server):
    body = dict(model=MODEL_ID, prompt="Once upon", max_tokens=10, temperature=0.7, seed=5)
    plain = client.completions.create(**body)
    parts = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **body))
    assert "".join(p.choices[0].text for p in parts if p.choices) == plain.choices[0].text
    assert [p.choices[0].finish_reason for p in parts if p.choices][-1] == plain.choices[0].finish_reason
    assert parts[-1].usage.completion_tokens == plain.usage.completion_tokens
    raw = sse_lines(server, "/completions", {**body, "stream": True})
    assert raw[-1] == "[DONE]" and all(json.loads(x)["object"] == "text_completion" for x in raw[:-1])


def test_chat_plain_and_streamed_are_the_reference(client, tiny):
    messages = [{"role": "user", "content": "Say something."}]
    r = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=15, temperature=0.9, seed=11)
    ids = chat_ids(render_chatml(messages))
    want = tiny.generate(ids, max_new_tokens=15, temperature=0.9, seed=11, stop_ids=[IM_END])
    m = r.choices[0].message
    assert m.role == "assistant" and m.content == text_of([t for t in want if t != IM_END], skip_special=True)
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == len(want)
    parts = list(client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=15, temperature=0.9,
                                                seed=11, stream=True))
    assert parts[0].choices[0].delta.role == "assistant"
    assert "".join(p.choices[0].delta.content or "" for p in parts) == m.content
    assert parts[-1].choices[0].finish_reason == r.choices[0].finish_reason


def test_chat_top5_logprobs_are_the_log_softmax_of_the_prefix(client, tiny):
    """Each drawn token's log-probability and the top 5 equal log-softmax (float64) of
    Model.logits(prompt + answer so far)[-1], computed here from the full prefix."""
    messages = [{"role": "system", "content": "Be short."}, {"role": "user", "content": "Hi"}]
    r = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=6, temperature=1.0, seed=3,
                                       logprobs=True, top_logprobs=5)
    ids = chat_ids(render_chatml(messages))
    entries = r.choices[0].logprobs.content
    drawn = []
    for e in entries:
        tid = e.bytes[0] if len(e.bytes) == 1 else {v: k for k, v in SPECIAL.items()}[e.token]
        lp = ref_log_softmax(tiny.logits(np.array(ids + drawn))[-1])
        assert abs(e.logprob - lp[tid]) < 1e-9
        order = sorted(range(lp.size), key=lambda i: (-lp[i], i))[:5]
        assert [t.logprob for t in e.top_logprobs] == pytest.approx([lp[i] for i in order], abs=1e-9)
        assert [t.bytes for t in e.top_logprobs] == [list(text_of([i]).encode()) if i >= 256 else [i]
                                                      for i in order]
        drawn.append(tid)
    want = tiny.generate(ids, max_new_tokens=6, temperature=1.0, seed=3, stop_ids=[IM_END])
    assert drawn == [t for t in want if t != IM_END]


def test_completion_logprobs_and_echo(client, tiny):
    prompt = "abc"
    r = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=3, temperature=0, logprobs=5, echo=True)
    c = r.choices[0]
    lp = c.logprobs
    ids = list(prompt.encode())
    gen = tiny.generate(ids, max_new_tokens=3)
    seq = ids + gen
    assert c.text == prompt + text_of(gen)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None and lp.tokens[:3] == ["a", "b", "c"]
    full = tiny.logits(np.array(seq[:-1]))
    for k in range(1, len(seq)):
        want = ref_log_softmax(full[k - 1])
        assert abs(lp.token_logprobs[k] - want[seq[k]]) < 1e-9
        assert sorted(lp.top_logprobs[k].values(), reverse=True) == pytest.approx(np.sort(want)[::-1][:5], abs=1e-9)
    assert lp.text_offset[:4] == [0, 1, 2, 3]


def test_stop_strings_cut_the_text(client, tiny, server):
    """The answer ends before the first stop string (which is not sent), plain and streamed alike."""
    ids = list(b"Stop here")
    for seed in range(10):  # a seeded answer with a character we can use as a stop string past its start
        text = text_of([t for t in tiny.generate(ids, max_new_tokens=20, temperature=1.0, seed=seed) if t != IM_END])
        stops = [ch for ch in text[3:] if ch != "\ufffd" and text.find(ch) >= 2]
        if stops:
            break
    stop = stops[0]
    want = text[:text.find(stop)]
    body = dict(model=MODEL_ID, prompt="Stop here", max_tokens=20, temperature=1.0, seed=seed)
    r = client.completions.create(stop=[stop, "\x00\x01"], **body)
    assert r.choices[0].text == want and r.choices[0].finish_reason == "stop"
    raw = sse_lines(server, "/completions", dict(body, stop=stop, stream=True))
    assert "".join(json.loads(x)["choices"][0]["text"] for x in raw[:-1]) == want


def test_eight_parallel_clients_get_their_own_answers(server, tiny):
    """8 clients at once (half streamed): every answer is the one Model.generate gives for its seed."""
    def ask(i):
        c = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
        body = dict(model=MODEL_ID, prompt=f"Client {i}:", max_tokens=8, temperature=1.0, seed=100 + i)
        if i % 2:
            return "".join(p.choices[0].text for p in c.completions.create(stream=True, **body))
        return c.completions.create(**body).choices[0].text

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(8)))
    for i, text in enumerate(got):
        want = tiny.generate(list(f"Client {i}:".encode()), max_new_tokens=8, temperature=1.0, seed=100 + i)
        assert text == text_of([t for t in want if t != IM_END]), i


# ------------------------------------------------------------------------------------------ errors

def _assert_error(r, status, param=None, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code


def test_each_error_is_openai_json_and_the_server_keeps_serving(server, client):
    url = server.url
    httpx = HTTP
    good = {"model": MODEL_ID, "prompt": "ok", "max_tokens": 2, "temperature": 0}
    cases = [
        (httpx.post(url + "/completions", content=b"{not json"), 400, None, "invalid_json"),
        (httpx.post(url + "/completions", content=b"[1, 2]"), 400, None, "invalid_json"),
        (httpx.post(url + "/completions", content=b'{"model": "%s", "prompt": "x", "temperature": NaN}'
                    % MODEL_ID.encode()), 400, None, "invalid_json"),
        (httpx.post(url + "/completions", json={"model": MODEL_ID}), 400, "prompt", "missing_required_parameter"),
        (httpx.post(url + "/chat/completions", json={"model": MODEL_ID}), 400, "messages", None),
        (httpx.post(url + "/completions", json={**good, "temperature": 5}), 400, "temperature", "invalid_value"),
        (httpx.post(url + "/completions", json={**good, "max_tokens": -1}), 400, "max_tokens", None),
        (httpx.post(url + "/completions", json={**good, "max_tokens": 10_000}), 400, "max_tokens",
         "context_length_exceeded"),
        (httpx.post(url + "/completions", json={**good, "prompt": [300]}), 400, "prompt", None),
        (httpx.post(url + "/completions", json={**good, "n": 2}), 400, "n", None),
        (httpx.post(url + "/completions", json={**good, "frobnicate": 1}), 400, "frobnicate", None),
        (httpx.post(url + "/chat/completions", json={"model": MODEL_ID, "messages": [{"role": "robot", "content": "x"}]}),
         400, "messages[0].role", None),
        (httpx.post(url + "/chat/completions", json={"model": MODEL_ID, "messages": [{"role": "user", "content": "x"}],
                                                     "top_logprobs": 3}), 400, "top_logprobs", None),
        (httpx.post(url + "/completions", json={**good, "model": "gpt-4"}), 404, "model", "model_not_found"),
        (httpx.post(url + "/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}),
         404, "model", "model_not_found"),
        (httpx.post(url + "/completions", json={**good, "prompt": "x" * 70_000}), 413, None, "request_too_large"),
        (httpx.post(url + "/completions", content=(b"x" * 8192 for _ in range(10))), 413, None, "request_too_large"),
        (httpx.get(url + "/nowhere"), 404, None, "not_found"),
        (httpx.get(url + "/completions"), 405, None, "method_not_allowed"),
    ]
    for r, status, param, code in cases:
        _assert_error(r, status, param, code)
        assert httpx.post(url + "/completions", json=good).status_code == 200
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "x"}], temperature=-1)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")


# ----------------------------------------------------------------------------- queue and slots

class SlowModel:
    """The tiny model behind the public API, 5 ms per drawn token (a stand-in for a large model),
    with no end-of-sequence token: an answer runs to max_tokens unless cancelled."""

    def __init__(self, model):
        self._m = model
        self.config = dataclasses.replace(model.config, eos_token_ids=())
        self.tokenizer = copy.copy(model.tokenizer)
        self.tokenizer.eos_ids = ()
        self.dtype = model.dtype

    def logits(self, ids):
        return self._m.logits(ids)

    def generate(self, ids, on_token=None, **kw):
        def slow(t):
            time.sleep(0.005)
            if on_token is not None:
                on_token(t)

        return self._m.generate(ids, on_token=slow, **kw)


def test_client_leaving_mid_stream_frees_the_slot():
    from refimpl.serve import ServerThread

    model = SlowModel(chatml_model(dtype="float32", max_position_embeddings=2048))
    with ServerThread(model, model_id="slow") as s:
        engine = s.service.engine
        body = {"model": "slow", "prompt": "long", "max_tokens": 2000, "temperature": 1.0, "seed": 1, "stream": True}
        with HTTP.stream("POST", s.url + "/completions", json=body) as r:
            lines = r.iter_lines()
            seen = [next(lines) for _ in range(3)]
        assert any(x.startswith("data: ") for x in seen)
        # A client that gives up on a non-streamed answer frees its slot too.
        with pytest.raises(httpx.ReadTimeout):
            HTTP.post(s.url + "/completions", json={**body, "stream": False}, timeout=0.5)
        r = HTTP.post(s.url + "/completions", json={"model": "slow", "prompt": "next", "max_tokens": 3,
                                                     "temperature": 0})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
        # had they not been cancelled, both would have run to 2000 tokens ("length")
        outcomes = [o for _, o, _ in engine.finished]
        assert outcomes[:2] == ["cancelled", "cancelled"] and outcomes[2] == "length"
        assert all(n < 2000 for _, _, n in list(engine.finished)[:2])


def test_service_needs_a_tokenizer(tiny):
    from refimpl import RefimplError
    from refimpl.serve import create_app

    no_tokenizer = type("NoTokenizer", (), {"tokenizer": None, "config": tiny.config, "dtype": "float64"})()
    with pytest.raises(RefimplError, match="tokenizer"):
        create_app(no_tokenizer, model_id="x")


def test_default_bind_is_localhost(server):
    assert server.host == "127.0.0.1"
    from refimpl.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000

