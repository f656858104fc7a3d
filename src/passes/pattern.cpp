#include "passes/pattern.h"

#include "core/half.h"

namespace gptrt::passes {

Uses::Uses(const ir::Graph& g)
    : producer(g.values.size(), -1), consumers(g.values.size()), is_output(g.values.size(), 0) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int id : g.nodes[i].inputs) {
      if (id >= 0) consumers[static_cast<size_t>(id)].push_back(static_cast<int>(i));
    }
    for (int id : g.nodes[i].outputs) {
      if (id >= 0) producer[static_cast<size_t>(id)] = static_cast<int>(i);
    }
  }
  for (int id : g.outputs) is_output[static_cast<size_t>(id)] = 1;
}

const ir::Node* Uses::producer_of(const ir::Graph& g, int id, const std::string& op) const {
  if (id < 0 || producer[static_cast<size_t>(id)] < 0) return nullptr;
  const ir::Node& n = g.nodes[static_cast<size_t>(producer[static_cast<size_t>(id)])];
  return n.domain.empty() && n.op_type == op ? &n : nullptr;
}

bool Uses::single_use(int id) const {
  return id >= 0 && consumers[static_cast<size_t>(id)].size() == 1 &&
         !is_output[static_cast<size_t>(id)];
}

std::optional<double> scalar_constant(const ir::Value* v) {
  if (!v || !v->is_constant() || v->constant.numel() != 1) return std::nullopt;
  const Tensor& t = v->constant;
  switch (t.dtype()) {
    case DType::kFloat32:
      return t.data<float>()[0];
    case DType::kFloat64:
      return t.data<double>()[0];
    case DType::kFloat16:
      return half_to_float(t.data<uint16_t>()[0]);
    case DType::kBFloat16:
      return bf16_to_float(t.data<uint16_t>()[0]);
    case DType::kInt64:
      return static_cast<double>(t.data<int64_t>()[0]);
    case DType::kInt32:
      return t.data<int32_t>()[0];
    default:
      return std::nullopt;
  }
}

}  // namespace gptrt::passes
