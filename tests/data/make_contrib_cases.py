#!/usr/bin/env python3
"""Single-op cases of ONNX Runtime's contrib ops (com.microsoft: what its transformer optimizer
writes into GPT-2 models) with ONNX Runtime CPU's outputs, in the op-case format of
make_op_cases.py (model.onnx, input_<i>.npy, expected_<i>.npy):

    python3 tests/data/make_contrib_cases.py tests/data/ops
"""
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1]
rng = np.random.default_rng(11)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def case(name, op, inputs, consts=None, attrs=None, n_out=1, out_shapes=None, skip=()):
    consts = consts or {}
    in_names = ["x%d" % i for i in range(len(inputs))]
    node_in = in_names + list(consts.keys())
    for i in skip:  # omitted optional inputs
        node_in.insert(i, "")
    outs = ["y%d" % i for i in range(n_out)]
    node = helper.make_node(op, node_in, outs, domain="com.microsoft", **(attrs or {}))
    g = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape) for n, a in zip(in_names, inputs)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                          producer_name="make_contrib_cases")
    m.ir_version = 8
    res = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, dict(zip(in_names, inputs)))
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    onnx.save(m, os.path.join(d, "model.onnx"))
    for i, a in enumerate(inputs):
        np.save(os.path.join(d, "input_%d.npy" % i), a)
    for i, r in enumerate(res):
        np.save(os.path.join(d, "expected_%d.npy" % i), np.asarray(r))
    print("wrote", name)


case("contrib_fast_gelu_bias", "FastGelu", [f32(2, 3, 8)], {"b": f32(8)})
case("contrib_fast_gelu", "FastGelu", [f32(2, 5)])
case("contrib_bias_gelu", "BiasGelu", [f32(2, 3, 8)], {"b": f32(8)})
case("contrib_gelu", "Gelu", [f32(4, 6)])
case("contrib_quick_gelu", "QuickGelu", [f32(3, 7)], attrs={"alpha": 1.702})
case("contrib_skip_layer_norm", "SkipLayerNormalization", [f32(2, 3, 8)],
     {"skip": f32(2, 3, 8), "gamma": f32(8), "beta": f32(8), "bias": f32(8)},
     attrs={"epsilon": 1e-5}, n_out=4)
case("contrib_skip_layer_norm_plain", "SkipLayerNormalization", [f32(2, 3, 8)],
     {"skip": f32(2, 3, 8), "gamma": f32(8)}, attrs={"epsilon": 1e-3})
case("contrib_skip_simplified_layer_norm", "SkipSimplifiedLayerNormalization", [f32(2, 3, 8)],
     {"skip": f32(2, 3, 8), "gamma": f32(8)}, attrs={"epsilon": 1e-6}, n_out=4)

# ONNX Runtime's fused attention as its GPT-2 optimizer writes it: causal, a raw 0/1 mask
# (a left-padded row), and the present output.
mask = np.ones((2, 5), np.int32)
mask[1, :2] = 0
case("contrib_attention_causal_mask", "Attention", [f32(2, 5, 16)],
     {"weights": f32(16, 48) * 0.3, "bias": f32(48), "mask_index": mask},
     attrs={"num_heads": 4, "unidirectional": 1}, n_out=2)
case("contrib_attention_plain", "Attention", [f32(1, 4, 8)], {"weights": f32(8, 24), "bias": f32(24)},
     attrs={"num_heads": 2})
