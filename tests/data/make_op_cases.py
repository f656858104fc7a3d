#!/usr/bin/env python3
"""Single-op ONNX models with ONNX Runtime's outputs: the oracle for gptrt's reference kernels
on ops and attribute forms the fixture exports do not use.

    python3 tests/data/make_op_cases.py tests/data/ops

Each case is a folder: model.onnx, input_<i>.npy, expected_<i>.npy.
"""
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
NP2ONNX = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64, np.int32: TensorProto.INT32,
           np.bool_: TensorProto.BOOL, np.float64: TensorProto.DOUBLE}


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def case(name, op, inputs, attrs=None, opset=17, n_out=1, consts=None, out_types=None):
    """inputs: list of numpy arrays (graph inputs); consts: dict name->array (initializers) appended
    as extra node inputs in order given by `order` (None keeps inputs then consts)."""
    consts = consts or {}
    in_names = [f"x{i}" for i in range(len(inputs))]
    node_inputs = in_names + list(consts.keys())
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, node_inputs, outs, **(attrs or {}))
    g_inputs = [helper.make_tensor_value_info(n, NP2ONNX[a.dtype.type], a.shape) for n, a in zip(in_names, inputs)]
    if out_types is None:
        bool_ops = {"IsNaN", "IsInf", "Not", "Or", "And", "Xor", "Less", "Greater", "LessOrEqual",
                    "GreaterOrEqual", "Equal"}
        if op in bool_ops:
            t = TensorProto.BOOL
        elif op == "Where":
            t = NP2ONNX[inputs[1].dtype.type]
        elif op == "Cast":
            t = attrs["to"]
        elif op in ("ArgMax", "Shape", "Size", "ConstantOfShape"):
            t = TensorProto.INT64
        else:
            t = NP2ONNX[inputs[0].dtype.type]
        out_types = [t] * n_out
    g_outputs = [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, out_types)]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    graph = helper.make_graph([node], name, g_inputs, g_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_op_cases")
    model.ir_version = 8 if opset < 19 else 9
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    results = sess.run(None, dict(zip(in_names, inputs)))
    d = os.path.join(OUT, name)
    os.makedirs(d)
    onnx.save(model, os.path.join(d, "model.onnx"))
    for i, a in enumerate(inputs):
        np.save(os.path.join(d, f"input_{i}.npy"), a)
    for i, r in enumerate(results):
        np.save(os.path.join(d, f"expected_{i}.npy"), np.asarray(r))


def i64(*v):
    return np.array(v, dtype=np.int64)


OUT = sys.argv[1]
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)

case("add_broadcast", "Add", [f32(2, 3, 5), f32(3, 1)])
case("sub_int", "Sub", [i64(5, 7, 9), i64(1)])
case("mul_scalar", "Mul", [f32(4, 7), np.array(1.5, dtype=np.float32)])
case("div_int_trunc", "Div", [i64(7, -7, 9), i64(2, 2, -4)])
case("pow_float_exp", "Pow", [np.abs(f32(3, 4)) + 0.1, np.array(2.0, dtype=np.float32)])
case("mod_fmod", "Mod", [f32(6), np.array([1.5], dtype=np.float32)], {"fmod": 1})
case("max_three", "Max", [f32(2, 3), f32(3), f32(1, 3)])
case("min_three", "Min", [f32(2, 3), f32(3), f32(1, 3)])
case("neg", "Neg", [f32(3, 5)])
case("abs_int", "Abs", [i64(-3, 4, -5)])
case("erf", "Erf", [f32(4, 6) * 2])
case("sqrt", "Sqrt", [np.abs(f32(7))])
case("tanh", "Tanh", [f32(9)])
case("sigmoid", "Sigmoid", [f32(9)])
case("relu", "Relu", [f32(9)])
case("exp_log", "Exp", [f32(5)])
case("reciprocal", "Reciprocal", [f32(5) + 3])
case("isnan", "IsNaN", [np.array([1.0, np.nan, -np.inf, 0.0], dtype=np.float32)])
case("isinf", "IsInf", [np.array([1.0, np.nan, -np.inf, np.inf], dtype=np.float32)], {"detect_negative": 0})
case("identity", "Identity", [f32(2, 2)])
case("not", "Not", [np.array([True, False, True])])
case("or_broadcast", "Or", [np.array([[True, False], [False, False]]), np.array([False, True])])
case("and", "And", [np.array([True, False, True]), np.array([True, True, False])])
case("xor", "Xor", [np.array([True, False, True]), np.array([True, True, False])])
case("less", "Less", [f32(3, 4), f32(4)])
case("greater_int", "Greater", [i64(1, 5, 3), i64(2)])
case("less_or_equal", "LessOrEqual", [i64(1, 5, 3), i64(3)])
case("greater_or_equal", "GreaterOrEqual", [f32(5), f32(5)])
case("equal_int", "Equal", [i64(1, 2, 3), i64(1, 0, 3)])
case("where", "Where", [np.array([[True], [False]]), f32(2, 3), f32(3)])
case("cast_float_to_int", "Cast", [f32(6) * 10], {"to": TensorProto.INT64})
case("cast_int_to_float", "Cast", [i64(1, -2, 3)], {"to": TensorProto.FLOAT})
case("cast_to_bool", "Cast", [np.array([0.0, 0.5, -1.0], dtype=np.float32)], {"to": TensorProto.BOOL})
case("cast_int32_int64", "Cast", [np.array([1, -2, 300], dtype=np.int32)], {"to": TensorProto.INT64})
case("clip", "Clip", [f32(10)], consts={"lo": np.array(-0.5, dtype=np.float32), "hi": np.array(0.5, dtype=np.float32)})
case("gelu_exact_opset20", "Gelu", [f32(4, 8) * 3], opset=20)
case("gelu_tanh_opset20", "Gelu", [f32(4, 8) * 3], {"approximate": "tanh"}, opset=20)
case("softmax_axis1", "Softmax", [f32(2, 5, 3)], {"axis": 1})
case("log_softmax", "LogSoftmax", [f32(2, 7)])
case("layer_norm_last", "LayerNormalization", [f32(3, 4, 10)], {"epsilon": 1e-5, "axis": -1},
     consts={"scale": f32(10), "bias": f32(10)})
