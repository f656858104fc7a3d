#!/usr/bin/env python3
"""Runs every golden case through `gptrt run` (the CLI's I/O contract) for each backend and CPU
ISA this machine has, and checks the logits: FP32 max |dlogit| <= 1e-4, BF16 top-1 >= 99%.
Used on machines without GoogleTest (e.g. the GPU machine, to exercise its AVX-512 kernels).

    check_goldens_cli.py GPTRT_BINARY TEST_DATA_DIR
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

gptrt, data = sys.argv[1], sys.argv[2]
model = os.path.join(data, "gpt2-tiny", "legacy-opset17.onnx")
g = load_file(os.path.join(data, "gpt2-tiny", "goldens.safetensors"))
version = subprocess.run([gptrt, "--version"], capture_output=True, text=True).stdout
isas = ["generic", "avx2"] if "avx2 yes" in version else ["generic"]
if "avx512f yes" in version:
    isas.append("avx512")
configs = [("reference", None, False)] + [("cpu", isa, False) for isa in isas] + [("cpu", isas[-1], True)]
failures = 0
with tempfile.TemporaryDirectory() as d:
    for backend, isa, bf16 in configs:
        engine = os.path.join(d, "e.engine")
        cmd = [gptrt, "build", "--onnx", model, "--saveEngine", engine, "--backend", backend]
        if isa:
            cmd += ["--cpuIsa", isa]
        if bf16:
            cmd += ["--bf16"]
        subprocess.run(cmd, check=True, capture_output=True)
        worst, agree, total = 0.0, 0, 0
        for c in range(6):
            np.save(os.path.join(d, "ids.npy"), g[f"case{c}.input_ids"])
            np.save(os.path.join(d, "mask.npy"), g[f"case{c}.attention_mask"])
            out = os.path.join(d, "out")
            subprocess.run([gptrt, "run", "--loadEngine", engine, "--threads", "3", "--loadInputs",
                            f"input_ids:{d}/ids.npy,attention_mask:{d}/mask.npy", "--exportOutput", out], check=True, capture_output=True)
            got, want = np.load(os.path.join(out, "logits.npy")), g[f"case{c}.logits"]
            keep = g[f"case{c}.attention_mask"].astype(bool)
            worst = max(worst, float(np.abs(got - want)[keep].max()))
            agree += int((got.argmax(-1) == want.argmax(-1))[keep].sum())
            total += int(keep.sum())
        ok = (agree / total >= 0.99 and worst <= 0.1) if bf16 else worst <= 1e-4
        failures += not ok
        print(f"{backend:9} {isa or '-':8} {'bf16' if bf16 else 'fp32'}: max |dlogit| {worst:.3g}, top-1 {agree}/{total}: {'ok' if ok else 'FAIL'}")
print("all golden checks passed" if not failures else f"{failures} configuration(s) failed")
sys.exit(1 if failures else 0)
