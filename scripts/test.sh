#!/usr/bin/env bash
# Install refimpl with its test extras and run the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[dev,gguf,text,numba]'
# The real-model tests read SmolLM2-135M-Instruct (the default model) from the cache and never
# download it themselves: fetch it once here. Without network they skip, saying so.
python3 -c "from refimpl.fetch import smollm2_gguf_path; smollm2_gguf_path()" \
  || echo "scripts/test.sh: could not fetch the SmolLM2 GGUF; the real-model tests will skip" >&2
CI="${CI:-1}" python3 -m pytest -q -p no:cacheprovider "$@"
