#include "backends/reference/executor.h"

#include "backends/reference/kernels.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::reference {

Executor::Executor(const ir::Graph& graph, BackendRunner backend)
    : graph_(graph), backend_(std::move(backend)), last_use_(graph.values.size(), -1) {
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (int id : graph.nodes[i].inputs) {
      if (id >= 0) last_use_[static_cast<size_t>(id)] = static_cast<int>(i);
    }
  }
  for (int id : graph.outputs)
    last_use_[static_cast<size_t>(id)] = static_cast<int>(graph.nodes.size());
}

std::vector<Tensor> Executor::run(const std::map<std::string, Tensor>& inputs,
                                  Profile* profile) const {
  const ir::Graph& g = graph_;
  std::vector<Tensor> slots(g.values.size());
  for (size_t i = 0; i < g.values.size(); ++i) {
    if (g.values[i].is_constant()) slots[i] = g.values[i].constant;
  }
  for (int id : g.inputs) {
    auto it = inputs.find(g.values[static_cast<size_t>(id)].name);
    if (it == inputs.end())
      throw Error(ErrorCode::kInvalidArgument,
                  "input '" + g.values[static_cast<size_t>(id)].name + "' was not given");
    slots[static_cast<size_t>(id)] = it->second;
  }
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    ins.clear();
    for (int id : n.inputs) ins.push_back(id < 0 ? nullptr : &slots[static_cast<size_t>(id)]);
    double t0 = profile ? platform::now_seconds() : 0;
    std::vector<Tensor> outs =
        n.domain.empty() || !backend_ ? run_node(n, ins, g.opset) : backend_(n, ins);
    if (profile) {
      auto& entry = (*profile)[n.domain.empty() ? n.op_type : n.domain + "." + n.op_type];
      entry.first += (platform::now_seconds() - t0) * 1e3;
      ++entry.second;
    }
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      if (n.outputs[k] >= 0) slots[static_cast<size_t>(n.outputs[k])] = std::move(outs[k]);
    }
    for (int id : n.inputs) {
      if (id >= 0 && last_use_[static_cast<size_t>(id)] == static_cast<int>(i) &&
          !g.values[static_cast<size_t>(id)].is_constant()) {
        slots[static_cast<size_t>(id)] = Tensor();
      }
    }
  }
  std::vector<Tensor> result;
  for (int id : g.outputs) result.push_back(slots[static_cast<size_t>(id)]);
  return result;
}

}  // namespace gptrt::reference
