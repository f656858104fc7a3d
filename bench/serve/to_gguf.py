#!/usr/bin/env python3
"""Converts a Hugging Face GPT-2 folder to GGUF with the converter llama.cpp ships
(convert_hf_to_gguf.py from llama-cpp-python's source distribution, bench/serve/llama_cpp_source.py),
for llama.cpp's servers to run the same model as gptrt.

    python3 bench/serve/to_gguf.py --hf DIR --out model.gguf [--outtype f32|f16|q8_0]

A folder made by `gptrt make-model` has no tokenizer: GPT-2's (tests/data/tokenizer) is used, in
a temporary copy of the folder (the folder itself is not changed); so is a config without n_ctx.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_cpp_source  # noqa: E402

TOKENIZER = os.path.join(HERE, "..", "..", "tests", "data", "tokenizer")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--outtype", default="f32", choices=["f32", "f16", "bf16", "q8_0"])
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(a.hf, "config.json")):
        sys.exit(f"error: {a.hf} has no config.json (expected a Hugging Face GPT-2 folder)")
    src = llama_cpp_source.source_dir()
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(a.hf):
            if name != "config.json" and not name.endswith(".gguf"):
                os.symlink(os.path.abspath(os.path.join(a.hf, name)), os.path.join(tmp, name))
        with open(os.path.join(a.hf, "config.json")) as f:
            config = json.load(f)
        config.setdefault("n_ctx", config.get("n_positions", 1024))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f)
        if not any(os.path.exists(os.path.join(tmp, n)) for n in ("tokenizer.json", "vocab.json")):
            for n in ("tokenizer.json", "vocab.json", "merges.txt"):
                shutil.copy(os.path.join(TOKENIZER, n), os.path.join(tmp, n))
        part = a.out + ".part"
        env = dict(os.environ, PYTHONPATH=os.path.join(src, "gguf-py"))
        r = subprocess.run([sys.executable, os.path.join(src, "convert_hf_to_gguf.py"), tmp,
                            "--outtype", a.outtype, "--outfile", part], env=env)
        if r.returncode != 0:
            if os.path.exists(part):
                os.remove(part)
            sys.exit(f"error: llama.cpp's converter failed on {a.hf} (exit {r.returncode})")
        os.replace(part, a.out)
    print(a.out)


if __name__ == "__main__":
    main()
