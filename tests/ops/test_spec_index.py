"""spec/README.md's op index, the spec pages and the op table refimpl.ops.OPS agree."""

import inspect
import re
import sys
from pathlib import Path

from refimpl.ops import CHECKS, OPS

SPEC = Path(__file__).resolve().parents[2] / "spec"


def _index():
    """(page, op names) of the op table of spec/README.md (the first table; lower-case names only)."""
    table = (SPEC / "README.md").read_text().split("\n\n| page | what |")[0]
    rows = re.findall(r"^\| \[([\w-]+\.md)\]\([\w-]+\.md\) \| (.*) \|$", table, re.M)
    return [(page, [n for n in re.findall(r"`([^`]+)`", names) if re.fullmatch(r"[a-z_0-9]+", n)])
            for page, names in rows]


def test_every_op_is_indexed_once_and_every_indexed_op_exists():
    listed = [name for _, names in _index() for name in names]
    assert sorted(listed) == sorted(OPS), (sorted(set(OPS) - set(listed)), sorted(set(listed) - set(OPS)))
    assert set(CHECKS) == set(OPS)


def test_each_page_documents_the_ops_it_is_indexed_for():
    for page, names in _index():
        text = (SPEC / page).read_text()
        for name in names:
            if name in OPS:
                heading = re.search(rf"^#+ .*`{name}[`(]", text, re.M)  # its own section,
                row = re.search(rf"^(\||-) `{name}\(", text, re.M)  # or its own table row or list item
                assert heading or row, f"spec/{page} states no rule for {name} (no heading, row or item)"


def test_op_docstrings_state_the_rule_in_at_most_twelve_lines():
    """Style rule: a docstring states the rule and its boundaries in about ten lines; sources and
    derivations live on the spec page."""
    long = {name: len(inspect.getdoc(fn).splitlines()) for name, fn in OPS.items()
            if len((inspect.getdoc(fn) or "").splitlines()) > 12}
    assert not long, f"docstrings over 12 lines (move sources/derivations to spec/): {long}"
    missing = sorted(name for name, fn in OPS.items() if not inspect.getdoc(fn))
    assert not missing, f"ops without a docstring: {missing}"


# Ops on scalars whose check_<op> runs the op itself (refimpl.ops.rope._checked_by_running).
_CHECKED_BY_RUNNING = {"inv_freq_default", "inv_freq_linear", "inv_freq_llama3", "inv_freq_yarn",
                       "yarn_correction_range", "rope_frequencies"}
def test_each_op_validates_through_its_public_check(monkeypatch):
    """One code path: an op's argument checks are its check_<op> (what backends run), called first."""
    class Called(Exception):
        pass

    def called(*args, **kwargs):
        raise Called

    bypass = []
    for name, fn in OPS.items():
        if name in _CHECKED_BY_RUNNING:
            continue
        module = sys.modules[fn.__module__]
        assert getattr(module, f"check_{name}") is CHECKS[name], name
        monkeypatch.setattr(module, f"check_{name}", called)
        n = sum(1 for p in inspect.signature(fn).parameters.values()
                if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD)
        try:
            fn(*[None] * n)
            bypass.append(name)
        except Called:
            pass
        except Exception as exc:  # noqa: BLE001 - an op that checked its arguments another way
            bypass.append(f"{name} ({type(exc).__name__}: {exc})")
        monkeypatch.undo()
    assert not bypass, f"ops that do not call their check_<op> first: {bypass}"
