#!/usr/bin/env bash
# The CUDA backend for Pascal (sm_61, the recipe's GTX 1060), issue 30 part 2: CUDA 13 cannot
# target sm_61, so this builds gptrt with Debian's CUDA 11.8 toolkit (`nvidia-cuda-toolkit` from
# the non-free component, installed here if missing: about 1.6 GB) and GCC 11 (CUDA 11.8's newest
# host compiler), every kernel as compute_61 PTX only: such a build runs on any GPU from sm_61 on
# through the driver's JIT, so the sm_61 code path can be tested on the H100/H200 machine.
# It builds without cuBLAS (GPTRT_CUDA_CUBLAS=OFF: every GEMM on plain_gemm_kernel, as sm_61 runs
# them with or without it) and with the static CUDA runtime, so the two binaries need nothing
# from CUDA 11.8 on the GPU machine but the driver: carry them (xz) and run
# `BUILD=build/sm61 scripts/gpu_check.sh OUT` there (docs/DEVICE.md). Not part of .ci/run: the
# toolkit's download (1.6 GB) and a third CUDA build would take CI past 30 minutes. Last passed:
# 2026-12-07 on an H200: every CUDA test (33 passed, 6 skipped: sm_80/sm_90 kernels and --bf16,
# refused on sm_61) and memcheck clean (docs/lab/2026-12-07-pascal-plain-path-and-ci.md).
# Usage: scripts/sm61_build.sh [BUILD_DIR (default build/sm61)] [TARGET... (default gptrt_cli
# gptrt_tests)]
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath -m "${1:-build/sm61}")
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gptrt_cli gptrt_tests)
sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
if [ ! -x /usr/lib/nvidia-cuda-toolkit/bin/nvcc ] || ! command -v g++-11 >/dev/null; then
  if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      $sudo_ tee /etc/apt/sources.list.d/debian-nonfree.sources >/dev/null
  fi
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    nvidia-cuda-toolkit g++-11
fi
# CUDA 11.8's own tools first (a newer toolkit's ptxas on PATH refuses its PTX), and its headers
# ahead of a newer toolkit's that some images link into /usr/local/include (GCC searches that
# before /usr/include): a folder of links to the /usr/include copies of those names.
export PATH=/usr/lib/nvidia-cuda-toolkit/bin:/usr/bin:$PATH
shadow="$build-include"
mkdir -p "$shadow"
for f in /usr/local/include/*; do
  n=$(basename "$f")
  [ -e "/usr/include/$n" ] && ln -sfn "/usr/include/$n" "$shadow/$n"
done
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPTRT_CUDA=ON -DCUDAToolkit_ROOT=/usr \
  -DCMAKE_CUDA_COMPILER=/usr/bin/nvcc -DCMAKE_CUDA_HOST_COMPILER=g++-11 \
  -DCMAKE_CUDA_ARCHITECTURES=61-virtual "-DCMAKE_CUDA_FLAGS=-I$shadow" "-DCMAKE_CXX_FLAGS=-I$shadow" \
  -DGPTRT_CUDA_CUBLAS=OFF -DGPTRT_PYTHON=OFF -DGPTRT_WERROR=ON >/dev/null
cmake --build "$build" --target "${targets[@]}"
"$build/gptrt" --version | grep -E "CUDA toolkit|commit"
echo "sm_61 build: $build/gptrt (CUDA 11.8, compute_61 PTX, no cuBLAS)"
