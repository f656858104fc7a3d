#include "runtime/executor.h"

#include <algorithm>

#include "backends/reference/kernels.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::runtime {

Executor::Executor(const ir::Graph& graph, backends::NodeKernels* kernels, ir::MemoryPlan plan)
    : graph_(graph), kernels_(kernels), last_use_(graph.values.size(), -1), plan_(std::move(plan)) {
  if (!plan_.empty()) arena_.reset(new uint8_t[static_cast<size_t>(plan_.total)]);  // untouched
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (int id : graph.nodes[i].inputs) {
      if (id >= 0) last_use_[static_cast<size_t>(id)] = static_cast<int>(i);
    }
  }
  for (int id : graph.outputs)
    last_use_[static_cast<size_t>(id)] = static_cast<int>(graph.nodes.size());
}

std::vector<Tensor> Executor::run(const std::map<std::string, Tensor>& inputs,
                                  backends::Profile* profile) const {
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
  backends::OutputBuffers buffers;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& n = g.nodes[i];
    ins.clear();
    for (int id : n.inputs) ins.push_back(id < 0 ? nullptr : &slots[static_cast<size_t>(id)]);
    buffers.data.assign(n.outputs.size(), nullptr);
    buffers.capacity.assign(n.outputs.size(), 0);
    for (size_t k = 0; k < n.outputs.size() && arena_; ++k) {
      int id = n.outputs[k];
      if (id < 0 || plan_.offset[static_cast<size_t>(id)] < 0) continue;
      buffers.data[k] = arena_.get() + plan_.offset[static_cast<size_t>(id)];
      buffers.capacity[k] = plan_.capacity[static_cast<size_t>(id)];
    }
    double t0 = profile ? platform::now_seconds() : 0;
    std::vector<Tensor> outs = n.domain.empty() || !kernels_ ? reference::run_node(n, ins, g.opset)
                                                             : kernels_->run(n, ins, buffers);
    if (profile) {
      auto& entry = (*profile)[n.domain.empty() ? n.op_type : n.domain + "." + n.op_type];
      entry.first += (platform::now_seconds() - t0) * 1e3;
      ++entry.second;
    }
    if (outs.size() < n.outputs.size()) {
      for (size_t k = outs.size(); k < n.outputs.size(); ++k)
        if (n.outputs[k] >= 0)
          throw Error(ErrorCode::kInternal,
                      n.describe() + ": its kernel gave " + std::to_string(outs.size()) +
                          " outputs, the plan names " + std::to_string(n.outputs.size()));
    }
    for (size_t k = 0; k < n.outputs.size() && k < outs.size(); ++k) {
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

}  // namespace gptrt::runtime
