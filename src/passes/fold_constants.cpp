#include <algorithm>

#include "backends/reference/kernels.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"

namespace gptrt::passes {
namespace {

// Large broadcasts of small constants would bloat the engine; leave those to run time.
constexpr size_t kMaxFoldedBytes = size_t{16} << 20;

bool all_sym_known(const ir::Value& v) {
  if (!v.sym_value || !v.shape.fully_known()) return false;
  if (static_cast<int64_t>(v.sym_value->size()) != shape_numel(v.shape.concrete())) return false;
  return std::all_of(v.sym_value->begin(), v.sym_value->end(),
                     [](const ir::Dim& d) { return d.is_known(); });
}

Tensor tensor_from_sym(const ir::Value& v) {
  Tensor t(v.dtype, v.shape.concrete());
  for (size_t i = 0; i < v.sym_value->size(); ++i) {
    int64_t x = (*v.sym_value)[i].value;
    if (v.dtype == DType::kInt64)
      t.data_mut<int64_t>()[i] = x;
    else
      t.data_mut<int32_t>()[i] = static_cast<int32_t>(x);
  }
  return t;
}

}  // namespace

int fold_constants(ir::Graph& g) {
  int folded = 0;
  std::vector<ir::Node> kept;
  kept.reserve(g.nodes.size());
  for (ir::Node& n : g.nodes) {
    ir::infer_node(g, n);
    bool inputs_constant = true;
    size_t in_bytes = 0;
    for (int id : n.inputs) {
      if (id < 0) continue;
      inputs_constant = inputs_constant && g.values[id].is_constant();
      if (g.values[id].is_constant()) in_bytes += g.values[id].constant.nbytes();
    }
    bool outputs_from_sym = !n.outputs.empty();
    for (int id : n.outputs) {
      if (id < 0) continue;
      const ir::Value& v = g.values[id];
      outputs_from_sym = outputs_from_sym &&
                         (v.dtype == DType::kInt64 || v.dtype == DType::kInt32) && all_sym_known(v);
    }
    if (outputs_from_sym) {
      for (int id : n.outputs) {
        if (id >= 0) g.values[id].constant = tensor_from_sym(g.values[id]);
      }
      ++folded;
      continue;
    }
    if (inputs_constant && n.op_type != "Dropout") {
      bool small = true;
      for (int id : n.outputs) {
        if (id < 0) continue;
        const ir::Value& v = g.values[id];
        if (v.shape.fully_known()) {
          size_t bytes = static_cast<size_t>(shape_numel(v.shape.concrete())) * dtype_size(v.dtype);
          small = small && (bytes <= std::max(kMaxFoldedBytes, 2 * in_bytes));
        }
      }
      if (small) {
        std::vector<const Tensor*> ins;
        for (int id : n.inputs) ins.push_back(id < 0 ? nullptr : &g.values[id].constant);
        std::vector<Tensor> outs = reference::run_node(n, ins, g.opset);
        bool from_weight = false;
        for (int id : n.inputs) from_weight = from_weight || (id >= 0 && g.values[id].is_weight);
        for (size_t i = 0; i < n.outputs.size(); ++i) {
          if (n.outputs[i] < 0) continue;
          ir::Value& v = g.values[n.outputs[i]];
          v.constant = outs[i];
          v.dtype = outs[i].dtype();
          v.shape = ir::SymShape::from(outs[i].shape());
          v.is_weight = from_weight;
        }
        ++folded;
        continue;
      }
    }
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  return folded;
}

}  // namespace gptrt::passes
