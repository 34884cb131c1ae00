"""`refimpl bench`: decode and prefill speed of backends side by side, with the machine's bandwidth.

    refimpl bench --model smollm2-135m --backends numpy,numba [--peer-python PY] --new-tokens 32 \
        [--threads N] [--repeats 3] [--json FILE]

Every backend (and the HF transformers peer, when --peer-python names an interpreter that has
torch, transformers and gguf) runs in its own worker process, started once and kept loaded; after
one untimed warm-up run each, the timed runs alternate between the workers (A, B, peer, A, B,
peer, ...), so that all sample the same machine load. A run = one prefill of the prompt, then
--new-tokens greedy single-token steps with the KV cache, each timed with perf_counter. The row
of a backend is its run with the median decode speed:

    backend, prefill_tok_s, decode_tok_s (steps / summed step time), decode_tok_s_median_step,
    peak_rss_mb (the worker's ru_maxrss), weights_mb, bytes_per_token (what one decode step must
    read: every weight it multiplies by, the gathered embedding row, and the KV cache at the mean
    context), achieved_gbs = bytes_per_token * decode_tok_s, bandwidth_fraction = achieved_gbs /
    machine_gbs, tokens (the greedy ids, compared between rows).

machine_gbs is measured in the same command, before and after the runs, by a streaming-read
loop over a 512 MiB buffer (NumPy's sum over int64 words on one thread, and a parallel Numba sum
when numba is installed; the best of 3 of the faster). Nothing here is a test: speed is only
ever judged from these files (bench/results/), never asserted.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

DEFAULT_PROMPT = "The capital of France is Paris. The capital of Germany is"


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _decode_loop(prompt, one, argmax, new_tokens):
    t = time.perf_counter()
    state, logits = prompt()
    prefill = time.perf_counter() - t
    tok = argmax(logits)
    toks, steps = [tok], []
    for _ in range(new_tokens):
        t = time.perf_counter()
        state, logits = one(state, tok)
        tok = argmax(logits)
        steps.append(time.perf_counter() - t)
        toks.append(tok)
    return {"prefill_s": prefill, "steps_s": steps, "tokens": toks}


def _serve(info, run):
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        r = run()
        r["peak_rss_mb"] = _maxrss_mb()
        print(json.dumps(r), flush=True)


# ----------------------------------------------------------------------------------------- workers

def _weight_bytes(cfg, weights):
    """(total bytes of the weights as held, bytes one decode step reads from them)."""
    import numpy as np

    seen, total, step = set(), 0, 0
    tied = weights.get("lm_head") is weights.get("tok_embed")
    for name, w in weights.items():
        if id(w) in seen:
            continue
        seen.add(id(w))
        n = int(getattr(w, "nbytes", 0) or np.asarray(w).nbytes)
        total += n
        if name == "tok_embed" and not tied:
            n = n // max(1, int(w.shape[0]))  # one gathered row
        elif ".blocks" in name or ".scales" in name or "experts" in name or (
                cfg.num_experts and any(k in name for k in (".mlp1.", ".mlp2.", ".gate.", ".up.", ".down.")) and ".moe." in name):
            n = n * cfg.experts_per_token // max(1, cfg.num_experts)  # only the routed experts are read
        step += n
    return total, step


def worker_refimpl(args):
    import numpy as np

    import refimpl
    from refimpl import model as _model
    from refimpl.api import load

    t0 = time.perf_counter()
    m = load(args.model, dtype=args.dtype, backend=args.backend)
    load_s = time.perf_counter() - t0
    ids = m.tokenizer.encode(args.prompt) if m.tokenizer is not None else list(range(1, 17))
    cfg, W = m.config, m.weights
    total, step = _weight_bytes(cfg, W)
    kv_item = 8 if args.dtype == "float64" else 4

    def prompt():
        cache = m.new_cache()
        return cache, _model.forward(cfg, W, np.asarray(ids), cache=cache, dtype=m.dtype, ops=m.ops)

    def one(cache, tok):
        return cache, _model.forward(cfg, W, np.array([tok]), cache=cache, dtype=m.dtype, ops=m.ops)

    def argmax(logits):
        return int(np.argmax(np.asarray(logits)[-1]))

    mean_ctx = len(ids) + args.new_tokens / 2
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * kv_item * mean_ctx
    info = {"backend": args.backend, "load_s": load_s, "peak_rss_mb_after_load": _maxrss_mb(),
            "refimpl": refimpl.__version__, "numpy": np.__version__, "prompt_tokens": len(ids),
            "weights_mb": total / 2**20, "bytes_per_token": int(step + kv),
            "fallbacks": sorted(getattr(m.ops, "fallbacks", []) or [])}
    if args.backend == "numba":
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    _serve(info, lambda: _decode_loop(prompt, one, argmax, args.new_tokens))


def worker_peer(args):
    """Runs under --peer-python: HF transformers (eager attention, float32) on the same GGUF."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM

    ids = json.loads(args.ids)
    folder, fname = os.path.split(os.path.abspath(args.model))
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    load_s = time.perf_counter() - t0
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    n_emb = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight.data_ptr() == n_emb.data_ptr()
    step = total - (0 if tied else n_emb.numel() * n_emb.element_size())
    c = model.config
    kv = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4 \
        * (len(ids) + args.new_tokens / 2)

    def prompt():
        out = model(torch.tensor([ids], dtype=torch.long), use_cache=True)
        return out.past_key_values, out.logits

    def one(past, tok):
        out = model(torch.tensor([[tok]], dtype=torch.long), past_key_values=past, use_cache=True)
        return out.past_key_values, out.logits

    def run():
        with torch.no_grad():
            return _decode_loop(prompt, one, lambda lg: int(lg[0, -1].argmax()), args.new_tokens)

    info = {"backend": "transformers-eager", "load_s": load_s, "peak_rss_mb_after_load": _maxrss_mb(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(), "weights_mb": total / 2**20, "bytes_per_token": int(step + kv)}
    _serve(info, run)


class Worker:
    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            from .errors import RefimplError

            raise RefimplError(f"bench: a worker exited with status {self.proc.wait()} (its stderr is above)")
        return json.loads(line)

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.close()
        finally:
            self.proc.wait()


# ----------------------------------------------------------------------------------------- machine

def stream_read_gbs(mib=512, repeats=3):
    """Read bandwidth of this machine in GB/s: the best of `repeats` full reads of a buffer."""
    import numpy as np

    a = np.ones(mib * 2**20 // 8, dtype=np.int64)
    best = {"numpy_1thread": 0.0}
    for _ in range(repeats):
        t = time.perf_counter()
        a.sum()
        best["numpy_1thread"] = max(best["numpy_1thread"], a.nbytes / (time.perf_counter() - t) / 1e9)
    try:
        from numba import njit, prange

        @njit(parallel=True, cache=False)
        def psum(x):
            s = 0
            for i in prange(x.shape[0]):
                s += x[i]
            return s

        psum(a[:1024])
        best["numba_parallel"] = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            psum(a)
            best["numba_parallel"] = max(best["numba_parallel"], a.nbytes / (time.perf_counter() - t) / 1e9)
    except ImportError:
        pass
    best["gbs"] = max(best.values())
    return best


def _summary(r, prompt_tokens):
    steps = r["steps_s"]
    s = sorted(steps)
    med = s[len(s) // 2] if s else float("nan")
    return {"prefill_tok_s": prompt_tokens / r["prefill_s"], "decode_tok_s": len(steps) / sum(steps) if steps else 0.0,
            "decode_tok_s_median_step": 1.0 / med if steps else 0.0}


def run_bench(args):
    from .fetch import smollm2_gguf_path

    model = args.model
    if model.lower() in ("smollm2-135m", "default", "smollm2"):
        model = str(smollm2_gguf_path())
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    env = dict(os.environ)
    if args.threads:
        env["REFIMPL_THREADS"] = str(args.threads)
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[v] = str(args.threads)
    load0 = os.getloadavg()
    print(f"refimpl bench: measuring read bandwidth ...", file=sys.stderr, flush=True)
    bw0 = stream_read_gbs()
    workers = {}
    base = [sys.executable, "-m", "refimpl.bench", "--worker", "refimpl", "--model", model, "--dtype", args.dtype,
            "--new-tokens", str(args.new_tokens), "--prompt", args.prompt]
    for b in backends:
        print(f"refimpl bench: loading {b} ...", file=sys.stderr, flush=True)
        workers[b] = Worker(base + ["--backend", b], env)
    ids = None
    if args.peer_python:
        from .api import load

        tok = load(model).tokenizer  # the same prompt ids for the peer
        ids = tok.encode(args.prompt)
        print("refimpl bench: loading the transformers peer ...", file=sys.stderr, flush=True)
        workers["transformers-eager"] = Worker(
            [args.peer_python, os.path.abspath(__file__), "--worker", "peer", "--model", model,
             "--new-tokens", str(args.new_tokens), "--ids", json.dumps(ids),
             "--threads", str(args.threads or len(os.sched_getaffinity(0)))], env)
    for name, w in workers.items():
        print(f"refimpl bench: warm-up {name} ...", file=sys.stderr, flush=True)
        w.warmup = w.run()
    runs = {name: [] for name in workers}
    for rep in range(args.repeats):
        for name, w in workers.items():
            time.sleep(args.settle)  # the previous worker's thread pools (OpenMP, OpenBLAS) stop spinning
            r = w.run()
            runs[name].append(r)
            print(f"refimpl bench: run {rep + 1}/{args.repeats} {name}: "
                  f"{_summary(r, w.info.get('prompt_tokens', len(ids or [])))['decode_tok_s']:.1f} tok/s decode",
                  file=sys.stderr, flush=True)
    for w in workers.values():
        w.close()
    bw1 = stream_read_gbs()
    machine_gbs = max(bw0["gbs"], bw1["gbs"])
    rows = []
    for name, w in workers.items():
        pt = w.info.get("prompt_tokens", len(ids or []))
        rs = sorted(runs[name], key=lambda r: _summary(r, pt)["decode_tok_s"])
        r = rs[len(rs) // 2]
        s = _summary(r, pt)
        prefills = sorted(x["prefill_s"] for x in runs[name])
        s["prefill_tok_s"] = pt / prefills[len(prefills) // 2]  # one prefill per run: their median
        bpt = w.info["bytes_per_token"]
        rows.append({"backend": name, **s, "peak_rss_mb": max(x["peak_rss_mb"] for x in runs[name]),
                     "weights_mb": w.info["weights_mb"], "bytes_per_token": bpt,
                     "achieved_gbs": bpt * s["decode_tok_s"] / 1e9,
                     "bandwidth_fraction": bpt * s["decode_tok_s"] / 1e9 / machine_gbs,
                     "tokens": r["tokens"], "all_decode_tok_s": [_summary(x, pt)["decode_tok_s"] for x in runs[name]],
                     "all_prefill_tok_s": [_summary(x, pt)["prefill_tok_s"] for x in runs[name]],
                     "info": w.info})
    ref = rows[0]
    for row in rows:
        row["decode_vs_first"] = row["decode_tok_s"] / ref["decode_tok_s"]
        row["same_tokens_as_first"] = row["tokens"] == ref["tokens"]
    result = {"command": " ".join(sys.argv), "model": model, "dtype": args.dtype, "new_tokens": args.new_tokens,
              "repeats": args.repeats, "threads": args.threads, "prompt": args.prompt,
              "machine": {"cpu": _cpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average_start": load0, "load_average_end": os.getloadavg(),
                          "read_gbs_start": bw0, "read_gbs_end": bw1, "machine_gbs": machine_gbs},
              "rows": rows, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(format_table(result))
    return 0


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_table(result):
    m = result["machine"]
    lines = [f"model {os.path.basename(result['model'])}, {result['dtype']}, {result['new_tokens']} new tokens, "
             f"threads {result['threads'] or 'default'}, machine read bandwidth {m['machine_gbs']:.1f} GB/s, "
             f"load average {m['load_average_start'][0]:.1f} -> {m['load_average_end'][0]:.1f}",
             "| backend | prefill tok/s | decode tok/s | x first | peak RSS MB | weights MB | MB read/token | GB/s | of machine | same tokens |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['backend']} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} | {r['decode_vs_first']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['weights_mb']:.0f} | {r['bytes_per_token'] / 1e6:.0f} | "
                     f"{r['achieved_gbs']:.2f} | {100 * r['bandwidth_fraction']:.0f}% | {r['same_tokens_as_first']} |")
    return "\n".join(lines)


def add_arguments(p):
    p.add_argument("--model", default="smollm2-135m", help="preset name or checkpoint path (default: %(default)s)")
    p.add_argument("--backends", default="numpy,numba", help="comma-separated backends (default: %(default)s)")
    p.add_argument("--peer-python", default=None, help="a Python with torch, transformers and gguf: adds HF transformers (eager)")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend, alternating (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=["float64", "float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=None, help="threads for every worker (REFIMPL_THREADS)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--settle", type=float, default=0.5,
                   help="seconds of rest before each timed run, so the previous worker's spinning threads go idle")
    p.add_argument("--json", default=None, help="write the result here (bench/results/...)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="refimpl bench")
    add_arguments(p)
    p.add_argument("--worker", choices=["refimpl", "peer"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="numpy", help=argparse.SUPPRESS)
    p.add_argument("--ids", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "refimpl":
        return worker_refimpl(args)
    if args.worker == "peer":
        return worker_peer(args)
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
