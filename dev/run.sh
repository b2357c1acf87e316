#!/usr/bin/env bash
# Set up (if needed) and run glassgen's main job on the small embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/bootstrap.sh
export GLASSGEN_DATA="${GLASSGEN_DATA:-$(cd .. && pwd)/shared/data}"
.venv/bin/glassgen md run --config configs/md/demo.toml "$@"
.venv/bin/glassgen analyze runs/demo/md.h5
