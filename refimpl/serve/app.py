"""The HTTP side of `refimpl serve`: Starlette routes, server-sent events, uvicorn (extra `serve`).

create_app(model, model_id=...) is the ASGI app; serve(...) runs it with uvicorn until Ctrl-C;
ServerThread runs it in a background thread (tests, notebooks). One Engine (engine.py) per app:
requests wait in arrival order and the model runs one generation at a time.
"""

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..errors import RefimplError
from . import protocol as P
from .app_defaults import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TOKENS
from .engine import Engine, HarmonyDecoder, Job, PlainDecoder, chat_stop_ids, completion_stop_ids, is_harmony, \
    render_prompt

log = logging.getLogger("refimpl.serve")

_POLL_S = 0.25  # how often a waiting non-streamed request checks that its client is still there


class _ClientGone(Exception):
    pass


class Service:
    """The model, its engine and the server's settings (app.state.service)."""

    def __init__(self, model, *, model_id, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                 default_max_tokens=DEFAULT_MAX_TOKENS):
        if model.tokenizer is None:
            raise RefimplError("model: expected a model with a tokenizer (the server reads and writes text), "
                               "found tokenizer None")
        self.model = model
        self.model_id = model_id
        self.max_body_bytes = int(max_body_bytes)
        self.default_max_tokens = int(default_max_tokens)
        self.created = int(time.time())
        self.fingerprint = f"refimpl-{__version__}-{model.dtype}"
        self.harmony = is_harmony(model)
        self.engine = Engine(model)

    # -- prompts (run in a worker thread: tokenizing can take a while)

    def _check_ids(self, ids, param):
        V = self.model.config.vocab_size
        for k, t in enumerate(ids):
            if not 0 <= t < V:
                raise P.ApiError(400, f"{param}[{k}]: expected a token id in [0, {V}), found {t}", param=param,
                                 code="invalid_value")
        if not ids:
            raise P.ApiError(400, f"{param}: expected at least one token, found none", param=param,
                             code="invalid_value")
        return ids

    def _encode(self, text, *, bos=True):
        tok = self.model.tokenizer
        ids = tok.encode(text, allowed_special="all")
        if bos and tok.add_bos and tok.bos_id is not None:
            ids = [tok.bos_id] + ids
        return ids

    def prepare_completion(self, req):
        """[(prompt ids, prompt text as decoded, tokens to draw)] for each prompt."""
        out = []
        for p in req.prompts:
            ids = self._check_ids(self._encode(p) if isinstance(p, str) else p, "prompt")
            n = P.plan_max_tokens(req.max_tokens, len(ids), self.model.config.max_position_embeddings,
                                  self.default_max_tokens, param="max_tokens")
            out.append((ids, self.model.tokenizer.decode(ids), n))
        return out

    def prepare_chat(self, req):
        try:
            text = render_prompt(self.model, req.messages, reasoning_effort=req.reasoning_effort)
        except RefimplError as exc:
            raise P.ApiError(400, str(exc), param="messages", code="invalid_value") from None
        ids = self._check_ids(self._encode(text, bos=False), "messages")  # a template writes its own BOS
        n = P.plan_max_tokens(req.max_tokens, len(ids), self.model.config.max_position_embeddings,
                              self.default_max_tokens, param="max_tokens")
        return ids, n


async def _read_json(request, limit):
    """The request body as a JSON object: 413 past `limit` bytes, 400 when it is not a JSON object."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            declared = int(cl)
        except ValueError:
            raise P.ApiError(400, f"Content-Length: expected an integer, found {cl!r}") from None
        if declared > limit:
            raise P.ApiError(413, f"the request body has {declared} bytes, this server takes at most {limit}",
                             code="request_too_large")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise P.ApiError(413, f"the request body is over {limit} bytes, the most this server takes",
                             code="request_too_large")

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    try:
        body = json.loads(bytes(buf), parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise P.ApiError(400, f"request body: expected JSON, found a parse error: {exc}",
                         code="invalid_json") from None
    if not isinstance(body, dict):
        raise P.ApiError(400, f"request body: expected a JSON object, found {type(body).__name__}",
                         code="invalid_json")
    return body


class _Events:
    """Engine events of one job, handed from the worker thread to this request's event loop."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()

    def put(self, event):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


async def _job_events(svc, job, events, request=None):
    """Submit the job, yield its events to the end; a non-streamed request (request given) checks
    its client every _POLL_S and cancels the job when it left. The job is cancelled on any exit."""
    svc.engine.submit(job)
    next_check = time.monotonic() + _POLL_S
    try:
        while True:
            if request is None:
                ev = await events.queue.get()
            else:
                try:
                    ev = await asyncio.wait_for(events.queue.get(), _POLL_S)
                except asyncio.TimeoutError:
                    ev = None
                if time.monotonic() >= next_check:
                    if await request.is_disconnected():
                        raise _ClientGone()
                    next_check = time.monotonic() + _POLL_S
                if ev is None:
                    continue
            if ev[0] == "error":
                raise P.ApiError(ev[1], ev[2])
            if ev[0] == "aborted":
                raise P.ApiError(503, ev[1], code="unavailable")
            yield ev
            if ev[0] == "done":
                return
    finally:
        job.cancel()


