"""The conformance suite as pytest tests, one per (op, kernel) of the backend under test.

    pytest --pyargs refimpl.conformance --refimpl-backend=their.module:Backend [--refimpl-dtype bfloat16]

Each test runs refimpl.conformance.suite.run_op: the op's explicit examples, then Hypothesis-drawn
cases (derandomized) against the float64 oracle; a failure shows compare()'s report with its repro
and the misreadings it matches. An op the backend lacks is skipped with its reason. The
whole tiny models (model:<arch>) run through the backend's as_ops() and are trace-diffed.
"""

import pytest

from refimpl.conformance import pytest_plugin

pytest.importorskip("hypothesis", reason="the conformance suite needs hypothesis (pip install 'refimpl[dev]')")


def _plan(config):
    """[(op, kernel)] for the backend chosen on the command line. A backend that cannot run here
    (BackendUnavailable: not installed, no GPU) gives one skip entry; a spec that cannot be loaded at
    all gives one entry that errors (so a typo never turns the whole suite into a skip)."""
    from refimpl.backends import BackendError, BackendUnavailable
    from refimpl.conformance.selection import kernel_names, resolve_backend
    from refimpl.conformance.suite import suite_ops

    try:
        b = resolve_backend(pytest_plugin.backend_spec(config))
    except BackendUnavailable as exc:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=str(exc)), id="backend-unavailable")]
    except BackendError as exc:
        return [pytest.param("<unloadable>", str(exc), id="backend-unloadable")]
    return [pytest.param(op, k, id=f"{op}[{k}]") for op in suite_ops() for k in kernel_names(b, op)]


def pytest_generate_tests(metafunc):
    if "op" in metafunc.fixturenames and "kernel" in metafunc.fixturenames:
        metafunc.parametrize(("op", "kernel"), _plan(metafunc.config))
    elif "arch" in metafunc.fixturenames:
        from refimpl.conformance.suite import MODEL_ARCHS

        metafunc.parametrize("arch", MODEL_ARCHS)


@pytest.fixture(scope="module")
def conformance_backend(request):
    """The backend under test, built from the same option/environment as the plugin's `backend` fixture."""
    return pytest_plugin.load_backend(request.config)


def test_op(request, op, kernel):
    from refimpl.conformance.suite import run_op

    if op == "<unloadable>":
        pytest.fail(f"backend {pytest_plugin.backend_spec(request.config)!r} cannot be loaded: {kernel}", pytrace=False)
    conformance_backend = request.getfixturevalue("conformance_backend")
    dtype, n = pytest_plugin.suite_options(request.config)
    r = run_op(conformance_backend, op, kernel=kernel, dtype=dtype, max_examples=n,
               spec=pytest_plugin.backend_spec(request.config))
    if r.status == "skip":
        pytest.skip(r.reason)
    if not r.ok:
        text = str(r.report) if r.report is not None else r.reason
        if r.cfg is not None:
            text += f"\n  regression case: build_inputs({op!r}, {r.cfg!r}, {r.seed!r}, {dtype!r})"
        pytest.fail(f"{op} [{kernel}]: {r.status_text()}\n{text}", pytrace=False)


def test_model(conformance_backend, arch, request):
    from refimpl.conformance.suite import run_model

    dtype, _ = pytest_plugin.suite_options(request.config)
    r = run_model(conformance_backend, arch, dtype=dtype, spec=pytest_plugin.backend_spec(request.config))
    if not r.ok:
        pytest.fail(f"model:{arch}: {r.status_text()}\n{r.report if r.report is not None else r.reason}", pytrace=False)
