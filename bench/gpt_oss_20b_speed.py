"""Numba decode speed on a gpt-oss-20b-shaped checkpoint: tokens/s, memory, bytes/token, bandwidth.

Uses the checkpoint of bench/memory_gpt_oss_20b.py (released gpt-oss-20b shapes in OpenAI's
original layout, random values: 24 layers, 32 MXFP4 experts, top-4, vocabulary 201088, ~13.8 GB;
written first when the folder has none). In a fresh process it loads the checkpoint with the Numba
backend in float32 (bfloat16 matrices stay bfloat16 and memory-mapped, MXFP4 experts stay packed
and memory-mapped), touches every page of the weights once (so that the timed steps do not wait
for the disk: random routing reaches new experts at every token; `prefault_s`), runs a short
prefill, one untimed decode step, then `--new-tokens` timed greedy decode steps with the KV cache,
and records:

- decode tokens/s (timed steps / their summed time) and every step's time;
- peak RSS (VmHWM), private memory (RssAnon) and mapped file pages (RssFile) from /proc;
- bytes one decode step reads (refimpl.bench's count: every dense weight, the routed experts'
  share top-4/32 of the packed experts, one embedding row, the KV cache at the mean context) and
  the achieved GB/s as a fraction of the machine's read bandwidth, measured by
  refimpl.bench.stream_read_gbs before and after in the same process;
- the load average at start and end (the machine may be shared; say so when quoting).

    python bench/gpt_oss_20b_speed.py [--dir /tmp/gpt-oss-20b-shaped] [--new-tokens 4] [--threads 2]
        [--layers N] [--keep] [--json bench/results/gpt_oss_20b_speed.json]

--layers N writes (or uses) a real-width checkpoint with only N layers (e.g. 2). --numpy-steps K
also loads the NumPy reference in the same process and alternates K decode steps of each (the
ratio of median step times; both see the same load). Without --keep
the checkpoint folder is deleted at the end. Needs ~14 GB of free disk for 24 layers.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def prefault(weights):
    """Touch one byte per 4 KiB page of every weight (memory-mapped ones are read from disk now, not
    during the timed steps); returns the bytes touched."""
    seen, n = set(), 0
    for w in weights.values():
        for a in ([w] if not hasattr(w, "blocks") else [w.blocks]):
            if id(a) in seen:
                continue
            seen.add(id(a))
            flat = np.asarray(a).reshape(-1).view(np.uint8) if np.asarray(a).flags.c_contiguous else None
            if flat is not None and flat.size:
                int(flat[::4096].sum())
                n += flat.size
    return n


def numpy_side_by_side(folder, m, ids, steps):
    """The NumPy reference on the same checkpoint in this process, decode steps alternating with the
    Numba model's (both sample the same machine load); returns per-step times and the greedy tokens."""
    import refimpl

    ref = refimpl.load(str(folder), dtype="float32")
    caches = {"numpy": ref.new_cache(capacity=len(ids) + steps + 1), "numba": m.new_cache(capacity=len(ids) + steps + 1)}
    models = {"numpy": ref, "numba": m}
    toks, times = {}, {"numpy": [], "numba": []}
    for name, mm in models.items():
        logits = mm._forward(ids, cache=caches[name])
        toks[name] = [int(np.argmax(np.asarray(logits)[-1]))]
    for _ in range(steps):
        for name, mm in models.items():
            t = time.perf_counter()
            logits = mm._forward(np.array([toks[name][-1]]), cache=caches[name])
            toks[name].append(int(np.argmax(np.asarray(logits)[-1])))
            times[name].append(time.perf_counter() - t)
    return {"steps_s": times, "tokens": toks, "same_tokens": toks["numpy"] == toks["numba"],
            "numba_vs_numpy_median_step": float(np.median(times["numpy"]) / np.median(times["numba"])),
            "numba_vs_numpy_total": float(sum(times["numpy"]) / sum(times["numba"]))}


