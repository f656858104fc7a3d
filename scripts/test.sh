#!/usr/bin/env bash
# The README's second command (and CI's): builds Release and an AddressSanitizer + UBSan build
# (clang; the libFuzzer targets share it) and runs the whole test suite in both, then a
# ThreadSanitizer build of the tests that run threads (thread pool, decoder, generation, the
# goldens and op cases on every backend, the server against its clients), each libFuzzer target
# for 20 s (scripts/fuzz.sh), and the Windows build: cross-compiled with MinGW-w64, its CPU test
# suite and the CLI's main job run under Wine (scripts/windows_cross.sh). Warnings are errors.
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
echo "== tsan: configure, build and the threaded tests"
cmake --preset tsan >/dev/null
cmake --build --preset tsan
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --preset tsan -j "$(nproc)"
echo "== fuzz: each libFuzzer target for 20 s under ASan + UBSan (clang)"
scripts/fuzz.sh 20
echo "== windows: cross-built with MinGW-w64, the tests and gptrt exec under Wine"
TESTS=1 OPT=-O1 scripts/windows_cross.sh
echo "== all tests passed (release, asan, tsan, fuzz and windows)"
