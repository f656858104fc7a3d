#!/usr/bin/env python3
"""Hugging Face GPT-2 -> ONNX, verified against PyTorch.

    scripts/export_onnx.py --hf DIR --out model.onnx
    scripts/export_onnx.py --arch distilgpt2 --seed 0 --out model.onnx     # random weights, offline
    scripts/export_onnx.py --hf DIR --with-past --out model.onnx      # optimum's with-past layout
    scripts/export_onnx.py --verify-only --onnx model.onnx --goldens goldens.safetensors

The export has dynamic batch/sequence axes, a `logits` output (GPT2LMHeadModel, not the base
model's hidden states) and eager attention (an sdpa export disagreed with PyTorch by up to 1.9).
After exporting, PyTorch and ONNX Runtime run the same random inputs, with left and right padding;
if max |logit difference| at non-pad positions exceeds --tolerance the export is deleted and the
script exits with status 2. --verify-only checks an existing file against stored goldens instead
(keys caseK.input_ids, caseK.attention_mask, caseK.logits).

--with-past writes the form optimum writes (inputs input_ids, attention_mask, position_ids,
past_key_values.N.key/value; outputs logits, present.N.key/value), checked against PyTorch with a
past of 0, a past and one new token, and a past and several, left-padded.

The exporter: dynamo (torch >= 2.5 with onnxscript) or legacy (TorchScript); the default is dynamo
where it is available. Verified with torch 2.4.1 + transformers 4.46.3 (legacy; dynamo needs torch
2.5) and torch 2.11.0 + transformers 5.17.0 (both exporters).
"""
import argparse
import copy
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


def dynamo_available():
    import torch
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 5) and importlib.util.find_spec("onnxscript") is not None


def cache_from(past, n_layer):
    """A transformers DynamicCache holding the (key, value) tensors of each layer."""
    from transformers import DynamicCache
    cache = DynamicCache()
    for layer in range(n_layer):
        cache.update(past[2 * layer], past[2 * layer + 1], layer)
    return cache


def cache_tensors(cache, n_layer):
    """Each layer's key and value out of a cache (transformers 4.x key_cache/value_cache, or 5.x
    layers[l].keys/values)."""
    out = []
    for layer in range(n_layer):
        if isinstance(cache, (tuple, list)):  # the legacy format, which 4.x gives while tracing
            out += [cache[layer][0], cache[layer][1]]
        elif hasattr(cache, "layers"):
            out += [cache.layers[layer].keys, cache.layers[layer].values]
        else:
            out += [cache.key_cache[layer], cache.value_cache[layer]]
    return out


def past_cases(cfg, seed=2):
    """(ids, mask over past + new, positions, past tensors): past 0; past 3 with one new token;
    past 3 with four; the second row left-padded by one."""
    g = np.random.default_rng(seed)
    heads, hd = cfg.n_head, cfg.n_embd // cfg.n_head
    cases = []
    for past, new in [(0, 5), (3, 1), (3, 4)]:
        ids = g.integers(0, cfg.vocab_size, size=(2, new), dtype=np.int64)
        mask = np.ones((2, past + new), dtype=np.int64)
        mask[1, 0] = 0
        pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)[:, past:]
        pasts = [g.standard_normal((2, heads, past, hd)).astype(np.float32) for _ in range(2 * cfg.n_layer)]
        cases.append((ids, mask, pos, pasts))
    return cases