case("layer_norm_two_axes", "LayerNormalization", [f32(3, 4, 5)], {"axis": -2},
     consts={"scale": f32(4, 5)})
case("reduce_mean_13", "ReduceMean", [f32(3, 4, 5)], {"axes": [-1], "keepdims": 1}, opset=13)
case("reduce_mean_18", "ReduceMean", [f32(3, 4, 5)], {"keepdims": 0}, opset=18, consts={"axes": i64(0, 2)})
case("reduce_sum", "ReduceSum", [f32(3, 4)], {"keepdims": 1}, consts={"axes": i64(1)})
case("reduce_max_all", "ReduceMax", [f32(3, 4)], {"keepdims": 0}, opset=13)
case("argmax", "ArgMax", [f32(3, 7)], {"axis": 1, "keepdims": 0})
case("matmul_batched", "MatMul", [f32(2, 3, 4, 5), f32(3, 5, 6)])
case("matmul_vector", "MatMul", [f32(5), f32(2, 5, 3)])
case("gemm_trans", "Gemm", [f32(4, 3), f32(5, 4)], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0},
     consts={"c": f32(5)})
case("gemm_bias_row", "Gemm", [f32(3, 4), f32(4, 6)], consts={"c": f32(3, 1)})
case("transpose", "Transpose", [f32(2, 3, 4)], {"perm": [2, 0, 1]})
case("concat_axis1", "Concat", [f32(2, 3), f32(2, 1), f32(2, 2)], {"axis": 1})
case("split_13_sizes", "Split", [f32(2, 7)], {"axis": 1}, n_out=2, consts={"split": i64(3, 4)}, opset=13)
case("split_18_num_outputs", "Split", [f32(7, 2)], {"axis": 0, "num_outputs": 3}, n_out=3, opset=18)
case("slice_negative_step", "Slice", [f32(5, 6)],
     consts={"starts": i64(4, -1), "ends": i64(0, -100), "axes": i64(0, 1), "steps": i64(-2, -1)})
case("slice_clamped", "Slice", [f32(4, 6)], consts={"starts": i64(1), "ends": i64(1000), "axes": i64(1)})
case("gather_axis1_negative", "Gather", [f32(3, 5)], {"axis": 1}, consts={"idx": i64(-1, 0, 2)})
case("gather_nd", "GatherND", [f32(2, 3, 4)], consts={"idx": np.array([[0, 1], [1, 2]], dtype=np.int64)})
case("gather_nd_batch", "GatherND", [f32(2, 3, 4)], {"batch_dims": 1}, consts={"idx": np.array([[1], [2]], dtype=np.int64)})
case("gather_elements", "GatherElements", [f32(3, 3)], {"axis": 1}, consts={"idx": np.array([[0, 0], [1, 2], [2, 1]], dtype=np.int64)})
case("expand", "Expand", [f32(3, 1)], consts={"shape": i64(2, 3, 4)})
case("tile", "Tile", [f32(2, 3)], consts={"reps": i64(2, 2)})
case("range_float", "Range", [np.array(1.0, dtype=np.float32)], consts={"limit": np.array(3.1, dtype=np.float32), "delta": np.array(0.5, dtype=np.float32)})
case("range_int", "Range", [np.array(10, dtype=np.int64)], consts={"limit": np.array(0, dtype=np.int64), "delta": np.array(-3, dtype=np.int64)})
case("constant_of_shape", "ConstantOfShape", [i64(2, 3)], {"value": numpy_helper.from_array(np.array([7], dtype=np.int64))})
case("trilu_upper_k1", "Trilu", [f32(2, 4, 5)], consts={"k": np.array(1, dtype=np.int64)})
case("trilu_lower", "Trilu", [f32(4, 4)], {"upper": 0})
case("cumsum_exclusive_reverse", "CumSum", [f32(3, 4)], {"exclusive": 1, "reverse": 1}, consts={"axis": np.array(1, dtype=np.int64)})
case("cumsum_int", "CumSum", [i64(1, 2, 3, 4)], consts={"axis": np.array(0, dtype=np.int64)})
case("reshape_zero_minus_one", "Reshape", [f32(2, 3, 4)], consts={"shape": i64(0, -1)})
case("flatten", "Flatten", [f32(2, 3, 4)], {"axis": 2})
case("squeeze", "Squeeze", [f32(1, 3, 1)], consts={"axes": i64(0)})
case("unsqueeze", "Unsqueeze", [f32(3, 4)], consts={"axes": i64(0, -1)})
case("shape_start_end", "Shape", [f32(2, 3, 4, 5)], {"start": 1, "end": -1}, opset=15)
case("size", "Size", [f32(2, 3)])
# Issue 26's operator fixes: ties with select_last_index, Clip with min > max (max everywhere).
case("argmax_select_last", "ArgMax", [np.array([[1, 3, 3, 2], [5, 5, 1, 5]], dtype=np.float32)],
     {"axis": 1, "keepdims": 1, "select_last_index": 1})
case("clip_min_above_max", "Clip", [f32(6)], consts={"lo": np.array(0.5, dtype=np.float32), "hi": np.array(-0.5, dtype=np.float32)})
print(len(os.listdir(OUT)), "cases")
