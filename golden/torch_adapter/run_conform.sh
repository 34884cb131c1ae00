#!/bin/sh
# Regenerate the torch adapter's conformance reports (peer environment with torch + transformers).
# From the repository root:  sh golden/torch_adapter/run_conform.sh [/path/to/python]
set -u
PY=${1:-/work/venv-peer-usability/bin/python}
OUT=golden/torch_adapter
CMD="$PY -m refimpl.cli conform --backend golden.torch_adapter.torch_backend:TorchBackend --json $OUT/conform_default.json"
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
$CMD > $OUT/conform_default.txt 2> $OUT/conform_default.progress.txt
RC=$?
$PY - "$DATE" "$CMD" "$RC" <<'PYEOF' > $OUT/provenance.json
import json, platform, sys
import numpy, torch, transformers, hypothesis
print(json.dumps(dict(date_utc=sys.argv[1], command=sys.argv[2].replace(sys.executable, "python"), exit_status=int(sys.argv[3]),
                      python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__,
                      numpy=numpy.__version__, hypothesis=hypothesis.__version__,
                      settings="default: --dtype float32,float64, 20 examples per row, models included",
                      reports=["conform_default.json", "conform_default.txt"]), indent=2))
PYEOF
$PY golden/torch_adapter/list_failing_cases.py > $OUT/failing_cases.txt
