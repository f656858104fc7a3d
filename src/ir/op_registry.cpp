// The op registry: which ops gptrt imports (and from which opset), each with its shape
// inference; and the constant and symbolic contents of small integer values.
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <unordered_map>

#include "gptrt/error.h"
#include "ir/infer_common.h"
#include "ir/op_math.h"
#include "ir/shape_inference.h"

namespace gptrt::ir {
namespace {

using namespace infer;  // NOLINT: the inference functions this table lists

using InferFn = std::function<void(Graph&, const Node&)>;

struct OpEntry {
  int64_t since;  // first default-domain opset with the semantics gptrt implements
  InferFn infer;
};

const std::unordered_map<std::string, OpEntry>& registry() {
  auto binary = [](bool to_bool) {
    return [to_bool](Graph& g, const Node& n) { infer_binary(g, n, to_bool); };
  };
  auto arith = [](std::function<Dim(const Dim&, const Dim&)> f) {
    return [f](Graph& g, const Node& n) {
      infer_binary(g, n, false);
      elementwise_sym(g, n, f);
    };
  };
  auto unary = [](Graph& g, const Node& n) { infer_unary(g, n); };
  auto float_unary = [](Graph& g, const Node& n) {
    require_float(n, in(g, n, 0));
    infer_unary(g, n);
  };
  auto to_bool = [](Graph& g, const Node& n) {
    infer_unary(g, n);
    out(g, n, 0).dtype = DType::kBool;
  };
  static const std::unordered_map<std::string, OpEntry> table = {
      {"Add", {13, arith(add_dims)}},
      {"Sub", {13, arith(sub_dims)}},
      {"Mul", {13, arith(mul_dims)}},
      {"Div", {13, arith(div_dims)}},
      {"Pow", {13, binary(false)}},
      {"Mod", {13, binary(false)}},
      {"Max", {13, binary(false)}},
      {"Min", {13, binary(false)}},
      {"Sum", {13, binary(false)}},
      {"And", {13, binary(true)}},
      {"Or", {13, binary(true)}},
      {"Xor", {13, binary(true)}},
      {"Equal", {13, binary(true)}},
      {"Less", {13, binary(true)}},
      {"LessOrEqual", {13, binary(true)}},
      {"Greater", {13, binary(true)}},
      {"GreaterOrEqual", {13, binary(true)}},
      {"Neg",
       {13,
        [](Graph& g, const Node& n) {
          infer_unary(g, n);
          if (auto sv = symbolic_ints(&in(g, n, 0))) {
            bool known =
                std::all_of(sv->begin(), sv->end(), [](const Dim& d) { return d.is_known(); });
            if (known) {
              for (Dim& d : *sv) d.value = -d.value;
              out(g, n, 0).sym_value = sv;
            }
          }
        }}},
      {"Abs", {13, unary}},
      {"Sqrt", {13, float_unary}},
      {"Exp", {13, float_unary}},
      {"Log", {13, float_unary}},
      {"Tanh", {13, float_unary}},
      {"Erf", {13, float_unary}},
      {"Sigmoid", {13, float_unary}},
      {"Relu", {13, unary}},
      {"Reciprocal", {13, float_unary}},
      {"Floor", {13, float_unary}},
      {"Ceil", {13, float_unary}},
      {"Sin", {13, float_unary}},
      {"Cos", {13, float_unary}},
      {"Gelu", {20, float_unary}},
      {"Softmax", {13, float_unary}},
      {"LogSoftmax", {13, float_unary}},
      {"Not", {13, to_bool}},
      {"IsNaN", {13, to_bool}},
      {"IsInf", {13, to_bool}},
      {"Identity",
       {13,
        [](Graph& g, const Node& n) {
          infer_unary(g, n);
          if (auto sv = symbolic_ints(&in(g, n, 0))) out(g, n, 0).sym_value = sv;
        }}},
      {"Dropout", {13, infer_dropout}},
      {"Clip", {13, unary}},
      {"Where", {13, infer_where}},
      {"Cast",
       {13,
        [](Graph& g, const Node& n) {
          if (!n.has_attr("to"))
            fail(n, "has no 'to' attribute (the type to cast to), which Cast requires");
          infer_cast(g, n, static_cast<DType>(n.attr_int("to", 0)));
        }}},
      {"CastLike", {15, [](Graph& g, const Node& n) { infer_cast(g, n, in(g, n, 1).dtype); }}},
      {"Shape", {13, infer_shape_op}},
      {"Size", {13, infer_size}},
      {"Reshape", {13, infer_reshape}},
      {"Flatten", {13, infer_flatten}},
      {"Squeeze", {13, infer_squeeze}},
      {"Unsqueeze", {13, infer_unsqueeze}},
      {"Transpose", {13, infer_transpose}},
      {"Concat", {13, infer_concat}},
      {"Split", {13, infer_split}},
      {"Slice", {13, infer_slice}},
      {"Gather", {13, infer_gather}},
      {"GatherND", {13, infer_gather_nd}},
      {"GatherElements",
       {13, [](Graph& g, const Node& n) { set(g, n, 0, in(g, n, 0).dtype, in(g, n, 1).shape); }}},
      {"Expand", {13, infer_expand}},
      {"Tile", {13, infer_tile}},
      {"Range", {13, infer_range}},
      {"Constant", {13, infer_constant}},
      {"ConstantOfShape", {13, infer_constant_of_shape}},
      {"Trilu", {14, unary}},
      {"CumSum", {13, unary}},
      {"MatMul", {13, infer_matmul}},
      {"Gemm", {13, infer_gemm}},
      {"LayerNormalization", {17, infer_layer_norm}},
      {"ReduceMean", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, g.opset >= 18); }}},
      {"ReduceMax", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, g.opset >= 18); }}},
      {"ReduceMin", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, g.opset >= 18); }}},
      {"ReduceSum", {13, [](Graph& g, const Node& n) { infer_reduce(g, n, true); }}},
      {"ArgMax",
       {13,
        [](Graph& g, const Node& n) {
          Node copy = n;
          copy.attrs["axes"].ints = {n.attr_int("axis", 0)};
          infer_reduce(g, copy, false);
        }}},
  };
  return table;
}