def run_one(folder, new_tokens, prompt_len, numpy_steps=0):
    """Load and decode in this process; print one JSON line."""
    import numba

    import refimpl
    from memory_gpt_oss_20b import proc_status
    from refimpl.bench import _weight_bytes, stream_read_gbs

    load0 = os.getloadavg()
    bw0 = stream_read_gbs()
    t0 = time.perf_counter()
    m = refimpl.load(str(folder), dtype="float32", backend="numba")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    touched = prefault(m.weights)
    prefault_s = time.perf_counter() - t0
    after_load = proc_status()
    cfg = m.config
    total, step_bytes = _weight_bytes(cfg, m.weights)
    ids = np.arange(1, prompt_len + 1) * 977 % cfg.vocab_size
    cache = m.new_cache(capacity=prompt_len + new_tokens + 2)
    t1 = time.perf_counter()
    logits = m._forward(ids, cache=cache)
    prefill_s = time.perf_counter() - t1
    tok = int(np.argmax(np.asarray(logits)[-1]))
    tokens = [tok]
    t2 = time.perf_counter()
    logits = m._forward(np.array([tok]), cache=cache)  # untimed: first touches of the decode path
    first_step_s = time.perf_counter() - t2
    tok = int(np.argmax(np.asarray(logits)[-1]))
    tokens.append(tok)
    steps = []
    for _ in range(new_tokens):
        t = time.perf_counter()
        logits = m._forward(np.array([tok]), cache=cache)
        tok = int(np.argmax(np.asarray(logits)[-1]))
        steps.append(time.perf_counter() - t)
        tokens.append(tok)
    side = numpy_side_by_side(folder, m, ids, numpy_steps) if numpy_steps else None
    bw1 = stream_read_gbs()
    mean_ctx = prompt_len + 1 + new_tokens / 2
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * 4 * mean_ctx
    bytes_per_token = int(step_bytes + kv)
    tok_s = len(steps) / sum(steps)
    machine_gbs = max(bw0["gbs"], bw1["gbs"])
    print(json.dumps({
        "layers": cfg.num_layers, "threads": numba.get_num_threads(), "prompt_tokens": prompt_len,
        "load_s": round(load_s, 2), "prefault_s": round(prefault_s, 2), "prefault_bytes": touched,
        "prefill_s": round(prefill_s, 2), "first_decode_step_s": round(first_step_s, 3),
        "decode_step_s": [round(s, 4) for s in steps], "decode_tok_s": tok_s,
        "decode_tok_s_median_step": 1.0 / float(np.median(steps)),
        "weights_bytes_held": total, "bytes_per_token": bytes_per_token,
        "achieved_gbs": bytes_per_token * tok_s / 1e9, "machine_gbs": machine_gbs,
        "bandwidth_fraction": bytes_per_token * tok_s / 1e9 / machine_gbs,
        "read_gbs_start": bw0, "read_gbs_end": bw1,
        "after_load": after_load, "at_end": proc_status(),
        "peak_rss_gib": proc_status().get("VmHWM", 0) / 2**30,
        "load_average_start": load0, "load_average_end": os.getloadavg(),
        "fallbacks": sorted(getattr(m.ops, "fallbacks", []) or []), "tokens": tokens, "vs_numpy": side,
        "refimpl": refimpl.__version__, "numba": numba.__version__, "numpy": np.__version__,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/gpt-oss-20b-shaped")
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--numpy-steps", type=int, default=0,
                    help="also decode this many steps with the NumPy reference in the same process, alternating")
    ap.add_argument("--layers", type=int, default=None, help="a real-width checkpoint with only this many layers")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "gpt_oss_20b_speed.json"))
    ap.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = Path(args.dir)
    if args.run_one:
        return run_one(folder, args.new_tokens, args.prompt_tokens, args.numpy_steps)
    if not (folder / "config.json").exists():
        from memory_gpt_oss_20b import write_checkpoint

        write_checkpoint(folder, args.layers)
    on_disk = sum(f.stat().st_size for f in folder.iterdir())
    env = dict(os.environ, REFIMPL_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--dir", str(folder), "--run-one", "--new-tokens", str(args.new_tokens),
           "--prompt-tokens", str(args.prompt_tokens), "--numpy-steps", str(args.numpy_steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"run failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{r['layers']} layers, {r['threads']} threads: decode {r['decode_tok_s']:.2f} tok/s "
          f"(median step {r['decode_tok_s_median_step']:.2f} tok/s), {r['bytes_per_token'] / 1e9:.2f} GB/token, "
          f"{r['achieved_gbs']:.1f} GB/s = {100 * r['bandwidth_fraction']:.0f}% of {r['machine_gbs']:.1f} GB/s; "
          f"peak RSS {r['peak_rss_gib']:.2f} GiB (at the end: private {r['at_end'].get('RssAnon', 0) / 2**30:.2f} GiB, "
          f"mapped file pages {r['at_end'].get('RssFile', 0) / 2**30:.2f} GiB); load average "
          f"{r['load_average_start'][0]:.1f} -> {r['load_average_end'][0]:.1f}")
    if r["vs_numpy"]:
        v = r["vs_numpy"]
        print(f"side by side, {len(v['steps_s']['numpy'])} alternating steps: numba {v['numba_vs_numpy_median_step']:.1f}x "
              f"the NumPy reference (median step; {v['numba_vs_numpy_total']:.1f}x in total time); "
              f"same greedy tokens: {v['same_tokens']}")
    report = {"what": "gpt-oss-20b shapes (real width), random weights, original layout; numba backend, float32",
              "command": " ".join([Path(sys.executable).name, "bench/gpt_oss_20b_speed.py"] + sys.argv[1:]),
              "checkpoint_bytes": on_disk, "machine": platform.platform(), "cpus": os.cpu_count(), "result": r}
    dest = Path(args.json)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=1) + "\n")
    print(f"checkpoint {on_disk / 1e9:.2f} GB on disk; wrote {dest}")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
