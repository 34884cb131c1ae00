"""Decode speed of refimpl's NumPy reference vs HF transformers on SmolLM2-135M (the same GGUF file).

    python bench/decode_speed.py [--threads 2] [--new-tokens 32] [--repeats 5] [--peer-python /tmp/goldenv/bin/python]

Both sides get the same prompt ids (refimpl's tokenizer), run one prefill forward pass that fills
the KV cache, then `--new-tokens` single-token forward passes with the cache, picking the next id
greedily (argmax). Prefill and each decode step are timed separately with time.perf_counter.
After one untimed warm-up run on each side, `--repeats` timed runs alternate refimpl, peer,
refimpl, peer, ... so that both see the same machine load. Headline figures: the run with the
median decode speed (decode tokens/s = decode steps / their summed time), and tokens/s from the
median step time over all runs (less sensitive to other processes); every step time is kept.

refimpl: refimpl.load(gguf, dtype="float32") -> float32 NumPy forward (refimpl.model.forward).
peer: transformers AutoModelForCausalLM.from_pretrained(folder, gguf_file=..., dtype=float32)
(dequantized to float32, default attention implementation), in a subprocess run by the
interpreter given with --peer-python (refimpl never imports torch); without it the peer is skipped.
Threads: OMP/MKL/OPENBLAS_NUM_THREADS (and torch.set_num_threads) = --threads for both.
Writes --out (default bench/results/decode_speed.json).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import machine  # noqa: E402

PROMPT = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")


def _set_threads(n):
    for v in THREAD_VARS:
        os.environ[v] = str(n)


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _summary(prefill_s, steps_s, prompt_len):
    steps = sorted(steps_s)
    return {"prompt_tokens": prompt_len, "prefill_s": prefill_s, "prefill_tokens_per_s": prompt_len / prefill_s,
            "decode_steps": len(steps_s), "decode_total_s": sum(steps_s),
            "decode_tokens_per_s": len(steps_s) / sum(steps_s),
            "decode_ms_per_token_median": 1000 * steps[len(steps) // 2],
            "decode_ms_per_token_min": 1000 * steps[0], "decode_ms_per_token_max": 1000 * steps[-1]}


def _aggregate(runs, prompt_len):
    """Headline = the run with the median decode speed; plus median-step figures over all runs."""
    per = [_summary(r["prefill_s"], r["steps_s"], prompt_len) for r in runs]
    order = sorted(range(len(per)), key=lambda i: per[i]["decode_tokens_per_s"])
    res = dict(per[order[len(order) // 2]])
    all_steps = sorted(x for r in runs for x in r["steps_s"])
    prefills = sorted(r["prefill_s"] for r in runs)
    res.update({"repeats": len(runs),
                "decode_ms_per_token_median_all_runs": 1000 * all_steps[len(all_steps) // 2],
                "decode_tokens_per_s_from_median_step": 1 / all_steps[len(all_steps) // 2],
                "prefill_tokens_per_s_from_median_run": prompt_len / prefills[len(prefills) // 2],
                "runs": [{k: r[k] for k in ("prefill_tokens_per_s", "decode_tokens_per_s",
                                            "decode_ms_per_token_median")} for r in per],
                "decode_ms_per_step_each_run": [[round(1000 * x, 2) for x in r["steps_s"]] for r in runs],
                "tokens": runs[0]["tokens"]})
    return res


def _decode_loop(forward_prompt, forward_one, argmax, new_tokens):
    t = time.perf_counter()
    state, logits = forward_prompt()
    prefill = time.perf_counter() - t
    tok = argmax(logits)
    new, steps = [tok], []
    for _ in range(new_tokens):
        t = time.perf_counter()
        state, logits = forward_one(state, tok)
        tok = argmax(logits)
        steps.append(time.perf_counter() - t)
        new.append(tok)
    return {"prefill_s": prefill, "steps_s": steps, "tokens": new}


# ------------------------------------------------------------------------------------ peer (torch)

def serve_peer(args):
    """Runs under the peer interpreter: loads transformers' model, then one timed run per stdin line."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5.x renaming past_key_values
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM

    ids = json.loads(args.peer_ids)
    folder, fname = os.path.split(os.path.abspath(args.gguf))
    rss0 = _maxrss_mib()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0

    def prompt():
        out = model(torch.tensor([ids], dtype=torch.long), use_cache=True)
        return out.past_key_values, out.logits

    def one(past, tok):
        out = model(torch.tensor([[tok]], dtype=torch.long), past_key_values=past, use_cache=True)
        return out.past_key_values, out.logits

    def argmax(logits):
        return int(logits[0, -1].argmax())

    info = {"load_s": load_s, "peak_rss_mib_before_load": rss0, "peak_rss_mib_after_load": _maxrss_mib(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_num_threads": torch.get_num_threads(),
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "torch_parallel_info": torch.__config__.parallel_info().strip().splitlines(),
            "torch_blas": [ln.strip() for ln in torch.__config__.show().splitlines()
                           if ln.strip().startswith(("- Intel(R) MKL", "- LAPACK", "- Intel(R) oneAPI"))]}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        with torch.no_grad():
            r = _decode_loop(prompt, one, argmax, args.new_tokens)
        r["peak_rss_mib"] = _maxrss_mib()
        print(json.dumps(r), flush=True)


class Peer:
    """The peer subprocess: start (loads the model), run() -> one timed run, close()."""

    def __init__(self, args, ids):
        cmd = [args.peer_python, os.path.abspath(__file__), "--as-peer", "--gguf", args.gguf,
               "--threads", str(args.threads), "--new-tokens", str(args.new_tokens), "--peer-ids", json.dumps(ids)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ))
        self.info = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"peer exited with status {self.proc.wait()} (its stderr is above)")
        return json.loads(line)

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ------------------------------------------------------------------------------------ refimpl (numpy)