const std::unordered_map<std::string, OpEntry>& fused_registry() {
  static const std::unordered_map<std::string, OpEntry> table = {
      {"Embedding", {0, infer_embedding}},
      {"Linear", {0, infer_linear}},
      {"Attention", {0, infer_attention}},
  };
  return table;
}

}  // namespace

Tensor constant_value(const Node& n) {
  auto one = [](DType dt, const void* p, size_t bytes, Shape shape) {
    Tensor t(dt, std::move(shape));
    std::memcpy(t.raw_mut(), p, bytes);
    return t;
  };
  if (n.has_attr("value")) return n.attrs.at("value").t;
  if (n.has_attr("value_float")) {
    float f = n.attrs.at("value_float").f;
    return one(DType::kFloat32, &f, 4, {});
  }
  if (n.has_attr("value_int")) {
    int64_t i = n.attrs.at("value_int").i;
    return one(DType::kInt64, &i, 8, {});
  }
  if (n.has_attr("value_floats")) {
    const auto& v = n.attrs.at("value_floats").floats;
    return one(DType::kFloat32, v.data(), v.size() * 4, {static_cast<int64_t>(v.size())});
  }
  if (n.has_attr("value_ints")) {
    const auto& v = n.attrs.at("value_ints").ints;
    return one(DType::kInt64, v.data(), v.size() * 8, {static_cast<int64_t>(v.size())});
  }
  throw Error(ErrorCode::kUnsupported,
              n.describe() +
                  ": Constant has no value, value_float(s) or value_int(s) attribute (sparse and "
                  "string constants are not supported)");
}

std::optional<std::vector<int64_t>> constant_ints(const Value* v) {
  if (!v || !v->is_constant()) return std::nullopt;
  const Tensor& t = v->constant;
  if (t.numel() > 4096) return std::nullopt;
  std::vector<int64_t> r(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::kInt64) {
    for (size_t i = 0; i < r.size(); ++i) r[i] = t.data<int64_t>()[i];
  } else if (t.dtype() == DType::kInt32) {
    for (size_t i = 0; i < r.size(); ++i) r[i] = t.data<int32_t>()[i];
  } else {
    return std::nullopt;
  }
  return r;
}

std::optional<std::vector<Dim>> symbolic_ints(const Value* v) {
  if (!v) return std::nullopt;
  if (v->is_constant()) {
    if (v->constant.rank() > 1 || v->constant.numel() > 64) return std::nullopt;
    auto ints = constant_ints(v);
    if (!ints) return std::nullopt;
    std::vector<Dim> r;
    for (int64_t i : *ints) r.push_back(Dim::known(i));
    return r;
  }
  return v->sym_value;
}

bool op_supported(const std::string& op_type, const std::string& domain, int64_t opset,
                  std::string* why) {
  if (!domain.empty() && domain != "ai.onnx") {
    if (why)
      *why = "ops of domain '" + domain + "' are not supported (only the default ONNX domain is)";
    return false;
  }
  auto it = registry().find(op_type);
  if (it == registry().end()) {
    if (why) *why = "gptrt has no kernel for op " + op_type;
    return false;
  }
  if (opset < it->second.since) {
    if (why)
      *why = op_type + " needs opset " + std::to_string(it->second.since) +
             " or newer, the model imports opset " + std::to_string(opset);
    return false;
  }
  return true;
}

std::vector<std::string> supported_ops() {
  std::vector<std::string> names;
  for (const auto& [name, e] : registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

void infer_node(Graph& graph, const Node& node) {
  const auto& table = node.domain == kFusedDomain ? fused_registry() : registry();
  auto it = table.find(node.op_type);
  if (it == table.end()) {
    throw Error(ErrorCode::kUnsupported, node.describe() + ": unsupported op");
  }
  it->second.infer(graph, node);
}

void infer_shapes(Graph& graph) {
  for (const Node& n : graph.nodes) infer_node(graph, n);
}

}  // namespace gptrt::ir
