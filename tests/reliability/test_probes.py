"""The reliability probe suite (tests/reliability/probes.py): 100+ hostile-file, cache, tokenizer,
API and CLI cases, each in a child process under a memory and time limit; every one must end as
documented (a one-line RefimplError or the documented result), none raw, silent or hanging.

The summary line (ok/raw/silent/hang/skip counts) is printed; run `python tests/reliability/probes.py -v`
for every case's outcome.
"""

import sys

import pytest

import probes  # tests/reliability is on sys.path (pytest rootdir-relative import of this folder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the probes use FIFOs, sockets, fork, "
                    "RLIMIT_AS and bash redirections as on Linux")
def test_probe_suite_is_clean():
    results = probes.run_cases(list(probes.CASES))
    line = probes.summary(results)
    print(line)
    bad = {n: r for n, r in results.items() if r[0] not in ("ok", "skip")}
    assert not bad, line + "\n" + "\n".join(f"{r[0]:6s} {n}: {r[1]}" for n, r in sorted(bad.items()))
    assert len(probes.CASES) >= 100
