#!/usr/bin/env bash
# Install refimpl with its test extras and run the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[dev,gguf,text]'
CI="${CI:-1}" python3 -m pytest -q -p no:cacheprovider "$@"
