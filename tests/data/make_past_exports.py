#!/usr/bin/env python3
"""The with-past forms users hold of the fixture GPT-2, with ONNX Runtime's and Hugging Face's
answers on them (issue 26):
    with-past.onnx  `optimum-cli export onnx --task text-generation-with-past` (past_key_values.N.*
                    in, present.N.* out, position_ids)
    merged.onnx     the same with `--legacy`: decoder_model_merged.onnx (an If on use_cache_branch)
    first-step.onnx `--legacy`'s decoder_model.onnx (presents out, no past in; case past0 only)
    with-past-ort-optimized.onnx
                    with-past.onnx through ONNX Runtime's transformer optimizer (--model_type gpt2
                    --opt_level 1: com.microsoft SkipLayerNormalization, FastGelu, LayerNormalization
                    in an opset-14 file)
For each file and case (a past of 2 and a left-padded row; the first step, past 0), the inputs
and ONNX Runtime CPU's outputs as CASE.<input or output>.npy; and generate.*.npy: greedy
Hugging Face `generate` from a left-padded batch of prompts (8 new tokens).

Run where torch, transformers, optimum and onnxruntime are installed, e.g.
    pip install torch==2.4.1 transformers==4.46.3 optimum==1.23.3 onnxruntime
    python3 tests/data/make_past_exports.py --hf tests/data/gpt2-tiny/hf --out tests/data/gpt2-tiny/past
Verified with torch 2.4.1, transformers 4.46.3, optimum 1.23.3, onnxruntime 1.32.0.

With --export-script NAME:EXPORTER the with-past file comes from scripts/export_onnx.py
--with-past instead (NAME.onnx and its cases only), e.g. with torch 2.11 and transformers 5.17:
    python3 tests/data/make_past_exports.py --hf ... --out ... --export-script t5-dynamo:dynamo
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch
import transformers
from transformers import GPT2LMHeadModel


def export(hf, out, legacy):
    """optimum's with-past model.onnx; with `legacy` "merged" or "first-step", its
    decoder_model_merged.onnx or decoder_model.onnx (presents out, no past in)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "optimum.exporters.onnx", "--model", hf, "--task",
               "text-generation-with-past", tmp] + (["--legacy"] if legacy else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        name = {"merged": "decoder_model_merged.onnx", "first-step": "decoder_model.onnx"}
        shutil.copy(os.path.join(tmp, name[legacy] if legacy else "model.onnx"), out)


def case_inputs(session, past, rng):
    b, s, heads, hd = 2, 3, 4, 16
    feeds = {"input_ids": rng.integers(0, 1000, (b, s)).astype(np.int64)}
    mask = np.ones((b, past + s), np.int64)
    mask[1, 0] = 0  # a left-padded row
    feeds["attention_mask"] = mask
    names = [i.name for i in session.get_inputs()]
    if "position_ids" in names:
        feeds["position_ids"] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)[:, past:]
    if "use_cache_branch" in names:
        feeds["use_cache_branch"] = np.array([past > 0])
    for n in names:
        if n.startswith("past_key_values."):
            feeds[n] = rng.standard_normal((b, heads, past, hd)).astype(np.float32)
    return feeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--export-script", help="NAME:EXPORTER: the file from scripts/export_onnx.py")
    ap.add_argument("--forms", default="with-past,merged,with-past-ort-optimized,first-step",
                    help="which of optimum's forms to write (and the generate goldens)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(7)
    forms = [(f, {"with-past": False, "merged": "merged", "first-step": "first-step"}.get(f))
             for f in a.forms.split(",")]
    if a.export_script:
        forms = [tuple(a.export_script.split(":"))]
    for name, how in forms:
        path = os.path.join(a.out, name + ".onnx")
        if a.export_script:
            script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "export_onnx.py")
            subprocess.run([sys.executable, script, "--hf", a.hf, "--out", path, "--with-past",
                            "--exporter", how], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        elif how is None:
            subprocess.run([sys.executable, "-m", "onnxruntime.transformers.optimizer", "--input",
                            os.path.join(a.out, "with-past.onnx"), "--output", path, "--model_type",
                            "gpt2", "--num_heads", "4", "--hidden_size", "64", "--opt_level", "1"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            export(a.hf, path, how)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for past in ((0,) if name == "first-step" else (2, 0)):
            case = f"{name}.past{past}"
            feeds = case_inputs(sess, past, rng)
            outs = sess.run(None, feeds)
            for k, v in feeds.items():
                np.save(os.path.join(a.out, f"{case}.in.{k}.npy"), v)
            for o, v in zip(sess.get_outputs(), outs):
                np.save(os.path.join(a.out, f"{case}.out.{o.name}.npy"), v)
    if a.export_script:
        with open(os.path.join(a.out, f"VERSIONS.{forms[0][0]}"), "w") as f:
            f.write(f"scripts/export_onnx.py --with-past --exporter {forms[0][1]}\n"
                    f"torch {torch.__version__}\ntransformers {transformers.__version__}\n"
                    f"onnxruntime {ort.__version__}\n")
        return

    # Greedy generation from a left-padded batch, as Hugging Face does it.
    model = GPT2LMHeadModel.from_pretrained(a.hf, attn_implementation="eager").eval()
    ids = np.array([[0, 0, 11, 12, 13], [21, 22, 23, 24, 25]], np.int64)
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                             max_new_tokens=8, do_sample=False, pad_token_id=0)
    np.save(os.path.join(a.out, "generate.ids.npy"), ids)
    np.save(os.path.join(a.out, "generate.mask.npy"), mask)
    np.save(os.path.join(a.out, "generate.new_tokens.npy"), out[:, ids.shape[1]:].numpy())
    with open(os.path.join(a.out, "VERSIONS"), "w") as f:
        import optimum.version
        f.write(f"torch {torch.__version__}\ntransformers {transformers.__version__}\n"
                f"optimum {optimum.version.__version__}\nonnxruntime {ort.__version__}\n")


if __name__ == "__main__":
    main()
