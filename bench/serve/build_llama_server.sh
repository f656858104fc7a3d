#!/usr/bin/env bash
# Builds llama.cpp's C++ server (llama-server: continuous batching over --parallel slots) from
# the llama.cpp source llama-cpp-python's source distribution ships (bench/serve/llama_cpp_source.py),
# for this CPU (GGML_NATIVE), and prints its path. About 10 minutes on two cores, once.
set -euo pipefail
src=$(python3 "$(dirname "$0")/llama_cpp_source.py")
bin="$src/build/bin/llama-server"
if [ ! -x "$bin" ]; then
  cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >&2
  cmake --build "$src/build" -j"$(nproc)" --target llama-server >&2
fi
echo "$bin"
