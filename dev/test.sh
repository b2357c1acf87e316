#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest, e.g. `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/bootstrap.sh
export GLASSGEN_DATA="${GLASSGEN_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
