#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Extra arguments go to pytest, e.g. `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/bootstrap.sh
export GLASSGEN_DATA="${GLASSGEN_DATA:-$(cd .. && pwd)/shared/data}"
# two cores here: test files go to min(cores, 4) xdist workers (a file stays on one worker, so module fixtures
# are built once); GLASSGEN_TEST_WORKERS=0 runs in one process
cores="$(nproc 2>/dev/null || echo 1)"
workers="${GLASSGEN_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}"
par=()
if [ "$workers" -gt 1 ]; then
  par=(-n "$workers" --dist loadfile)
  # one OpenMP thread per worker: torch's two threads per worker on two cores spin-wait against the other
  # worker (measured 2026-12-05: the suite took 15.7 min instead of ~9, twice the CPU time)
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
exec .venv/bin/python -m pytest -q -m "not slow" ${par[@]+"${par[@]}"} "$@"