class _EventStream(StreamingResponse):
    """Server-sent events; stops the generator when the client disconnects and then calls on_close."""

    def __init__(self, chunks, on_close):
        super().__init__(chunks, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            async with anyio.create_task_group() as tg:
                async def stream():
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away while we were writing
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(stream)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            self._on_close()


def _sse(obj):
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


_DONE = "data: [DONE]\n\n"


def _error_json(exc):
    return JSONResponse(exc.body(), status_code=exc.status)


# ------------------------------------------------------------------------------------- endpoints

async def list_models(request):
    svc = request.app.state.service
    return JSONResponse({"object": "list", "data": [_model_card(svc)]})


async def get_model(request):
    svc = request.app.state.service
    mid = request.path_params["model_id"]
    if mid != svc.model_id:
        raise P.ApiError(404, f"model: the model {mid!r} does not exist here; this server has {svc.model_id!r}",
                         param="model", code="model_not_found")
    return JSONResponse(_model_card(svc))


def _model_card(svc):
    return {"id": svc.model_id, "object": "model", "created": svc.created, "owned_by": "refimpl"}


async def completions(request):
    svc = request.app.state.service
    req = P.parse_completion(await _read_json(request, svc.max_body_bytes), svc.model_id)
    prepared = await anyio.to_thread.run_sync(svc.prepare_completion, req)
    cid, created = P.new_id("cmpl"), P.now()
    tok = svc.model.tokenizer
    stop_ids = completion_stop_ids(svc.model)
    jobs = []

    def chunk(index, text, logprobs=None, finish=None):
        return {"id": cid, "object": "text_completion", "created": created, "model": svc.model_id,
                "system_fingerprint": svc.fingerprint,
                "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

    async def chunks(request_for_poll):
        """Chunks of every choice in order, then ("usage", dict)."""
        used_p = used_c = 0
        for index, (ids, prompt_text, n) in enumerate(prepared):
            events = _Events()
            c = req.common
            want_lp = req.logprobs is not None
            job = Job(ids, P.gen_params(c, n, req.logprobs, prompt_logprobs=req.echo and want_lp),
                      decoder=PlainDecoder(tok, stops=c.stop), stop_ids=stop_ids, emit=events.put)
            jobs.append(job)
            lp = P.CompletionLogprobs(tok, offset=0 if req.echo else len(prompt_text))
            if req.echo and not want_lp:
                yield chunk(index, prompt_text)
            async for ev in _job_events(svc, job, events, request_for_poll):
                if ev[0] == "prompt":
                    yield chunk(index, prompt_text, lp.part(ev[1]))
                elif ev[0] == "delta":
                    yield chunk(index, ev[1], lp.part(ev[3]) if want_lp else None)
                else:  # done
                    yield chunk(index, "", lp.part([]) if want_lp else None, ev[1])
                    used_p, used_c = used_p + ev[2], used_c + ev[3]
        yield ("usage", P.usage(used_p, used_c))

    if req.common.stream:
        async def sse():
            try:
                async for ch in chunks(None):
                    if isinstance(ch, tuple):
                        if req.common.include_usage:
                            yield _sse({"id": cid, "object": "text_completion", "created": created,
                                        "model": svc.model_id, "choices": [], "usage": ch[1]})
                    else:
                        yield _sse(ch)
            except P.ApiError as exc:
                yield _sse(exc.body())
            yield _DONE

        return _EventStream(sse(), on_close=lambda: [j.cancel() for j in jobs])

    choices, usage = {}, None
    try:
        async for ch in chunks(request):
            if isinstance(ch, tuple):
                usage = ch[1]
                continue
            c = ch["choices"][0]
            acc = choices.setdefault(c["index"], {"index": c["index"], "text": [], "lp": [], "finish_reason": None})
            acc["text"].append(c["text"])
            if c["logprobs"] is not None:
                acc["lp"].append(c["logprobs"])
            acc["finish_reason"] = c["finish_reason"] or acc["finish_reason"]
    except _ClientGone:
        return JSONResponse(P.error_body("the client left"), status_code=499)
    out = [{"index": a["index"], "text": "".join(a["text"]),
            "logprobs": P.CompletionLogprobs.join(a["lp"]) if req.logprobs is not None else None,
            "finish_reason": a["finish_reason"]} for a in choices.values()]
    return JSONResponse({"id": cid, "object": "text_completion", "created": created, "model": svc.model_id,
                         "system_fingerprint": svc.fingerprint, "choices": out, "usage": usage})


async def chat_completions(request):
    svc = request.app.state.service
    req = P.parse_chat(await _read_json(request, svc.max_body_bytes), svc.model_id)
    ids, n = await anyio.to_thread.run_sync(svc.prepare_chat, req)
    cid, created = P.new_id("chatcmpl"), P.now()
    tok = svc.model.tokenizer
    c = req.common
    decoder = (HarmonyDecoder(tok, stops=c.stop) if svc.harmony
               else PlainDecoder(tok, stops=c.stop, skip_special=True))
    events = _Events()
    job = Job(ids, P.gen_params(c, n, req.top_logprobs if req.logprobs else None), decoder=decoder,
              stop_ids=chat_stop_ids(svc.model), emit=events.put)

    def chunk(delta, logprobs=None, finish=None):
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": svc.model_id,
                "system_fingerprint": svc.fingerprint,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    def delta_of(ev):
        d = {}
        if ev[2]:
            d["reasoning_content"] = ev[2]
        if ev[1]:
            d["content"] = ev[1]
        return d

    if c.stream:
        async def sse():
            try:
                yield _sse(chunk({"role": "assistant", "content": ""}))
                async for ev in _job_events(svc, job, events):
                    if ev[0] == "delta":
                        lp = {"content": P.chat_logprobs(tok, ev[3]), "refusal": None} if req.logprobs else None
                        yield _sse(chunk(delta_of(ev), lp))
                    elif ev[0] == "done":
                        yield _sse(chunk({}, None, ev[1]))
                        if c.include_usage:
                            yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                                        "model": svc.model_id, "choices": [], "usage": P.usage(ev[2], ev[3])})
            except P.ApiError as exc:
                yield _sse(exc.body())
            yield _DONE

        return _EventStream(sse(), on_close=job.cancel)

    content, reasoning, entries, finish, usage = [], [], [], None, None
    try:
        async for ev in _job_events(svc, job, events, request):
            if ev[0] == "delta":
                content.append(ev[1])
                reasoning.append(ev[2])
                entries.extend(ev[3])
            elif ev[0] == "done":
                finish, usage = ev[1], P.usage(ev[2], ev[3])
    except _ClientGone:
        return JSONResponse(P.error_body("the client left"), status_code=499)
    message = {"role": "assistant", "content": "".join(content)}
    if svc.harmony:
        message["reasoning_content"] = "".join(reasoning)
    lp = {"content": P.chat_logprobs(tok, entries), "refusal": None} if req.logprobs else None
    return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": svc.model_id,
                         "system_fingerprint": svc.fingerprint,
                         "choices": [{"index": 0, "message": message, "logprobs": lp, "finish_reason": finish}],
                         "usage": usage})


