#!/usr/bin/env bash
# Set up (if needed) and run glassgen's main job on the small embedded default:
# sample KA 3D (N = 64) at T = 0.4 with the shipped Boltzmann generator (flow-MCMC + reweighting).
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/bootstrap.sh
export GLASSGEN_DATA="${GLASSGEN_DATA:-$(cd .. && pwd)/shared/data}"
mkdir -p runs
.venv/bin/glassgen sample --T 0.4 --out runs/sample_T0.4.h5 "$@"
