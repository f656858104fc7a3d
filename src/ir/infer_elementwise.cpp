// Shape inference of elementwise ops: unary, binary (broadcast), Cast, Where, Dropout.
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include "gptrt/error.h"
#include "ir/infer_common.h"
#include "ir/op_math.h"
#include "ir/shape_inference.h"

namespace gptrt::ir::infer {

void infer_binary(Graph& g, const Node& n, bool to_bool) {
  SymShape s = in(g, n, 0).shape;
  for (size_t i = 1; i < n.inputs.size(); ++i) s = broadcast(n, s, in(g, n, i).shape);
  DType dt = in(g, n, 0).dtype;
  if (!to_bool && n.op_type != "Pow") {
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      DType other = in(g, n, i).dtype;
      if (dt != DType::kUndefined && other != DType::kUndefined && other != dt) {
        fail(n, std::string("inputs have different dtypes (") + dtype_name(dt) + " and " +
                    dtype_name(other) + ")");
      }
    }
  }
  set(g, n, 0, to_bool ? DType::kBool : dt, s);
}

void infer_unary(Graph& g, const Node& n) {
  const Value& x = in(g, n, 0);
  set(g, n, 0, x.dtype, x.shape);
}

void infer_cast(Graph& g, const Node& n, DType to) {
  const Value& x = in(g, n, 0);
  if (!dtype_is_known(static_cast<int32_t>(to))) {
    throw Error(ErrorCode::kUnsupported, n.describe() + ": cast to data type " +
                                             std::to_string(static_cast<int>(to)) +
                                             " is not supported");
  }
  set(g, n, 0, to, x.shape);
  if (to == DType::kInt64 || to == DType::kInt32) {
    if (auto sv = symbolic_ints(&x)) out(g, n, 0).sym_value = sv;
  }
}

void infer_where(Graph& g, const Node& n) {
  SymShape s = broadcast(n, broadcast(n, in(g, n, 0).shape, in(g, n, 1).shape), in(g, n, 2).shape);
  if (in(g, n, 0).dtype != DType::kBool)
    fail(n, std::string("condition must be bool, found ") + dtype_name(in(g, n, 0).dtype));
  set(g, n, 0, in(g, n, 1).dtype, s);
}

void infer_dropout(Graph& g, const Node& n) {
  const Value* training = g.input(n, 2);
  if (training && training->is_constant() && training->constant.numel() == 1 &&
      training->constant.dtype() == DType::kBool && *training->constant.data<uint8_t>() != 0)
    throw Error(ErrorCode::kUnsupported,
                n.describe() +
                    ": training_mode is true: Dropout in training mode drops random values, "
                    "which inference does not do; export the model in eval mode (model.eval())");
  infer_unary(g, n);
  if (auto sv = symbolic_ints(&in(g, n, 0))) out(g, n, 0).sym_value = sv;
  if (has_output(n, 1)) set(g, n, 1, DType::kBool, in(g, n, 0).shape);
}

}  // namespace gptrt::ir::infer
