#!/usr/bin/env python3
"""`gptrt export-onnx` against the onnx package and ONNX Runtime: the file gptrt writes from the
tiny Hugging Face folder passes onnx.checker and, run by ONNX Runtime CPU, gives the PyTorch
goldens' logits within 1e-4.

    python3 tests/tools/onnx_writer_check.py GPTRT_CLI tests/data
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

cli, data = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "m.onnx")
    subprocess.run([cli, "export-onnx", "--hf=" + os.path.join(data, "gpt2-tiny", "hf"), "--out=" + path],
                   check=True, stdout=subprocess.DEVNULL)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = load_file(os.path.join(data, "gpt2-tiny", "goldens.safetensors"))
    worst = 0.0
    for k in range(len([n for n in g if n.endswith(".logits")])):
        ids, mask = g["case%d.input_ids" % k], g["case%d.attention_mask" % k]
        got = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        keep = mask.astype(bool)
        worst = max(worst, float(np.abs(got - g["case%d.logits" % k])[keep].max()))
    print("gptrt-written ONNX on ONNX Runtime vs PyTorch: max |dlogit| %.3g" % worst)
    sys.exit(0 if worst <= 1e-4 else 1)
