"""The generation side of `refimpl serve`: one worker thread runs one job at a time, in arrival order.

A Job is a prompt (token ids), its sampling parameters and a decoder that turns the drawn ids into
text. The worker calls the public `Model.generate` and reports events through the job's `emit`
callback (the HTTP side forwards them to its client):

    ("prompt", [entry, ...])              log-probabilities of the prompt tokens (echo + logprobs)
    ("delta", content, reasoning, [entry, ...])
    ("done", finish_reason, prompt_tokens, completion_tokens)
    ("error", status, message)            a bad request found late (400) or a failure (500)
    ("aborted", why)                      the client left, or the server is shutting down

entry = (token id, log-probability, [(id, log-probability), ...] the top-N, best first). The
log-probabilities are `refimpl.ops.sampling.log_softmax` of the float64 logits each token is drawn
from, before temperature and filters (spec/serve.md). This module does not import the web stack.
"""

import codecs
import collections
import itertools
import logging
import queue
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import RefimplError
from ..ops.sampling import log_softmax
from ..text import chat

log = logging.getLogger("refimpl.serve")

HARMONY_ARCH = "gpt_oss"


def is_harmony(model):
    """Whether the model speaks OpenAI's harmony chat format (gpt-oss)."""
    return getattr(model.config, "arch", None) == HARMONY_ARCH


def render_prompt(model, messages, *, reasoning_effort=None):
    """The chat prompt text of OpenAI-style messages ({"role", "content"}, content already a str).

    The model's own chat template when its tokenizer carries one (tokenizer.apply_chat_template,
    refimpl.text.chat_template; reasoning_effort is passed as a template variable). Otherwise
    ChatML (refimpl.text.chat.render_chatml), or harmony for gpt-oss: a harmony system message
    (harmony_system_content with the reasoning effort), OpenAI "system"/"developer" messages as a
    developer message "# Instructions\n\n{content}", assistant history on channel "final".
    """
    tok = model.tokenizer
    if getattr(tok, "chat_template", None) is not None and hasattr(tok, "apply_chat_template"):
        extra = {"reasoning_effort": reasoning_effort} if reasoning_effort else {}
        return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **extra)
    if not is_harmony(model):
        return chat.render_chatml(messages)
    out = [{"role": "system", "content": chat.harmony_system_content(reasoning_effort=reasoning_effort or "medium")}]
    for m in messages:
        if m["role"] in ("system", "developer"):
            out.append({"role": "developer", "content": "# Instructions\n\n" + m["content"]})
        elif m["role"] == "assistant":
            out.append({"role": "assistant", "channel": "final", "content": m["content"]})
        else:
            out.append(dict(m))
    return chat.render_harmony(out)


def chat_stop_ids(model):
    """Token ids that end a chat answer: the model's and tokenizer's end-of-sequence ids, plus <|im_end|>
    (ChatML) or <|return|> and <|call|> (harmony) when the tokenizer has them as special tokens."""
    tok = model.tokenizer
    names = chat.HARMONY_STOP_TOKENS if is_harmony(model) else ("<|im_end|>",)
    extra = [tok.special_tokens[n] for n in names if n in tok.special_tokens]
    return completion_stop_ids(model) | set(extra)


def completion_stop_ids(model):
    """End-of-sequence ids of the model's configuration and of its tokenizer."""
    ids = set(model.config.eos_token_ids or ())
    if model.tokenizer is not None:
        ids |= set(model.tokenizer.eos_ids or ())
    return ids


def token_text(tokenizer, token_id):
    """(text, bytes) of one token: its UTF-8 text, or "bytes:\\xNN..." when its bytes are not whole characters."""
    b = tokenizer.decode_bytes([token_id])
    try:
        return b.decode("utf-8"), b
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{c:02x}" for c in b), b


UNLIKELY = -9999.0  # stands for a log-probability of -inf, which JSON cannot carry (OpenAI's sentinel)


def _finite(v):
    v = float(v)
    return v if v != float("-inf") else UNLIKELY


def top_logprobs(lp, n):
    """The n largest entries of lp [V] as [(id, value)], largest first, ties by lower id (O(V))."""
    if n <= 0:
        return []
    n = min(n, lp.shape[0])
    thr = np.partition(lp, lp.shape[0] - n)[lp.shape[0] - n]
    cand = np.nonzero(lp >= thr)[0]  # every id at or above the n-th largest value
    order = sorted(cand.tolist(), key=lambda i: (-lp[i], i))[:n]
    return [(i, _finite(lp[i])) for i in order]


