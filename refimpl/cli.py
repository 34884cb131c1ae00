"""The `refimpl` command: generate | chat | inspect (conform | diff come with the conformance harness)."""

import argparse
import sys

from .errors import RefimplError


def _stream_decoder(tokenizer, out):
    """Print text as ids arrive (special tokens such as end-of-turn not shown), holding back
    bytes that do not yet form whole characters."""
    ids, shown = [], [""]

    def on_token(tok):
        ids.append(tok)
        text = tokenizer.decode(ids, skip_special=True)
        if text.endswith("\ufffd"):
            return
        out.write(text[len(shown[0]):])
        out.flush()
        shown[0] = text

    return on_token


def cmd_generate(args):
    from .api import load

    model = load(args.model, dtype=args.dtype, backend=args.backend, progress=True)
    if model.tokenizer is None:
        raise RefimplError(f"{args.model}: no tokenizer found next to the checkpoint (tokenizer.json)")
    ids = model.tokenizer.encode(args.prompt)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    model.generate(ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, seed=args.seed, on_token=_stream_decoder(model.tokenizer, sys.stdout))
    sys.stdout.write("\n")
    return 0


def cmd_chat(args):
    from .api import load
    from .text import chat

    if sys.stdin is None or sys.stdin.closed:
        raise RefimplError("stdin: expected an open terminal or pipe to read chat turns from, found it closed")
    model = load(args.model, dtype=args.dtype, backend=args.backend, progress=True)
    if model.tokenizer is None:
        raise RefimplError(f"{args.model}: no tokenizer found next to the checkpoint (tokenizer.json); chat needs one")
    harmony = model.config.arch == "gpt_oss"
    messages = []
    print("(empty line or Ctrl-D to quit)", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        prompt = chat.render_harmony(messages) if harmony else chat.render_chatml(messages)
        ids = model.tokenizer.encode(prompt, allowed_special="all")
        new = model.generate(ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             seed=args.seed, on_token=_stream_decoder(model.tokenizer, sys.stdout))
        sys.stdout.write("\n")
        text = model.tokenizer.decode([t for t in new if t not in model.config.eos_token_ids])
        if harmony:
            parsed = chat.parse_harmony(text, strict=False)
            finals = [m["content"] for m in parsed if m.get("channel") == "final"]
            text = finals[-1] if finals else text
        messages.append({"role": "assistant", "content": text})
    return 0


def cmd_inspect(args):
    from .sizes import inspect_json, inspect_report

    print(inspect_json(args.model) if args.json else inspect_report(args.model))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="refimpl", description="NumPy reference transformer (GPT-2 to gpt-oss)")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("--model", default="smollm2-135m", help="preset name or checkpoint path (default: %(default)s)")
        sp.add_argument("--dtype", default="float32", choices=["float64", "float32", "bfloat16"])
        sp.add_argument("--backend", default="numpy", help="backend name or module:attribute (default: numpy)")
        sp.add_argument("--max-new-tokens", type=int, default=32)
        sp.add_argument("--temperature", type=float, default=0.0)
        sp.add_argument("--seed", type=int, default=None)

    g = sub.add_parser("generate", help="continue a prompt, streaming the text")
    model_args(g)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("prompt")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("chat", help="chat in the model's format (ChatML, or harmony for gpt-oss)")
    model_args(c)
    c.set_defaults(func=cmd_chat)

    i = sub.add_parser("inspect", help="parameters, active parameters, KV-cache and weight memory of a model")
    i.add_argument("model", help="preset name, config.json, or checkpoint path")
    i.add_argument("--json", action="store_true", help="print the numbers as JSON (refimpl.sizes.inspect_data)")
    i.set_defaults(func=cmd_inspect)
    from .conformance.cli import add_subcommands
    add_subcommands(sub)
    return p


def _check_outputs(args):
    """Refuse an output path (--json, --save-ref) that cannot be written, before any work is done:
    it is opened for appending (created and removed again if it did not exist)."""
    import os

    for dest in ("json", "save_ref"):
        path = getattr(args, dest, None)
        if not isinstance(path, str) or path == "-":
            continue
        flag = "--" + dest.replace("_", "-")
        existed = os.path.lexists(path)
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise RefimplError(f"{flag} {path}: expected a writable file path, found it unwritable "
                               f"({exc.strerror or type(exc).__name__})") from None
        if not existed:
            os.remove(path)


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def main(argv=None):
    """Run one command; every failure is one line on stderr (spec/reliability.md, "CLI"): exit 2 for a
    RefimplError, 1 for an unexpected error (REFIMPL_DEBUG=1 shows its traceback), 130 for Ctrl-C,
    141 when the reader of stdout went away (a broken pipe, e.g. `refimpl ... | head`)."""
    import os

    args = build_parser().parse_args(argv)
    try:
        _check_outputs(args)
        return args.func(args)
    except RefimplError as exc:
        _err(f"refimpl: error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        try:  # send what is still buffered for stdout nowhere, so the exit does not complain again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except SystemExit as exc:  # the commands return their status; only a plugin or backend exits
        _err(f"refimpl: error: {args.command}: a backend or plugin called sys.exit({exc.code!r}) "
             "while the command ran; nothing was done after it")
        return 1
    except Exception as exc:
        if os.environ.get("REFIMPL_DEBUG"):
            raise
        _err(f"refimpl: error: {args.command}: unexpected {_one_line(exc)} "
             "(an internal error: please report it; REFIMPL_DEBUG=1 shows the traceback)")
        return 1


def _err(line):
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # stderr closed too: the exit status still tells
        pass


if __name__ == "__main__":
    sys.exit(main())
