#!/usr/bin/env bash
# Installs what gptrt needs to build and test, if missing: a C++20 compiler, CMake, Ninja,
# GoogleTest (Debian packages), and for the ONNX cross-check test Python's numpy and onnx (pip).
set -euo pipefail

need_apt=()
command -v g++ >/dev/null || need_apt+=(g++)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v git >/dev/null || need_apt+=(git)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev libgmock-dev)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install_deps: installing ${need_apt[*]} with apt-get"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c "import onnx, numpy" >/dev/null 2>&1; then
  echo "install_deps: installing the Python packages numpy and onnx with pip"
  python3 -m pip install --quiet numpy onnx 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages numpy onnx
fi
echo "install_deps: all build and test dependencies present"
