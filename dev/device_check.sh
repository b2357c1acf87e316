#!/usr/bin/env bash
# GPU checks, run on a CUDA machine from the repository root: the CUDA tests (tests/test_cuda.py and the
# torch-energy CUDA test) and the CPU-vs-CUDA flow throughput benchmark (benchmarks/flows_device.py).
# Uses the machine's own python3 (torch with CUDA); glassgen from src/ on PYTHONPATH, plus EXTRA_SITE for
# packages the machine lacks (normflows). Logs and the benchmark JSON go to $OUT (default /tmp/device-check).
set -uo pipefail
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${EXTRA_SITE:+:$EXTRA_SITE}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch, numba, numpy, normflows; print('torch', torch.__version__, 'numba', numba.__version__,
'numpy', numpy.__version__, 'normflows', normflows.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/test_cuda.py \
    tests/test_torch_energy.py::test_cuda_matches_cpu 2>&1 | tee "$OUT/pytest_cuda.log"
rc_tests=$?
python3 benchmarks/flows_device.py "$@" 2>&1 | tee "$OUT/flows_device.log"
rc_bench=$?
cp benchmarks/results/flows_device.json "$OUT/" 2>/dev/null
echo "tests rc=$rc_tests benchmark rc=$rc_bench"
exit $(( rc_tests || rc_bench ))
