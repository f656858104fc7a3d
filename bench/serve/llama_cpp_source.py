#!/usr/bin/env python3
"""Prints the folder of llama.cpp's source as llama-cpp-python's source distribution ships it
(vendor/llama.cpp: convert_hf_to_gguf.py, gguf-py, the server), downloading the sdist with pip
into ~/.cache/gptrt/ the first time. The version is the installed llama-cpp-python's, else
LLAMA_CPP_PYTHON_VERSION (default 0.3.36)."""
import glob
import os
import subprocess
import sys
import tarfile


def version():
    try:
        import llama_cpp  # noqa: F401 (only its version)
        return llama_cpp.__version__
    except ImportError:
        return os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36")


def source_dir():
    v = version()
    cache = os.path.join(os.path.expanduser("~"), ".cache", "gptrt", f"llama-cpp-python-{v}")
    src = os.path.join(cache, f"llama_cpp_python-{v}", "vendor", "llama.cpp")
    if os.path.isfile(os.path.join(src, "convert_hf_to_gguf.py")):
        return src
    os.makedirs(cache, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={v}", "--no-deps",
                        "--no-binary", ":all:", "-d", cache, "-q"], capture_output=True, text=True)
    sdists = glob.glob(os.path.join(cache, f"llama_cpp_python-{v}.tar.gz"))
    if r.returncode != 0 or not sdists:
        sys.exit(f"error: could not download llama-cpp-python {v}'s source with pip "
                 f"(needs PyPI): {r.stderr.strip()[-400:]}")
    with tarfile.open(sdists[0]) as t:
        t.extractall(cache, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(cache)
    return src


if __name__ == "__main__":
    print(source_dir())