def logprob_entry(lp, token_id, n):
    return (int(token_id), _finite(lp[token_id]), top_logprobs(lp, n))


def _hold_back(text, stops):
    """Length of the longest end of `text` that is a proper beginning of a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


def _first_stop(text, stops):
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


class _Channel:
    """A text that grows at its end; sends what is final (not a possible stop string's beginning)."""

    def __init__(self, stops):
        self.stops = stops
        self.text = ""
        self.sent = 0
        self.stopped = False

    def update(self, text, *, held=0, final=False):
        """New text to send, given the whole text so far (held: characters at the end not yet final)."""
        if self.stopped:
            return ""
        self.text = text
        if self.stops:
            cut = _first_stop(text, self.stops)
            if cut >= 0:
                self.stopped = True
                out, self.sent = text[self.sent:cut], cut
                return out
        end = len(text) if final else len(text) - held
        if not final and self.stops:
            end = min(end, len(text) - _hold_back(text, self.stops))
        if end <= self.sent:
            return ""
        out, self.sent = text[self.sent:end], end
        return out


class PlainDecoder:
    """Text of the drawn ids (the ids' bytes joined, read as UTF-8), with stop strings.

    A terminal stop id adds no text. skip_special leaves special tokens' text out (chat answers).
    """

    def __init__(self, tokenizer, *, stops=(), skip_special=False):
        self.tok = tokenizer
        self.skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = []
        self.content = _Channel(tuple(stops))

    @property
    def stopped(self):
        return self.content.stopped

    def push(self, token_id, terminal=False):
        """(content delta, reasoning delta) after one more drawn id."""
        if not terminal:
            piece = self._utf8.decode(self.tok.decode_bytes([token_id], skip_special=self.skip_special))
            self._text.append(piece)
        return self.content.update("".join(self._text)), ""

    def flush(self):
        piece = self._utf8.decode(b"", final=True)
        self._text.append(piece)
        return self.content.update("".join(self._text), final=True), ""


class HarmonyDecoder:
    """Harmony completion (after "<|start|>assistant"): analysis-channel text is the reasoning, every
    other channel's text the content (refimpl.text.chat.parse_harmony, strict=False, on the ids so far).
    Stop strings apply to the content."""

    def __init__(self, tokenizer, *, stops=()):
        self.tok = tokenizer
        self.ids = []
        self.content = _Channel(tuple(stops))
        self.reasoning = _Channel(())

    @property
    def stopped(self):
        return self.content.stopped

    def _texts(self):
        msgs = chat.parse_harmony(self.ids, tokenizer=self.tok, role="assistant", strict=False)
        reasoning = "".join(m["content"] for m in msgs if m["channel"] == "analysis")
        content = "".join(m["content"] for m in msgs if m["channel"] != "analysis")
        return content, reasoning

    @staticmethod
    def _held(text):
        n = 0
        while n < len(text) and text[len(text) - 1 - n] == "\ufffd":  # maybe an incomplete character
            n += 1
        return n

    def push(self, token_id, terminal=False):
        if not terminal:
            self.ids.append(token_id)
        content, reasoning = self._texts()
        return (self.content.update(content, held=self._held(content)),
                self.reasoning.update(reasoning, held=self._held(reasoning)))

    def flush(self):
        content, reasoning = self._texts()
        return self.content.update(content, final=True), self.reasoning.update(reasoning, final=True)


@dataclass
class GenParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    logprobs: int | None = None      # None: no log-probabilities; N: the top-N alternatives as well
    prompt_logprobs: bool = False    # echo with logprobs: log-probabilities of the prompt tokens too


def _host_float64(a):
    """Logits as a float64 NumPy array (a device backend's array is copied to the host first)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "get"):  # CuPy
        a = a.get()
    return np.asarray(a, dtype=np.float64)


class _Abort(Exception):
    pass


class _StopString(Exception):
    pass


_ids = itertools.count(1)


class Job:
    """One generation: prompt ids, parameters, decoder, stop ids, and where its events go."""

    def __init__(self, prompt_ids, params, *, decoder, stop_ids, emit):
        self.id = next(_ids)
        self.prompt_ids = [int(i) for i in prompt_ids]
        self.params = params
        self.decoder = decoder
        self.stop_ids = set(stop_ids)
        self._emit = emit
        self.cancelled = threading.Event()

    def cancel(self):
        self.cancelled.set()

    def emit(self, event):
        try:
            self._emit(event)
        except RuntimeError:  # the event loop is gone: nobody is listening
            self.cancelled.set()


class Engine:
    """One model, one worker thread, jobs run one at a time in arrival order.

    submit(job) queues a job; stop() ends the current job at its next token, answers queued jobs
    with ("aborted", ...) and ends the thread. `finished` keeps (job id, outcome, completion tokens)
    of the last 256 jobs (outcome: a finish reason, "cancelled", "shutdown" or "error").
    """

    def __init__(self, model):
        self.model = model
        self.stopping = False
        self.finished = collections.deque(maxlen=256)
        self._jobs = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="refimpl-serve-engine", daemon=True)
        self._thread.start()

    def submit(self, job):
        self._jobs.put(job)

    def stop(self, timeout=None):
        """Cancel the running and queued jobs and end the worker (safe from a signal handler: no locks)."""
        self.stopping = True
        self._jobs.put(None)
        if timeout is not None:
            self._thread.join(timeout)

    def _loop(self):
        while True:
            job = self._jobs.get()
            if job is None:
                if self.stopping:
                    while True:  # answer whatever was queued behind the sentinel
                        try:
                            rest = self._jobs.get_nowait()
                        except queue.Empty:
                            return
                        if rest is not None:
                            self._finish(rest, "shutdown", 0)
                            rest.emit(("aborted", "the server is shutting down"))
                continue
            try:
                self._run(job)
            except Exception:  # never let one job end the worker
                log.exception("job %d failed", job.id)
                job.emit(("error", 500, "internal error while generating (see the server log)"))

    def _finish(self, job, outcome, n):
        self.finished.append((job.id, outcome, n))

    def _run(self, job):
        if self.stopping:
            self._finish(job, "shutdown", 0)
            job.emit(("aborted", "the server is shutting down"))
            return
        if job.cancelled.is_set():
            self._finish(job, "cancelled", 0)
            job.emit(("aborted", "the client left"))
            return
        model, p = self.model, job.params
        out = []
        state = {"lp": None}

        def on_logits(last):
            state["lp"] = log_softmax(_host_float64(last))

        def on_token(t):
            if job.cancelled.is_set() or self.stopping:
                raise _Abort()
            out.append(int(t))
            terminal = t in job.stop_ids
            entries = []
            if p.logprobs is not None and not terminal:
                entries.append(logprob_entry(state["lp"], t, p.logprobs))
            content, reasoning = job.decoder.push(int(t), terminal)
            if content or reasoning or entries:
                job.emit(("delta", content, reasoning, entries))
            if job.decoder.stopped:
                raise _StopString()

        try:
            if p.prompt_logprobs:
                job.emit(("prompt", self._prompt_logprobs(job.prompt_ids, p.logprobs or 0)))
            model.generate(np.asarray(job.prompt_ids, dtype=np.int64), max_new_tokens=p.max_tokens,
                           temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, seed=p.seed,
                           stop_ids=job.stop_ids, on_token=on_token,
                           on_logits=on_logits if p.logprobs is not None else None)
            finish = "stop" if out and out[-1] in job.stop_ids else "length"
        except _StopString:
            finish = "stop"
        except _Abort:
            why = "shutdown" if self.stopping else "cancelled"
            self._finish(job, why, len(out))
            job.emit(("aborted", "the server is shutting down" if self.stopping else "the client left"))
            return
        except RefimplError as exc:
            self._finish(job, "error", len(out))
            job.emit(("error", 400, str(exc)))
            return
        content, reasoning = job.decoder.flush()
        if content or reasoning:
            job.emit(("delta", content, reasoning, []))
        self._finish(job, finish, len(out))
        job.emit(("done", finish, len(job.prompt_ids), len(out)))

    def _prompt_logprobs(self, ids, n):
        """[(id, None, None)] for the first prompt token, then each token's entry from the logits before it."""
        entries = [(ids[0], None, None)]
        if len(ids) > 1:
            logits = self.model.logits(np.asarray(ids[:-1], dtype=np.int64))  # [T-1, V]
            for t in range(1, len(ids)):
                lp = log_softmax(_host_float64(logits[t - 1]))
                entries.append(logprob_entry(lp, ids[t], n))
        return entries
