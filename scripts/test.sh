#!/usr/bin/env bash
# The README's second command (and CI's): builds Release and an AddressSanitizer + UBSan build,
# and runs the whole test suite in both. Warnings are errors in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install_deps.sh
for preset in release asan; do
  echo "== $preset: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  echo "== $preset: tests"
  ctest --preset "$preset" -j "$(nproc)"
done
echo "== all tests passed (release and asan)"
