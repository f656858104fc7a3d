// The op registry: which ops gptrt imports (and from which opset), each with its shape
// inference; and the constant and symbolic contents of small integer values.
#include <algorithm>
#include <cmath>
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
      {"If", {13, infer_if}},
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
      // ONNX's since opset 17; ONNX Runtime runs the same op in the default domain at older
      // opsets too (its transformer optimizer writes it into opset-14 GPT-2 files).
      {"LayerNormalization", {1, infer_layer_norm}},
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

// ONNX Runtime's contrib ops (domain com.microsoft) that its transformer optimizer and
// optimum's O1-O4 write into GPT-2 models; reference kernels in backends/reference/contrib_ops.cpp.
const std::unordered_map<std::string, OpEntry>& contrib_registry() {
  auto same_as_input = [](Graph& g, const Node& n) {
    require_float(n, in(g, n, 0));
    set(g, n, 0, in(g, n, 0).dtype, in(g, n, 0).shape);
  };
  auto skip_norm = [](Graph& g, const Node& n) {
    const Value& x = in(g, n, 0);
    require_float(n, x);
    if (!std::isfinite(n.attr_float("epsilon", 1e-5f)) || !(n.attr_float("epsilon", 1e-5f) > 0))
      fail(n, "attribute 'epsilon' must be positive and finite");
    set(g, n, 0, x.dtype, x.shape);
    SymShape stat = x.shape;
    if (stat.rank_known && !stat.dims.empty()) stat.dims.back() = Dim::known(1);
    if (has_output(n, 1)) set(g, n, 1, DType::kFloat32, stat);
    if (has_output(n, 2)) set(g, n, 2, DType::kFloat32, stat);
    if (has_output(n, 3)) set(g, n, 3, x.dtype, x.shape);
  };
  auto attention = [](Graph& g, const Node& n) {
    const Value& x = in(g, n, 0);
    const Value& w = in(g, n, 1);
    require_float(n, x);
    if (n.attr_int("num_heads", 0) < 1) fail(n, "attribute 'num_heads' must be >= 1");
    if (!w.shape.rank_known || w.shape.dims.size() != 2)
      fail(n, "the weights must be 2-D, found " + w.shape.str());
    SymShape s = x.shape;
    if (s.rank_known) {
      if (s.dims.size() != 3) fail(n, "the input must be [batch, sequence, hidden]");
      const Dim& w3 = w.shape.dims[1];
      s.dims[2] = w3.is_known() ? Dim::known(w3.value / 3) : Dim::unknown();
    }
    set(g, n, 0, x.dtype, s);
    if (has_output(n, 1)) {
      SymShape p;
      if (s.rank_known) {
        int64_t heads = n.attr_int("num_heads", 1);
        Dim hd = s.dims[2].is_known() ? Dim::known(s.dims[2].value / heads) : Dim::unknown();
        p = SymShape::of({Dim::known(2), s.dims[0], Dim::known(heads), s.dims[1], hd});
      }
      set(g, n, 1, x.dtype, p);
    }
  };
  static const std::unordered_map<std::string, OpEntry> table = {
      {"Attention", {1, attention}},
      {"FastGelu", {1, same_as_input}},
      {"BiasGelu", {1, same_as_input}},
      {"Gelu", {1, same_as_input}},
      {"QuickGelu", {1, same_as_input}},

      {"SkipLayerNormalization", {1, skip_norm}},
      {"SkipSimplifiedLayerNormalization", {1, skip_norm}},
  };
  return table;
}

const std::unordered_map<std::string, OpEntry>& fused_registry() {
  static const std::unordered_map<std::string, OpEntry> table = {
      {"Embedding", {0, infer_embedding}},
      {"Linear", {0, infer_linear}},
      {"Attention", {0, infer_attention}},
      {"CacheGate", {0, infer_cache_gate}},
  };
  return table;
}

// How many inputs and outputs each op takes: [min, max] (kMany: variadic). A file (model or
// engine plan) whose node has more or fewer is refused before any inference reads them.
constexpr int kMany = 1 << 30;

struct Arity {
  int in_min, in_max, out_min, out_max;
};

const std::unordered_map<std::string, Arity>& arities() {
  static const std::unordered_map<std::string, Arity> table = [] {
    std::unordered_map<std::string, Arity> t;
    for (const char* op : {"Add",
                           "Sub",
                           "Mul",
                           "Div",
                           "Pow",
                           "Mod",
                           "And",
                           "Or",
                           "Xor",
                           "Equal",
                           "Less",
                           "LessOrEqual",
                           "Greater",
                           "GreaterOrEqual",
                           "Reshape",
                           "Unsqueeze",
                           "Gather",
                           "GatherND",
                           "GatherElements",
                           "Expand",
                           "Tile",
                           "MatMul",
                           "CastLike",
                           "CumSum"})
      t[op] = {2, 2, 1, 1};
    for (const char* op : {"Neg",        "Abs",        "Sqrt",
                           "Exp",        "Log",        "Tanh",
                           "Erf",        "Sigmoid",    "Relu",
                           "Reciprocal", "Floor",      "Ceil",
                           "Sin",        "Cos",        "Gelu",
                           "Softmax",    "LogSoftmax", "Not",
                           "IsNaN",      "IsInf",      "Identity",
                           "Cast",       "Shape",      "Size",
                           "Flatten",    "Transpose",  "ConstantOfShape",
                           "ArgMax"})
      t[op] = {1, 1, 1, 1};
    for (const char* op : {"Max", "Min", "Sum", "Concat"}) t[op] = {1, kMany, 1, 1};
    for (const char* op : {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "Squeeze", "Trilu"})
      t[op] = {1, 2, 1, 1};
    t["Dropout"] = {1, 3, 1, 2};
    t["Clip"] = {1, 3, 1, 1};
    t["Where"] = {3, 3, 1, 1};
    t["If"] = {1, kMany, 1, kMany};  // condition, then the outer values its branches read
    t["Range"] = {3, 3, 1, 1};
    t["Split"] = {1, 2, 1, kMany};
    t["Slice"] = {3, 5, 1, 1};
    t["Constant"] = {0, 0, 1, 1};
    t["Gemm"] = {2, 3, 1, 1};
    t["LayerNormalization"] = {2, 3, 1, 3};
    return t;
  }();
  return table;
}

