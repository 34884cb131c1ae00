"""The forward pass composes ops only and keeps a backend's arrays on its device.

`DeviceBackend` stands for a GPU backend: its arrays (`Dev`, a NumPy subclass standing for device
memory) refuse arithmetic, NumPy functions and conversions to Python numbers outside its kernels,
a host float array reaching one of its ops fails the test, and every device-to-host copy
(`to_host`) is counted. Its kernels run the reference on the device buffers, so its logits must
equal the reference's bit for bit. It has no `sample` kernel: sampling falls back through
`to_host`, the one crossing a generated token needs.
"""

import contextlib

import numpy as np
import pytest

from canonical_tiny import tiny_config, tiny_weights
from refimpl.api import Model
from refimpl.backends import Backend
from refimpl.ops import OPS

_INSIDE = [False]


@contextlib.contextmanager
def _kernel_scope(inside):
    old, _INSIDE[0] = _INSIDE[0], inside
    try:
        yield
    finally:
        _INSIDE[0] = old


def _refuse(what):
    raise AssertionError(f"{what} on a device array outside a kernel")


class Dev(np.ndarray):
    """Device memory: shape, dtype, views and copies into device buffers are fine; values are not."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if not _INSIDE[0]:
            _refuse(f"host arithmetic ({ufunc.__name__})")
        inputs = [i.view(np.ndarray) if isinstance(i, Dev) else i for i in inputs]
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if not _INSIDE[0]:
            _refuse(f"a host NumPy function ({func.__name__})")
        return func(*_plain(args), **_plain(kwargs))

    def __bool__(self):
        return _refuse("bool()") if not _INSIDE[0] else bool(self.view(np.ndarray))

    def __float__(self):
        return _refuse("float()") if not _INSIDE[0] else float(self.view(np.ndarray))

    def __int__(self):
        return _refuse("int()") if not _INSIDE[0] else int(self.view(np.ndarray))

    def item(self, *a):
        return _refuse(".item()") if not _INSIDE[0] else self.view(np.ndarray).item(*a)

    def tolist(self):
        return _refuse(".tolist()") if not _INSIDE[0] else self.view(np.ndarray).tolist()


def _plain(v):
    if isinstance(v, Dev):
        return v.view(np.ndarray)
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _dev(v):
    if isinstance(v, np.ndarray) and not isinstance(v, Dev):
        return v.view(Dev)
    if isinstance(v, tuple):
        return tuple(_dev(x) for x in v)
    return v


def _no_host_floats(op, args, kwargs):
    for v in list(args) + list(kwargs.values()):
        for a in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(a, np.ndarray) and not isinstance(a, Dev) and a.dtype.kind in "fcV":
                raise AssertionError(f"{op}: a host float array {a.dtype}{a.shape} reached a device op")


def _device_kernel(op, calls):
    ref = OPS[op]

    def callback(fn):  # the model's callables (norm, sublayer, expert_fn) see device arrays, outside the kernel
        def call(*a, **k):
            with _kernel_scope(False):
                return _plain(fn(*_dev(a), **{n: _dev(x) for n, x in k.items()}))

        return call

    def kernel(*args, **kwargs):
        _no_host_floats(op, args, kwargs)
        calls.append(op)
        args = [callback(a) if callable(a) and not isinstance(a, np.ndarray) else a for a in args]
        kwargs = {n: callback(v) if callable(v) and not isinstance(v, (np.ndarray, np.random.Generator)) else v
                  for n, v in kwargs.items()}
        with _kernel_scope(True):
            out = ref(*_plain(args), **_plain(kwargs))
        return _dev(out)

    kernel.__name__ = op
    return kernel


class DeviceBackend(Backend):
    name = "device-double"

    def __init__(self):
        super().__init__()
        self.calls, self.host_copies = [], 0
        self.kernels = {op: {"device": _device_kernel(op, self.calls)} for op in OPS if op != "sample"}

    def to_device(self, array):
        if isinstance(array, Dev):
            return array
        return np.array(array, copy=True).view(Dev)

    def to_host(self, array):
        if isinstance(array, Dev):
            self.host_copies += 1
            return np.array(array.view(np.ndarray), copy=True)
        return np.asarray(array)


CASES = [("gpt2", "float32", {}), ("gpt2", "float64", {"norm_placement": "post"}), ("llama", "float32", {}),
         ("llama", "bfloat16", {}), ("qwen3", "float32", {}), ("mistral", "float64", {}), ("mixtral", "float32", {}),
         ("gpt_oss", "float32", {}), ("gpt_oss", "bfloat16", {}), ("gpt_oss_mxfp4", "bfloat16", {})]


def _pair(arch, dtype, over, backend):
    cfg = tiny_config(arch.replace("_mxfp4", ""), **over)
    w = tiny_weights(cfg, mxfp4=arch.endswith("_mxfp4"))
    return Model(cfg, w, dtype=dtype), Model(cfg, w, dtype=dtype, backend=backend)


@pytest.mark.parametrize("arch, dtype, over", CASES, ids=[f"{a}-{d}{'-post' if o else ''}" for a, d, o in CASES])
def test_whole_model_runs_on_device_arrays_and_crosses_to_host_only_to_sample(arch, dtype, over):
    b = DeviceBackend()
    ref, dev = _pair(arch, dtype, over, b)
    assert all(isinstance(w, Dev) for w in dev.weights.values())  # weights handed over once, at load
    ids = np.random.default_rng(3).integers(0, ref.config.vocab_size, 7)
    np.testing.assert_array_equal(dev.logits(ids), ref.logits(ids))
    assert b.host_copies == 1  # the logits the caller asked for
    b.host_copies = 0
    n = 5
    got = dev.generate(ids, max_new_tokens=n, temperature=0.8, top_p=0.9, seed=4, stop_ids=())
    assert got == ref.generate(ids, max_new_tokens=n, temperature=0.8, top_p=0.9, seed=4, stop_ids=())
    assert len(got) == n and b.host_copies <= 2 * n, b.host_copies
    assert "sample" not in b.calls and "round_to_storage" in b.calls


def _ops_used(arch, dtype, over):
    b = DeviceBackend()
    _, dev = _pair(arch, dtype, over, b)
    dev.generate(np.arange(5) % dev.config.vocab_size, max_new_tokens=2, stop_ids=())
    return set(b.calls) | {"sample"}


@pytest.mark.parametrize("arch, dtype, over", CASES, ids=[f"{a}-{d}{'-post' if o else ''}" for a, d, o in CASES])
def test_a_backend_overriding_any_op_the_model_uses_is_called(arch, dtype, over):
    used = _ops_used(arch, dtype, over)
    expected = {"embedding", "linear", "round_to_storage", "sample", "pre_norm_residual"}
    if over.get("norm_placement") == "post":
        expected = expected - {"pre_norm_residual"} | {"post_norm_residual"}
    if arch == "gpt2":
        expected |= {"learned_positions", "add", "layer_norm", "gelu_mlp"}
    else:
        expected |= {"rms_norm", "rope_frequencies", "rope_cos_sin"}
    if arch == "mixtral":
        expected |= {"router_softmax_topk", "moe_combine", "swiglu_mlp"}
    if arch.startswith("gpt_oss"):
        expected |= {"router_topk_softmax", "moe_combine"}
    if arch.startswith("gpt_oss") and dtype == "bfloat16":
        expected |= {"swiglu_oss_bf16", "rope_terms", "add", "attention_scores", "scale", "softmax_with_sinks",
                     "attention_values", "visibility_mask"}
    if arch == "gpt_oss_mxfp4":
        expected |= {"mxfp4_linear"}
    assert expected <= used, expected - used
    for op in sorted(used):
        seen = []

        def spy(*a, _op=op, **k):
            seen.append(_op)
            return OPS[_op](*a, **k)

        class OneOp(Backend):  # only this op has a kernel: every other op falls back to the reference
            name = f"only-{op}"
            kernels = {op: {"spy": spy}}

        _, m = _pair(arch, dtype, over, OneOp())
        m.generate(np.arange(5) % m.config.vocab_size, max_new_tokens=2, stop_ids=())
        assert seen, f"{arch}/{dtype}: a backend's {op} kernel was never called"
