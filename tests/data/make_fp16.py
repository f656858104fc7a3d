#!/usr/bin/env python3
"""An FP16 ONNX copy of the tiny fixture (every float tensor float16, as a half-precision export
has them) and ONNX Runtime CPU's logits on it: the oracle for FP16 ONNX import (issue 26).

    python3 tests/data/make_fp16.py tests/data/gpt2-tiny

Writes variants/fp16-opset17.onnx and variants/fp16-opset17.{ids,mask,ort_logits}.npy. Needs
onnxconverter-common (pip); its converter leaves some Cast nodes casting to float32 where the
graph now holds float16, which this script corrects.
"""
import os
import sys

import onnx
import onnxruntime as ort
from ort_oracle import write_oracle
from onnx import TensorProto
from onnxconverter_common import float16

d = sys.argv[1]
m = float16.convert_float_to_float16(onnx.load(os.path.join(d, "legacy-opset17.onnx")), keep_io_types=False)
types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.output)}
for n in m.graph.node:
    for a in n.attribute:
        if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT and types.get(n.output[0]) == TensorProto.FLOAT16:
            a.i = TensorProto.FLOAT16
base = os.path.join(d, "variants", "fp16-opset17")
onnx.save(m, base + ".onnx")
logits = write_oracle(base)
print("wrote", base, logits.dtype, logits.shape)
