#!/usr/bin/env python3
"""Each export form at DistilGPT2 size (issue 26): random seeded weights of the real architecture
(6 layers, 768 wide, 12 heads, 50257 tokens), exported by scripts/export_onnx.py as the plain
model, the with-past model and FP16, and the with-past file through ONNX Runtime's transformer
optimizer (and, where optimum is installed, its merged decoder); gptrt runs each (cpu backend) against ONNX Runtime CPU on the same file (FP32: max
|delta| <= 1e-4 on logits and presents at unpadded positions; FP16: top-1 >= 99%), and generates
greedily from the with-past file what Hugging Face `generate` does.

    python3 tests/tools/export_forms_check.py GPTRT_CLI [--backend cpu|cuda]

Skipped (exit 77) where torch, transformers or onnxruntime is not installed (CI has no torch;
the GPU machine has torch 2.11 and transformers 5.17).
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

missing = [m for m in ("torch", "transformers", "onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
if missing:
    print(f"export_forms_check: skipped: {', '.join(missing)} not installed (pip install {' '.join(missing)})")
    sys.exit(77)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

cli = sys.argv[1]
backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "cpu"
repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def gptrt_run(onnx_path, feeds, out_dir, extra=()):
    os.makedirs(out_dir, exist_ok=True)
    files = []
    for name, value in feeds.items():
        p = os.path.join(out_dir, "in." + name + ".npy")
        np.save(p, value)
        files.append(f"{name}:{p}")
    r = subprocess.run([cli, "run", "--onnx=" + onnx_path, "--backend=" + backend, "--maxBatch=4",
                        "--loadInputs=" + ",".join(files), "--exportOutput=" + out_dir, *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return out_dir


with tempfile.TemporaryDirectory() as d:
    hf = os.path.join(d, "hf")
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(hf)
    py = sys.executable
    export = os.path.join(repo, "scripts", "export_onnx.py")
    files = {}
    for name, flags in [("plain", []), ("with-past", ["--with-past"]), ("fp16", ["--fp16"])]:
        path = os.path.join(d, name + ".onnx")
        r = subprocess.run([py, export, "--hf", hf, "--out", path, "--exporter", "legacy", *flags],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: scripts/export_onnx.py verified the export ({r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]})")
        files[name] = path
    opt = os.path.join(d, "with-past-ort-optimized.onnx")
    subprocess.run([py, "-m", "onnxruntime.transformers.optimizer", "--input", files["with-past"], "--output", opt,
                    "--model_type", "gpt2", "--num_heads", "12", "--hidden_size", "768", "--opt_level", "1"],
                   check=True, capture_output=True)
    files["with-past-ort-optimized"] = opt
    if importlib.util.find_spec("optimum") is not None:
        od = os.path.join(d, "optimum")
        subprocess.run([py, "-m", "optimum.exporters.onnx", "--model", hf, "--task", "text-generation-with-past",
                        "--legacy", od], check=True, capture_output=True)
        files["merged"] = os.path.join(od, "decoder_model_merged.onnx")
    else:
        print("note: optimum not installed; the merged form is checked at the fixture's size only")

    rng = np.random.default_rng(1)
    for name, path in files.items():
        r = subprocess.run([cli, "inspect", "--fused", path], capture_output=True, text=True)
        lines = r.stdout.splitlines()
        wanted = "for generation (--noPast): GPT-2 decoder: 6 layers" if name == "merged" else "GPT-2 decoder: 6 layers"
        check(r.returncode == 0 and any(line.startswith(wanted) for line in lines), f"{name}: decoder recognised")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        # The cuda backend runs a with-past file as its plain decoder (--noPast): the first step.
        no_past = backend == "cuda" and "past_key_values.0.key" in names
        past = 3 if "past_key_values.0.key" in names and not no_past else 0
        ids = rng.integers(0, 50257, (2, 5)).astype(np.int64)
        mask = np.ones((2, past + 5), np.int64)
        mask[1, 0] = 0
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "use_cache_branch" in names:
            feeds["use_cache_branch"] = np.array([past > 0])
        if "position_ids" in names:
            feeds["position_ids"] = np.clip(np.cumsum(mask, 1) - 1, 0, None)[:, past:]
        for n in names:
            if n.startswith("past_key_values."):
                feeds[n] = rng.standard_normal((2, 12, past, 64)).astype(np.float32)
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        if no_past:
            feeds = {k: v for k, v in feeds.items() if not k.startswith("past_key_values.") and k != "use_cache_branch"}
            want = {"logits": want["logits"]}
        out = gptrt_run(path, feeds, os.path.join(d, "out-" + name), ["--noPast"] if no_past else [])
        logits = np.load(os.path.join(out, "logits.npy")).astype(np.float32)
        keep = mask[:, past:].astype(bool)
        w = want["logits"].astype(np.float32)
        if name == "fp16":
            top1 = (logits.argmax(-1) == w.argmax(-1))[keep].mean()
            check(top1 >= 0.99, f"{name}: top-1 agreement with ONNX Runtime {top1:.3f} (max |delta| {np.abs(logits - w)[keep].max():.3g})")
            continue
        diff = float(np.abs(logits - w)[keep].max())
        for k, v in want.items():
            if k.startswith("present."):
                g = np.load(os.path.join(out, k + ".npy"))
                sel = np.broadcast_to(mask[:, None, :, None].astype(bool), v.shape)
                diff = max(diff, float(np.abs(g - v)[sel].max()))
        check(diff <= 1e-4, f"{name}: logits{' and presents' if past else ''}{' (--noPast)' if no_past else ''} vs ONNX Runtime, max |delta| {diff:.3g}")

    # Greedy generation from the with-past file (its plain decoder) equals Hugging Face's.
    prompt = [464, 3290, 318, 257]
    with torch.no_grad():
        hf_out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                pad_token_id=0)[0, len(prompt):].tolist()
    for name in ("with-past", "merged", "fp16"):
        if name not in files:
            continue
        r = subprocess.run([cli, "generate", "--onnx=" + files[name], "--backend=" + backend,
                            "--prompt-ids=" + ",".join(map(str, prompt)), "--max-new-tokens=12", "--format=json"],
                           capture_output=True, text=True)
        got = json.loads(r.stdout)["results"][0]["generated_ids"] if r.returncode == 0 else r.stderr
        check(got == hf_out, f"{name}: generate equals Hugging Face greedy generate ({got} vs {hf_out})")

print("export_forms_check: %d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
