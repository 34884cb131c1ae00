#!/usr/bin/env bash
# bench/gpu_check.sh: the cupy backend on an NVIDIA GPU (H100/H200 class), in one prepared run of
# at most 8 minutes. NEVER RUN ON A GPU YET: written and smoke-tested on the CPU emulator only
# (spec/backends-cupy.md, "What has and has not been run").
#
#   bash bench/gpu_check.sh            # on the GPU machine: writes bench/results/<date>-<gpu>.json
#   bash bench/gpu_check.sh --smoke    # anywhere with g++: the same harness on cupy-emulated at toy
#                                      # sizes (checks the script, measures nothing), JSON to $SMOKE_OUT
#
# Steps (each under its own time limit; a step that fails or times out is recorded, the rest run):
#   1. install: if `import cupy` fails, pip installs refimpl with the cuda extra from wheels carried
#      with the tree, without network: $REFIMPL_WHEELS (default shared/wheels). Make that folder on a
#      machine with network, for the GPU machine's Python (e.g. 3.11, x86_64):
#        pip download -d shared/wheels --python-version 3.11 --only-binary=:all: \
#            'cupy-cuda13x[ctk]>=14,<15' numpy safetensors ml_dtypes 'hypothesis>=6.100'
#      (about 0.7 GB; shared/ travels with the working tree to the device machine.)
#   2. refimpl conform --backend cupy, float32 then bfloat16 (ops and the whole tiny models).
#   3. real-width gpt-oss (hidden 2880, 64 query / 8 kv heads of 64, intermediate 2880, MXFP4
#      experts, YaRN, sinks, sliding window 128; 1 layer, 4 experts of which 2 chosen, 8 tokens):
#      the trace through backend "cupy" against the float64 reference, in float32 and bfloat16 modes.
#   4. decode benchmark on a gpt-oss-20b-shaped random checkpoint generated on the GPU (24 layers,
#      32 experts, top-4, vocab 201088, bf16 attention/router/embedding/head, MXFP4 experts, float32
#      KV cache): tok/s after a 512-token context, bytes read per token, and the fraction of the HBM
#      bandwidth measured beside it (device-to-device copy).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
MODE=gpu
[ "${1:-}" = "--smoke" ] && MODE=smoke
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ "$MODE" = gpu ]; then
  if ! "$PY" -c "import cupy, refimpl" 2>/dev/null; then
    WHEELS=${REFIMPL_WHEELS:-shared/wheels}
    echo "gpu_check: installing refimpl[cuda,dev] from $WHEELS (no network)"
    timeout 180 "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e '.[cuda]' hypothesis \
      || { echo "gpu_check: install from $WHEELS failed (see the header for how to carry the wheels)"; exit 2; }
  fi
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' /' '__')
  GPU=${GPU:-unknown-gpu}
  OUT=bench/results/$(date -u +%Y-%m-%d)-$GPU.json
  BACKEND=cupy
  for dt in float32 bfloat16; do
    timeout 150 "$PY" -m refimpl conform --backend cupy --dtype "$dt" --max-examples 10 --quiet \
      --json "$WORK/conform-$dt.json" > "$WORK/conform-$dt.txt" 2>&1
    echo "conform $dt: exit $?"; tail -3 "$WORK/conform-$dt.txt"
  done
else
  OUT=${SMOKE_OUT:-$WORK/smoke.json}
  BACKEND=cupy-emulated
fi

LEFT=$(( 480 - ($(date +%s) - START) ))
[ "$LEFT" -lt 30 ] && LEFT=30
cat > "$WORK/gpu_check.py" <<'PYEOF'
import json, math, platform, subprocess, sys, time, traceback
from pathlib import Path

import numpy as np

mode, backend_name, out_path, work = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
smoke = mode == "smoke"
from refimpl.backends import get_backend

b = get_backend(backend_name)
rt, xp = b.rt, b.rt.xp
K = b.kernels
result = dict(schema_version=1, backend=b.name, backend_version=b.version, mode=mode,
              date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), python=platform.python_version(),
              note="smoke run on the CPU emulator: numbers measure nothing" if smoke else "")


def sync():
    if rt.name == "cupy":
        xp.cuda.Device().synchronize()


def gpu_info():
    if smoke:
        return {}
    q = "name,memory.total,driver_version,clocks.max.memory"
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip().splitlines()[0]
        return dict(zip(q.split(","), [s.strip() for s in line.split(",")]))
    except Exception as exc:
        return {"error": str(exc)}


result["gpu"] = gpu_info()
for dt in ("float32", "bfloat16"):
    p = work / f"conform-{dt}.json"
    if p.exists():
        d = json.loads(p.read_text())
        result[f"conform_{dt}"] = dict(ok=d["ok"], summary=d["summary"],
                                       failures=[r["op"] for r in d["results"] if r["status"] in ("fail", "error")])