def setup_refimpl(args):
    """(run function, prompt ids, info) for refimpl's float32 NumPy forward pass."""
    sys.path.insert(0, ROOT)
    import numpy as np

    rss_imports = _maxrss_mib()
    import refimpl
    from refimpl import model as _model

    rss0 = _maxrss_mib()
    t0 = time.perf_counter()
    m = refimpl.load(args.gguf, dtype="float32")
    load_s = time.perf_counter() - t0
    rss_load = _maxrss_mib()
    ids = m.tokenizer.encode(args.prompt)
    cfg, W = m.config, m.weights

    def prompt():
        cache = m.new_cache()
        return cache, _model.forward(cfg, W, np.asarray(ids), cache=cache, dtype=m.dtype, ops=m.ops)

    def one(cache, tok):
        return cache, _model.forward(cfg, W, np.array([tok]), cache=cache, dtype=m.dtype, ops=m.ops)

    def argmax(logits):
        return int(np.argmax(logits[-1]))

    def run():
        return _decode_loop(prompt, one, argmax, args.new_tokens)

    blas = {}
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = {"name": b.get("name"), "version": b.get("version"), "config": b.get("openblas configuration")}
    except Exception:  # older NumPy: no dict mode
        pass
    arrays = {id(a): a for a in _iter_arrays(W)}
    info = {"load_s": load_s, "peak_rss_mib_after_imports": rss_imports, "peak_rss_mib_before_load": rss0,
            "peak_rss_mib_after_load": rss_load, "numpy": np.__version__, "blas": blas,
            "refimpl": refimpl.__version__, "weights_bytes": int(sum(a.nbytes for a in arrays.values())),
            "decode": lambda toks: m.tokenizer.decode(toks)}
    return run, ids, info


