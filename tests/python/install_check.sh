#!/usr/bin/env bash
# The package installs into a fresh virtual environment from the repository with one pip
# command (CPU backend: no CUDA compile here; the C++ at -O1, which compiles in about half the
# time of the wheel's -O3 and packages the same), and the installed package builds, runs and
# generates on the tiny fixture; its `gptrt` CLI runs `gptrt bench` from the environment.
# Usage: install_check.sh REPO_ROOT
set -euo pipefail
root=$(cd "${1:?usage: install_check.sh REPO_ROOT}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "$root" --config-settings=cmake.define.GPTRT_CUDA=OFF \
  "--config-settings=cmake.define.CMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG" \
  --config-settings=build-dir="$tmp/build"
cd "$tmp"  # (not the repository: the installed package is the one imported)
"$tmp/venv/bin/python" - "$root/tests/data/gpt2-tiny/hf" <<'PY'
import sys
import numpy as np
import gptrt
assert gptrt.__file__.startswith(sys.prefix), gptrt.__file__
engine = gptrt.build(hf=sys.argv[1])
logits = engine.create_context().run(np.array([[1, 2, 3]]), np.ones((1, 3), np.int64))
assert logits.shape == (1, 3, 1000) and np.isfinite(logits).all()
assert gptrt.generate(engine, [[11, 12, 13]], max_new_tokens=4)[0] and len(gptrt.generate(engine, [[1]], 3)[0]) == 3
print("installed gptrt", gptrt.version(), "from", gptrt.__file__)
PY
# The wheel carries the CLI too (on the environment's PATH), with the harness `gptrt bench` runs.
"$tmp/venv/bin/gptrt" --version | grep -q "^gptrt "
"$tmp/venv/bin/gptrt" bench --hf "$root/tests/data/gpt2-tiny/hf" --frameworks gptrt --shapes 1x4 \
  --min-runs 1 --min-seconds 0 --python "$tmp/venv/bin/python" --out "$tmp/bench" > "$tmp/bench.log" 2>&1 ||
  { cat "$tmp/bench.log"; exit 1; }
grep -q "bench harness: $tmp/venv/share/gptrt/bench" "$tmp/bench.log" || { cat "$tmp/bench.log"; exit 1; }