def step(name, fn):
    t0 = time.perf_counter()
    try:
        result[name] = fn()
    except Exception as exc:
        result[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    result[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(name, json.dumps({k: v for k, v in result[name].items() if k != "traceback"})[:600], flush=True)


# ---------------------------------------------------------------- 3. real-width gpt-oss vs the reference
def real_width():
    from refimpl.conformance.tiny import tiny_config, tiny_weights
    from refimpl.conformance.tracediff import diff_traces
    from refimpl.model import forward, prepare_weights

    width = dict(hidden_size=64, num_heads=8, num_kv_heads=2, head_dim=16, intermediate_size=64) if smoke else \
        dict(hidden_size=2880, num_heads=64, num_kv_heads=8, head_dim=64, intermediate_size=2880)
    cfg = tiny_config("gpt_oss", num_layers=1, num_experts=4, experts_per_token=2, vocab_size=512,
                      sliding_window=128, max_position_embeddings=4096, layer_types=("sliding_attention",), **width)
    W = tiny_weights(cfg, seed=0, mxfp4=True)
    ids = np.array([3, 17, 42, 5, 88, 1, 64, 23])
    ref = {}
    forward(cfg, prepare_weights(cfg, W, "float64"), ids, dtype="float64", trace=ref)
    out = {}
    for m in ("float32", "bfloat16"):
        tr = {}  # device-resident: weights uploaded once, the backend's arrays from load to logits
        forward(cfg, prepare_weights(cfg, W, m, to_device=b.to_device), ids, dtype=m, trace=tr, ops=b.ops())
        rep = diff_traces(ref, tr, dtype=m, backend=b.name)
        out[m] = dict(ok=rep.ok, first_divergence=rep.first,
                      worst_ratio=max((e.ratio for e in rep.entries), default=0.0))
    out["ok"] = all(out[m]["ok"] for m in ("float32", "bfloat16"))
    out["shape"] = width
    return out


# ---------------------------------------------------------------- 4. bandwidth and decode
def bandwidth():
    n = (1 << 20) if smoke else (1 << 31)  # bytes
    a = xp.ones(n // 4, dtype=np.float32)
    c = xp.empty_like(a)
    c[...] = a
    sync()
    reps = 2 if smoke else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        c[...] = a
    sync()
    dt = time.perf_counter() - t0
    return dict(bytes_per_copy=n, copies=reps, gbps=2 * n * reps / dt / 1e9,
                rule="device-to-device copy: (bytes read + bytes written) / time")


def bf16_rand(shape, scale):
    f = xp.random.standard_normal(shape).astype(np.float32) * np.float32(scale)
    u = (f.view(np.uint32) >> 16).astype(np.uint16)
    return u if rt.name == "cupy" else u.view(rt.bf16_dtype)


def decode():
    from refimpl.ops import OPS

    if smoke:
        L, E, k, V, d, Hq, Hkv, D, I, ctx, steps = 2, 4, 2, 97, 64, 4, 2, 16, 64, 8, 3
    else:
        L, E, k, V, d, Hq, Hkv, D, I, ctx, steps = 24, 32, 4, 201088, 2880, 64, 8, 64, 2880, 512, 32
    Tmax = ctx + steps + 1
    xp.random.seed(0)
    lay = []
    for _ in range(L):
        lay.append(dict(
            attn_norm=xp.ones(d, np.float32), mlp_norm=xp.ones(d, np.float32),
            qkv=bf16_rand(((Hq + 2 * Hkv) * D, d), 0.02), qkv_b=xp.zeros((Hq + 2 * Hkv) * D, np.float32),
            o=bf16_rand((d, Hq * D), 0.02), o_b=xp.zeros(d, np.float32),
            sinks=xp.zeros(Hq, np.float32),
            router=bf16_rand((E, d), 0.02), router_b=xp.zeros(E, np.float32),
            b1=xp.random.randint(0, 256, (E, 2 * I, d // 32, 16), dtype=np.uint8),
            s1=xp.random.randint(119, 124, (E, 2 * I, d // 32), dtype=np.uint8),
            bias1=xp.zeros((E, 2 * I), np.float32),
            b2=xp.random.randint(0, 256, (E, d, I // 32, 16), dtype=np.uint8),
            s2=xp.random.randint(119, 124, (E, d, I // 32), dtype=np.uint8),
            bias2=xp.zeros((E, d), np.float32),
            kc=xp.random.standard_normal((Hkv, Tmax, D)).astype(np.float32),
            vc=xp.random.standard_normal((Hkv, Tmax, D)).astype(np.float32)))
    emb, head, final = bf16_rand((V, d), 1.0), bf16_rand((V, d), 0.02), xp.ones(d, np.float32)
    rope = dict(rope_type="yarn", factor=32.0, beta_fast=32.0, beta_slow=1.0,
                original_max_position_embeddings=4096, truncate=False)
    inv, sc = OPS["rope_frequencies"](D, base=150000.0, rope_scaling=rope)
    cos, sin = OPS["rope_cos_sin"](inv, np.arange(Tmax), attention_scaling=sc)
    cos, sin = rt.asarray(cos.astype(np.float32)), rt.asarray(sin.astype(np.float32))
    sync()

    lin, norm, rp = K["linear"]["gemv"], K["rms_norm"]["rowblock"], K["apply_rope"]["elementwise"]
    att, router, mx = K["attention"]["rows"], K["router_topk_softmax"]["rowthread"], K["mxfp4_linear"]["fused"]
    act, emb_k, arg = K["swiglu_oss"]["elementwise"], K["embedding"]["gather"], K["greedy"]["rowblock"]

    def step_token(tok, pos):
        x = rt.to_f32(emb_k(xp.asarray([tok]), emb))  # [1, d]
        for li, w in enumerate(lay):
            h = norm(x, w["attn_norm"])
            qkv = lin(h, w["qkv"], w["qkv_b"])
            q = qkv[:, :Hq * D].reshape(1, 1, Hq, D)
            kk = qkv[:, Hq * D:(Hq + Hkv) * D].reshape(1, 1, Hkv, D)
            vv = qkv[:, (Hq + Hkv) * D:].reshape(1, 1, Hkv, D)
            q = rp(q, cos[pos:pos + 1], sin[pos:pos + 1])
            kk = rp(kk, cos[pos:pos + 1], sin[pos:pos + 1])
            w["kc"][:, pos, :] = kk[0, 0]
            w["vc"][:, pos, :] = vv[0, 0]
            kview = w["kc"].transpose(1, 0, 2)[None, :pos + 1]  # [1, T, Hkv, D], no copy
            vview = w["vc"].transpose(1, 0, 2)[None, :pos + 1]
            o = att(q, kview, vview, sinks=w["sinks"], window=128 if li % 2 == 0 else None, q_offset=pos)
            x = x + lin(o.reshape(1, Hq * D), w["o"], w["o_b"])
            h = norm(x, w["mlp_norm"])
            wts, idx = router(lin(h, w["router"], w["router_b"]), k)
            idx_h, wts_h = rt.to_host(idx)[0], wts[0]  # the one host sync per layer: which experts
            y = xp.zeros_like(x)
            for j, e in enumerate(int(v) for v in idx_h):
                u = mx(h, w["b1"][e], w["s1"][e], w["bias1"][e])
                y = y + wts_h[j] * mx(act(u), w["b2"][e], w["s2"][e], w["bias2"][e])
            x = x + y
        logits = lin(norm(x, final), head)
        return arg(logits)[0]

    tok = 1
    step_token(tok, ctx)  # warm-up: compiles every kernel
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):  # every step decodes at position ctx (ctx cached keys + itself): fixed bytes per step
        tok = int(step_token(tok, ctx))
    sync()
    dt = time.perf_counter() - t0
    T = ctx + 1
    per_layer = ((Hq + 2 * Hkv) * D * d + d * Hq * D + E * d) * 2 \
        + k * (2 * I * d // 2 + 2 * I * d // 32 + d * I // 2 + d * I // 32) \
        + 2 * Hkv * T * D * 4
    window_saving = sum(2 * Hkv * max(0, T - 128) * D * 4 for li in range(L) if li % 2 == 0)
    bytes_tok = L * per_layer - window_saving + d * 2 + V * d * 2
    return dict(layers=L, experts=E, top_k=k, vocab=V, context=T, steps=steps, timed_seconds=dt, tok_per_s=steps / dt,
                bytes_per_token=int(bytes_tok),
                bytes_rule="weights read once per token (qkv, o, router bf16; k experts' MXFP4 blocks + scales; "
                           "embedding row; lm_head bf16) + the float32 KV cache read (sliding layers: 128 keys)")


step("real_width_gpt_oss", real_width)
step("hbm", bandwidth)
step("decode", decode)
dec, hbm = result.get("decode", {}), result.get("hbm", {})
if "tok_per_s" in dec and "gbps" in hbm:
    achieved = dec["bytes_per_token"] * dec["tok_per_s"] / 1e9
    result["decode"]["achieved_gbps"] = achieved
    result["decode"]["fraction_of_measured_hbm"] = achieved / hbm["gbps"]
    result["decode"]["target"] = ">= 0.60 of the HBM roofline (issue 14)"
out_path.parent.mkdir(parents=True, exist_ok=True)
out_path.write_text(json.dumps(result, indent=2, default=float))
print("wrote", out_path)
PYEOF
timeout "$LEFT" "$PY" "$WORK/gpu_check.py" "$MODE" "$BACKEND" "$OUT" "$WORK"
RC=$?
echo "gpu_check: exit $RC after $(( $(date +%s) - START )) s; results in $OUT"
exit $RC