def _iter_arrays(w):
    import numpy as np

    if isinstance(w, np.ndarray):
        yield w
    elif isinstance(w, dict):
        for v in w.values():
            yield from _iter_arrays(v)
    elif isinstance(w, (list, tuple)):
        for v in w:
            yield from _iter_arrays(v)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", default=None, help="SmolLM2 GGUF file (default: refimpl.fetch.smollm2_gguf_path())")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--new-tokens", type=int, default=32, help="timed single-token decode steps (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side after one warm-up (default 5)")
    p.add_argument("--threads", type=int, default=2, help="BLAS / torch threads for both (default 2)")
    p.add_argument("--peer-python", default=None,
                   help="interpreter with torch + transformers + gguf (e.g. /tmp/goldenv/bin/python); "
                        "default: skip the peer")
    p.add_argument("--out", default=os.path.join(HERE, "results", "decode_speed.json"))
    p.add_argument("--as-peer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer-ids", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _set_threads(args.threads)  # before NumPy / torch load their BLAS

    if args.as_peer:
        serve_peer(args)
        return 0

    if args.gguf is None:
        sys.path.insert(0, ROOT)
        from refimpl.fetch import smollm2_gguf_path

        args.gguf = str(smollm2_gguf_path())
    load_start = list(os.getloadavg())
    print(f"loading refimpl (NumPy, {args.threads} threads) from {args.gguf} ...", file=sys.stderr, flush=True)
    run_ours, ids, ours_info = setup_refimpl(args)
    peer = None
    if args.peer_python:
        print(f"loading peer (transformers, {args.threads} threads) with {args.peer_python} ...",
              file=sys.stderr, flush=True)
        peer = Peer(args, ids)
    else:
        print("peer skipped (no --peer-python)", file=sys.stderr)

    run_ours()  # warm-up
    if peer:
        peer.run()
    ours_runs, peer_runs = [], []
    for i in range(args.repeats):
        ours_runs.append(run_ours())
        if peer:
            peer_runs.append(peer.run())
        print(f"  run {i + 1}/{args.repeats}: refimpl {args.new_tokens / sum(ours_runs[-1]['steps_s']):.2f} tok/s"
              + (f", transformers {args.new_tokens / sum(peer_runs[-1]['steps_s']):.2f} tok/s" if peer else ""),
              file=sys.stderr, flush=True)
    if peer:
        peer.close()

    decode_text = ours_info.pop("decode")
    ours = _aggregate(ours_runs, len(ids))
    ours.update(ours_info)
    ours.update({"text": decode_text(ours["tokens"]), "peak_rss_mib_end": _maxrss_mib()})
    result = {"benchmark": "decode_speed", "model": os.path.basename(args.gguf),
              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "load_average_1_5_15": {"start": load_start, "end": list(os.getloadavg())},
              "threads": {v: os.environ[v] for v in THREAD_VARS}, "prompt": args.prompt,
              "new_tokens": args.new_tokens, "refimpl": ours, "peer": None}
    if peer:
        pr = _aggregate(peer_runs, len(ids))
        pr.update(peer.info)
        pr["peak_rss_mib_end"] = max(r["peak_rss_mib"] for r in peer_runs)
        result["peer"] = pr
        agree = 0
        for a, b in zip(ours["tokens"], pr["tokens"]):
            if a != b:
                break
            agree += 1
        result["comparison"] = {
            "decode_ratio_peer_over_refimpl": pr["decode_tokens_per_s"] / ours["decode_tokens_per_s"],
            "decode_ratio_from_median_step": pr["decode_tokens_per_s_from_median_step"]
            / ours["decode_tokens_per_s_from_median_step"],
            "prefill_ratio_peer_over_refimpl": pr["prefill_tokens_per_s_from_median_run"]
            / ours["prefill_tokens_per_s_from_median_run"],
            "greedy_tokens_agree_prefix": agree, "greedy_tokens_compared": len(ours["tokens"])}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    def line(name, r):
        return (f"{name:13s} prefill {r['prompt_tokens']} tokens: {r['prefill_tokens_per_s_from_median_run']:.1f} tok/s;"
                f" decode {r['decode_tokens_per_s']:.2f} tok/s (median step {r['decode_ms_per_token_median_all_runs']:.1f}"
                f" ms = {r['decode_tokens_per_s_from_median_step']:.2f} tok/s); peak RSS after load "
                f"{r['peak_rss_mib_after_load']:.0f} MiB")

    print(line("refimpl", ours), file=sys.stderr)
    if peer:
        c = result["comparison"]
        print(line("transformers", result["peer"]), file=sys.stderr)
        print(f"transformers / refimpl: decode {c['decode_ratio_peer_over_refimpl']:.2f}x (median step "
              f"{c['decode_ratio_from_median_step']:.2f}x), prefill {c['prefill_ratio_peer_over_refimpl']:.2f}x; "
              f"greedy ids agree for {c['greedy_tokens_agree_prefix']}/{c['greedy_tokens_compared']}", file=sys.stderr)
    print(f"load average start {load_start}, end {result['load_average_1_5_15']['end']}; wrote {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
