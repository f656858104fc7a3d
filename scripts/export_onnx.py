#!/usr/bin/env python3
"""Hugging Face GPT-2 -> ONNX, verified against PyTorch.

    scripts/export_onnx.py --hf DIR --out model.onnx
    scripts/export_onnx.py --arch distilgpt2 --seed 0 --out model.onnx     # random weights, offline
    scripts/export_onnx.py --verify-only --onnx model.onnx --goldens goldens.safetensors

The export has dynamic batch/sequence axes, a `logits` output (GPT2LMHeadModel, not the base
model's hidden states) and eager attention (an sdpa export disagreed with PyTorch by up to 1.9).
After exporting, PyTorch and ONNX Runtime run the same random inputs, with left and right padding;
if max |logit difference| at non-pad positions exceeds --tolerance the export is deleted and the
script exits with status 2. --verify-only checks an existing file against stored goldens instead
(keys caseK.input_ids, caseK.attention_mask, caseK.logits).
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

SIZES = {"distilgpt2": (6, 768, 12), "gpt2": (12, 768, 12), "gpt2-medium": (24, 1024, 16),
         "gpt2-large": (36, 1280, 20), "gpt2-xl": (48, 1600, 25)}


def padded_cases(vocab, n_positions, seed=0):
    """(input_ids, attention_mask) pairs: no padding, left padding, right padding."""
    g = np.random.default_rng(seed)
    cases = []
    for b, t, pad in [(2, 12, None), (3, 9, "left"), (2, min(33, n_positions), "right")]:
        ids = g.integers(0, vocab, size=(b, t), dtype=np.int64)
        mask = np.ones((b, t), dtype=np.int64)
        for r in range(1, b):
            n = min(3 * r, t - 1)
            if pad == "left":
                mask[r, :n] = 0
            elif pad == "right":
                mask[r, t - n:] = 0
        cases.append((ids, mask))
    return cases


def max_masked_diff(a, b, mask):
    keep = mask.astype(bool)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64))[keep].max())


def verify(onnx_path, cases, reference, tolerance):
    """Runs ONNX Runtime on `cases` and compares with reference(ids, mask) -> logits.
    Returns (ok, worst difference, message lines)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out_name = sess.get_outputs()[0].name
    lines, worst = [], 0.0
    if out_name != "logits":
        lines.append(f"output is '{out_name}', not 'logits' (a base-model export gives hidden states)")
    for k, (ids, mask) in enumerate(cases):
        feeds = {"input_ids": ids, "attention_mask": mask}
        feeds = {n: feeds[n] for n in names if n in feeds}
        got = sess.run(None, feeds)[0]
        want = reference(k, ids, mask)
        if got.shape != want.shape:
            lines.append(f"case {k}: shape {got.shape} vs {want.shape}")
            worst = float("inf")
            continue
        d = max_masked_diff(got, want, mask)
        worst = max(worst, d)
        lines.append(f"case {k} {tuple(ids.shape)}: max |ONNX Runtime - PyTorch| = {d:.3g}")
    return worst <= tolerance and out_name == "logits", worst, lines


def export(args):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    if args.hf:
        model = GPT2LMHeadModel.from_pretrained(args.hf, attn_implementation="eager")
    else:
        layers, embd, heads = SIZES[args.arch]
        torch.manual_seed(args.seed)
        cfg = GPT2Config(n_layer=layers, n_embd=embd, n_head=heads, vocab_size=50257, n_positions=1024)
        model = GPT2LMHeadModel(cfg, attn_implementation="eager") if "attn_implementation" in GPT2LMHeadModel.__init__.__code__.co_varnames else GPT2LMHeadModel(cfg)
        model.config._attn_implementation = "eager"
    model = model.eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    wrapped = Logits(model.half() if args.fp16 else model)
    # Trace with padding: an all-ones example mask can drop the mask branch from the graph.
    ids, mask = padded_cases(model.config.vocab_size, model.config.n_positions)[1]
    example = (torch.tensor(ids), torch.tensor(mask))
    names = ["input_ids", "attention_mask"]
    if args.exporter == "dynamo":
        b = torch.export.Dim("batch_size", min=1, max=1024)
        s = torch.export.Dim("seq_len", min=2, max=model.config.n_positions)
        prog = torch.onnx.export(wrapped, example, input_names=names, output_names=["logits"], dynamo=True,
                                 opset_version=args.opset, dynamic_shapes={n: {0: b, 1: s} for n in names},
                                 external_data=args.external_data)
        prog.save(args.out, external_data=args.external_data)
    else:
        axes = {n: {0: "batch_size", 1: "seq_len"} for n in names + ["logits"]}
        torch.onnx.export(wrapped, example, args.out, input_names=names, output_names=["logits"], dynamo=False,
                          opset_version=args.opset, dynamic_axes=axes)
        if args.external_data:
            import onnx
            m = onnx.load(args.out)
            onnx.save_model(m, args.out, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=os.path.basename(args.out) + ".data", size_threshold=1024)

    ref_model = model.float().double()
    cases = padded_cases(model.config.vocab_size, model.config.n_positions, seed=1)

    def reference(k, ids_, mask_):
        with torch.no_grad():
            out = ref_model(input_ids=torch.tensor(ids_), attention_mask=torch.tensor(mask_), use_cache=False).logits
        return out.numpy()

    tol = args.tolerance if args.tolerance is not None else (0.1 if args.fp16 else 1e-4)
    return verify(args.out, cases, reference, tol), tol


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--hf", help="Hugging Face folder (config.json + model.safetensors)")
    src.add_argument("--arch", choices=sorted(SIZES), help="random weights of this size (offline)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="ONNX file to write")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo")
    ap.add_argument("--fp16", action="store_true", help="export FP16 weights and activations")
    ap.add_argument("--external-data", action="store_true", help="weights in OUT.data next to the model")
    ap.add_argument("--tolerance", type=float, default=None, help="max |dlogit| accepted (1e-4 fp32, 0.1 fp16)")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--onnx", help="with --verify-only: the model to check")
    ap.add_argument("--goldens", help="with --verify-only: safetensors with caseK.{input_ids,attention_mask,logits}")
    args = ap.parse_args()

    if args.verify_only:
        if not args.onnx or not args.goldens:
            ap.error("--verify-only needs --onnx and --goldens")
        from safetensors.numpy import load_file
        g = load_file(args.goldens)
        n = len([k for k in g if k.endswith(".logits")])
        cases = [(g[f"case{k}.input_ids"], g[f"case{k}.attention_mask"]) for k in range(n)]
        tol = args.tolerance if args.tolerance is not None else 1e-4
        ok, worst, lines = verify(args.onnx, cases, lambda k, i, m: g[f"case{k}.logits"], tol)
    else:
        if not args.out or not (args.hf or args.arch):
            ap.error("give --out and one of --hf or --arch")
        missing = [m for m in ("torch", "transformers", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            print("export_onnx: %s not installed (pip install %s); without PyTorch, "
                  "`gptrt export-onnx --hf DIR --out model.onnx` writes the ONNX file"
                  % (", ".join(missing), " ".join(missing)), file=sys.stderr)
            return 3
        (ok, worst, lines), tol = export(args)
    for line in lines:
        print(line)
    if not ok:
        print(f"EXPORT REJECTED: max |dlogit| {worst:.3g} exceeds the tolerance {tol:g} (or the output is not logits)", file=sys.stderr)
        if not args.verify_only:
            for p in (args.out, args.out + ".data"):
                if os.path.exists(p):
                    os.remove(p)
        return 2
    print(f"export verified: max |dlogit| {worst:.3g} <= {tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
