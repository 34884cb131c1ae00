"""List every failing case (not only the smallest) of the torch adapter's failing rows.

Peer environment only. From the repository root:
    /work/venv-peer-usability/bin/python golden/torch_adapter/list_failing_cases.py > golden/torch_adapter/failing_cases.txt
Wraps refimpl.conformance.suite.compare to record each case's cfg (the repro strategy string) and verdict.
"""
import json
import re
import sys

sys.path.insert(0, ".")
import refimpl.conformance.suite as suite  # noqa: E402
from golden.torch_adapter.torch_backend import TorchBackend  # noqa: E402

log = []
_compare = suite.compare


def compare(expected, actual, **kw):
    rep = _compare(expected, actual, **kw)
    if not rep.ok:
        m = re.search(r"build_inputs\('[^']+', (\{.*\}), seed", (kw.get("context") or {}).get("strategy") or "")
        log.append(dict(cfg=m.group(1) if m else "(explicit example)", kind=rep.failure,
                        budget_used=rep.budget_used))
    return rep


suite.compare = compare
rows = json.load(open("golden/torch_adapter/conform_default.json"))["results"]
for r in rows:
    if r["status"] in ("pass", "skip") or r["op"].startswith("model:"):
        continue
    log.clear()
    suite.run_op(TorchBackend(), r["op"], kernel=r["kernel"], dtype=r["dtype"], diagnose_failures=False)
    print(f"== {r['op']}[{r['kernel']}] {r['dtype']}: {len(log)} failing case(s)")
    for e in log:
        print(f"   {e['kind']:8s} budget used {e['budget_used']:.3g}  {e['cfg']}")
