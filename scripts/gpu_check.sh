#!/usr/bin/env bash
# On a GPU machine (see docs/DEVICE.md): runs the test suite with the CUDA tests (which skip
# elsewhere), compute-sanitizer memcheck over the CUDA tests, and writes the logs to $1.
# Uses build/release (built here or carried from a machine with the toolkit).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gptrt-gpu-check}
mkdir -p "$out"
export GPTRT_TEST_DATA=$PWD/tests/data GPTRT_CLI=$PWD/build/release/gptrt
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
build/release/gptrt --version > "$out/version.txt" 2>&1
build/release/tests/gptrt_tests --gtest_filter='Cuda*:*cuda*' > "$out/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?" | tee -a "$out/summary.txt"
# Generation passes padded to [slots, t] instead of packed: the same results.
GPTRT_CUDA_PACKED=0 build/release/tests/gptrt_tests --gtest_filter='*Decoder*cuda*:CudaServe*' \
  > "$out/cuda_padded_tests.txt" 2>&1
echo "cuda tests, passes padded: exit $?" | tee -a "$out/summary.txt"
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  "$cs" --tool memcheck --leak-check full --error-exitcode 1 build/release/tests/gptrt_tests \
    --gtest_filter='Cuda*:*cuda*' > "$out/memcheck.txt" 2>&1
  echo "memcheck: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$out/memcheck.txt") clean summaries)" | tee -a "$out/summary.txt"
fi
build/release/tests/gptrt_tests --gtest_brief=1 > "$out/all_tests.txt" 2>&1
echo "all tests: exit $?" | tee -a "$out/summary.txt"
