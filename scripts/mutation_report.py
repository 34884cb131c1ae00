"""Summarise a mutmut run of refimpl/ops (scripts/mutation.sh calls this; not used by CI).

Reads mutmut's own result files under mutants/ (refimpl/ops/<module>.py.meta: exit code and test
seconds per mutant; refimpl/ops/<module>.py: every mutant as a function x_<name>__mutmut_<n> beside
x_<name>__mutmut_orig) and prints, per module: mutants generated, killed, survived, timed out, no
tests, not checked, score = killed / (killed + survived + timeout-counted-as-killed excluded), and
the test seconds spent. With --survivors it lists each survivor's one-line diff with a first
mechanical sort:

    message   only a string, a None or a repr() inside an error message or an argument name changed
              (require(...), as_float_array(x, "x"), raise ..., warn(...))
    errstate  an np.errstate(...) argument changed: only which floating-point warnings are shown
    copy      astype/array copy=False changed to True, None or left out: same values
    falsy     False replaced by None where only truthiness is read (require(None, ...) still raises)
    other     to be read by hand (spec/mutation.md records the verdicts)

The sort only groups; every verdict in spec/mutation.md was read by hand.
"""

import argparse
import ast
import difflib
import io
import json
import re
import sys
import time
import tokenize
from pathlib import Path

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}


def functions(path):
    """{function name: source} for every def in a mutated module (methods included)."""
    src = path.read_text()
    lines = src.splitlines()
    out = {}
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            out[node.name] = "\n".join(lines[node.lineno - 1:node.end_lineno])
    return out


def _code_tokens(line):
    """The line's tokens less strings and comments (None when it does not tokenize alone)."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    kinds = {tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER}
    fstring = {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    return [t.string for t in toks if t.type not in kinds | fstring]


def diff(orig, mutant, name):
    """(removed lines, added lines, context lines of orig before the first change)."""
    a = orig.replace(name + "__mutmut_orig", "F").splitlines()
    b = mutant.split("(", 1)
    b = ("def F(" + b[1]).splitlines() if len(b) == 2 else mutant.splitlines()
    a[0] = "def F(" + a[0].split("(", 1)[1] if "(" in a[0] else a[0]
    rem, add, ctx = [], [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if op != "equal":
            if not ctx:
                ctx = a[max(0, i1 - 4):i1]
            rem += a[i1:i2]
            add += b[j1:j2]
    return rem, add, ctx


_COPY = re.compile(r",?\s*copy=\w+")
_TEXT = [re.compile(p) for p in (r"f?(\"[^\"]*\"|'[^']*')", r"\bNone\b", r"repr\(\w+\)", r"type\(\w+\)\.__name__")]


def _message_form(line):
    for pat in _TEXT:
        line = pat.sub("S", line)
    return line.replace(" ", "")


def classify(rem, add, ctx):
    text = " ".join(rem + add)
    if "errstate(" in text:
        return "errstate"
    if len(rem) == len(add) == 1 and _COPY.sub("", rem[0]).replace(" ", "") == _COPY.sub("", add[0]).replace(" ", ""):
        return "copy"
    if len(rem) == len(add) == 1 and rem[0].replace("False", "None") == add[0]:
        return "falsy"
    if (len(rem) == len(add) == 1 and any(k in rem[0] for k in ("require(", "as_float_array(", "as_int_array(",
                                                                  "raise ", "Error("))
            and _message_form(rem[0]) == _message_form(add[0])):
        return "message"
    if len(rem) == len(add) == 1:
        ta, tb = _code_tokens(rem[0]), _code_tokens(add[0])
        window = " ".join(ctx[-3:] + rem)
        if ta is not None and ta == tb and any(k in window for k in ("require(", "raise ", "Error(", "warn(", "_fail(")):
            return "message"
    return "other"


def _read_meta(meta):
    """mutmut's .meta JSON; a file being rewritten by a running mutmut is read again."""
    for _ in range(20):
        try:
            return json.loads(meta.read_text())
        except json.JSONDecodeError:
            time.sleep(0.2)
    return json.loads(meta.read_text())


