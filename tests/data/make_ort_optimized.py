#!/usr/bin/env python3
"""The tiny fixture rewritten by ONNX Runtime's transformer optimizer (as `python -m
onnxruntime.transformers.optimizer --model_type gpt2` writes it: com.microsoft
SkipLayerNormalization and FastGelu), with ONNX Runtime CPU's logits on it (issue 26):

    python3 tests/data/make_ort_optimized.py tests/data/gpt2-tiny

--opt_level 0 (the Python fusions only): higher levels first run ONNX Runtime's own graph
optimizer, which imports torch. Writes variants/ort-optimized-opset17.{onnx,ids.npy,mask.npy,
ort_logits.npy}.
"""
import os
import subprocess
import sys

import onnxruntime as ort
from ort_oracle import write_oracle

d = sys.argv[1]
base = os.path.join(d, "variants", "ort-optimized-opset17")
subprocess.run([sys.executable, "-m", "onnxruntime.transformers.optimizer",
                "--input", os.path.join(d, "legacy-opset17.onnx"), "--output", base + ".onnx",
                "--model_type", "gpt2", "--num_heads", "4", "--hidden_size", "64", "--opt_level", "0"],
               check=True)
logits = write_oracle(base)
print("wrote", base, "onnxruntime", ort.__version__)
