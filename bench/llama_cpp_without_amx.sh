#!/usr/bin/env bash
# llama-cpp-python 0.3.36 built without AMX, in its own venv (the system's packages visible), for
# `gptrt bench --frameworks ...,llama.cpp --python VENV/bin/python` on CPUs where llama.cpp's AMX
# path crashes: on the Sapphire-Rapids-class Xeon VM its Q8_0 models segfault at the first decode
# (ggml_backend_amx_mul_mat; llama.cpp issue 20824). AVX-512, VNNI and BF16 stay on. About 10
# minutes on 2 cores.
# Usage: bench/llama_cpp_without_amx.sh [VENV (default /tmp/llama-cpp-noamx)]
set -euo pipefail
venv=${1:-/tmp/llama-cpp-noamx}
python3 -m venv --system-site-packages "$venv"
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
-DGGML_BACKEND_DL=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  "$venv/bin/pip" install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
"$venv/bin/pip" install diskcache jinja2 typing-extensions
"$venv/bin/python" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
echo "now: gptrt bench ... --frameworks gptrt,llama.cpp --python $venv/bin/python"