def module_rows(mutants_dir, only=None, want_diffs=True):
    rows, survivors = [], []
    for meta in sorted((mutants_dir / "refimpl" / "ops").glob("*.py.meta")):
        mod = meta.name[:-len(".py.meta")]
        if only and mod not in only:
            continue
        d = _read_meta(meta)
        codes = d["exit_code_by_key"]
        if not codes:
            continue
        counts = {}
        for k, v in codes.items():
            s = STATUS.get(v, "suspicious")
            counts[s] = counts.get(s, 0) + 1
        secs = sum(d.get("durations_by_key", {}).values())
        fns = functions(mutants_dir / "refimpl" / "ops" / (mod + ".py")) if want_diffs else {}
        cats = {}
        for k, v in sorted(codes.items(), key=lambda kv: kv[0]):
            if STATUS.get(v) != "survived" or not want_diffs:
                continue
            fname = k.rsplit(".", 1)[1]
            base = fname.rsplit("__mutmut_", 1)[0]
            rem, add, ctx = diff(fns[base + "__mutmut_orig"], fns[fname], base)
            c = classify(rem, add, ctx)
            cats[c] = cats.get(c, 0) + 1
            survivors.append((mod, k, c, rem, add))
        killed, surv, tout = counts.get("killed", 0), counts.get("survived", 0), counts.get("timeout", 0)
        judged = killed + surv + tout
        rows.append(dict(module=mod, generated=len(codes), killed=killed, survived=surv, timeout=tout,
                         no_tests=counts.get("no tests", 0), not_checked=counts.get("not checked", 0),
                         other=sum(v for k, v in counts.items() if k not in
                                   ("killed", "survived", "timeout", "no tests", "not checked")),
                         score=(killed + tout) / judged if judged else float("nan"), test_s=secs, cats=cats))
    return rows, survivors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", default="mutants", help="mutmut's working folder (default mutants/)")
    p.add_argument("--survivors", action="store_true", help="list every survivor with its diff and sort")
    p.add_argument("--module", nargs="+", help="only these modules (norms, rope, ...)")
    p.add_argument("--category", action="append", help="with --survivors: only these sorts")
    p.add_argument("--names", choices=["unchecked", "survived"],
                   help="print the names of these mutants of --module (for mutmut run) and stop")
    p.add_argument("--sample", type=int, default=0, help="with --names: a random sample of this many")
    p.add_argument("--seed", type=int, default=0, help="with --sample: the sample's seed")
    a = p.parse_args(argv)
    if a.names:
        # unchecked: no result yet, or "no tests" (a test added since may reach it now)
        want = (None, 5, 33) if a.names == "unchecked" else (0,)
        names = []
        for mod in a.module or []:
            meta = Path(a.mutants) / "refimpl" / "ops" / (mod + ".py.meta")
            if meta.exists():
                names += sorted(k for k, v in _read_meta(meta)["exit_code_by_key"].items() if v in want)
        if a.sample and len(names) > a.sample:
            import random

            names = sorted(random.Random(a.seed).sample(names, a.sample))
        print("\n".join(names))
        return 0
    rows, survivors = module_rows(Path(a.mutants), a.module)
    if a.module:
        rows = [r for r in rows if r["module"] in a.module]
        survivors = [s for s in survivors if s[0] in a.module]
    print("| module | generated | killed | survived | timeout | no tests | not checked | score | "
          "survivors: message / errstate / copy / falsy / other | test s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    tot = {k: 0 for k in ("generated", "killed", "survived", "timeout", "no_tests", "not_checked")}
    for r in rows:
        c = r["cats"]
        print(f"| {r['module']} | {r['generated']} | {r['killed']} | {r['survived']} | {r['timeout']} | "
              f"{r['no_tests']} | {r['not_checked']} | {100 * r['score']:.1f}% | "
              f"{c.get('message', 0)} / {c.get('errstate', 0)} / {c.get('copy', 0)} / {c.get('falsy', 0)} / "
              f"{c.get('other', 0)} | "
              f"{r['test_s']:.0f} |")
        for k in tot:
            tot[k] += r[k]
    j = tot["killed"] + tot["survived"] + tot["timeout"]
    if j:
        print(f"| all | {tot['generated']} | {tot['killed']} | {tot['survived']} | {tot['timeout']} | "
              f"{tot['no_tests']} | {tot['not_checked']} | {100 * (tot['killed'] + tot['timeout']) / j:.1f}% | | |")
    if a.survivors:
        for mod, k, c, rem, add in survivors:
            if a.category and c not in a.category:
                continue
            print(f"\n{k}  [{c}]")
            for line in rem:
                print("  - " + line.strip())
            for line in add:
                print("  + " + line.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
