"""The CUDA kernels of backends/cupy run on the CPU emulator (backend "cupy-emulated").

The conformance suite (ops and whole tiny models) is the main check; the tests below also check the
emulator itself (shuffles, atomics, shared memory, a divergent barrier, bf16 rounding) and the
backend's own rules (strided KV-cache views, the fused residual norm, float64 inputs, bad input).
See spec/backends-cupy.md for what the emulator proves and what it cannot.
"""

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from refimpl.backends import OpNotSupported, get_backend, registered_backends
from refimpl.errors import ArgumentError
from refimpl.ops import ops as R

pytestmark = pytest.mark.skipif(shutil.which("g++") is None,
                                reason="cupy-emulated compiles the kernels with g++, which is not on PATH")

CASES = Path(__file__).with_name("cupy_emulator_cases.cu")


@pytest.fixture(scope="module")
def backend():
    return get_backend("cupy-emulated")


@pytest.fixture(scope="module")
def cases():
    from refimpl.backends.cupy.runtime import build_emulated

    return build_emulated(CASES)


@pytest.fixture(scope="module")
def rt(backend):
    return backend.rt


def test_registered_and_no_gpu_needed(backend):
    assert "cupy-emulated" in registered_backends()
    assert backend.name == "cupy-emulated" and not backend.needs_gpu


# ----------------------------------------------------------------------------- conformance


def test_conform_ops_float32(backend):
    """Every op with a kernel passes the property suite (explicit examples + 2 drawn cases each)."""
    from refimpl.conformance.suite import format_table, run_suite

    ops = sorted(backend.capabilities()["ops"])
    res = run_suite(backend, ops=ops, dtype="float32", max_examples=2)
    assert res.ok, format_table(res)
    passed = {r.op for r in res.rows if r.status == "pass"}
    assert len(passed) >= 12, sorted(passed)


def test_conform_ops_bfloat16(backend):
    """bf16 storage kernels (inputs bfloat16, float32 compute) pass on the ops the model reads bf16 in."""
    from refimpl.conformance.suite import format_table, run_suite

    ops = ["rms_norm", "layer_norm", "linear", "apply_rope", "attention", "swiglu_oss", "decode_mxfp4",
           "mxfp4_linear", "router_topk_softmax", "embedding", "greedy"]
    res = run_suite(backend, ops=ops, dtype="bfloat16", max_examples=2)
    assert res.ok, format_table(res)
    assert all(r.status == "pass" for r in res.rows), format_table(res)


@pytest.mark.parametrize("arch,dtype", [("gpt2", "float32"), ("llama", "bfloat16"), ("gpt_oss_mxfp4", "float32")])
def test_conform_whole_tiny_model(backend, arch, dtype):
    """The tiny model through the backend's ops matches the float64 reference trace within budgets,
    every op with a kernel running on it (none falls back to the reference for float64 inputs)."""
    from refimpl.conformance.suite import run_model

    backend.reference_calls.clear()
    r = run_model(backend, arch, dtype=dtype)
    assert r.status == "pass", r.reason + "\n" + (str(r.report) if r.report is not None else "")
    assert not backend.reference_calls, f"ops run by the reference instead of a kernel: {dict(backend.reference_calls)}"


# ----------------------------------------------------------------------------- the emulator itself


def test_warp_shuffle_xor(rt, cases):
    out = np.zeros(5 * 64, dtype=np.int32)
    rt.launch(cases, "shuffle_xor", (1,), 64, out)
    t = np.arange(64)
    want = np.concatenate([10 * (t ^ (1 << k)) for k in range(5)])
    np.testing.assert_array_equal(out, want)


def test_atomics_count_every_thread_of_every_block(rt, cases):
    counter = np.zeros(2, dtype=np.uint32)
    rt.launch(cases, "atomic_count", (3,), 64, counter)
    assert counter.tolist() == [3 * 64, 3 * sum(range(64))]


def test_shared_memory_and_syncthreads(rt, cases):
    x = np.arange(1000, dtype=np.float32)
    out = np.zeros(2, dtype=np.float32)
    rt.launch(cases, "shared_sum", (2,), 96, x, out, np.int32(1000))
    assert out.tolist() == [float(x.sum())] * 2


def test_divergent_barrier_is_reported_not_hung(rt, cases):
    from refimpl.backends.cupy.runtime import KernelError

    cases.emu_set_timeout(2.0)
    try:
        with pytest.raises(KernelError, match="__syncthreads"):
            rt.launch(cases, "divergent_barrier", (1,), 64, np.zeros(64, dtype=np.int32))
    finally:
        cases.emu_set_timeout(20.0)


def test_block_size_must_be_whole_warps(rt, cases):
    from refimpl.backends.cupy.runtime import KernelError

    with pytest.raises(KernelError, match="multiple of 32"):
        rt.launch(cases, "atomic_count", (1,), 48, np.zeros(2, dtype=np.uint32))


def test_bf16_rounding_matches_ml_dtypes(rt, cases):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    ties = (np.arange(200, dtype=np.uint32) << 16) | 0x8000  # exact halfway cases, both parities
    special = np.array([0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00000001, 0x80000000, 0x7FC00000, 0x7F800001],
                       dtype=np.uint32)
    x = np.concatenate([bits, ties, special]).view(np.float32)
    y = np.zeros(x.size, dtype=np.uint16)
    rt.launch(cases, "bf16_bits", (3,), 32, x, y, np.int64(x.size))
    with np.errstate(invalid="ignore"):
        want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(y[~nan], want[~nan])
    assert np.isnan(y[nan].view(ml_dtypes.bfloat16).astype(np.float32)).all()


