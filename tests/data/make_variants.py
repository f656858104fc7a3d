#!/usr/bin/env python3
"""Exports the fixture GPT-2 in the other forms gptrt must import, with float64 PyTorch goldens.

Run where torch, transformers, onnx, onnxscript and onnxruntime are installed (the GPU machine):
    python3 tests/data/make_variants.py --hf tests/data/gpt2-tiny/hf --out OUTDIR
Writes OUTDIR/<variant>.onnx and OUTDIR/goldens-variants.safetensors with, per variant and case,
<variant>.case<k>.{input_ids,attention_mask,position_ids,output}. Each export is checked with
ONNX Runtime against PyTorch (float32) and the script fails if any disagrees by more than 1e-4.
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

CASES = [((2, 12), None), ((3, 9), "left"), ((4, 16), "right")]


def make_case(shape, pad, vocab, seed):
    g = np.random.default_rng(seed)
    b, t = shape
    ids = g.integers(0, vocab, size=shape, dtype=np.int64)
    mask = np.ones(shape, dtype=np.int64)
    for r in range(1, b):
        n = min(2 * r, t - 1)
        if pad == "left":
            mask[r, :n] = 0
        elif pad == "right":
            mask[r, t - n:] = 0
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)
    return ids, mask, pos


class LogitsOnly(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class Int32WithPositions(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, position_ids):
        return self.m(input_ids=input_ids.long(), attention_mask=attention_mask.long(),
                      position_ids=position_ids.long(), use_cache=False).logits


class HiddenStates(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def export(module, args, names, out_name, path, opset, dynamo):
    axes = {n: {0: "batch_size", 1: "seq_len"} for n in names}
    axes[out_name] = {0: "batch_size", 1: "seq_len"}
    if dynamo:
        b = torch.export.Dim("batch_size", min=1, max=64)
        s = torch.export.Dim("seq_len", min=2, max=64)
        shapes = {n: {0: b, 1: s} for n in names}
        prog = torch.onnx.export(module, args, input_names=names, output_names=[out_name], dynamo=True,
                                 opset_version=opset, dynamic_shapes=shapes, external_data=False)
        prog.save(path)
    else:
        torch.onnx.export(module, args, path, input_names=names, output_names=[out_name], dynamo=False,
                          opset_version=opset, dynamic_axes=axes, do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import onnxruntime as ort

    cfg = GPT2Config.from_pretrained(a.hf)
    lm = GPT2LMHeadModel.from_pretrained(a.hf, attn_implementation="eager").eval()
    base = GPT2Model.from_pretrained(a.hf, attn_implementation="eager").eval()
    gelu_cfg = GPT2Config.from_pretrained(a.hf)
    gelu_cfg.activation_function = "gelu"
    gelu_lm = GPT2LMHeadModel.from_pretrained(a.hf, config=gelu_cfg, attn_implementation="eager").eval()

    variants = [
        # name, module, input names, output name, opset, dynamo, int32+positions
        ("dynamo-opset18", LogitsOnly(lm), ["input_ids", "attention_mask"], "logits", 18, True, False),
        ("legacy-opset14-int32-posids", Int32WithPositions(lm), ["input_ids", "attention_mask", "position_ids"], "logits", 14, False, True),
        ("base-opset17", HiddenStates(base), ["input_ids", "attention_mask"], "last_hidden_state", 17, False, False),
        ("gelu-opset20", LogitsOnly(gelu_lm), ["input_ids", "attention_mask"], "logits", 20, True, False),
    ]
    goldens = {}
    worst = 0.0
    failed = []
    for name, module, names, out_name, opset, dynamo, positions in variants:
        path = os.path.join(a.out, name + ".onnx")
        # A padded example: tracing an all-ones mask drops the mask (and the causal mask) branch.
        ids, mask, pos = make_case((2, 8), "left", cfg.vocab_size, 0)
        dt = torch.int32 if positions else torch.int64
        args = tuple(torch.tensor(x, dtype=dt) for x in ([ids, mask, pos] if positions else [ids, mask]))
        try:
            export(module, args, names, out_name, path, opset, dynamo)
        except Exception as e:  # report and go on with the other variants
            print(f"{name}: export FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
            continue
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        module64 = module.double() if hasattr(module, "double") else module
        for k, (shape, pad) in enumerate(CASES):
            ids, mask, pos = make_case(shape, pad, cfg.vocab_size, 100 + k)
            np_dt = np.int32 if positions else np.int64
            feeds = {"input_ids": ids.astype(np_dt), "attention_mask": mask.astype(np_dt)}
            if positions:
                feeds["position_ids"] = pos.astype(np_dt)
            with torch.no_grad():
                t_args = [torch.tensor(feeds[n]) for n in names]
                ref = module64(*t_args).double().numpy()
            got = sess.run(None, feeds)[0]
            keep = mask.astype(bool)
            diff = float(np.abs(got - ref)[keep].max())
            worst = max(worst, diff)
            print(f"{name} case{k} {shape} pad={pad}: max|ORT - PyTorch fp64| = {diff:.3g}", flush=True)
            if diff > 1e-4:
                failed.append(f"{name}.case{k}")
            prefix = f"{name}.case{k}."
            for n in names:
                goldens[prefix + n] = np.ascontiguousarray(feeds[n])
            goldens[prefix + "output"] = ref.astype(np.float32)
        module.float()
    save_file(goldens, os.path.join(a.out, "goldens-variants.safetensors"))
    print(f"worst ORT vs PyTorch: {worst:.3g}; failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
