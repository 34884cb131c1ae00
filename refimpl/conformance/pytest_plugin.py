"""pytest plugin: run refimpl's conformance suite against any backend, from any project.

    pytest --pyargs refimpl.conformance --refimpl-backend=their.module:Backend

Registered through the entry point group ``pytest11`` (pyproject.toml). Adds the options
--refimpl-backend (default: $REFIMPL_BACKEND, else "numpy"), --refimpl-dtype (float32),
--refimpl-max-examples (20), and the session fixture ``backend`` (a backends.Backend). The test
module refimpl/conformance/test_conformance_suite.py is parametrised per op and per kernel
of that backend; an unloadable spec is an error. Nothing here changes other tests: the fixture is only built when requested.
"""

import os

import pytest

ENV_VAR = "REFIMPL_BACKEND"


def pytest_addoption(parser):
    group = parser.getgroup("refimpl", "refimpl conformance suite")
    group.addoption("--refimpl-backend", default=None,
                    help="backend under test: a name, module:attribute (from the current directory) or misreading:NAME "
                         "(default: $REFIMPL_BACKEND, else numpy)")
    group.addoption("--refimpl-dtype", default="float32", choices=["float32", "float64", "bfloat16"],
                    help="dtype of the inputs given to the backend (default: float32)")
    group.addoption("--refimpl-max-examples", default=20, type=int,
                    help="Hypothesis examples per op and kernel (default: 20)")


def backend_spec(config):
    """The backend spec chosen by the option, else the environment, else "numpy"."""
    return config.getoption("--refimpl-backend", None) or os.environ.get(ENV_VAR) or "numpy"


def suite_options(config):
    """(dtype, max_examples) from the options, with their defaults when the plugin is not loaded."""
    return config.getoption("--refimpl-dtype", None) or "float32", config.getoption("--refimpl-max-examples", None) or 20


@pytest.fixture(scope="session")
def backend(request):
    """The backend under test; skips when it cannot run here (not installed, no GPU); a spec that cannot be
    loaded at all (unknown name, import error, bad attribute) is an error, not a skip."""
    return load_backend(request.config)


def load_backend(config):
    """The backend of the option/environment: pytest.skip if BackendUnavailable, else any BackendError raises."""
    from refimpl.backends import BackendUnavailable

    from .selection import resolve_backend

    try:
        return resolve_backend(backend_spec(config))
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
