#!/usr/bin/env python3
"""Writes external-data copies of the fixture exports (model.onnx + model.onnx.data).

    python3 tests/data/make_external.py tests/data/gpt2-tiny
"""
import os
import sys

import onnx

d = sys.argv[1]
for name in ["legacy-opset13", "legacy-opset17"]:
    m = onnx.load(os.path.join(d, name + ".onnx"))
    out_dir = os.path.join(d, "external")
    os.makedirs(out_dir, exist_ok=True)
    onnx.save_model(m, os.path.join(out_dir, name + ".onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=name + ".onnx.data", size_threshold=0)
    print("wrote", os.path.join(out_dir, name + ".onnx"))
