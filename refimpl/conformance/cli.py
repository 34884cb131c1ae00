"""`refimpl conform` and `refimpl diff` (hooked into refimpl/cli.py by add_subcommands).

    refimpl conform --backend SPEC [--ops a,b] [--dtype float32] [--json FILE] [--max-examples N]
    refimpl conform --list-variants
    refimpl diff A.safetensors B.safetensors [--dtype bfloat16] [--json FILE]
    refimpl diff --model M --against TRACE.safetensors [--prompt TEXT | --ids 1,2,3]

See spec/conformance.md for the table, the JSON schema and the trace tolerance rule.
"""

import json
import sys

from ..errors import ArgumentError, RefimplError


def add_subcommands(subparsers):
    """Add the `conform` and `diff` subcommands to refimpl's argparse subparsers."""
    c = subparsers.add_parser("conform", help="run the conformance property suite against a backend")
    c.add_argument("--backend", default=None,
                   help="backend name, module:attribute or misreading:NAME (default: $REFIMPL_BACKEND, else numpy)")
    c.add_argument("--ops", default=None, help="comma-separated op names and/or model:<arch> (default: all)")
    c.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"],
                   help="dtype of the inputs given to the backend (default: %(default)s)")
    c.add_argument("--json", default=None, metavar="FILE", help="write the machine-readable results here")
    c.add_argument("--max-examples", type=int, default=20, help="Hypothesis examples per op (default: %(default)s)")
    c.add_argument("--shrink", action="store_true", help="shrink a failing case to a minimal one (slower)")
    c.add_argument("--no-models", action="store_true", help="skip the whole tiny-model checks")
    c.add_argument("--list-variants", action="store_true", help="print the known-wrong variant names and exit")
    c.add_argument("--quiet", action="store_true", help="print only the table, no failure details")
    c.set_defaults(func=cmd_conform)

    d = subparsers.add_parser("diff", help="first divergence between two traces (spec/trace.md names)")
    d.add_argument("traces", nargs="*", metavar="TRACE", help="A B: reference trace, other trace (safetensors)")
    d.add_argument("--model", default=None, help="produce the reference trace with this model (path or preset)")
    d.add_argument("--against", default=None, metavar="TRACE", help="the other trace, with --model")
    d.add_argument("--prompt", default=None, help="text to tokenize with the model's tokenizer, with --model")
    d.add_argument("--ids", default=None, help='token ids "1,2,3", with --model (default: the ids stored in TRACE)')
    d.add_argument("--model-dtype", default="float64", choices=["float64", "float32", "bfloat16"],
                   help="precision of the reference run with --model (default: %(default)s)")
    d.add_argument("--dtype", default=None, choices=["float64", "float32", "bfloat16", "float16"],
                   help="precision of the coarser side for the tolerance (default: inferred from stored dtypes)")
    d.add_argument("--c", type=float, default=None, help="the tolerance rule's constant C (default 32)")
    d.add_argument("--save-ref", default=None, metavar="FILE", help="with --model: also save the reference trace")
    d.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON here")
    d.set_defaults(func=cmd_diff)
    return subparsers


def _write_json(path, obj):
    text = json.dumps(obj, indent=2, allow_nan=False)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def cmd_conform(args):
    if args.list_variants:
        from .variants import VARIANTS

        for name in VARIANTS:
            print(name)
        return 0
    try:
        from .suite import format_row, format_table, run_suite
    except ImportError as exc:  # hypothesis is a dev dependency
        raise RefimplError(f"conform: needs the package 'hypothesis' ({exc}); pip install 'refimpl[dev]'") from None
    from refimpl.backends import get_backend

    if args.max_examples < 0:
        raise ArgumentError(f"--max-examples: expected an integer >= 0, found {args.max_examples}")
    spec = args.backend
    backend = get_backend(spec)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    models = [] if args.no_models else None
    progress = None
    if sys.stderr.isatty():
        def progress(row):
            print("  " + format_row(row), file=sys.stderr, flush=True)

    result = run_suite(backend, ops=ops, dtype=args.dtype, max_examples=args.max_examples, models=models,
                       shrink=args.shrink, spec=spec or backend.name, progress=progress)
    print(format_table(result, details=not args.quiet))
    if args.json:
        _write_json(args.json, result.to_dict())
    return 0 if result.ok else 1


def _parse_ids(text):
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ArgumentError(f"--ids: expected comma-separated integers, found {text!r}") from None


def cmd_diff(args):
    from .tracediff import TRACE_C, diff_traces, load_trace, save_trace

    c = TRACE_C if args.c is None else args.c
    if args.model is None:
        if len(args.traces) != 2 or args.against:
            raise ArgumentError("traces: expected two trace files A B (or --model M --against TRACE), "
                                f"found {len(args.traces)} file(s)")
        ref, _ = load_trace(args.traces[0])
        other, _ = load_trace(args.traces[1])
    else:
        if args.against is None and len(args.traces) == 1:
            args.against = args.traces[0]
        if args.against is None:
            raise ArgumentError("--against: expected the trace file to compare with the model's reference trace")
        from ..api import load

        other, meta = load_trace(args.against)
        model = load(args.model, dtype=args.model_dtype)
        if args.ids is not None:
            ids = _parse_ids(args.ids)
        elif args.prompt is not None:
            if model.tokenizer is None:
                raise RefimplError(f"{args.model}: no tokenizer found; pass --ids instead of --prompt")
            ids = model.tokenizer.encode(args.prompt)
        elif "ids" in meta:
            ids = json.loads(meta["ids"])
        else:
            raise ArgumentError("--ids: expected --ids or --prompt (the trace file stores no ids)")
        ref = model.trace(ids)
        if args.save_ref:
            save_trace(args.save_ref, ref, ids=ids, metadata={"producer": "refimpl", "dtype": args.model_dtype})
    rep = diff_traces(ref, other, dtype=args.dtype, c=c)
    print(rep)
    if args.json:
        _write_json(args.json, rep.to_dict())
    return 0 if rep.ok else 1
