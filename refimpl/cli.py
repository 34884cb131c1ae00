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

    model = load(args.model, dtype=args.dtype, backend=args.backend, progress=True)
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
        sp.add_argument("--threads", type=int, default=None,
                        help="threads for BLAS and the Numba kernels (default: $REFIMPL_THREADS, else all CPUs)")

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
    b = sub.add_parser("bench", help="prefill/decode speed of backends side by side (and HF transformers), with bandwidth")
    from .bench import add_arguments as bench_arguments, run_bench

    bench_arguments(b)
    b.set_defaults(func=run_bench)
    from .conformance.cli import add_subcommands
    add_subcommands(sub)
    return p


def apply_threads(n):
    """--threads N: REFIMPL_THREADS=N for the backends, and BLAS limited to N threads (threadpoolctl when
    installed; otherwise the OPENBLAS/OMP/MKL variables, which only act in a fresh process)."""
    import os

    if n is None:
        return
    if n < 1:
        raise RefimplError(f"--threads: expected an integer >= 1, found {n}")
    os.environ["REFIMPL_THREADS"] = str(n)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(n, user_api="blas")
    except ImportError:
        pass


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        apply_threads(getattr(args, "threads", None))
        return args.func(args)
    except RefimplError as exc:
        print(f"refimpl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
