"""spec/README.md's op index, the spec pages and the op table refimpl.ops.OPS agree."""

import inspect
import re
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
