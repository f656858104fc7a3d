#!/usr/bin/env bash
# Installs what gptrt needs to build and test, if missing: a C++20 compiler, CMake, Ninja,
# GoogleTest, clang for the fuzz targets (Debian packages), and Python packages for the tests and bench/ (pip).
set -euo pipefail

need_apt=()
command -v g++ >/dev/null || need_apt+=(g++)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v git >/dev/null || need_apt+=(git)
command -v clang++ >/dev/null || need_apt+=(clang)  # the fuzz preset (libFuzzer)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev libgmock-dev)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
# The Python package (python/) builds against the interpreter's headers.
python3 -c "import os, sysconfig; exit(not os.path.exists(sysconfig.get_paths()['include'] + '/Python.h'))" \
  2>/dev/null || need_apt+=(python3-dev python3-venv)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install_deps: installing ${need_apt[*]} with apt-get"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Tests and the benchmark harness: the ONNX reader cross-check, the exporter's verification, the
# harness's report (ONNX Runtime is the CPU peer every machine can have).
# The server's tests run its real clients: pytest, openai, tritonclient[http]. The Python
# package builds with nanobind (and scikit-build-core for pip install .).
py_pkgs=(numpy onnx onnxruntime safetensors matplotlib pytest openai "tritonclient[http]" nanobind
         scikit-build-core)
if ! python3 -c "import numpy, onnx, onnxruntime, safetensors, matplotlib, pytest, openai, tritonclient.http, nanobind, scikit_build_core" >/dev/null 2>&1; then
  echo "install_deps: installing the Python packages ${py_pkgs[*]} with pip"
  python3 -m pip install --quiet "${py_pkgs[@]}" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "${py_pkgs[@]}"
fi
# The PyTorch peer of the comparison and the export tests (scripts/export_onnx.py, the export
# forms at DistilGPT2 size): torch, transformers and onnxscript, at the newest versions
# export_onnx.py was verified with. Optional: where pip cannot install them, the PyTorch rows and
# those tests say so in one line and the rest runs.
torch_pkgs=("torch>=2.4,<=2.11.0" "transformers>=4.46,<=5.17.0" "onnxscript")
if ! python3 -c "import torch, transformers, onnxscript" >/dev/null 2>&1; then
  echo "install_deps: installing torch, transformers and onnxscript with pip (the PyTorch peer; a large download)"
  python3 -m pip install --quiet "${torch_pkgs[@]}" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "${torch_pkgs[@]}" ||
    echo "install_deps: could not install torch/transformers; the PyTorch rows and the export tests will be skipped"
fi
# Scale-out on Ray Serve (gptrt.ray_serve and its two-node test). Optional like torch.
if ! python3 -c "import ray.serve" >/dev/null 2>&1; then
  echo "install_deps: installing ray[serve] with pip (the Ray Serve deployment's test)"
  python3 -m pip install --quiet "ray[serve]" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "ray[serve]" ||
    echo "install_deps: could not install ray[serve]; the Ray Serve test will be skipped"
fi
# OpenVINO (the CPU peer that picks BF16 on AVX512-BF16/AMX CPUs) and CTranslate2 (INT8/FP32
# forward and generation): gptrt bench's CPU peers. Optional like torch. (llama-cpp-python
# compiles llama.cpp: install it yourself for the llama.cpp rows, `pip install llama-cpp-python`.)
if ! python3 -c "import openvino, ctranslate2" >/dev/null 2>&1; then
  echo "install_deps: installing openvino and ctranslate2 with pip (CPU peers of gptrt bench)"
  python3 -m pip install --quiet openvino ctranslate2 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages openvino ctranslate2 ||
    echo "install_deps: could not install openvino/ctranslate2; their bench rows will say not installed"
fi
echo "install_deps: all build and test dependencies present"
