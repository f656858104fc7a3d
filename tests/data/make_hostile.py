#!/usr/bin/env python3
"""Writes the small hostile models of tests/unit/hardening_test.cpp (issue 25), each a few
hundred bytes that once crashed gptrt or made it allocate gigabytes:

    python3 tests/data/make_hostile.py tests/data/hostile
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def save(name, nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="hostile")
    m.ir_version = 8
    onnx.save(m, os.path.join(out, name + ".onnx"))
    print("wrote", name)


# ConstantOfShape of [16384, 16384, 16] float: 16 GiB made from a 3-element constant.
save("constant_of_shape_16gib",
     [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                       value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
      helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
      helper.make_node("Add", ["x", "s"], ["y"])],
     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
     [numpy_helper.from_array(np.array([16384, 16384, 16], np.int64), "shape")])

# A token table of shape [0, 64]: no id is valid (it once divided by zero).
save("empty_token_table",
     [helper.make_node("Gather", ["wte", "input_ids"], ["h"])],
     [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
     [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", "seq", 64])],
     [numpy_helper.from_array(np.zeros((0, 64), np.float32), "wte")])

# Dropout with training_mode true: random in training, so refused for inference (issue 26).
save("dropout_training",
     [helper.make_node("Dropout", ["x", "ratio", "training"], ["y"])],
     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
     [numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),
      numpy_helper.from_array(np.array(True), "training")])

# An op of ONNX Runtime's contrib domain gptrt does not run (EmbedLayerNormalization): the message
# must name the optimizer, not the opset (issue 26).
g = helper.make_graph(
    [helper.make_node("EmbedLayerNormalization", ["x"], ["y"], domain="com.microsoft")], "contrib",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                      producer_name="hostile")
m.ir_version = 8
onnx.save(m, os.path.join(out, "contrib_embed_layer_norm.onnx"))
print("wrote contrib_embed_layer_norm")

# Outputs of float16, uint8 and int8 (issue 26: `--exportOutput` refused them).
save("small_dtype_outputs",
     [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
      helper.make_node("Cast", ["x"], ["u"], to=TensorProto.UINT8),
      helper.make_node("Cast", ["x"], ["s"], to=TensorProto.INT8)],
     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
     [helper.make_tensor_value_info("h", TensorProto.FLOAT16, [4]),
      helper.make_tensor_value_info("u", TensorProto.UINT8, [4]),
      helper.make_tensor_value_info("s", TensorProto.INT8, [4])],
     [])

# Found by fuzzing (engine target): Tile whose output size overflows 64 bits, and Range over a
# NaN limit (both undefined in the kernels before).
save("tile_overflow",
     [helper.make_node("Tile", ["x", "reps"], ["y"])],
     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
     [numpy_helper.from_array(np.array([2, 7854277750134145026], np.int64), "reps")])
save("range_nan",
     [helper.make_node("Range", ["start", "limit", "delta"], ["y"])],
     [helper.make_tensor_value_info("limit", TensorProto.FLOAT, [])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
     [numpy_helper.from_array(np.array(0.0, np.float32), "start"),
      numpy_helper.from_array(np.array(1.0, np.float32), "delta")])

# Slice steps of +-(2^63 - 1): one element each way (the length and stride arithmetic overflowed).
save("slice_huge_steps",
     [helper.make_node("Slice", ["x", "s0", "e0", "a0", "up"], ["y"]),
      helper.make_node("Slice", ["x", "s1", "e1", "a0", "down"], ["z"])],
     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
      helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
     [numpy_helper.from_array(np.array([0], np.int64), "s0"),
      numpy_helper.from_array(np.array([5], np.int64), "e0"),
      numpy_helper.from_array(np.array([4], np.int64), "s1"),
      numpy_helper.from_array(np.array([-6], np.int64), "e1"),
      numpy_helper.from_array(np.array([0], np.int64), "a0"),
      numpy_helper.from_array(np.array([2**63 - 1], np.int64), "up"),
      numpy_helper.from_array(np.array([-(2**63 - 1)], np.int64), "down")])

# If whose branches give different dtypes, and an If whose condition is a float (issue 26: If is
# run generally; both are refused at import, naming the node).
then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                           [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
else_g = helper.make_graph([helper.make_node("Cast", ["x"], ["e"], to=TensorProto.INT64)], "else", [],
                           [helper.make_tensor_value_info("e", TensorProto.INT64, [2])])
save("if_branch_dtypes",
     [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
     [helper.make_tensor_value_info("c", TensorProto.BOOL, [1]),
      helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [])
same_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e2"])], "else", [],
                           [helper.make_tensor_value_info("e2", TensorProto.FLOAT, [2])])
save("if_float_condition",
     [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=same_g)],
     [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1]),
      helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [])
# A valid If reading an outer value and an outer initializer in each branch (run by ONNX Runtime
# in the test's comparison): y = c ? x + w : -x.
then_w = helper.make_graph([helper.make_node("Add", ["x", "w"], ["t2"])], "then", [],
                           [helper.make_tensor_value_info("t2", TensorProto.FLOAT, [2])])
save("if_outer_values",
     [helper.make_node("If", ["c"], ["y"], then_branch=then_w, else_branch=same_g)],
     [helper.make_tensor_value_info("c", TensorProto.BOOL, [1]),
      helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
     [numpy_helper.from_array(np.array([10.0, 20.0], np.float32), "w")])
