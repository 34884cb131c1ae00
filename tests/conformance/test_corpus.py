"""The suite's power, measured: every mutant of the corpus (tests/conformance/corpus.py) differs from
the reference on its witness, and `refimpl conform` at default settings fails it on its own op's row."""

import numpy as np
import pytest

from refimpl.backends import NumpyBackend
from refimpl.conformance import compare
from refimpl.conformance.suite import DEFAULT_DTYPES, DEFAULT_MAX_EXAMPLES, run_op
from refimpl.ops import ops as R

from conformance.corpus import CORPUS

KINDS = ("convention", "knob", "edge", "precision", "shape_dtype")


def test_corpus_size_and_kinds():
    assert len(CORPUS) >= 60 and len({m.name for m in CORPUS}) == len(CORPUS)
    assert {m.kind for m in CORPUS} == set(KINDS)


def _outcome(m):
    w = m.witness()
    try:
        want = getattr(R, m.op)(**m.witness())
    except Exception as exc:  # pragma: no cover - a witness the reference rejects is a corpus bug
        raise AssertionError(f"{m.name}: the reference rejects the witness: {exc}")
    try:
        with np.errstate(all="ignore"):
            got = m.fn(**w)
    except Exception:
        return "raises"
    if m.op == "sample":
        return "differs" if not np.array_equal(np.asarray(got), np.asarray(want)) else "same"
    promised = tuple(np.asarray(o).dtype for o in want) if isinstance(want, tuple) else np.asarray(want).dtype
    promised = promised if not isinstance(want, tuple) else tuple(d if d.kind == "f" else None for d in promised)
    promised = None if not isinstance(want, tuple) and promised.kind != "f" else promised
    return "differs" if not compare(want, got, op=m.op, inputs=m.witness(), dtype=promised).ok else "same"


@pytest.mark.parametrize("m", CORPUS, ids=[m.name for m in CORPUS])
def test_witness_differs(m):
    assert _outcome(m) in ("differs", "raises")


@pytest.mark.parametrize("m", CORPUS, ids=[m.name for m in CORPUS])
def test_conform_fails_the_mutant(m):
    b = NumpyBackend({m.op: m.fn}, name=f"mutant:{m.name}")
    rows = []
    for d in DEFAULT_DTYPES:  # the default run's dtypes; the verdict of the first that fails suffices
        rows.append(run_op(b, m.op, dtype=d, max_examples=DEFAULT_MAX_EXAMPLES, diagnose_failures=False,
                           stop_at_first_failure=True))
        if not rows[-1].ok:
            break
    assert not rows[-1].ok, [(r.op, r.dtype, r.status, r.cases) for r in rows]
