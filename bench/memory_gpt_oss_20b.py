"""Peak memory of refimpl running a gpt-oss-20b-shaped checkpoint.

No gpt-oss weights can be downloaded here, so this writes a checkpoint with the released
gpt-oss-20b shapes and layout (OpenAI's original/ layout: bf16 tensors, MXFP4 expert blocks and
scales, 24 per-layer shard files, about 13.8 GB) filled with random values, then, in a fresh
process per precision mode, loads it with refimpl and runs a 16-token prefill plus 4 cached decode
steps, reporting the peak resident set size (ru_maxrss) and the times.

    python bench/memory_gpt_oss_20b.py [--dir /tmp/gpt-oss-20b-shaped] [--modes float32,bfloat16] [--keep]

Needs about 14 GB of free disk. Results go to bench/results/memory_gpt_oss_20b.json.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The released gpt-oss-20b original config.json (spec/errata.md, refimpl/configs.py PRESETS).
CONFIG = {
    "num_hidden_layers": 24, "num_experts": 32, "experts_per_token": 4, "vocab_size": 201088,
    "hidden_size": 2880, "intermediate_size": 2880, "swiglu_limit": 7.0, "head_dim": 64,
    "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128,
    "initial_context_length": 4096, "rope_theta": 150000, "rope_scaling_factor": 32.0,
    "rope_ntk_alpha": 1.0, "rope_ntk_beta": 32.0,
}


def bf16(rng, *shape, scale=0.02):
    import ml_dtypes

    out = np.empty(shape, dtype=ml_dtypes.bfloat16)
    flat = out.reshape(-1)
    step = 1 << 24
    for i in range(0, flat.size, step):
        n = min(step, flat.size - i)
        flat[i:i + n] = (rng.standard_normal(n, dtype=np.float32) * scale).astype(ml_dtypes.bfloat16)
    return out


def write_checkpoint(folder, layers=None):
    """The checkpoint; layers: write only the first `layers` blocks (config says so), e.g. 2 for the
    real-width 2-layer model `refimpl bench` runs."""
    from refimpl.checkpoints.safetensors_io import save_safetensors

    c = dict(CONFIG)
    if layers:
        c["num_hidden_layers"] = int(layers)
    d, E, I, V = c["hidden_size"], c["num_experts"], c["intermediate_size"], c["vocab_size"]
    Hq, Hkv, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    qkv = (Hq + 2 * Hkv) * D
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(c))
    rng = np.random.default_rng(0)
    save_safetensors(folder / "embeddings.safetensors", {
        "embedding.weight": bf16(rng, V, d, scale=1.0), "unembedding.weight": bf16(rng, V, d),
        "norm.scale": np.ones(d, np.float32)})
    for n in range(c["num_hidden_layers"]):
        p = f"block.{n}"
        t = {
            f"{p}.attn.norm.scale": np.ones(d, np.float32),
            f"{p}.attn.qkv.weight": bf16(rng, qkv, d), f"{p}.attn.qkv.bias": bf16(rng, qkv),
            f"{p}.attn.sinks": np.zeros(Hq, np.float32),
            f"{p}.attn.out.weight": bf16(rng, d, Hq * D), f"{p}.attn.out.bias": bf16(rng, d),
            f"{p}.mlp.norm.scale": np.ones(d, np.float32),
            f"{p}.mlp.gate.weight": bf16(rng, E, d), f"{p}.mlp.gate.bias": bf16(rng, E),
            f"{p}.mlp.mlp1_weight.blocks": rng.integers(0, 256, (E, 2 * I, d // 32, 16), dtype=np.uint8),
            f"{p}.mlp.mlp1_weight.scales": rng.integers(118, 124, (E, 2 * I, d // 32), dtype=np.uint8),
            f"{p}.mlp.mlp1_bias": bf16(rng, E, 2 * I),
            f"{p}.mlp.mlp2_weight.blocks": rng.integers(0, 256, (E, d, I // 32, 16), dtype=np.uint8),
            f"{p}.mlp.mlp2_weight.scales": rng.integers(118, 124, (E, d, I // 32), dtype=np.uint8),
            f"{p}.mlp.mlp2_bias": bf16(rng, E, d),
        }
        save_safetensors(folder / f"block{n:02d}.safetensors", t)
        print(f"wrote layer {n + 1}/{c['num_hidden_layers']}", file=sys.stderr, flush=True)


def proc_status():
    """VmHWM (peak RSS), RssAnon (private memory) and RssFile (mapped file pages) in bytes (Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_one(folder, mode):
    """Load and run in this process; print one JSON line."""
    import refimpl

    t0 = time.perf_counter()
    m = refimpl.load(str(folder), dtype=mode)
    t1 = time.perf_counter()
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    after_load = proc_status()
    ids = np.arange(16) * 977 % m.config.vocab_size
    new = m.generate(ids, max_new_tokens=5, stop_ids=())
    t2 = time.perf_counter()
    print(json.dumps({
        "mode": mode, "load_s": round(t1 - t0, 2), "prefill_plus_4_decode_s": round(t2 - t1, 2),
        "peak_rss_after_load_bytes": rss_loaded,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "after_load": after_load, "at_end": proc_status(),
        "tokens": new,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/gpt-oss-20b-shaped")
    ap.add_argument("--modes", default="float32,bfloat16")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    ap.add_argument("--layers", type=int, default=None, help="write only this many layers (e.g. 2) and stop")
    ap.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = Path(args.dir)
    if args.run_one:
        return run_one(folder, args.run_one)
    if args.layers:
        write_checkpoint(folder, args.layers)
        return None
    if not (folder / "config.json").exists():
        write_checkpoint(folder)
    on_disk = sum(f.stat().st_size for f in folder.iterdir())
    results = []
    for mode in args.modes.split(","):
        out = subprocess.run([sys.executable, __file__, "--dir", str(folder), "--run-one", mode],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{mode}: load {r['load_s']} s, prefill 16 + 4 decode steps {r['prefill_plus_4_decode_s']} s, "
              f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB (at the end: private "
              f"{r['at_end'].get('RssAnon', 0) / 2**30:.2f} GiB, mapped file pages "
              f"{r['at_end'].get('RssFile', 0) / 2**30:.2f} GiB)")
    report = {"what": "gpt-oss-20b shapes, random weights, original layout", "checkpoint_bytes": on_disk,
              "machine": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__, "results": results}
    dest = ROOT / "bench" / "results" / "memory_gpt_oss_20b.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=2) + "\n")
    print(f"checkpoint {on_disk / 1e9:.2f} GB on disk; wrote {dest}")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
