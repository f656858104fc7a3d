#!/usr/bin/env python3
"""scripts/export_onnx.py's verification accepts a good export and rejects a broken one.

    export_verify_test.py SOURCE_DIR
"""
import os
import subprocess
import sys
import tempfile

import onnx
from onnx import helper

src = sys.argv[1]
script = os.path.join(src, "scripts", "export_onnx.py")
model = os.path.join(src, "tests", "data", "gpt2-tiny", "legacy-opset17.onnx")
goldens = os.path.join(src, "tests", "data", "gpt2-tiny", "goldens.safetensors")

good = subprocess.run([sys.executable, script, "--verify-only", "--onnx", model, "--goldens", goldens], capture_output=True, text=True)
print(good.stdout, good.stderr)
assert good.returncode == 0, "a correct export was rejected"

with tempfile.TemporaryDirectory() as d:
    m = onnx.load(model)
    # Break it the way real exports break: a wrong LayerNorm epsilon.
    for n in m.graph.node:
        if n.op_type == "LayerNormalization":
            for a in n.attribute:
                if a.name == "epsilon":
                    a.CopyFrom(helper.make_attribute("epsilon", 0.5))
    broken = os.path.join(d, "broken.onnx")
    onnx.save(m, broken)
    bad = subprocess.run([sys.executable, script, "--verify-only", "--onnx", broken, "--goldens", goldens], capture_output=True, text=True)
    print(bad.stdout, bad.stderr)
    assert bad.returncode == 2, f"a broken export was accepted (exit {bad.returncode})"
    assert "EXPORT REJECTED" in bad.stderr
print("export verification test passed")
