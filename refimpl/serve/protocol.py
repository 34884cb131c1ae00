"""Requests and answers of `refimpl serve` in the OpenAI API's JSON shapes (spec/serve.md).

parse_completion / parse_chat check a decoded JSON body field by field and raise ApiError (400 with
the field as `param`, 404 for an unknown model); the answer builders turn engine events into
OpenAI's response objects and streaming chunks. No web-framework code here.
"""

import codecs
import math
import time
import uuid
from dataclasses import dataclass

from .engine import GenParams, token_text

MAX_TOP_LOGPROBS = 20
MAX_STOP = 4
REASONING_EFFORTS = ("low", "medium", "high")

_IGNORED = ("user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key", "safety_identifier")
_SAMPLING = ("model", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options", "n",
             "presence_penalty", "frequency_penalty", "logit_bias", "max_tokens")
COMPLETION_FIELDS = _SAMPLING + _IGNORED + ("prompt", "echo", "logprobs", "suffix", "best_of")
CHAT_FIELDS = _SAMPLING + _IGNORED + ("messages", "logprobs", "top_logprobs", "max_completion_tokens",
                                      "reasoning_effort", "response_format", "tools", "tool_choice", "functions",
                                      "function_call")


class ApiError(Exception):
    """An error answer: HTTP status and OpenAI's {"error": {message, type, param, code}}."""

    def __init__(self, status, message, *, param=None, code=None, type=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_body(message, *, type="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _bad(param, expected, found):
    return ApiError(400, f"{param}: expected {expected}, found {found!r}", param=param, code="invalid_value")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(body, name, default=None, *, lo=None, hi=None):
    v = body.get(name)
    if v is None:
        return default
    if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        raise _bad(name, f"an integer{rng} or null", v)
    return v


def _num(body, name, default, *, lo, hi, lo_open=False):
    v = body.get(name)
    if v is None:
        return default
    if not _is_num(v) or v > hi or v < lo or (lo_open and v == lo):
        raise _bad(name, f"a number in {'(' if lo_open else '['}{lo}, {hi}] or null", v)
    return float(v)


def _bool(body, name, default=False):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(name, "true or false", v)
    return v


@dataclass
class Common:
    """What both endpoints share: sampling, stop strings, streaming."""
    temperature: float
    top_p: float | None
    top_k: int | None
    seed: int | None
    stop: tuple
    stream: bool
    include_usage: bool
    max_tokens: int | None


def _check_fields(body, allowed):
    for k in body:
        if k not in allowed:
            raise ApiError(400, f"{k}: unrecognized request argument (supported: see spec/serve.md)", param=k,
                           code="unsupported_parameter")


def check_model(body, model_id):
    m = body.get("model")
    if not isinstance(m, str) or not m:
        raise ApiError(400, f"model: expected the model's name (a str), found {m!r}", param="model",
                       code="missing_required_parameter" if m is None else "invalid_value")
    if m != model_id:
        raise ApiError(404, f"model: the model {m!r} does not exist here; this server has {model_id!r}",
                       param="model", code="model_not_found")


def _common(body, model_id):
    check_model(body, model_id)
    if _int(body, "n", 1) != 1:
        raise ApiError(400, f"n: expected 1 (one choice per request is supported), found {body['n']!r}", param="n",
                       code="unsupported_value")
    for pen in ("presence_penalty", "frequency_penalty"):
        if _num(body, pen, 0.0, lo=-2.0, hi=2.0) != 0.0:
            raise ApiError(400, f"{pen}: expected 0 or null (penalties are not supported), found {body[pen]!r}",
                           param=pen, code="unsupported_value")
    lb = body.get("logit_bias")
    if lb not in (None, {}):
        raise ApiError(400, f"logit_bias: expected null or {{}} (not supported), found {lb!r}", param="logit_bias",
                       code="unsupported_value")
    temperature = _num(body, "temperature", 1.0, lo=0.0, hi=2.0)
    top_p = _num(body, "top_p", 1.0, lo=0.0, hi=1.0, lo_open=True)
    top_k = _int(body, "top_k", None, lo=1)
    seed = _int(body, "seed", None, lo=0, hi=2**63 - 1)
    stop = body.get("stop")
    if stop is None:
        stops = ()
    elif isinstance(stop, str) and stop:
        stops = (stop,)
    elif (isinstance(stop, list) and len(stop) <= MAX_STOP and all(isinstance(s, str) and s for s in stop)):
        stops = tuple(stop)
    else:
        raise _bad("stop", f"a non-empty str or a list of up to {MAX_STOP} non-empty str, or null", stop)
    stream = _bool(body, "stream")
    so = body.get("stream_options")
    include_usage = False
    if so is not None:
        if not stream:
            raise _bad("stream_options", "null unless stream is true", so)
        if not isinstance(so, dict) or set(so) - {"include_usage"}:
            raise _bad("stream_options", '{"include_usage": true|false}', so)
        include_usage = _bool(so, "include_usage")
    return Common(temperature=temperature, top_p=None if top_p == 1.0 else top_p, top_k=top_k, seed=seed,
                  stop=stops, stream=stream, include_usage=include_usage,
                  max_tokens=_int(body, "max_tokens", None, lo=0))


@dataclass
class CompletionRequest:
    common: Common
    prompts: list          # each a str or a list of token ids
    echo: bool
    logprobs: int | None
    max_tokens: int


def parse_completion(body, model_id):
    """A checked /v1/completions request (prompt: str, [str], [ids] or [[ids]]; one choice per prompt)."""
    _check_fields(body, COMPLETION_FIELDS)
    c = _common(body, model_id)
    if body.get("suffix") not in (None, ""):
        raise ApiError(400, f"suffix: expected null (insertion is not supported), found {body['suffix']!r}",
                       param="suffix", code="unsupported_value")
    if _int(body, "best_of", 1) != 1:
        raise ApiError(400, f"best_of: expected 1 or null, found {body['best_of']!r}", param="best_of",
                       code="unsupported_value")
    p = body.get("prompt")
    if isinstance(p, str):
        prompts = [p]
    elif isinstance(p, list) and p and all(_is_int(t) for t in p):
        prompts = [list(p)]
    elif isinstance(p, list) and p and all(isinstance(q, str) for q in p):
        prompts = list(p)
    elif isinstance(p, list) and p and all(isinstance(q, list) and q and all(_is_int(t) for t in q) for q in p):
        prompts = [list(q) for q in p]
    else:
        raise ApiError(400, f"prompt: expected a str, a list of str, a list of token ids or a list of such lists, "
                            f"found {_short(p)}", param="prompt",
                       code="missing_required_parameter" if p is None else "invalid_value")
    return CompletionRequest(common=c, prompts=prompts, echo=_bool(body, "echo"),
                             logprobs=_int(body, "logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS),
                             max_tokens=16 if c.max_tokens is None else c.max_tokens)


@dataclass
class ChatRequest:
    common: Common
    messages: list
    logprobs: bool
    top_logprobs: int
    max_tokens: int | None
    reasoning_effort: str | None = None


def _message_text(content, where):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise _bad(f"{where}.content[{k}]", 'a text part {"type": "text", "text": str} (only text is '
                                                     'supported)', part)
            parts.append(part["text"])
        return "".join(parts)
    raise _bad(f"{where}.content", "a str or a list of text parts", content)


def parse_chat(body, model_id):
    """A checked /v1/chat/completions request."""
    _check_fields(body, CHAT_FIELDS)
    c = _common(body, model_id)
    for name in ("tools", "functions"):
        if body.get(name) not in (None, []):
            raise ApiError(400, f"{name}: expected null (tool calling is not supported), found a value", param=name,
                           code="unsupported_parameter")
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise _bad(name, 'null or "none" (tool calling is not supported)', body[name])
    rf = body.get("response_format")
    if rf not in (None, {"type": "text"}):
        raise _bad("response_format", 'null or {"type": "text"} (structured output is not supported)', rf)
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise _bad("reasoning_effort", f"one of {REASONING_EFFORTS} or null", effort)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, f"messages: expected a non-empty list of messages, found {_short(msgs)}",
                       param="messages", code="missing_required_parameter" if msgs is None else "invalid_value")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(where, "an object with role and content", m)
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise _bad(f"{where}.role", '"system", "developer", "user" or "assistant" (tool messages are not '
                                        'supported)', role)
        for k in m:
            if k not in ("role", "content", "name", "reasoning_content", "refusal"):
                raise ApiError(400, f"{where}.{k}: not supported (a message has role, content and name)",
                               param=f"{where}.{k}", code="unsupported_parameter")
        msg = {"role": role, "content": _message_text(m.get("content"), where)}
        if m.get("name") is not None:
            if not isinstance(m["name"], str):
                raise _bad(f"{where}.name", "a str or null", m["name"])
            msg["name"] = m["name"]
        out.append(msg)
    logprobs = _bool(body, "logprobs")
    top = _int(body, "top_logprobs", None, lo=0, hi=MAX_TOP_LOGPROBS)
    if top is not None and not logprobs:
        raise _bad("top_logprobs", "null unless logprobs is true", top)
    mct = _int(body, "max_completion_tokens", None, lo=0)
    return ChatRequest(common=c, messages=out, logprobs=logprobs, top_logprobs=top or 0,
                       max_tokens=mct if mct is not None else c.max_tokens, reasoning_effort=effort)


def _short(v):
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def plan_max_tokens(requested, prompt_len, context, default, *, param):
    """Tokens to draw: requested (checked against the context length) or min(default, room left)."""
    room = context - prompt_len
    if requested is None:
        if room <= 0:
            raise ApiError(400, f"{param}: the prompt has {prompt_len} tokens, the model's context is {context}: "
                                f"no room to generate", param=param, code="context_length_exceeded")
        return min(default, room)
    if requested > room:
        raise ApiError(400, f"{param}: the model's context is {context} tokens, the request needs "
                            f"{prompt_len + requested} ({prompt_len} in the prompt, {requested} to generate)",
                       param=param, code="context_length_exceeded")
    return requested


def gen_params(c, max_tokens, logprobs, prompt_logprobs=False):
    return GenParams(max_tokens=max_tokens, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, seed=c.seed,
                     logprobs=logprobs, prompt_logprobs=prompt_logprobs)


# ---------------------------------------------------------------------------------------- answers

def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex}"


def now():
    return int(time.time())


def usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class CompletionLogprobs:
    """OpenAI's completions `logprobs` object, filled token by token: tokens, token_logprobs,
    top_logprobs ({token text: log-probability}), text_offset (characters from the start of the prompt)."""

    def __init__(self, tokenizer, offset=0):
        self.tok = tokenizer
        self.offset = offset
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def part(self, entries):
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for tid, lp, top in entries:
            text, raw = token_text(self.tok, tid)
            out["tokens"].append(text)
            out["token_logprobs"].append(lp)
            out["top_logprobs"].append(None if top is None else {token_text(self.tok, i)[0]: v for i, v in top})
            out["text_offset"].append(self.offset)
            self.offset += len(self._utf8.decode(raw))
        return out

    @staticmethod
    def join(parts):
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for p in parts:
            for k in out:
                out[k].extend(p[k])
        return out


def chat_logprobs(tokenizer, entries):
    """OpenAI's chat `logprobs.content` list for entries."""
    def one(tid, lp):
        text, raw = token_text(tokenizer, tid)
        return {"token": text, "logprob": lp, "bytes": list(raw)}

    return [{**one(tid, lp), "top_logprobs": [one(i, v) for i, v in top]} for tid, lp, top in entries]
