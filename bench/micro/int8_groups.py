#!/usr/bin/env python3
"""INT8 weight quantisation by group size, simulated in PyTorch: every linear weight (the LM head
too) rounded to q * s with one scale per output column per group of K values (group K: per
channel, what `--int8` stores), against the model in FP32, on the inputs a `gptrt bench` run
saved. Top-1 agreement and max |dlogit| per shape; per channel it reproduces gptrt's INT8 rows
(the same quantiser), so it says what a group size would buy before any kernel is written.

The group "bf16" rounds every linear weight to BF16 instead (FP32 arithmetic): the error a BF16
engine cannot go below, whatever its kernels, since its weights are those (gptrt's `--bf16`
widened path computes exactly that up to summation order).

    int8_groups.py --hf DIR --inputs BENCH_OUT/inputs [--groups 0,128,64,32,16,bf16]
"""
import argparse
import copy
import os

import numpy as np
import torch
from transformers import GPT2LMHeadModel


def quantised(w, group, k_dim):
    wt = w if k_dim == 0 else w.t()  # [K, N]
    size = wt.shape[0] if group == 0 else group
    out = torch.empty_like(wt)
    for k0 in range(0, wt.shape[0], size):
        block = wt[k0:k0 + size]
        s = block.abs().amax(0).clamp(min=1e-12) / 127
        out[k0:k0 + size] = (block / s).round().clamp(-127, 127) * s
    return out if k_dim == 0 else out.t()


def rounded(w, group, k_dim):
    if group == "bf16":
        return w.to(torch.bfloat16).float()
    return quantised(w, int(group), k_dim)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--inputs", required=True, help="a gptrt bench output's inputs/ folder")
    ap.add_argument("--groups", default="0,128,64,32,16")
    a = ap.parse_args()
    model = GPT2LMHeadModel.from_pretrained(a.hf, attn_implementation="eager").eval()
    shapes = sorted((s for s in os.listdir(a.inputs) if s.replace("x", "").isdigit()),
                    key=lambda s: [int(x) for x in s.split("x")])  # (forward shapes only)
    inputs = [torch.from_numpy(np.load(os.path.join(a.inputs, s, "input_ids.npy"))).long() for s in shapes]
    with torch.no_grad():
        ref = [model(x).logits for x in inputs]
        print("| group | " + " | ".join(f"{s} top-1 / max abs dlogit" for s in shapes) + " |")
        print("|---" * (len(shapes) + 1) + "|")
        for group in a.groups.split(","):
            q = copy.deepcopy(model)
            for mod in q.modules():
                if type(mod).__name__ == "Conv1D":  # weight [K, N]
                    mod.weight.data = rounded(mod.weight.data, group, 0)
            q.lm_head.weight = torch.nn.Parameter(rounded(q.lm_head.weight.data, group, 1))  # [V, E]
            cells = []
            for x, r in zip(inputs, ref):
                y = q(x).logits
                top1 = 100 * (y.argmax(-1) == r.argmax(-1)).float().mean().item()
                cells.append(f"{top1:.2f}% / {(y - r).abs().max().item():.3f}")
            print(f"| {'K (per channel)' if group == '0' else group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