def export_with_past(args, model, ref_model):
    import onnxruntime as ort
    import torch
    cfg = model.config
    n = cfg.n_layer

    class WithPast(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, position_ids, *past):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache_from(past, n), use_cache=True)
            return (out.logits, *cache_tensors(out.past_key_values, n))

    past_names = [f"past_key_values.{l}.{kv}" for l in range(n) for kv in ("key", "value")]
    names = ["input_ids", "attention_mask", "position_ids"] + past_names
    outputs = ["logits"] + [f"present.{l}.{kv}" for l in range(n) for kv in ("key", "value")]
    ids, mask, pos, pasts = past_cases(cfg, seed=7)[2]  # traced with a past and several new tokens
    example = tuple(torch.tensor(x) for x in [ids, mask, pos] + pasts)
    wrapped = WithPast(model)
    if args.exporter == "dynamo":
        d = torch.export.Dim.DYNAMIC  # the mask's length is past + new: let export relate them
        shapes = ({0: d, 1: d}, {0: d, 1: d}, {0: d, 1: d}, tuple([{0: d, 2: d}] * len(past_names)))
        prog = torch.onnx.export(wrapped, example, input_names=names, output_names=outputs, dynamo=True,
                                 opset_version=args.opset, dynamic_shapes=shapes)
        prog.save(args.out)
    else:
        axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
                "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length"},
                "position_ids": {0: "batch_size", 1: "sequence_length"},
                "logits": {0: "batch_size", 1: "sequence_length"}}
        for name in past_names:
            axes[name] = {0: "batch_size", 2: "past_sequence_length"}
        for name in outputs[1:]:
            axes[name] = {0: "batch_size", 2: "past_sequence_length + sequence_length"}
        torch.onnx.export(wrapped, example, args.out, input_names=names, output_names=outputs, dynamo=False,
                          opset_version=args.opset, dynamic_axes=axes)

    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    lines, worst = [], 0.0
    for k, (ids, mask, pos, pasts) in enumerate(past_cases(cfg)):
        feeds = dict(zip(names, [ids, mask, pos] + pasts))
        try:
            got = sess.run(None, feeds)
        except Exception as e:  # an export that cannot take this shape (e.g. a past of 0)
            lines.append(f"case {k} (past {pasts[0].shape[2]}, {ids.shape[1]} new): ONNX Runtime failed: {e}")
            worst = float("inf")
            continue
        with torch.no_grad():
            out = ref_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                            position_ids=torch.tensor(pos), use_cache=True,
                            past_key_values=cache_from([torch.tensor(x).double() for x in pasts], n))
        want = [out.logits.numpy()] + [t.numpy() for t in cache_tensors(out.past_key_values, n)]
        new = ids.shape[1]
        d = max_masked_diff(got[0], want[0], mask[:, -new:])
        for g_, w_ in zip(got[1:], want[1:]):
            keep = np.broadcast_to(mask[:, None, :, None].astype(bool), w_.shape)
            d = max(d, float(np.abs(g_.astype(np.float64) - w_)[keep].max()))
        worst = max(worst, d)
        lines.append(f"case {k} (past {pasts[0].shape[2]}, {new} new): max |ONNX Runtime - PyTorch| = {d:.3g}")
    ok = worst <= (args.tolerance if args.tolerance is not None else 1e-4)
    return ok, worst, lines


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
    # The reference is a copy taken before exporting: the TorchScript exporter of torch 2.11 leaves
    # transformers 5's model computing wrong logits afterwards (the file itself is right).
    ref_model = copy.deepcopy(model).float().double()

    if args.with_past:
        tol = args.tolerance if args.tolerance is not None else 1e-4
        return export_with_past(args, model, ref_model), tol

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
    ap.add_argument("--exporter", choices=["dynamo", "legacy"], default=None,
                    help="default: dynamo where torch >= 2.5 and onnxscript are installed, else legacy")
    ap.add_argument("--with-past", action="store_true",
                    help="past keys and values in, presents out (optimum's names)")
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
        if args.with_past and args.fp16:
            ap.error("--with-past exports FP32; drop --fp16")
        if args.exporter is None:
            args.exporter = "dynamo" if dynamo_available() else "legacy"
        elif args.exporter == "dynamo" and not dynamo_available():
            import torch
            print(f"export_onnx: the dynamo exporter needs torch >= 2.5 and onnxscript (found torch "
                  f"{torch.__version__}; pip install onnxscript); --exporter legacy works with this torch",
                  file=sys.stderr)
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