# ------------------------------------------------------------------------------------------ errors

async def _api_error(request, exc):
    return _error_json(exc)


async def _http_error(request, exc):
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    msg = {404: f"{request.url.path}: no such endpoint (see GET /v1/models, POST /v1/completions, "
                f"POST /v1/chat/completions)",
           405: f"{request.method} {request.url.path}: method not allowed"}.get(exc.status_code, str(exc.detail))
    return JSONResponse(P.error_body(msg, code=code), status_code=exc.status_code)


async def _server_error(request, exc):
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(P.error_body(f"internal error: {type(exc).__name__}", type="server_error"), status_code=500)


def create_app(model, *, model_id, max_body_bytes=DEFAULT_MAX_BODY_BYTES, default_max_tokens=DEFAULT_MAX_TOKENS):
    """The ASGI app serving `model` under the name `model_id` (app.state.service holds the engine)."""
    svc = Service(model, model_id=model_id, max_body_bytes=max_body_bytes, default_max_tokens=default_max_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        svc.engine.stop(timeout=5)

    routes = [Route("/v1/models", list_models, methods=["GET"]),
              Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
              Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat_completions, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={P.ApiError: _api_error, HTTPException: _http_error,
                                        Exception: _server_error})
    app.state.service = svc
    return app


class _Server(uvicorn.Server):
    """uvicorn's server; on Ctrl-C the engine stops drawing tokens at once, so open streams end."""

    def __init__(self, config, engine):
        super().__init__(config)
        self._engine = engine

    def handle_exit(self, sig, frame):
        self._engine.stopping = True  # a plain flag: safe inside a signal handler
        super().handle_exit(sig, frame)


def _config(app, host, port, log_level):
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", loop="asyncio",
                          http="h11", timeout_graceful_shutdown=5)


def serve(model, *, model_id, host="127.0.0.1", port=8000, log_level="info", **app_kw):
    """Serve until Ctrl-C (SIGINT) or SIGTERM: running generations stop at their next token."""
    app = create_app(model, model_id=model_id, **app_kw)
    _Server(_config(app, host, port, log_level), app.state.service.engine).run()


class ServerThread:
    """The server in a background thread, on 127.0.0.1 and a free port unless told otherwise.

        with ServerThread(model, model_id="tiny") as s:
            OpenAI(base_url=s.url, api_key="-")...
    """

    def __init__(self, model, *, model_id="refimpl", host="127.0.0.1", port=0, log_level="warning", **app_kw):
        self.app = create_app(model, model_id=model_id, **app_kw)
        self.service = self.app.state.service
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}/v1"
        self.server = _Server(_config(self.app, self.host, self.port, log_level), self.service.engine)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="refimpl-serve-http")

    def start(self, timeout=30.0):
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RefimplError(f"serve: the server on {self.url} did not start within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout=10.0):
        self.service.engine.stopping = True
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
