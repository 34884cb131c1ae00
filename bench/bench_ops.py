"""Per-op speed of the Numba backend vs the NumPy reference, in one process, at realistic sizes.

    python bench/bench_ops.py [--threads 2] [--min-time 0.3] [--out bench/results/ops_numba.json]

Sizes: SmolLM2-135M (d=576, 9 query / 3 kv heads, head_dim 64, MLP 1536) for one decode step
(T=1, a 512-token KV cache, q_offset 511) and a 128-token prefill; gpt-oss-20b for the MoE pieces
(mlp1: in 2880 -> out 5760 in MXFP4, swiglu_oss on 5760 -> 2880, router over 32 experts, k=4).
Every case: both sides are called once untimed (for Numba: the JIT compile) and checked with
refimpl.conformance.compare (float64 oracle); then each side runs until --min-time has passed
(5 to 500 calls) and the median call time is reported, with ratio = numpy / numba (> 1: Numba
faster). Threads: OMP/MKL/OPENBLAS_NUM_THREADS and NUMBA_NUM_THREADS = --threads, set before
NumPy and Numba start; Numba is timed at each of --numba-threads (numba.set_num_threads; default
--threads and 1: on a loaded machine a parallel region can wait a scheduler time slice for its
second thread, and the single-thread figure shows the kernel itself). The machine's load average
is recorded at the start and the end. float32 inputs throughout (the reference's float32 mode).

    python bench/bench_ops.py --kernels [--out bench/results/kernels_numba.json]

Kernels alone (--kernels): the packed-GGUF and dense linear kernels of backends/numba/{quant,linear}.py
called directly, at SmolLM2-135M's shapes (q/o [576, 576], k/v [192, 576], gate/up [1536, 576],
down [576, 1536], Q8_0 lm_head [49152, 576]) and a gpt-oss-sized bfloat16 matrix. For each: the
minimum over repeats of one call, as ns per weight and GB/s of the bytes the kernel reads (packed
blocks, or the weight array), serially (1 thread) and with 2 threads (numba's parallel region), next to
the previous (scalar) kernel and NumPy on float32 weights in the same process; the machine's read
bandwidth (refimpl.bench.stream_read_gbs) is measured beside them.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _common import machine  # noqa: E402

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _time(fn, min_time):
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < 500):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(times)


def cases(np, rng):
    """(name, op, variant or None, inputs) at realistic sizes, float32."""
    from refimpl.ops.mxfp4 import encode_mxfp4

    f = lambda *s, scale=1.0: (rng.standard_normal(s) * scale).astype(np.float32)
    d, hq, hkv, hd, inter, cache = 576, 9, 3, 64, 1536, 512
    out = []
    for tag, t in (("decode T=1", 1), ("prefill T=128", 128)):
        out.append((f"rms_norm [{t},{d}] ({tag})", "rms_norm", None, dict(x=f(t, d), weight=f(d))))
        out.append((f"layer_norm [{t},{d}] ({tag})", "layer_norm", None, dict(x=f(t, d), weight=f(d), bias=f(d))))
        out.append((f"gelu tanh [{t},{4 * d}] ({tag})", "gelu", None, dict(x=f(t, 4 * d))))
        out.append((f"silu [{t},{inter}] ({tag})", "silu", None, dict(x=f(t, inter))))
        out.append((f"swiglu_oss [{t},5760] ({tag})", "swiglu_oss", None, dict(h=f(t, 5760, scale=4.0))))
        pos = np.arange(cache - t, cache)
        ang = pos[:, None] * (1.0 / 10000.0 ** (np.arange(hd // 2) * 2.0 / hd))
        for pairing in ("half", "interleaved"):
            out.append((f"apply_rope {pairing} q [{t},{hq},{hd}] ({tag})", "apply_rope", None,
                        dict(x=f(t, hq, hd), cos=np.cos(ang).astype(np.float32), sin=np.sin(ang).astype(np.float32),
                             pairing=pairing)))
        tk = cache if t == 1 else t
        att = dict(q=f(t, hq, hd), k=f(tk, hkv, hd), v=f(tk, hkv, hd), q_offset=tk - t)
        for variant in ("online", "naive"):
            out.append((f"attention {variant} q [{t},{hq},{hd}] kv [{tk},{hkv},{hd}] ({tag})", "attention", variant, att))
        out.append((f"attention sinks+window=128 online q [{t},{hq},{hd}] kv [{tk},{hkv},{hd}] ({tag})", "attention",
                    "online", dict(att, sinks=f(hq), window=128)))
        out.append((f"router_topk_softmax E=32 k=4 [{t},32] ({tag})", "router_topk_softmax", None,
                    dict(logits=f(t, 32), k=4)))
    blocks, scales = encode_mxfp4(rng.standard_normal((5760, 2880)) * 0.02)  # gpt-oss-20b mlp1: [out, in/32, 16]
    out.append(("decode_mxfp4 [5760, 90, 16] -> [5760, 2880]", "decode_mxfp4", None, dict(blocks=blocks, scales=scales)))
    for t in (1, 16):
        for variant in ("fused", "decode_matmul"):
            out.append((f"mxfp4_linear {variant} x [{t},2880] W 5760x2880", "mxfp4_linear", variant,
                        dict(x=f(t, 2880), blocks=blocks, scales=scales, bias=f(5760))))
    return out


def _best(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def kernels(args):
    """The --kernels table (see the module docstring)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
    sys.path.insert(0, ROOT)
    import ml_dtypes
    import numba
    import numpy as np

    from refimpl.backends.numba import linear as L
    from refimpl.backends.numba import quant as Q
    from refimpl.backends.numba._common import serial_twin
    from refimpl.backends.numba.threads import set_threads
    from refimpl.bench import stream_read_gbs
    from refimpl.ops.quant import QTYPES, random_packed

    load_start = list(os.getloadavg())
    gbs = stream_read_gbs(mib=256)
    rng = np.random.default_rng(0)
    rows, R = [], args.repeats

    def row(kernel, shape, nbytes, t1, t2, note=""):
        w = shape[0] * shape[1]
        r = dict(kernel=kernel, shape=list(shape), bytes=nbytes, note=note,
                 threads_1=dict(us=t1 * 1e6, ns_per_weight=t1 / w * 1e9, gbs=nbytes / t1 / 1e9))
        text = f"{kernel:44s} {str(list(shape)):14s} x1 {t1 * 1e6:9.1f} us {t1 / w * 1e9:6.3f} ns/w {nbytes / t1 / 1e9:6.2f} GB/s"
        if t2 is not None:
            r["threads_2"] = dict(us=t2 * 1e6, ns_per_weight=t2 / w * 1e9, gbs=nbytes / t2 / 1e9)
            text += f" | x2 {t2 * 1e6:9.1f} us {t2 / w * 1e9:6.3f} ns/w {nbytes / t2 / 1e9:6.2f} GB/s"
        rows.append(r)
        print(text + (f"  {note}" if note else ""), flush=True)

    z32 = np.zeros(1, np.float32)
    shapes = [("Q4_1", (576, 576)), ("Q4_1", (192, 576)), ("Q4_1", (1536, 576)), ("Q4_1", (576, 1536)),
              ("Q4_0", (1536, 576)), ("Q8_0", (1536, 576)), ("Q8_0", (49152, 576)),
              ("Q4_K", (1536, 768)), ("Q6_K", (1536, 768))]
    for qtype, (N, K) in shapes:
        qt, (bs, ts) = Q.QCODE[qtype], QTYPES[qtype]
        nb = K // bs
        raw = random_packed(rng, qtype, (N, K))
        x = rng.standard_normal(K).astype(np.float32)
        y = np.empty(N, np.float32)
        f1 = lambda k, nt: k(nt, qt, raw, x, nb, Q.F16, z32, False, y)
        row(f"gguf_linear T=1 {qtype} vector (gemv1_vec)", (N, K), raw.nbytes,
            _best(lambda: f1(serial_twin(Q.gemv1_vec), 1), R), _best(lambda: f1(Q.gemv1_vec, 0), R))
        if qt in Q._GEMV1:
            old = Q._GEMV1[qt]
            f0 = lambda k, nt: k(nt, raw.reshape(N, nb, ts), x.reshape(nb, 32), z32, False, np.float32(0), y, 16)
            row(f"gguf_linear T=1 {qtype} scalar lanes (before)", (N, K), raw.nbytes,
                _best(lambda: f0(serial_twin(old), 1), R), _best(lambda: f0(old, 0), R))
        out = np.empty((N, K), np.float32)
        row(f"dequantize_rows {qtype}", (N, K), raw.nbytes,
            _best(lambda: serial_twin(Q.dequantize_rows)(1, qt, raw, nb, 0, out, 16), R),
            _best(lambda: Q.dequantize_rows(0, qt, raw, nb, 0, out, 16), R),
            "vector decoder")
        row(f"dequantize_rows {qtype} scalar (before)", (N, K), raw.nbytes,
            _best(lambda: Q.scalar_rows(qt, raw, nb, out), R), None)
    # few-token and prefill products on [1536, 576] Q4_1 vs NumPy on float32 weights (dequantized at load)
    N, K = 1536, 576
    raw = random_packed(rng, "Q4_1", (N, K))
    W = Q.dequantize_gguf(raw, "Q4_1", (N, K))
    try:  # one thread for both sides here (BLAS through threadpoolctl when it is installed)
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    nt = numba.get_num_threads()
    numba.set_num_threads(1)
    limit = threadpool_limits(1, user_api="blas") if threadpool_limits else None
    blas = "1 thread" if limit is not None else f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    for T in (2, 4, 8, 12, 16, 32, 128):
        x = rng.standard_normal((T, K)).astype(np.float32)
        t_nb = _best(lambda: Q.gguf_linear(x, raw, "Q4_1", (N, K)), R)
        t_np = _best(lambda: x @ W.T, R)
        path = "gemv (Numba)" if T < Q.GEMM_MIN_TOKENS else "tile + BLAS"
        row(f"gguf_linear T={T} Q4_1 {path}", (N, K), raw.nbytes, t_nb, None,
            f"NumPy float32 matmul ({blas}) {t_np * 1e6:.1f} us (x{t_np / t_nb:.2f})")
    if limit is not None:
        limit.restore_original_limits()
    numba.set_num_threads(nt)
    # dense linear: float32 at T=1, bfloat16 weights at T=1 and 4
    for (N, K), wdt in (((576, 576), np.float32), ((1536, 576), np.float32), ((8192, 2880), np.float32),
                        ((8192, 2880), ml_dtypes.bfloat16)):
        w = rng.standard_normal((N, K)).astype(np.float32)
        for T in ((1,) if wdt == np.float32 else (1, 4)):
            x = rng.standard_normal((T, K)).astype(np.float32)
            y = np.empty((T, N), np.float32)
            t_np = _best(lambda: x @ w.T, R)
            if wdt == np.float32:
                row(f"linear T={T} float32 weights (gemv)", (N, K), w.nbytes,
                    _best(lambda: serial_twin(L.gemv)(1, x, w, z32, False, np.float32(0), y), R),
                    _best(lambda: L.gemv(0, x, w, z32, False, np.float32(0), y), R),
                    f"NumPy float32 matmul {t_np * 1e6:.1f} us")
            else:  # bf16.py's kernel through linear (threads as set: 1, then all)
                wb = w.astype(wdt)
                set_threads(1)
                one = _best(lambda: L.linear(x, wb), R)
                set_threads(nt)
                row(f"linear T={T} bfloat16 weights (bf16.py)", (N, K), wb.nbytes, one,
                    _best(lambda: L.linear(x, wb), R), f"NumPy float32 matmul {t_np * 1e6:.1f} us")
    result = dict(
        benchmark="bench/bench_ops.py --kernels: Numba GGUF and linear kernels alone, min of repeats",
        when=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine={**machine(), "read_gbs": gbs, "load_average_1_5_15_at_start": load_start,
                 "load_average_1_5_15_at_end": list(os.getloadavg())},
        versions=dict(numba=numba.__version__, numpy=np.__version__),
        repeats=R, numba_threads=numba.get_num_threads(), results=rows)
    out = args.out if args.out != DEFAULT_OUT else os.path.join(HERE, "results", "kernels_numba.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"machine read bandwidth {gbs} GB/s; load average {load_start} -> {list(os.getloadavg())}; wrote {out}")
    return 0


DEFAULT_OUT = os.path.join(HERE, "results", "ops_numba.json")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--numba-threads", default=None,
                    help="comma-separated Numba thread counts to time (default: --threads, then 1)")
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--kernels", action="store_true", help="time the GGUF and linear kernels alone (see above)")
    ap.add_argument("--repeats", type=int, default=20, help="--kernels: calls per measurement (the minimum is kept)")
    args = ap.parse_args(argv)
    if args.kernels:
        for v in THREAD_VARS:
            os.environ.setdefault(v, str(args.threads))
        return kernels(args)
    load_start = list(os.getloadavg())
    for v in THREAD_VARS:
        os.environ[v] = str(args.threads)
    sys.path.insert(0, ROOT)
    import numba
    import numpy as np

    from refimpl.backends import get_backend
    from refimpl.conformance import compare
    from refimpl.ops import ops as reference

    numba_threads = ([int(v) for v in args.numba_threads.split(",")] if args.numba_threads
                     else sorted({args.threads, 1}, reverse=True))
    backend = get_backend("numba")
    rng = np.random.default_rng(0)
    rows = []
    t_start = time.perf_counter()
    for name, op, variant, inputs in cases(np, rng):
        b = backend.with_kernel(op, variant) if variant else backend
        fast = getattr(b.as_ops(fallback=False), op)
        ref = getattr(reference, op)
        t0 = time.perf_counter()
        actual = fast(**inputs)  # the first call compiles
        first = time.perf_counter() - t0
        oracle = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
                  for k, v in inputs.items()}
        rep = compare(ref(**oracle), actual, op=op, inputs=inputs)
        ref(**inputs)
        t_ref, n_ref = _time(lambda: ref(**inputs), args.min_time)
        row = dict(case=name, op=op, variant=variant or "default", numpy_us=t_ref * 1e6, calls_numpy=n_ref,
                   first_call_s=first, conforms=rep.ok, budget_used=rep.budget_used, numba={})
        text = f"{name:66s} numpy {t_ref * 1e6:9.1f} us"
        for nt in numba_threads:
            numba.set_num_threads(nt)
            t_nb, n_nb = _time(lambda: fast(**inputs), args.min_time)
            row["numba"][str(nt)] = dict(us=t_nb * 1e6, ratio=t_ref / t_nb, calls=n_nb)
            text += f" | numba x{nt} {t_nb * 1e6:9.1f} us ratio {t_ref / t_nb:6.2f}"
        numba.set_num_threads(max(numba_threads))
        rows.append(row)
        print(text + f"  {'ok' if rep.ok else 'FAIL'}", flush=True)
    result = dict(
        benchmark="bench/bench_ops.py: Numba backend vs NumPy reference, per op, median call time",
        when=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine={**machine(), "load_average_1_5_15_at_start": load_start,
                 "load_average_1_5_15_at_end": list(os.getloadavg())},
        versions=dict(numba=numba.__version__, numpy=np.__version__, llvmlite=__import__("llvmlite").__version__),
        threads=dict(requested=args.threads, numba_timed_at=numba_threads, numba_num_threads=numba.config.NUMBA_NUM_THREADS,
                     serial_below_work=__import__("refimpl.backends.numba._common", fromlist=["x"]).SERIAL_BELOW,
                     numba_threading_layer=_layer(numba), env={v: os.environ.get(v) for v in THREAD_VARS}),
        dtype="float32", min_time_s=args.min_time, total_s=time.perf_counter() - t_start,
        compile_s_total=sum(r["first_call_s"] for r in rows),
        results=rows,
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return 0 if all(r["conforms"] for r in rows) else 1


def _layer(numba):
    try:
        return numba.threading_layer()
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
