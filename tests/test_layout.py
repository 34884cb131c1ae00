"""The package layout: layers without cycles (import-linter), the packages list, no stray top-level module."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_import_layers_hold(tmp_path):
    pytest.importorskip("importlinter", reason="import-linter is not installed (pip install 'refimpl[dev]')")
    # refimpl.backends lives in backends/ (package-dir), which import-linter's scan of refimpl/ cannot see:
    # the check runs on a tree of links where it sits inside refimpl/, as installed.
    tree = tmp_path
    pkg = tree / "refimpl"
    pkg.mkdir()
    for entry in (ROOT / "refimpl").iterdir():
        (pkg / entry.name).symlink_to(entry)
    (pkg / "backends").symlink_to(ROOT / "backends")
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = ("import sys, refimpl; assert refimpl.__file__.startswith(sys.argv[1]), refimpl.__file__; "
            "from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[2]))")
    res = subprocess.run([sys.executable, "-c", code, str(tree), str(ROOT / "pyproject.toml")], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "refimpl layers KEPT" in res.stdout, res.stdout[-2000:]


def test_the_layers_contract_names_every_subpackage():
    layers = _pyproject()["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {m.strip() for layer in layers for m in layer.split("|")}
    top = {f"refimpl.{p.name}" for p in (ROOT / "refimpl").iterdir() if (p / "__init__.py").is_file()}
    assert top | {"refimpl.backends"} <= named | {"refimpl.text"}, (top | {"refimpl.backends"}) - named


def test_packages_list_matches_the_folders():
    tool = _pyproject()["tool"]["setuptools"]
    assert tool["package-dir"] == {"refimpl.backends": "backends"}
    found = set()
    for base, name in ((ROOT / "refimpl", "refimpl"), (ROOT / "backends", "refimpl.backends")):
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            if "__pycache__" not in rel:
                found.add(".".join((name, *rel)))
    assert set(tool["packages"]) == found


def test_no_top_level_backends_module_is_installed(tmp_path):
    code = "import importlib.util, refimpl.backends as b; print(importlib.util.find_spec('backends'), b.__name__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["None", "refimpl.backends"]


def test_backends_import_nothing_private_from_refimpl():
    """Only public names (the version string's leaf module refimpl._version aside: importing the package
    root for it would import refimpl.api, a layer above)."""
    import ast

    for path in (ROOT / "backends").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("refimpl"):
                parts = [p for p in node.module.split(".") + [a.name for a in node.names]
                         if p not in ("_version", "__version__")]
                assert not any(p.startswith("_") for p in parts), (str(path), node.module, [a.name for a in node.names])


def test_cli_and_api_work_without_the_dev_extra():
    """`refimpl generate` (the README's first command) installs no Hypothesis: the CLI's parser, the
    API and importing refimpl.conformance must not need it (its strategies load on first use)."""
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import refimpl, refimpl.cli, refimpl.conformance, refimpl.backends\n"
            "refimpl.cli.build_parser()\n"
            "try:\n"
            "    refimpl.conformance.BUDGETS\n"
            "except refimpl.RefimplError as exc:\n"
            "    assert \"pip install 'refimpl[dev]'\" in str(exc), exc\n"
            "else:\n"
            "    raise AssertionError('BUDGETS loaded without hypothesis')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
