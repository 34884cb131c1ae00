"""Named convention differences: a fully masked row's NaN form in softmax_with_sinks (torch.softmax over
a row of -inf scores with no sink) is `fully_masked_row`, not a failure; the rest of the output is judged."""

import numpy as np

from refimpl.backends.numpy import NumpyBackend
from refimpl.conformance.ops.attention import fully_masked_output
from refimpl.conformance.suite import run_op
from refimpl.ops import ops as ref_ops


def _torch_style(scores, sinks=None):
    """softmax with the sink column appended, then dropped, as torch.softmax computes it: a row whose
    logits are all -inf has max -inf, and exp(-inf - -inf) = NaN fills the row."""
    s = np.asarray(scores)
    if sinks is not None:
        col = np.broadcast_to(np.asarray(sinks, dtype=s.dtype)[:, None, None], (*s.shape[:-1], 1))
        s = np.concatenate([s, col], axis=-1)
    with np.errstate(invalid="ignore"):
        m = np.max(s, axis=-1, keepdims=True)
        e = np.exp(s - m)
        p = e / np.sum(e, axis=-1, keepdims=True)
    return p[..., :-1] if sinks is not None else p


def _torch_style_with_bug(scores, sinks=None):
    p = _torch_style(scores, sinks)
    return np.where(np.isnan(p), p, p * np.asarray(1.01, p.dtype))  # 1% off on every live row


def test_fully_masked_output_rows():
    s = np.zeros((2, 3, 4))
    s[:, 1] = -np.inf  # query 1 sees nothing
    m = fully_masked_output("softmax_with_sinks", {"scores": s, "sinks": None}, s.shape)
    assert m[:, 1].all() and not m[:, 0].any() and not m[:, 2].any()
    m = fully_masked_output("softmax_with_sinks", {"scores": s, "sinks": np.array([-np.inf, 0.5])}, s.shape)
    assert m[0, 1].all() and not m[1].any()  # a finite sink takes the mass: not a dead row
    assert fully_masked_output("softmax_with_sinks", {"scores": np.zeros((2, 3, 4)), "sinks": None}, s.shape) is None


def test_softmax_with_sinks_nan_row_is_a_named_convention():
    # the explicit examples and the drawn cases include rows with no visible key and no sink
    r = run_op(NumpyBackend({"softmax_with_sinks": _torch_style}), "softmax_with_sinks", max_examples=20)
    assert r.status == "convention" and r.conventions == ["fully_masked_row"], (r.status, r.reason)
    # the rest of the output is still judged: a wrong live row fails
    r = run_op(NumpyBackend({"softmax_with_sinks": _torch_style_with_bug}), "softmax_with_sinks", max_examples=20)
    assert r.status == "fail", (r.status, r.reason)
    # and the reference itself is clean
    assert run_op(NumpyBackend({"softmax_with_sinks": ref_ops.softmax_with_sinks}), "softmax_with_sinks",
                  max_examples=20).status == "pass"
