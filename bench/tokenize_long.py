"""Tokenizing 1 MB of pathological text: one repeated letter, spaces, base64 (issue 11).

    python bench/tokenize_long.py [--size 1000000] [--out bench/results/tokenize_long.json]

Engines: SmolLM2's GGUF vocabulary through refimpl's default engine (the `tokenizers` library when
installed, `Tokenizer.from_gguf_metadata(backend="auto")`) and through the pure-Python BPE (the
reference); o200k_harmony (gpt-oss) through the pure-Python BPE. Peers in the same script: the
`tokenizers` library on the same SmolLM2 vocabulary is the peer of the Python BPE, and quicktok's
C++ o200k encoder (when installed) the peer of the o200k one; each peer runs in a subprocess with a
time cap (--peer-cap seconds) so a quadratic peer cannot stall the run. Every encode is timed once
after one warm-up on 10 KB (time.perf_counter); the ids of the Python and library SmolLM2 runs are
compared. Wall and CPU time (time.process_time) are both reported: on a shared machine the wall time
includes waiting for a core. Machine: CPU, cores, load average before and after.
"""

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine  # noqa: E402


def texts(size):
    rng = random.Random(0)
    b64 = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(size * 3 // 4 + 3))).decode()[:size]
    return {"letter": "a" * size, "spaces": " " * size, "base64": b64}


def timed(fn, text):
    """(wall seconds, CPU seconds of this process, ids): on a shared machine the CPU time is what the
    encode itself cost; the wall time includes waiting for a core."""
    fn(text[:10_000])
    t, c = time.perf_counter(), time.process_time()
    ids = fn(text)
    return time.perf_counter() - t, time.process_time() - c, ids


PEER_QUICKTOK = """
import sys, time, json, base64, random
import quicktok
enc = quicktok.get_encoding("o200k_harmony")
size = int(sys.argv[1]); kind = sys.argv[2]
rng = random.Random(0)
b64 = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(size * 3 // 4 + 3))).decode()[:size]
text = {"letter": "a" * size, "spaces": " " * size, "base64": b64}[kind]
enc.encode_ordinary(text[:10000])
t, c = time.perf_counter(), time.process_time(); ids = enc.encode_ordinary(text)
print(json.dumps([time.perf_counter() - t, time.process_time() - c]))
"""


def peer_quicktok(size, kind, cap):
    try:
        p = subprocess.run([sys.executable, "-c", PEER_QUICKTOK, str(size), kind], capture_output=True, text=True,
                           timeout=cap)
    except subprocess.TimeoutExpired:
        return f"over {cap} s"
    if p.returncode != 0:
        return f"failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}"
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--peer-cap", type=float, default=15.0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from refimpl.checkpoints.gguf_reader import read_gguf_metadata
    from refimpl.fetch import find_smollm2_gguf
    from refimpl.text.tokenizer import Tokenizer, o200k_harmony, quicktok_data_dir

    report = {"machine": machine(), "load_before": os.getloadavg(), "size": a.size, "results": {}}
    engines = {}
    gguf = find_smollm2_gguf()
    if gguf is not None:
        meta = read_gguf_metadata(gguf)
        engines["smollm2 default (auto)"] = Tokenizer.from_gguf_metadata(meta, backend="auto")
        engines["smollm2 python"] = Tokenizer.from_gguf_metadata(meta, backend="python")
    else:
        print("SmolLM2 GGUF not found: SmolLM2 rows skipped", file=sys.stderr)
    if quicktok_data_dir() is not None:
        engines["o200k python"] = o200k_harmony()
    else:
        print("quicktok not installed: o200k rows skipped", file=sys.stderr)

    ids_by = {}
    for kind, text in texts(a.size).items():
        for name, tok in engines.items():
            sec, cpu, ids = timed(lambda s: tok.encode(s, allowed_special="none"), text)
            report["results"][f"{name} / {kind}"] = {"wall_seconds": round(sec, 3), "cpu_seconds": round(cpu, 3),
                                                     "ids": len(ids)}
            ids_by[(name, kind)] = ids
            print(f"{name:24s} {kind:7s} {sec:7.3f} s wall {cpu:7.3f} s CPU  {len(ids):8d} ids", flush=True)
        if "smollm2 python" in engines:
            same = ids_by[("smollm2 python", kind)] == ids_by[("smollm2 default (auto)", kind)]
            report["results"][f"smollm2 python == library / {kind}"] = same
            print(f"{'smollm2 python == lib':24s} {kind:7s} {same}")
        if "o200k python" in engines:
            q = peer_quicktok(a.size, kind, a.peer_cap)
            report["results"][f"o200k quicktok peer / {kind}"] = q
            shown = q if isinstance(q, str) else f"{q[0]:7.3f} s wall {q[1]:7.3f} s CPU"
            print(f"{'o200k quicktok (peer)':24s} {kind:7s} {shown}", flush=True)
    report["load_after"] = os.getloadavg()
    print(f"machine: {report['machine']['cpu']}, {report['machine']['usable_cpus']} usable CPUs, load average "
          f"{report['load_before'][0]:.2f} before, {report['load_after'][0]:.2f} after")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
