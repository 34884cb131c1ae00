"""`refimpl conform` and `refimpl diff` (hooked into refimpl/cli.py by add_subcommands).

    refimpl conform --backend SPEC [--ops a,b] [--dtype float32] [--json FILE] [--max-examples N]
    refimpl conform --list-misreadings
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
                   help="backend name, module:attribute (from the current directory) or misreading:NAME "
                        "(default: $REFIMPL_BACKEND, else numpy)")
    c.add_argument("--ops", default=None, help="comma-separated op names and/or model:<arch> (default: all)")
    c.add_argument("--dtype", default="float32,float64",
                   help="comma-separated dtypes of the inputs given to the backend: float32, float64, bfloat16, "
                        "or 'all' (default: %(default)s)")
    c.add_argument("--json", default=None, metavar="FILE", help="write the machine-readable results here")
    c.add_argument("--max-examples", type=int, default=20, help="Hypothesis examples per op (default: %(default)s)")
    c.add_argument("--no-models", action="store_true", help="skip the whole tiny-model checks")
    c.add_argument("--list-misreadings", action="store_true", help="print the misreading names (known-wrong readings) and exit")
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
    if args.list_misreadings:
        from .misreadings import MISREADINGS

        for name, m in MISREADINGS.items():
            print(f"{name}: {m.description}")
        return 0
    try:
        from .suite import format_row, format_table, run_suite
    except ImportError as exc:  # hypothesis is a dev dependency
        raise RefimplError(f"conform: needs the package 'hypothesis' ({exc}); pip install 'refimpl[dev]'") from None
    from .selection import resolve_backend

    if args.max_examples < 0:
        raise ArgumentError(f"--max-examples: expected an integer >= 0, found {args.max_examples}")
    spec = args.backend
    backend = resolve_backend(spec)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    models = [] if args.no_models else None

    def progress(row):  # one line per row on stderr, terminal or not (a CI log shows how far it got)
        print("  " + format_row(row), file=sys.stderr, flush=True)

    result = run_suite(backend, ops=ops, dtype=args.dtype, max_examples=args.max_examples, models=models,
                       spec=spec or backend.name, progress=None if args.quiet else progress)
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
    from .tracediff import TRACE_C, check_overlap, diff_traces, load_trace, save_trace, stored_dtype

    c = TRACE_C if args.c is None else args.c
    model = ids = None
    if args.model is None:
        if len(args.traces) != 2 or args.against:
            raise ArgumentError("traces: expected two trace files A B (or --model M --against TRACE), "
                                f"found {len(args.traces)} file(s)")
        ref, ref_meta = load_trace(args.traces[0])
        other, meta = load_trace(args.traces[1])
        names = (args.traces[0], args.traces[1])
        stored = [stored_dtype(ref_meta), stored_dtype(meta)]
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
            try:
                ids = json.loads(meta["ids"])
            except (ValueError, RecursionError):
                ids = None
            if not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
                raise ArgumentError(f"{args.against}: __metadata__ ids: expected a JSON list of token ids, found "
                                    "other text; pass --ids or --prompt")
        else:
            raise ArgumentError("--ids: expected --ids or --prompt (the trace file stores no ids)")
        ref = model.trace(ids)
        names = (f"{args.model} (reference)", args.against)
        stored = [None, stored_dtype(meta)]
        if args.save_ref:
            save_trace(args.save_ref, ref, ids=ids, metadata={"producer": "refimpl", "dtype": args.model_dtype})
    check_overlap(ref, other, *names)  # empty or disjoint: exit 2, both name sets listed
    dtype, u = args.dtype, None
    meta_dtypes = [d for d in stored if d]
    if dtype is None and meta_dtypes:  # the precision a file says it was computed in counts, not only how it is stored
        from .tracediff import unit_roundoff_of

        u = unit_roundoff_of(*meta_dtypes, *[v.dtype for v in ref.values()], *[v.dtype for v in other.values()])
    floors, floor_note, at_prec, prec = None, None, None, None
    if model is not None:  # tolerance floors from the reference run at the other trace's precision
        from .tracediff import _U, correct_run_floors, precision_of_u, unit_roundoff_of

        if u is not None:
            uo = u
        elif dtype is not None:
            uo = _U[dtype]
        else:
            uo = unit_roundoff_of(*[v.dtype for v in ref.values()], *[v.dtype for v in other.values()])
        prec = precision_of_u(uo)
        if prec in ("float32", "bfloat16") and prec != args.model_dtype:
            at_prec = load(args.model, dtype=prec)
            floors = correct_run_floors(ref, at_prec.trace(ids))
            floor_note = (f"tolerance floors: 4 x refimpl's own {prec} run's error per tensor "
                          "(tracediff.correct_run_floors)")
    rep = diff_traces(ref, other, dtype=dtype, u=u, c=c, floors=floors)
    if u is not None:
        rep.notes.append(f"tolerance from the stored dtype {', '.join(meta_dtypes)} (metadata 'dtype'); --dtype overrides it")
    if floor_note:
        rep.notes.append(floor_note)
    hits = None
    if model is not None and not rep.ok:
        from .diagnosis import diagnose_trace

        # candidates retried at the other trace's precision only for bfloat16 (where rounding placement
        # matters); on float32 engines the retry named nothing more (golden/openai_engines, measured)
        retry = at_prec is not None and prec == "bfloat16"

        hits = diagnose_trace(model.config, model.weights, ids, model.dtype, other, dtype=dtype, u=u, c=c,
                              floors=floors, other_mode=at_prec.precision if retry else None,
                              other_weights=at_prec.weights if retry else None)
        if hits:
            rep.notes.append("reproduced by: " + "; ".join(f"{n} ({d})" for n, d in hits))
        else:
            rep.notes.append("no known misreading (op-level, config-level or weight-layout) reproduces the other trace")
    print(rep)
    if args.json:
        d = rep.to_dict()
        if hits is not None:
            d["misreadings"] = [dict(name=n, description=t) for n, t in hits]
        _write_json(args.json, d)
    return 0 if rep.ok else 1
