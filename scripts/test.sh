#!/usr/bin/env bash
# Install refimpl with its test extras and run the whole suite (the README's test command).
# Outside a virtual environment it makes one (.venv, seeing the system's packages) first, so that
# it also works where the system Python refuses pip installs (Debian's externally-managed-environment).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
if ! "$PY" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)'; then
  [ -x .venv/bin/python ] || "$PY" -m venv --system-site-packages .venv
  PY=.venv/bin/python
fi
"$PY" -m pip install -q --disable-pip-version-check -e '.[dev,gguf,text,numba,serve]'
# The real-model tests read SmolLM2-135M-Instruct (the default model) from the cache and never
# download it themselves: fetch it once here. Without network they skip, saying so.
"$PY" -c "from refimpl.fetch import smollm2_gguf_path; smollm2_gguf_path()" \
  || echo "scripts/test.sh: could not fetch the SmolLM2 GGUF; the real-model tests will skip" >&2
CI="${CI:-1}" "$PY" -m pytest -q -p no:cacheprovider "$@"
