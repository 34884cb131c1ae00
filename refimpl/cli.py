"""The `refimpl` command: generate | chat | perplexity | inspect (conform | diff | serve come with their modules).

Conventions (README "Command line", spec/reliability.md "CLI"): every option's help shows its
default; argument errors are reported before a model loads; text goes to stdout, everything else
(loading, warnings, the timing line) to stderr; a RefimplError is one line `refimpl: error: ...` and
exit status 2, an unexpected exception one line and exit 1 (REFIMPL_DEBUG=1 shows the traceback),
Ctrl-C exits 130, a closed pipe (`| head`) exits 141 quietly; no traceback, ever.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ._version import __version__
from .errors import ArgumentError, RefimplError

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF)"
_PRESET_ALIASES = (DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct", "default")


# ---------------------------------------------------------------- small helpers

def _say(msg):
    print(f"refimpl: {msg}", file=sys.stderr, flush=True)


def _warn(msg):
    _say(f"warning: {msg}")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" after every option's help unless the help already states its default."""

    def _get_help_string(self, action):
        h = action.help or ""
        if ("default" in h or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return h
        return h + " (default: %(default)s)"


def _typed(kind, check, expected):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}") from None
        if not check(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
        return v
    return parse


_nonneg_float = _typed(float, lambda v: v >= 0 and v == v and v != float("inf"), "a finite number >= 0")
_prob = _typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
_pos_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
_nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
_context_int = _typed(int, lambda v: v >= 2, "an integer >= 2")


def _parse_ids(text):
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise ArgumentError(f"--ids: expected integers separated by commas or spaces, found {text!r}") from None
    if not ids or min(ids) < 0:
        raise ArgumentError(f"--ids: expected at least one id >= 0, found {text!r}")
    return ids


def _utf8(text, what):
    """`text` from argv: refuse bytes that were not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = text[exc.start].encode("utf-8", "surrogateescape")
        raise ArgumentError(f"{what}: expected UTF-8 text, found the byte {byte!r} at character {exc.start} (kept by "
                            f"Python as a lone surrogate)") from None
    return text


def _decode(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArgumentError(f"{what}: expected UTF-8 text, found byte {data[exc.start:exc.start + 1]!r} at offset "
                            f"{exc.start}") from None


def _read_stdin(what):
    if sys.stdin is None or getattr(sys.stdin, "buffer", None) is None:
        raise ArgumentError(f"{what}: '-' reads standard input, found none")
    return _decode(sys.stdin.buffer.read(), f"{what} (standard input)")


def _read_file(path, what):
    if path == "-":
        return _read_stdin(what)
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ArgumentError(f"{what}: {p}: expected a readable file, found {exc.strerror or exc}") from None
    return _decode(data, f"{what} {p}")


# ---------------------------------------------------------------- model resolution and loading

def _resolve_model(spec):
    """(path or preset name to pass to load, display name); errors before anything heavy happens."""
    name = str(spec)
    if not name.strip():  # Path("") is the current folder: never load it by accident
        raise ArgumentError("--model: expected a model name or a path, found an empty string")
    if name.lower() in _PRESET_ALIASES:
        return name, DEFAULT_NAME
    from .hub import is_hub_id, resolve_hub_id

    path = Path(os.path.expanduser(name))
    if not path.exists() and is_hub_id(name):
        found = resolve_hub_id(name)
        return str(found), name + (f" ({found.name})" if found.suffix == ".gguf" else "")
    if not path.exists():
        from .checkpoints.config_files import PRESETS

        if name in PRESETS:
            raise ArgumentError(f"--model {name}: a preset has a configuration but no weights here; pass a path to "
                                f"its checkpoint, or use `refimpl inspect {name}` for its sizes")
        raise ArgumentError(f"--model {name}: no such file or folder, not a known model name ({DEFAULT_MODEL}) and "
                            f"not a hub id (org/name)")
    return str(path), _display_name(path)


def _display_name(path):
    path = Path(path)
    if path.is_file():
        return path.stem if path.suffix == ".gguf" else path.parent.name + "/" + path.name
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
            nm = data.get("_name_or_path")
            if isinstance(nm, str) and nm and not nm.startswith(("/", ".")) and len(nm) < 100:
                return nm
        except (OSError, ValueError):
            pass
    if path.name == "checkpoint" or "snapshots" in path.parts:  # golden/x/checkpoint, hub snapshot
        return path.parent.name if path.name == "checkpoint" else path.parent.parent.name
    return path.name


def _load_tokenizer(spec):
    from .text.tokenizer import Tokenizer

    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.suffix == ".gguf" and p.is_file():
        from .checkpoints.gguf_reader import read_gguf_metadata

        return Tokenizer.from_gguf_metadata(read_gguf_metadata(p))
    if not p.is_file():
        raise ArgumentError(f"--tokenizer {spec}: expected a tokenizer.json, a folder holding one, or a .gguf file, "
                            f"found no such file")
    return Tokenizer.from_tokenizer_json(p)


def _load(args, *, need_tokenizer):
    """The model (and its display name), after every argument was checked."""
    target, display = _resolve_model(args.model)
    if args.tokenizer is not None:
        tp = Path(args.tokenizer).expanduser()
        if not (tp.is_file() or (tp / "tokenizer.json").is_file()):
            raise ArgumentError(f"--tokenizer {args.tokenizer}: expected a tokenizer.json, a folder holding one, or a "
                                f".gguf file, found no such file")
    from .api import load

    _say(f"loading {display} [{args.dtype}, backend {args.backend}] ...")
    t0 = time.perf_counter()
    model = load(target, dtype=args.dtype, backend=args.backend, progress=False)
    if args.tokenizer is not None:
        model.tokenizer = _load_tokenizer(args.tokenizer)
    if need_tokenizer and model.tokenizer is None:
        raise ArgumentError(f"{display}: no tokenizer found beside the checkpoint (tokenizer.json); pass --tokenizer "
                            f"PATH, or token ids with --ids")
    c = model.config
    _say(f"{display}: {c.num_layers} layers, d {c.hidden_size}, vocab {c.vocab_size}, context "
         f"{c.max_position_embeddings}; ready in {time.perf_counter() - t0:.1f} s")
    return model, display


# ---------------------------------------------------------------- generation with streaming, stops and timing

class _StopGeneration(Exception):
    pass


class _Stream:
    """Prints decoded text as ids arrive (special tokens not shown), holding back bytes that do not yet
    form whole characters and any tail that could begin a --stop string; ends the reply at a stop."""

    def __init__(self, tokenizer, out, stops=(), show=True):
        self.tokenizer, self.out, self.stops, self.show = tokenizer, out, [s for s in stops if s], show
        self.ids, self.text, self.shown, self.stopped = [], "", 0, None

    def _write(self, upto):
        if self.show and upto > self.shown:
            self.out.write(self.text[self.shown:upto])
            self.out.flush()
        self.shown = max(self.shown, upto)

    def add(self, tok):
        self.ids.append(tok)
        if self.tokenizer is None:
            return
        text = self.tokenizer.decode(self.ids, skip_special=True)
        if text.endswith("\ufffd"):
            return
        self.text = text
        for s in self.stops:
            k = text.find(s, max(0, self.shown - len(s)))
            if k >= 0:
                self.text = text[:k]
                self._write(k)
                self.stopped = s
                raise _StopGeneration
        hold = 0
        for s in self.stops:  # the longest tail of the text that begins a stop string
            for n in range(min(len(s) - 1, len(text)), hold, -1):
                if s.startswith(text[-n:]):
                    hold = n
                    break
        self._write(len(text) - hold)

    def finish(self):
        if self.tokenizer is not None and self.stopped is None:
            self.text = self.tokenizer.decode(self.ids, skip_special=True)
            self._write(len(self.text))


def _generate(model, ids, args, *, stream, stop_ids=None, max_new=None):
    """New ids (the stop id included when one ended the reply), timing dict; Ctrl-C ends the reply early."""
    timing = {"prompt_tokens": len(ids), "t0": time.perf_counter(), "t_first": None, "new": 0}

    def on_token(tok):
        if timing["t_first"] is None:
            timing["t_first"] = time.perf_counter()
        timing["new"] += 1
        stream.add(tok)

    interrupted = False
    try:
        model.generate(ids, max_new_tokens=max_new, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, seed=args.seed, stop_ids=stop_ids, on_token=on_token)
    except _StopGeneration:
        pass
    except KeyboardInterrupt:
        interrupted = True
    stream.finish()
    timing["t_end"] = time.perf_counter()
    timing["interrupted"] = interrupted
    return stream.ids, timing


def _timing_line(t):
    first = t["t_first"] or t["t_end"]
    pre = first - t["t0"]
    dec_n = max(t["new"] - 1, 0)
    dec = t["t_end"] - first
    n = t["prompt_tokens"]
    parts = [f"prompt {n} tokens in {pre:.2f} s ({n / pre if pre > 0 else 0:.1f} tok/s)"]
    if dec_n:
        parts.append(f"decode {dec_n} tokens in {dec:.2f} s ({dec_n / dec if dec > 0 else 0:.1f} tok/s)")
    _say(", ".join(parts) + (" (interrupted)" if t.get("interrupted") else ""))


def _sampling_warnings(args):
    """Flags that change nothing with the other values given."""
    if args.temperature == 0:
        for flag, val in (("--top-k", args.top_k), ("--top-p", args.top_p), ("--seed", args.seed)):
            if val is not None:
                _warn(f"{flag} has no effect at --temperature 0 (greedy decoding); set --temperature > 0 to sample")
    elif args.top_p == 1.0:
        _warn("--top-p 1 keeps every token (no effect)")


def _budget(model, n_prompt, requested, what):
    room = model.config.max_position_embeddings - n_prompt
    if room <= 0:
        raise ArgumentError(f"{what}: {n_prompt} tokens fill the model's context of "
                            f"{model.config.max_position_embeddings}; nothing can be generated")
    return room if requested is None else min(requested, room)


# ---------------------------------------------------------------- commands

def _prompt_of(args):
    """The prompt text (or None with --ids), checked before any model loads."""
    given = [x for x in (args.prompt is not None, args.prompt_file is not None, args.ids is not None) if x]
    if len(given) != 1:
        raise ArgumentError("prompt: expected exactly one of PROMPT ('-' for standard input), --prompt-file FILE or "
                            f"--ids, found {len(given)}")
    if args.ids is not None:
        return None
    if args.prompt_file is not None:
        return _read_file(args.prompt_file, "--prompt-file")
    if args.prompt == "-":
        return _read_stdin("PROMPT")
    return _utf8(args.prompt, "PROMPT")


def cmd_generate(args):
    text = _prompt_of(args)
    ids = _parse_ids(args.ids) if args.ids is not None else None
    _sampling_warnings(args)
    model, _ = _load(args, need_tokenizer=ids is None)
    tok = model.tokenizer
    if ids is None:
        ids = tok.encode(text, allowed_special="all")  # special-token texts become their ids, as HF's tokenizer does
        if tok.add_bos and tok.bos_id is not None:
            ids = [tok.bos_id] + ids
        if not ids:
            raise ArgumentError("PROMPT: expected some text, found an empty prompt")
    elif max(ids) >= model.config.vocab_size:
        raise ArgumentError(f"--ids: expected ids below the vocabulary size {model.config.vocab_size}, "
                            f"found {max(ids)}")
    max_new = _budget(model, len(ids), args.max_new_tokens, "prompt")
    ids_mode = args.ids is not None
    if not ids_mode:
        sys.stdout.write(text)
        sys.stdout.flush()
    stream = _Stream(None if ids_mode else tok, sys.stdout, args.stop)
    new, timing = _generate(model, ids, args, stream=stream, max_new=max_new)
    if ids_mode:
        sys.stdout.write(" ".join(str(t) for t in new))
    sys.stdout.write("\n")
    sys.stdout.flush()
    _timing_line(timing)
    return 130 if timing["interrupted"] else 0


def _chat_stop_ids(model):
    ids = set(model.config.eos_token_ids)
    if model.tokenizer is not None:
        ids.update(model.tokenizer.eos_ids)
    return sorted(ids)


def _setup_readline():
    """Line editing and history (up arrow) at a terminal; history kept in ~/.cache/refimpl/chat_history."""
    if not sys.stdin.isatty():
        return None
    try:
        import readline
    except ImportError:
        return None
    hist = Path(os.environ.get("REFIMPL_CACHE") or Path.home() / ".cache" / "refimpl") / "chat_history"
    try:
        readline.read_history_file(hist)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save():
        try:
            hist.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(hist)
        except OSError:
            pass
    return save


def cmd_chat(args):
    if sys.stdin is None or sys.stdin.closed:
        raise RefimplError("stdin: expected an open terminal or pipe to read chat turns from, found it closed")
    if args.system is not None:
        _utf8(args.system, "--system")
    _sampling_warnings(args)
    model, display = _load(args, need_tokenizer=True)
    from .text import chat

    tok = model.tokenizer
    harmony = model.config.arch == "gpt_oss"
    if harmony:
        fmt = "harmony (gpt-oss)"
    elif tok.chat_template is not None:
        fmt = "the model's own chat template"
    else:
        fmt = "ChatML (the model has no chat template)"

    def fresh():
        if harmony:
            msgs = [{"role": "system", "content": chat.harmony_system_content()}]
            if args.system:
                msgs.append({"role": "developer", "content": f"# Instructions\n\n{args.system}"})
            return msgs
        return [{"role": "system", "content": args.system}] if args.system is not None else []

    def render(msgs):
        if harmony:
            return chat.render_harmony(msgs)
        return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)

    messages = fresh()
    render(messages + [{"role": "user", "content": "check"}])  # a template that refuses fails before the first turn
    stop_ids = _chat_stop_ids(model)
    save_history = _setup_readline()
    _say(f"chat with {display} in {fmt}; Ctrl-D leaves, /reset starts over, Ctrl-C stops a reply")
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                sys.stdout.write("\n")
                break
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                continue
            try:
                line = _utf8(line, "input")
            except ArgumentError as exc:
                _say(f"error: {exc}")
                continue
            cmd = line.strip()
            if not cmd:
                continue
            if cmd in ("/reset", "/clear"):
                messages = fresh()
                _say("conversation cleared")
                continue
            if cmd in ("/quit", "/exit", "/bye"):
                break
            if cmd.startswith("/") and " " not in cmd:
                _say(f"unknown command {cmd}: /reset starts over, /quit or Ctrl-D leaves")
                continue
            messages.append({"role": "user", "content": line})
            ids = tok.encode(render(messages), allowed_special="all")
            if len(ids) >= model.config.max_position_embeddings:
                messages.pop()
                _say(f"error: the conversation is {len(ids)} tokens, the model's context is "
                     f"{model.config.max_position_embeddings}; /reset to start over")
                continue
            max_new = _budget(model, len(ids), args.max_new_tokens, "conversation")
            stream = _Stream(tok, sys.stdout, args.stop, show=not harmony)
            new, timing = _generate(model, ids, args, stream=stream, stop_ids=stop_ids, max_new=max_new)
            reply = stream.text
            if harmony:
                parsed = chat.parse_harmony(tok.decode([t for t in new if t not in stop_ids]), strict=False)
                finals = [m["content"] for m in parsed if m.get("channel") == "final"]
                reply = finals[-1] if finals else reply
                sys.stdout.write(reply)
            sys.stdout.write("\n")
            sys.stdout.flush()
            messages.append({"role": "assistant", "content": reply})
            if args.timing:
                _timing_line(timing)
    finally:
        if save_history is not None:
            save_history()
    return 0


def cmd_perplexity(args):
    text = _read_file(args.file, "FILE")
    if args.stride is not None and args.context is not None and args.stride > args.context:
        raise ArgumentError(f"--stride {args.stride}: expected at most --context {args.context}")
    model, display = _load(args, need_tokenizer=True)
    from .perplexity import perplexity

    tok = model.tokenizer
    ids = tok.encode(text, allowed_special="none")
    if args.add_bos:
        if tok.bos_id is None:
            raise ArgumentError(f"--add-bos: {display} has no BOS token")
        ids = [tok.bos_id] + ids
    limit = model.config.max_position_embeddings
    context = args.context if args.context is not None else min(limit, 1024)
    if context > limit:
        raise ArgumentError(f"--context {context}: expected at most the model's context length {limit}")
    stride = args.stride if args.stride is not None else max(1, context // 2)
    if stride > context:
        raise ArgumentError(f"--stride {stride}: expected at most the window length {context}")
    if len(ids) < 2:
        raise ArgumentError(f"FILE: expected text of at least 2 tokens, found {len(ids)}")
    t0 = time.perf_counter()
    r = perplexity(model, ids, context=context, stride=stride, progress=True)
    dt = time.perf_counter() - t0
    fed = sum(w["end"] - w["begin"] for w in r["windows"])
    print(f"perplexity {r['ppl']:.4f}  (mean NLL {r['nll']:.5f} nats over {r['tokens']} tokens of {len(ids)}; "
          f"context {context}, stride {stride}{', BOS added' if args.add_bos else ''})")
    _say(f"{len(r['windows'])} windows, {fed} tokens through the model in {dt:.1f} s "
         f"({fed / dt if dt else 0:.1f} tok/s)")
    if args.json:
        out = {"model": display, "file": args.file, "dtype": args.dtype, "add_bos": args.add_bos,
               "n_ids": len(ids), **r}
        data = json.dumps(out, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(data)
        else:
            try:
                Path(args.json).write_text(data, encoding="utf-8")
            except OSError as exc:
                raise ArgumentError(f"--json {args.json}: expected a writable path, "
                                    f"found {exc.strerror or exc}") from None
    return 0


def cmd_inspect(args):
    from .sizes import inspect_json, inspect_report

    print(inspect_json(args.model) if args.json else inspect_report(args.model))
    return 0


# ---------------------------------------------------------------- parser

def build_parser():
    p = argparse.ArgumentParser(prog="refimpl", formatter_class=_Formatter,
                                description="NumPy reference transformer (GPT-2 to gpt-oss): run, chat, evaluate, "
                                            "check.")
    p.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(sp):
        sp.add_argument("--model", default=DEFAULT_MODEL,
                        help="preset name, checkpoint path (.gguf, .safetensors, folder) or hub id org/name from the "
                             "local Hugging Face cache")
        sp.add_argument("--tokenizer", default=None, metavar="PATH",
                        help="use this tokenizer.json (or folder, or .gguf) instead of the model's (default: the one "
                             "beside the checkpoint)")
        sp.add_argument("--dtype", default="float32", choices=["float64", "float32", "bfloat16"],
                        help="compute precision (bfloat16 is emulated step by step)")
        sp.add_argument("--backend", default="numpy", help="backend name or module:attribute")
        sp.add_argument("--threads", type=int, default=None,
                        help="threads for BLAS and the Numba kernels (default: $REFIMPL_THREADS, else all CPUs)")

    def sampling_args(sp, max_new_default, max_new_help):
        sp.add_argument("--max-new-tokens", type=_nonneg_int, default=max_new_default, metavar="N", help=max_new_help)
        sp.add_argument("--temperature", type=_nonneg_float, default=0.0, metavar="T",
                        help="sampling temperature; 0 is greedy")
        sp.add_argument("--top-k", type=_pos_int, default=None, metavar="K",
                        help="sample among the K most likely tokens (default: off)")
        sp.add_argument("--top-p", type=_prob, default=None, metavar="P",
                        help="sample among the most likely tokens whose probabilities add up to P (default: off)")
        sp.add_argument("--seed", type=int, default=None, help="random seed for sampling (default: fresh randomness)")
        sp.add_argument("--stop", action="append", default=[], metavar="TEXT",
                        help="end the reply where TEXT appears (not printed); repeatable (default: none; the model's "
                             "end-of-sequence tokens always stop)")

    g = sub.add_parser("generate", formatter_class=_Formatter, help="continue a prompt, streaming the text",
                       description="Continue a prompt, streaming the text to stdout; a timing line goes to stderr.")
    model_args(g)
    sampling_args(g, 32, "most new tokens (also bounded by the model's context)")
    g.add_argument("--prompt-file", default=None, metavar="FILE",
                   help="read the prompt from FILE (UTF-8) (default: none)")
    g.add_argument("--ids", default=None, metavar="IDS",
                   help='prompt as token ids "1,5,9": no tokenizer needed, the new ids are printed (default: none)')
    g.add_argument("prompt", nargs="?", default=None, metavar="PROMPT",
                   help="the prompt text; '-' reads standard input")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("chat", formatter_class=_Formatter,
                       help="chat in the model's own format (its chat template; harmony for gpt-oss)",
                       description="Chat with the model. Lines are edited with readline (history with the arrow "
                                   "keys); an empty line is ignored; /reset starts a new conversation; Ctrl-C stops "
                                   "a reply; Ctrl-D (or /quit) leaves.")
    model_args(c)
    sampling_args(c, None, "most tokens per reply (default: until end-of-sequence, bounded by the context)")
    c.add_argument("--system", default=None, metavar="TEXT",
                   help="system prompt (default: none; the model's template may add its own)")
    c.add_argument("--timing", action="store_true", help="print a timing line after each reply (default: off)")
    c.set_defaults(func=cmd_chat)

    pp = sub.add_parser("perplexity", formatter_class=_Formatter,
                        help="perplexity of a text file (HF's strided recipe)",
                        description="Perplexity of FILE: every token scored given the tokens before it in a sliding "
                                    "window (spec/perplexity.md); no BOS unless --add-bos.")
    model_args(pp)
    pp.add_argument("file", metavar="FILE", help="UTF-8 text file; '-' reads standard input")
    pp.add_argument("--context", type=_context_int, default=None, metavar="N",
                    help="window length in tokens (default: the model's context, at most 1024)")
    pp.add_argument("--stride", type=_pos_int, default=None, metavar="S",
                    help="window step in tokens; smaller = more overlap, slower (default: half the window)")
    pp.add_argument("--add-bos", action="store_true", help="put the BOS token before the text (default: off)")
    pp.add_argument("--json", default=None, metavar="OUT",
                    help="also write the result as JSON to OUT ('-': stdout) (default: none)")
    pp.set_defaults(func=cmd_perplexity)

    i = sub.add_parser("inspect", formatter_class=_Formatter,
                       help="parameters, active parameters, KV-cache and weight memory of a model")
    i.add_argument("model", help="preset name, config.json, or checkpoint path")
    i.add_argument("--json", action="store_true", help="print the numbers as JSON (refimpl.sizes.inspect_data) "
                                                       "(default: off)")
    i.set_defaults(func=cmd_inspect)
    b = sub.add_parser("bench", help="prefill/decode speed of backends side by side (and HF transformers), with bandwidth")
    from .bench import add_arguments as bench_arguments, run_bench

    bench_arguments(b)
    b.set_defaults(func=run_bench)
    from .conformance.cli import add_subcommands

    add_subcommands(sub)
    from .serve import add_serve_parser

    add_serve_parser(sub)
    for sp in sub.choices.values():
        sp.formatter_class = _Formatter
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


def _check_outputs(args):
    """Refuse an output path (--json, --save-ref) that cannot be written, before any work is done:
    it is opened for appending (created and removed again if it did not exist)."""
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


def _internal_error(exc):
    if os.environ.get("REFIMPL_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    text = str(exc).strip().splitlines()
    _err(f"refimpl: error: unexpected {type(exc).__name__}: {text[0][:300] if text else ''} "
         "(a bug in refimpl; REFIMPL_DEBUG=1 shows the traceback)")
    return 1


def main(argv=None):
    """Run one command; every failure is one line on stderr (spec/reliability.md, "CLI"): exit 2 for a
    RefimplError or an OS error, 1 for an unexpected exception (REFIMPL_DEBUG=1 shows its traceback), 130
    for Ctrl-C, 141 when the reader of stdout went away (a broken pipe, e.g. `refimpl ... | head`)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, argument errors (usage + one line, status 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        _check_outputs(args)
        apply_threads(getattr(args, "threads", None))
        return args.func(args)
    except RefimplError as exc:
        _flush_quietly()
        _err(f"refimpl: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _flush_quietly()
        _err("")
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except SystemExit as exc:  # the commands return their status; only a plugin or backend exits
        _err(f"refimpl: error: {args.command}: a backend or plugin called sys.exit({exc.code!r}) "
             "while the command ran; nothing was done after it")
        return 1
    except (OSError, MemoryError) as exc:
        _err(f"refimpl: error: {type(exc).__name__}: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - no traceback from the command, ever
        return _internal_error(exc)


def _err(line):
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):  # stderr closed too: the exit status still tells
        pass


def _flush_quietly():
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        _silence_stdout()


def _silence_stdout():
    """stdout's reader went away (`| head`): point fd 1 at /dev/null so the exit flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def entry():
    """Console-script entry point: sys.exit(main())."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
