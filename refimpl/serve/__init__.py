"""`refimpl serve`: an OpenAI-compatible HTTP server whose answers are the reference's (spec/serve.md).

    refimpl serve --model smollm2-135m [--host 127.0.0.1] [--port 8000] [--dtype float32] [--backend numpy]

    from refimpl.serve import ServerThread, create_app   # needs the extra: pip install 'refimpl[serve]'

GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true as server-sent
events). This package imports the web stack (starlette, uvicorn) only when a server is made.
"""

from ..errors import RefimplError

__all__ = ["add_serve_parser", "cmd_serve", "create_app", "serve", "ServerThread"]


def _need_extra():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise RefimplError(f"serve: expected the `serve` extra (starlette and uvicorn), found {exc.name!r} missing; "
                           f"pip install 'refimpl[serve]'") from None


def __getattr__(name):
    if name in ("create_app", "serve", "ServerThread"):
        _need_extra()
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_serve_parser(subparsers):
    """Add the `serve` subcommand to the `refimpl` command's subparsers."""
    from .app_defaults import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TOKENS

    s = subparsers.add_parser("serve", help="an OpenAI-compatible HTTP server answering with the reference "
                                            "(needs the `serve` extra)")
    s.add_argument("--model", default="smollm2-135m",
                   help="preset name, checkpoint path (.gguf, .safetensors, folder) or hub id org/name from the local "
                        "Hugging Face cache (default: %(default)s)")
    s.add_argument("--dtype", default="float32", choices=["float64", "float32", "bfloat16"],
                   help="compute precision (bfloat16 is emulated step by step) (default: %(default)s)")
    s.add_argument("--backend", default="numpy", help="backend name or module:attribute (default: numpy)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    s.add_argument("--served-model-name", default=None, help="the model's name in the API (default: --model as given)")
    s.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, dest="default_max_tokens",
                   help="tokens to draw when a chat request gives no max_tokens (default: %(default)s)")
    s.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help="largest request body accepted; larger ones get 413 (default: %(default)s)")
    s.set_defaults(func=cmd_serve)
    return s


def cmd_serve(args):
    """Load the model, then serve it until Ctrl-C."""
    import sys

    _need_extra()
    from ..api import load
    from .app import serve

    model = load(args.model, dtype=args.dtype, backend=args.backend, progress=True)
    if model.tokenizer is None:
        raise RefimplError(f"{args.model}: expected a tokenizer with the model (tokenizer.json beside the "
                           f"checkpoint, or a GGUF with one), found none; the server reads and writes text")
    name = args.served_model_name or args.model
    print(f"refimpl serve: {name} on http://{args.host}:{args.port}/v1 (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        serve(model, model_id=name, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes,
              default_max_tokens=args.default_max_tokens)
    except KeyboardInterrupt:
        pass
    print("refimpl serve: stopped", file=sys.stderr, flush=True)
    return 0
