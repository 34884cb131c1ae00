"""The Numba backend's one-call decode layer (backends/numba/layer.py): bit for bit the op-by-op run of
the same backend, over the models and weights it covers, on one and two threads; and within the
float32 budget of the reference. What it does not cover runs op by op.
"""

import ml_dtypes
import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'refimpl[numba]'): "
                                            "the Numba backend cannot be tested")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'refimpl[gguf]'): "
                                          "packed GGUF weights cannot be made")

from canonical_tiny import tiny_config, tiny_weights  # noqa: E402
from refimpl.api import Model  # noqa: E402
from refimpl.backends.numba import NumbaBackend, layer  # noqa: E402
from refimpl.ops.quant import PackedGGUF, random_packed  # noqa: E402


class OpByOp(NumbaBackend):
    """The same kernels, each layer run op by op (no decode_layer)."""

    def decode_layer(self, config, weights, precision, x, cache):
        return None


CASES = {  # name: (tiny_config overrides, qtypes cycled over the layers' four matrices)
    "llama": (dict(num_layers=3), ("Q8_0", "Q4_1", "Q4_0")),
    "biases": (dict(attention_bias=True, attention_out_bias=True), ("Q4_1", "Q8_0")),
    "window": (dict(sliding_window=3, num_layers=3), ("Q4_0", "Q4_1")),
    "sinks": (dict(attention_sinks=True, num_kv_heads=1), ("Q8_0",)),
    "interleaved_mha": (dict(rope_pairing="interleaved", num_kv_heads=4), ("Q4_1",)),
    "qk_norm": (dict(qk_norm=True, rope_theta=1e6), ("Q4_1", "Q8_0")),  # Qwen3
    "k_quants": (dict(hidden_size=256, intermediate_size=256, num_heads=4, num_kv_heads=2, head_dim=64),
                 ("Q4_K", "Q6_K")),
}


DENSE_CASES = {  # name: tiny_config overrides, run with float32 and with bfloat16 matrices
    "llama": dict(num_layers=3),
    "biases": dict(attention_bias=True, attention_out_bias=True),
    "qk_norm": dict(qk_norm=True, num_kv_heads=1),
    # rows per product not a multiple of 16 or 4 (bf16.py's work items and row groups), odd K
    "odd_sizes": dict(hidden_size=70, num_heads=3, num_kv_heads=1, head_dim=10, intermediate_size=38),
}


def _dense(name, kind):
    """Tiny weights as float32 (rounded at load) or all cast to bfloat16 (matrices kept bfloat16 at load)."""
    cfg = tiny_config("llama", **DENSE_CASES[name])
    W = tiny_weights(cfg, seed=7)
    if kind == "bfloat16":
        W = {k: np.asarray(v).astype(ml_dtypes.bfloat16) for k, v in W.items()}
    return cfg, W


def _packed(name, mixed=False):
    """CASES[name], its matrices packed; mixed: some of them float32 or bfloat16 instead, in each layer."""
    over, qtypes = CASES[name]
    cfg = tiny_config("llama", **over)
    W = dict(tiny_weights(cfg, seed=7))
    groups = (("attn.q", "attn.k", "attn.v"), ("attn.o",), ("mlp.gate", "mlp.up"), ("mlp.down",))
    for L in range(cfg.num_layers):
        for g, parts in enumerate(groups):
            q = qtypes[(L + g) % len(qtypes)]
            if mixed:  # (the reference multiplies dense gate/up by a dense down only)
                q = {"f": "float32", "b": "bfloat16", "p": q}[("pfpb", "fbbf", "bppf")[L % 3][g]]
            for part in parts:
                key = f"layers.{L}.{part}.weight"
                a = np.asarray(W[key], np.float32)
                if q in ("float32", "bfloat16"):
                    W[key] = a.astype(ml_dtypes.bfloat16) if q == "bfloat16" else a
                    continue
                if q.endswith("_K"):  # gguf-py cannot quantize K formats: random blocks with finite scales
                    raw = random_packed(np.random.default_rng(L), q, a.shape, scale=0.002)
                else:
                    raw = gguf.quants.quantize(a, gguf.GGMLQuantizationType[q])
                W[key] = PackedGGUF(raw, q, a.shape)
    return cfg, W


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    if request.param > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s) here; 2 are needed")
    backend = NumbaBackend(threads=request.param)
    yield backend
    NumbaBackend(threads=numba.config.NUMBA_NUM_THREADS)


def _decode(model, ids, steps):
    """Logits of the prompt's last position, then of `steps` greedy decode steps (one token each)."""
    cache = model.new_cache()
    out = [np.asarray(model._forward(ids, cache=cache))[-1]]
    for _ in range(steps):
        tok = int(np.argmax(out[-1]))
        out.append(np.asarray(model._forward(np.array([tok]), cache=cache))[-1])
    return np.stack(out)


RUNS = [(c, "packed") for c in sorted(CASES)] + [(c, k) for c in DENSE_CASES for k in ("float32", "bfloat16")] \
    + [("llama", "mixed"), ("k_quants", "mixed")]  # packed, float32 and bfloat16 matrices in one layer


