#!/usr/bin/env bash
# On a GPU machine (see docs/DEVICE.md): runs the test suite with the CUDA tests (which skip
# elsewhere), compute-sanitizer memcheck over the CUDA tests, and writes the logs to $1.
# Uses $BUILD (default build/release; built here or carried from a machine with the toolkit),
# e.g. BUILD=build/sm61 for scripts/sm61_build.sh's compute_61 build. MEMCHECK_FILTER narrows
# memcheck's tests (default: every CUDA test); ALL=0 leaves out the whole suite's run.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gptrt-gpu-check}
b=${BUILD:-build/release}
mkdir -p "$out"
export GPTRT_TEST_DATA=$PWD/tests/data GPTRT_CLI=$PWD/$b/gptrt
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
$b/gptrt --version > "$out/version.txt" 2>&1
$b/tests/gptrt_tests --gtest_filter='Cuda*:*cuda*' > "$out/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?" | tee -a "$out/summary.txt"
# Generation passes padded to [slots, t] instead of packed: the same results.
GPTRT_CUDA_PACKED=0 $b/tests/gptrt_tests --gtest_filter='*Decoder*cuda*:CudaServe*' \
  > "$out/cuda_padded_tests.txt" 2>&1
echo "cuda tests, passes padded: exit $?" | tee -a "$out/summary.txt"
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  "$cs" --tool memcheck --leak-check full --error-exitcode 1 $b/tests/gptrt_tests \
    --gtest_filter="${MEMCHECK_FILTER:-Cuda*:*cuda*}" > "$out/memcheck.txt" 2>&1
  echo "memcheck: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$out/memcheck.txt") clean summaries)" | tee -a "$out/summary.txt"
fi
if [ "${ALL:-1}" = 1 ]; then
  $b/tests/gptrt_tests --gtest_brief=1 > "$out/all_tests.txt" 2>&1
  echo "all tests: exit $?" | tee -a "$out/summary.txt"
fi