const std::unordered_map<std::string, Arity>& fused_arities() {
  static const std::unordered_map<std::string, Arity> table = {
      {"Embedding", {4, 5, 1, 1}},  // ids, position_ids (may be omitted: -1), wte, wpe, past?
      {"Linear", {2, 5, 1, 1}},     // x, W, bias?, residual?, scales? (INT8 W)
      // qkv, mask?, past key?, past value? -> output, present key?, present value?
      {"Attention", {1, 4, 1, 3}},
      {"CacheGate", {2, 2, 1, 1}},  // past, use-cache flag
  };
  return table;
}

const std::unordered_map<std::string, Arity>& contrib_arities() {
  static const std::unordered_map<std::string, Arity> table = {
      {"Attention",
       {2, 8, 1, 2}},  // input, weights, bias?, mask_index?, past?, attention_bias?, ...
      {"FastGelu", {1, 2, 1, 1}},
      {"BiasGelu", {2, 2, 1, 1}},
      {"Gelu", {1, 1, 1, 1}},
      {"QuickGelu", {1, 1, 1, 1}},
      {"SkipLayerNormalization", {3, 5, 1, 4}},            // input, skip, gamma, beta?, bias?
      {"SkipSimplifiedLayerNormalization", {3, 4, 1, 4}},  // input, skip, gamma, bias?
  };
  return table;
}

std::string count_text(int lo, int hi) {
  if (lo == hi) return std::to_string(lo);
  if (hi == kMany) return "at least " + std::to_string(lo);
  return std::to_string(lo) + " to " + std::to_string(hi);
}

void check_arity(const Node& n, const Arity& a) {
  auto in_count = static_cast<int64_t>(n.inputs.size());
  auto out_count = static_cast<int64_t>(n.outputs.size());
  if (in_count < a.in_min || in_count > a.in_max)
    fail(n, "has " + std::to_string(in_count) + " inputs; " + n.op_type + " takes " +
                count_text(a.in_min, a.in_max));
  if (out_count < a.out_min || out_count > a.out_max)
    fail(n, "has " + std::to_string(out_count) + " outputs; " + n.op_type + " gives " +
                count_text(a.out_min, a.out_max));
  for (int i = 0; i < a.out_min; ++i)
    if (n.outputs[static_cast<size_t>(i)] < 0)
      fail(n, "output " + std::to_string(i) + " is unnamed");
}

// The table for a node: ONNX ops, the gptrt domain's fused ops, and ONNX elementwise ops that a
// backend moved into the gptrt domain (same semantics, its own kernels).
const OpEntry* find_entry(const Node& n, const Arity** arity) {
  if (n.domain == kFusedDomain) {
    auto it = fused_registry().find(n.op_type);
    if (it != fused_registry().end()) {
      *arity = &fused_arities().at(n.op_type);
      return &it->second;
    }
  } else if (n.domain == kContribDomain) {
    auto it = contrib_registry().find(n.op_type);
    if (it == contrib_registry().end()) return nullptr;
    *arity = &contrib_arities().at(n.op_type);
    return &it->second;
  } else if (!n.domain.empty() && n.domain != "ai.onnx") {
    return nullptr;
  }
  auto it = registry().find(n.op_type);
  if (it == registry().end()) return nullptr;
  *arity = &arities().at(n.op_type);
  return &it->second;
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
  if (domain == kContribDomain) {
    if (contrib_registry().count(op_type)) return true;
    if (why)
      *why = "gptrt has no kernel for ONNX Runtime's contrib op " + op_type + " (it runs " + [] {
        std::string list;
        for (const auto& [name, e] : contrib_registry()) list += (list.empty() ? "" : ", ") + name;
        return list;
      }() + ")";
    return false;
  }
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

std::vector<std::string> supported_contrib_ops() {
  std::vector<std::string> names;
  for (const auto& [name, e] : contrib_registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> supported_ops() {
  std::vector<std::string> names;
  for (const auto& [name, e] : registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

bool can_infer(const Node& node) {
  const Arity* arity = nullptr;
  return find_entry(node, &arity) != nullptr;
}

void infer_node(Graph& graph, const Node& node) {
  const Arity* arity = nullptr;
  const OpEntry* entry = find_entry(node, &arity);
  if (!entry) throw Error(ErrorCode::kUnsupported, node.describe() + ": unsupported op");
  check_arity(node, *arity);
  entry->infer(graph, node);
}

void infer_shapes(Graph& graph) {
  for (const Node& n : graph.nodes) infer_node(graph, n);
}

}  // namespace gptrt::ir
