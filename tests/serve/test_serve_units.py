"""The server's pieces without a server: log_softmax (the op the log-probabilities come from), the
top-N order, stop strings and incremental UTF-8 text, request checks."""

import math

import numpy as np
import pytest

from refimpl.ops.sampling import log_softmax, softmax
from refimpl.serve.engine import PlainDecoder, top_logprobs
from refimpl.serve.protocol import ApiError, parse_chat, parse_completion
from tiny_serving import IM_END, byte_tokenizer, require


def test_log_softmax_rule():
    x = np.array([1000.0, 999.0, -np.inf, 0.0])  # no overflow for large logits; -inf stays -inf
    y = log_softmax(x)
    lse = 1000.0 + math.log(1 + math.exp(-1) + math.exp(-1000))
    assert y[0] == pytest.approx(1000.0 - lse, abs=1e-12) and y[1] == pytest.approx(999.0 - lse, abs=1e-12)
    assert y[2] == -np.inf and y.dtype == np.float64
    assert np.all(log_softmax(np.full(3, -np.inf)) == -np.inf)  # no NaN for an empty distribution
    r = np.random.default_rng(0).standard_normal((3, 50)) * 5
    np.testing.assert_allclose(np.exp(log_softmax(r)), softmax(r), rtol=1e-13, atol=0)
    assert log_softmax(r.astype(np.float32)).dtype == np.float32
    with pytest.raises(Exception, match="axis"):
        log_softmax(r, axis=2)


def test_top_logprobs_order_and_ties():
    lp = np.array([-1.0, -0.5, -1.0, -3.0, -0.5])
    assert top_logprobs(lp, 3) == [(1, -0.5), (4, -0.5), (0, -1.0)]  # largest first, ties by lower id
    assert top_logprobs(lp, 0) == [] and len(top_logprobs(lp, 99)) == 5


def test_stop_strings_and_split_characters_in_the_decoder():
    require("regex")
    tok = byte_tokenizer()
    d = PlainDecoder(tok, stops=("END",))
    out = [d.push(t)[0] for t in "é".encode() + b"xEN"]  # é is two bytes; "EN" may begin "END"
    assert out == ["", "é", "x", "", ""]
    assert d.push(ord("D"))[0] == "" and d.stopped
    d = PlainDecoder(tok, stops=("END",))
    assert [d.push(t)[0] for t in b"ENx"] == ["", "", "ENx"]
    assert d.push(IM_END, terminal=True) == ("", "") and d.flush() == ("", "")
    d = PlainDecoder(tok)
    assert d.push(0xC3)[0] == "" and d.flush()[0] == "\ufffd"  # a cut character is U+FFFD at the end


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x"}, "model"),
    ({"model": "m", "prompt": "x", "seed": -1}, "seed"),
    ({"model": "m", "prompt": "x", "top_p": 0}, "top_p"),
    ({"model": "m", "prompt": "x", "top_k": 0}, "top_k"),
    ({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "m", "prompt": "x", "stop": ""}, "stop"),
    ({"model": "m", "prompt": "x", "logprobs": 21}, "logprobs"),
    ({"model": "m", "prompt": "x", "max_tokens": True}, "max_tokens"),
    ({"model": "m", "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": "m", "prompt": [[1], "a"]}, "prompt"),
    ({"model": "m", "prompt": "x", "suffix": "y"}, "suffix"),
])
def test_completion_request_checks(body, param):
    with pytest.raises(ApiError) as e:
        parse_completion(body, "m")
    assert e.value.status == 400 and e.value.param == param and param in e.value.message


@pytest.mark.parametrize("extra, param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0].tool_calls"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"reasoning_effort": "max"}, "reasoning_effort"),
    ({"logprobs": 1}, "logprobs"),
])
def test_chat_request_checks(extra, param):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(ApiError) as e:
        parse_chat(body, "m")
    assert e.value.status == 400 and e.value.param == param


def test_chat_request_defaults_and_text_parts():
    r = parse_chat({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                             {"type": "text", "text": "b"}]}]}, "m")
    assert r.messages == [{"role": "user", "content": "ab"}]
    assert (r.common.temperature, r.common.top_p, r.common.seed, r.max_tokens) == (1.0, None, None, None)
    with pytest.raises(ApiError) as e:
        parse_chat({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, "m")
    assert e.value.status == 404 and e.value.code == "model_not_found"


def test_serve_command_errors_are_one_line(capsys, monkeypatch, tmp_path):
    """A missing checkpoint, or a missing `serve` extra, is a one-line error and exit status 2."""
    from refimpl.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing.gguf")]) == 2
    err = capsys.readouterr().err
    assert "missing.gguf" in err and "Traceback" not in err
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)  # import uvicorn -> ImportError
    assert main(["serve", "--model", str(tmp_path / "missing.gguf")]) == 2
    assert "pip install 'refimpl[serve]'" in capsys.readouterr().err