@pytest.mark.parametrize("case, kind", RUNS, ids=[f"{c}-{k}" for c, k in RUNS])
def test_one_call_layer_is_the_op_by_op_run_bit_for_bit(case, kind, threads, monkeypatch):
    cfg, W = _packed(case, kind == "mixed") if kind in ("packed", "mixed") else _dense(case, kind)
    case = f"{case} ({kind})"
    made = []
    real = layer.plan
    monkeypatch.setattr(layer, "plan", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    ids = np.array([3, 14, 15, 9, 2, 6])
    fused = _decode(Model(cfg, W, dtype="float32", backend=threads), ids, steps=7)
    assert made and all(s is not None for s in made), f"{case}: the one-call layer did not run"
    plain = _decode(Model(cfg, W, dtype="float32", backend=OpByOp(threads=threads.threads["numba"])), ids, steps=7)
    diff = np.argwhere(fused.view(np.uint32) != plain.view(np.uint32))
    assert diff.size == 0, (f"{case}: {len(diff)} logits differ from the op-by-op run; first at "
                            f"[step, vocab] = {tuple(diff[0])}: {fused[tuple(diff[0])]!r} vs {plain[tuple(diff[0])]!r}")
    ref = _decode(Model(cfg, W, dtype="float64"), ids, steps=7)  # the reference, float64 (dequantized, widened)
    np.testing.assert_allclose(fused, ref, rtol=0, atol=2e-4 * np.abs(ref).max(), err_msg=case)


@pytest.mark.parametrize("what", ["bfloat16", "moe", "fortran_order_weight", "batch", "trace", "naive_kernel"])
def test_what_it_does_not_cover_runs_op_by_op(what, monkeypatch):
    cfg, W = _packed("llama")
    dtype, backend = "float32", NumbaBackend()
    if what == "bfloat16":
        dtype = "bfloat16"
    elif what == "moe":
        cfg = tiny_config("mixtral")
        W = tiny_weights(cfg)
    elif what == "fortran_order_weight":  # a float32 matrix in Fortran order: linear multiplies it by BLAS
        W["layers.1.attn.o.weight"] = np.asfortranarray(tiny_weights(cfg)["layers.1.attn.o.weight"], np.float32)
    elif what == "naive_kernel":
        backend = backend.with_kernel("attention", "naive")
    made = []
    real = layer.plan
    monkeypatch.setattr(layer, "plan", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    m = Model(cfg, W, dtype=dtype, backend=backend)
    batch = (1,) if what == "batch" else ()
    cache = m.new_cache(batch)
    ids = np.array([[3, 14, 15]]) if batch else np.array([3, 14, 15])
    m._forward(ids, cache=cache)
    one = np.array([[9]]) if batch else np.array([9])
    m._forward(one, cache=cache, trace={} if what == "trace" else None)
    assert not any(s is not None for s in made), f"{what}: the one-call layer ran where it must not"


def test_stale_cache_entries_are_dropped(tmp_path):
    """Numba checks the stamp of layer.py only; a change in a module it inlines must drop its entries."""
    old = tmp_path / "layer.layer_kernel-50.py311.nbi"
    other = tmp_path / "quant.gemv1_vec-400.py311.nbi"
    old.write_text("x")
    other.write_text("x")
    (tmp_path / "layer.sources.sha256").write_text("an older digest")
    layer._drop_stale_cache(tmp_path)
    assert not old.exists() and other.exists()
    assert (tmp_path / "layer.sources.sha256").read_text() != "an older digest"
    old.write_text("x")
    layer._drop_stale_cache(tmp_path)  # same sources: kept
    assert old.exists()


def test_a_replaced_weight_makes_a_new_plan():
    """The backend keeps its last plan while every entry it reads is the same object: a weight
    replaced in the model's dict is read on the next step, as the op-by-op run reads it."""
    cfg, W = _packed("llama")
    ids = np.array([3, 14, 15])
    fused, plain = Model(cfg, W, dtype="float32", backend=NumbaBackend()), Model(cfg, W, dtype="float32",
                                                                              backend=OpByOp())
    first = _decode(fused, ids, steps=2)
    assert np.array_equal(first, _decode(plain, ids, steps=2))
    for m in (fused, plain):  # the same new matrix in both
        key = "layers.1.mlp.down.weight"
        m.weights[key] = PackedGGUF(np.ascontiguousarray(np.asarray(m.weights[key].blocks)[::-1]),
                                    m.weights[key].qtype, m.weights[key].shape)
    again = _decode(fused, ids, steps=2)
    assert not np.array_equal(again, first)
    assert again.tobytes() == _decode(plain, ids, steps=2).tobytes()


def test_smollm2_one_call_layers_are_the_op_by_op_run():
    """The real model's decode steps through backends/numba/layer.py, bit for bit the op-by-op run."""
    from refimpl.fetch import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except Exception as exc:  # no network and no cached file
        pytest.skip(f"SmolLM2 GGUF not available here and not downloadable ({exc})")
    from refimpl.api import load

    fused = load(str(path), backend="numba")
    x = np.zeros((1, fused.config.hidden_size), np.float32)
    assert fused.backend.decode_layer(fused.config, fused.weights, fused.precision, x, fused.new_cache()) is not None
    ids = np.array([504, 3575, 282, 4649, 314])  # "The capital of France is"
    a, b = _decode(fused, ids, steps=4), _decode(load(str(path), backend=OpByOp()), ids, steps=4)
    assert a.tobytes() == b.tobytes(), f"{int((a != b).sum())} logits differ from the op-by-op run"
