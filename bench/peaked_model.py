#!/usr/bin/env python3
"""A copy of a Hugging Face GPT-2 folder whose next-token distributions are peaked: the final
LayerNorm's scale and shift multiplied by SCALE, so the logits (that LayerNorm's output times the
tied token table) grow SCALE-fold and the body of the model is unchanged. Random default-init
weights give near-uniform logits, where top-1 flips on near-ties and KL stays tiny whatever the
precision does; the accuracy table of issue 29 is taken on such a copy too.

    peaked_model.py --hf DIR --out DIR [--scale 16]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=float, default=16.0)
    a = ap.parse_args()
    try:
        from safetensors.numpy import load_file, save_file
    except ImportError:
        print("peaked_model.py needs safetensors: pip install safetensors", file=sys.stderr)
        return 2
    src = os.path.join(a.hf, "model.safetensors")
    if not os.path.isfile(src):
        print(f"peaked_model.py: {src} not found (a GPT-2 folder with model.safetensors)", file=sys.stderr)
        return 2
    tensors = load_file(src)
    names = [n for n in tensors if n.endswith("ln_f.weight") or n.endswith("ln_f.bias")]
    if len(names) != 2:
        print(f"peaked_model.py: expected ln_f.weight and ln_f.bias in {src}, found {names}", file=sys.stderr)
        return 2
    for n in names:
        tensors[n] = (tensors[n].astype(np.float32) * a.scale).astype(tensors[n].dtype)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.hf):
        if f != "model.safetensors" and os.path.isfile(os.path.join(a.hf, f)):
            shutil.copy(os.path.join(a.hf, f), os.path.join(a.out, f))
    save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out, "peaked.json"), "w") as f:
        json.dump({"from": os.path.abspath(a.hf), "ln_f_scale": a.scale}, f)
    print(f"wrote {a.out}: ln_f scaled by {a.scale:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
