// Shared helpers of shape inference: value access, dim arithmetic, numpy broadcasting.
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <set>

#include "gptrt/error.h"
#include "ir/infer_common.h"
#include "ir/op_math.h"
#include "ir/shape_inference.h"
#include "platform/compiler.h"

namespace gptrt::ir::infer {

[[noreturn]] void fail(const Node& n, const std::string& msg) {
  throw Error(ErrorCode::kShapeError, n.describe() + ": " + msg);
}

Value& out(Graph& g, const Node& n, size_t i) {
  return g.values[n.outputs[i]];
}

const Value& in(const Graph& g, const Node& n, size_t i) {
  const Value* v = g.input(n, i);
  if (!v) fail(n, "required input " + std::to_string(i) + " is missing");
  return *v;
}

bool has_output(const Node& n, size_t i) {
  return i < n.outputs.size() && n.outputs[i] >= 0;
}

int64_t normalize_axis(const Node& n, int64_t axis, size_t rank) {
  int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r)
    fail(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + r : axis;
}

Dim mul_dims(const Dim& a, const Dim& b) {
  int64_t r;
  // A product or sum past 64 bits (a hostile shape) is left unknown, never wrapped: the
  // kernels' checked element counts refuse it when it is reached.
  if (a.is_known() && b.is_known())
    return platform::mul_overflows(a.value, b.value, &r) ? Dim::unknown() : Dim::known(r);
  if (a.is_known() && a.value == 1) return b;
  if (b.is_known() && b.value == 1) return a;
  if ((a.is_known() && a.value == 0) || (b.is_known() && b.value == 0)) return Dim::known(0);
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "*" + b.str() + ")");
}

Dim add_dims(const Dim& a, const Dim& b) {
  int64_t r;
  if (a.is_known() && b.is_known())
    return platform::add_overflows(a.value, b.value, &r) ? Dim::unknown() : Dim::known(r);
  if (a.is_known() && a.value == 0) return b;
  if (b.is_known() && b.value == 0) return a;
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "+" + b.str() + ")");
}

Dim sub_dims(const Dim& a, const Dim& b) {
  int64_t r;
  if (a.is_known() && b.is_known())
    return platform::sub_overflows(a.value, b.value, &r) ? Dim::unknown() : Dim::known(r);
  if (b.is_known() && b.value == 0) return a;
  if (a == b) return Dim::known(0);
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "-" + b.str() + ")");
}

Dim div_dims(const Dim& a, const Dim& b) {
  if (a.is_known() && b.is_known() && b.value != 0 &&
      !(b.value == -1 && a.value == std::numeric_limits<int64_t>::min())) {
    // ONNX integer Div truncates toward zero; shapes are non-negative so this is floor.
    return Dim::known(a.value / b.value);
  }
  if (b.is_known() && b.value == 1) return a;
  if (a == b) return Dim::known(1);
  if (a.symbol == "?" || b.symbol == "?") return Dim::unknown();
  return Dim::sym("(" + a.str() + "/" + b.str() + ")");
}

// Broadcast two shapes with numpy rules. Unknown-vs-symbol picks the symbol.
SymShape broadcast(const Node& n, const SymShape& a, const SymShape& b) {
  if (!a.rank_known || !b.rank_known) return SymShape{};
  size_t r = std::max(a.dims.size(), b.dims.size());
  SymShape o{true, std::vector<Dim>(r)};
  for (size_t i = 0; i < r; ++i) {
    const Dim* da = i + a.dims.size() >= r ? &a.dims[i + a.dims.size() - r] : nullptr;
    const Dim* db = i + b.dims.size() >= r ? &b.dims[i + b.dims.size() - r] : nullptr;
    Dim x = da ? *da : Dim::known(1);
    Dim y = db ? *db : Dim::known(1);
    if (x.is_known() && x.value == 1) {
      o.dims[i] = y;
    } else if (y.is_known() && y.value == 1) {
      o.dims[i] = x;
    } else if (x.is_known() && y.is_known()) {
      if (x.value != y.value) fail(n, "cannot broadcast " + a.str() + " with " + b.str());
      o.dims[i] = x;
    } else if (x.is_known()) {
      o.dims[i] = x;
    } else if (y.is_known()) {
      o.dims[i] = y;
    } else {
      o.dims[i] = x.symbol == "?" ? y : x;
    }
  }
  return o;
}

void set(Graph& g, const Node& n, size_t i, DType dtype, SymShape shape) {
  if (!has_output(n, i)) return;
  Value& v = out(g, n, i);
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.sym_value.reset();
}

void require_float(const Node& n, const Value& v) {
  // ONNX ops also take float16/bfloat16 (the reference kernels widen them to FP32); the fused
  // ops of the gptrt domain are float32.
  const bool half = (v.dtype == DType::kFloat16 || v.dtype == DType::kBFloat16) && n.domain.empty();
  if (v.dtype != DType::kFloat32 && v.dtype != DType::kFloat64 && v.dtype != DType::kUndefined &&
      !half) {
    throw Error(ErrorCode::kUnsupported, n.describe() + ": input '" + v.name + "' is " +
                                             dtype_name(v.dtype) +
                                             "; gptrt runs this op on float32 (and float64) only");
  }
}

// Elementwise sym_value arithmetic for shape computations (Add/Sub/Mul/Div on small ints).
void elementwise_sym(Graph& g, const Node& n, const std::function<Dim(const Dim&, const Dim&)>& f) {
  auto a = symbolic_ints(g.input(n, 0));
  auto b = symbolic_ints(g.input(n, 1));
  if (!a || !b) return;
  size_t na = a->size(), nb = b->size();
  if (na != nb && na != 1 && nb != 1) return;
  std::vector<Dim> r(std::max(na, nb));
  for (size_t i = 0; i < r.size(); ++i) r[i] = f((*a)[na == 1 ? 0 : i], (*b)[nb == 1 ? 0 : i]);
  out(g, n, 0).sym_value = r;
}

// Shape of an output built from a 1-D shape tensor input (Reshape, Expand, ConstantOfShape).
std::optional<std::vector<Dim>> shape_operand(const Graph& g, const Node& n, size_t i) {
  const Value* v = g.input(n, i);
  if (!v) return std::nullopt;
  return symbolic_ints(v);
}

SymShape unknown_rank_shape(const Graph& g, const Node& n, size_t i) {
  const Value* v = g.input(n, i);
  if (v && v->shape.rank_known && v->shape.dims.size() == 1 && v->shape.dims[0].is_known()) {
    return SymShape::of(
        std::vector<Dim>(static_cast<size_t>(v->shape.dims[0].value), Dim::unknown()));
  }
  return SymShape{};
}

std::optional<std::vector<int64_t>> axes_of(const Graph& g, const Node& n, size_t input_index,
                                            bool from_input) {
  if (from_input) {
    const Value* v = g.input(n, input_index);
    if (!v) return std::vector<int64_t>{};
    return constant_ints(v);
  }
  return n.attr_ints("axes");
}

}  // namespace gptrt::ir::infer