# ----------------------------------------------------------------------------- backend rules


def test_attention_reads_a_strided_kv_cache_view(backend):
    """k, v as [B, T, Hkv, D] views of a cache buffer [B, Hkv, Tmax, D]: same result as contiguous copies."""
    rng = np.random.default_rng(1)
    B, Hq, Hkv, D, Tmax, T = 2, 4, 2, 16, 40, 23
    kbuf = rng.standard_normal((B, Hkv, Tmax, D)).astype(np.float32)
    vbuf = rng.standard_normal((B, Hkv, Tmax, D)).astype(np.float32)
    k, v = kbuf.transpose(0, 2, 1, 3)[:, :T], vbuf.transpose(0, 2, 1, 3)[:, :T]
    assert not k.flags.c_contiguous
    q = rng.standard_normal((B, 1, Hq, D)).astype(np.float32)
    for kern in backend.kernel_names("attention"):
        ops = backend.with_kernel("attention", kern).as_ops(fallback=False)
        got = ops.attention(q, k, v, q_offset=T - 1, window=7)
        want = R.attention(q.astype(np.float64), np.ascontiguousarray(k), np.ascontiguousarray(v), q_offset=T - 1,
                           window=7)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=kern)


def test_fused_residual_norms(backend):
    from refimpl.backends.cupy import norms

    rng = np.random.default_rng(2)
    x, r = rng.standard_normal((5, 48)).astype(np.float32), rng.standard_normal((5, 48)).astype(np.float32)
    w, b = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    s, y = norms.residual_rms_norm(backend.rt, x, r, w, eps=1e-5)
    np.testing.assert_array_equal(s, x + r)
    np.testing.assert_allclose(y, R.rms_norm((x + r).astype(np.float64), w, eps=1e-5), rtol=2e-6, atol=2e-6)
    s, y = norms.residual_layer_norm(backend.rt, x, r, w, b, eps=1e-5)
    np.testing.assert_allclose(y, R.layer_norm((x + r).astype(np.float64), w, b, eps=1e-5), rtol=2e-6, atol=2e-6)


def test_float64_input_is_not_supported_per_op_but_falls_back_in_models(backend):
    x = np.ones((2, 8))
    with pytest.raises(OpNotSupported, match="float64"):
        backend.as_ops(fallback=False).rms_norm(x, np.ones(8))
    ops = backend.as_ops(fallback=True)
    before = ops.backend.reference_calls["rms_norm"]
    np.testing.assert_array_equal(ops.rms_norm(x, np.ones(8)), R.rms_norm(x, np.ones(8)))
    assert ops.backend.reference_calls["rms_norm"] == before + 1


@pytest.mark.parametrize("call", [
    lambda o: o.rms_norm(np.ones((2, 8), np.float32), np.ones(7, np.float32)),
    lambda o: o.linear(np.ones((2, 8), np.float32), np.ones((3, 9), np.float32)),
    lambda o: o.embedding(np.array([0, 5]), np.ones((5, 4), np.float32)),
    lambda o: o.attention(np.ones((2, 3, 8), np.float32), np.ones((2, 2, 8), np.float32), np.ones((2, 2, 8), np.float32)),
    lambda o: o.mxfp4_linear(np.ones((1, 64), np.float32), np.zeros((3, 1, 16), np.uint8), np.zeros((3, 1), np.uint8)),
])
def test_bad_input_is_a_one_line_argument_error(backend, call):
    with pytest.raises(ArgumentError) as e:
        call(backend.as_ops(fallback=False))
    assert "\n" not in str(e.value)


def _tie_heavy_logits(rng, rows, v):
    """Small integers (many equal logits), zeros of both signs, some -inf, one finite entry per row."""
    x = rng.integers(-3, 3, size=(rows, v)).astype(np.float32)
    zero = x == 0
    x[zero] = np.where(rng.random(int(zero.sum())) < 0.5, np.float32(-0.0), np.float32(0.0))
    x[rng.random((rows, v)) < 0.2] = -np.inf
    x[:, -1] = 1.0
    return x


@pytest.mark.parametrize("v", [1, 33, 1000, 5003])
def test_top_p_radix_sort_keeps_the_reference_set(backend, v):
    """top_p_filter's kernel (a block-wide stable radix sort, spec/backends-cupy.md) keeps exactly the
    reference's tokens, ties ranked by lower index (-0 equal to +0), in float32 and bf16 storage, with
    several rows per launch and vocabularies shorter and longer than one block."""
    rng = np.random.default_rng(v)
    ops = backend.as_ops(fallback=False)
    for x in (_tie_heavy_logits(rng, 3, v), (rng.normal(size=(2, v)) * 3).astype(np.float32)):
        for dt in (np.float32, ml_dtypes.bfloat16):
            for p, min_keep in ((0.05, 1), (0.5, 2), (0.9, 1), (0.999, 3)):
                want = R.top_p_filter(x.astype(dt), p, min_keep=min_keep).astype(np.float32)
                got = np.asarray(ops.top_p_filter(x.astype(dt), p, min_keep=min_keep))
                np.testing.assert_array_equal(got, want, err_msg=f"V={v} {np.dtype(dt).name} p={p}")
