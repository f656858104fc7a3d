#!/usr/bin/env bash
# gptrt for Windows, cross-compiled here with MinGW-w64 and run under Wine (issue 30, part 3):
# installs the cross compiler and wine64 if missing (apt-get), builds the library and the CLI
# (no tests: GoogleTest for MinGW is not built yet), then runs `gptrt --version` and the recipe's
# main job (`gptrt exec`, engine saved) on the tiny fixture from a folder whose name has spaces
# and non-ASCII characters, and checks the engine file appeared. Not part of .ci/run yet (its
# cost: the toolchain install and a second full build).
# Usage: scripts/windows_cross.sh [BUILD_DIR (default build/mingw)]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/mingw}
if ! command -v x86_64-w64-mingw32-g++-posix >/dev/null || [ ! -x /usr/lib/wine/wine64 ]; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq g++-mingw-w64-x86-64-posix wine64
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake \
  -DCMAKE_BUILD_TYPE=Release -DGPTRT_CUDA=OFF -DGPTRT_BUILD_TESTS=OFF -DGPTRT_WERROR=ON >/dev/null
cmake --build "$build" --target gptrt_cli
export WINEDEBUG=-all WINEPATH="/usr/lib/gcc/x86_64-w64-mingw32/12-posix;/usr/x86_64-w64-mingw32/lib"
wine=/usr/lib/wine/wine64
"$wine" "$build/gptrt.exe" --version
dir=$(mktemp -d)/"models and engines ü 模型"
mkdir -p "$dir"
cp tests/data/gpt2-tiny/legacy-opset17.onnx "$dir/model.onnx"
win="Z:$(echo "$dir" | tr / '\\')"
"$wine" "$build/gptrt.exe" exec "--onnx=$win\\model.onnx" --shapes=input_ids:1x12,attention_mask:1x12 \
  --iterations 20 "--saveEngine=$win\\model.engine" | tee "$dir/exec.txt"
grep -q "Performance summary" "$dir/exec.txt"
[ -s "$dir/model.engine" ]
"$wine" "$build/gptrt.exe" exec "--loadEngine=$win\\model.engine" \
  --shapes=input_ids:1x12,attention_mask:1x12 --iterations 20 | grep -q "Performance summary"
echo "windows cross build: gptrt.exe built, exec and an engine round trip ran under Wine"
