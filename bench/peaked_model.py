#!/usr/bin/env python3
"""A copy of a Hugging Face GPT-2 folder whose next-token distributions are peaked: the token
table (`wte`, tied to the LM head) multiplied by SCALE, so the residual stream carries its token
strongly and the logits rank a few tokens far above the rest. Random default-init weights give
near-uniform logits (top-1 probability ~2e-4, top-1/top-2 gap ~0.08 on the DistilGPT2
architecture), where top-1 flips on near-ties whatever the precision; at SCALE 3 the median gap is
~1.8 and the top token is the input token at ~85% of positions. (Scaling only the final LayerNorm
scales the logits and their errors alike: the ranking, and top-1 agreement, do not change.)

    peaked_model.py --hf DIR --out DIR [--scale 3]
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
    ap.add_argument("--scale", type=float, default=3.0)
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
    names = [n for n in tensors if n.endswith("wte.weight")]
    if len(names) != 1:
        print(f"peaked_model.py: expected one token table (wte.weight) in {src}, found {names}", file=sys.stderr)
        return 2
    for n in names:
        tensors[n] = (tensors[n].astype(np.float32) * a.scale).astype(tensors[n].dtype)
    tensors.pop("lm_head.weight", None)  # (tied: a saved copy would keep the old values)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.hf):
        if f != "model.safetensors" and os.path.isfile(os.path.join(a.hf, f)):
            shutil.copy(os.path.join(a.hf, f), os.path.join(a.out, f))
    save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out, "peaked.json"), "w") as f:
        json.dump({"from": os.path.abspath(a.hf), "wte_scale": a.scale}, f)
    print(f"wrote {a.out}: the token table scaled by {a.scale:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
