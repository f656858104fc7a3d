#!/usr/bin/env python3
"""Adds ONNX Runtime outputs to goldens-variants.safetensors for exports whose PyTorch goldens
disagree with the export itself (TorchScript-traced transformers 5 graphs with a position_ids
input or a base-model output: ORT and PyTorch differ by ~10 there, see make_variants.py's log).
For those, gptrt is checked against ONNX Runtime: the test is that gptrt runs the graph as
written. Keys: <variant>.case<k>.ort_output.

    python3 tests/data/make_ort_goldens.py tests/data/gpt2-tiny/variants
"""
import os
import sys

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

VARIANTS = ["legacy-opset14-int32-posids", "base-opset17"]

d = sys.argv[1]
path = os.path.join(d, "goldens-variants.safetensors")
g = load_file(path)
for v in VARIANTS:
    sess = ort.InferenceSession(os.path.join(d, v + ".onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for k in range(3):
        feeds = {n: g[f"{v}.case{k}.{n}"] for n in names}
        g[f"{v}.case{k}.ort_output"] = sess.run(None, feeds)[0].astype(np.float32)
save_file(g, path)
print("ok", sorted(k for k in g if k.endswith("ort_output")))
