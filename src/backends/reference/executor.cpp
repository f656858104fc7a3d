#include "backends/reference/executor.h"

#include <algorithm>

#include "backends/reference/kernels.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::reference {

Tensor OutputBuffers::make(size_t k, DType dtype, Shape shape) const {
  int64_t bytes = shape_numel(shape) * static_cast<int64_t>(dtype_size(dtype));
  if (k < data.size() && data[k] && bytes <= capacity[k])
    return Tensor::writable_view(dtype, std::move(shape), data[k]);
  return Tensor::uninitialized(dtype, std::move(shape));
}

Executor::Executor(const ir::Graph& graph, BackendRunner backend, MemoryPlan plan)
    : graph_(graph),
      backend_(std::move(backend)),
      last_use_(graph.values.size(), -1),
      plan_(std::move(plan)) {
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
  OutputBuffers buffers;
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
    std::vector<Tensor> outs =
        n.domain.empty() || !backend_ ? run_node(n, ins, g.opset) : backend_(n, ins, buffers);
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

MemoryPlan plan_memory(const ir::Graph& g, const std::map<std::string, int64_t>& dim_max,
                       const std::function<bool(const ir::Node&)>& writes_planned) {
  size_t nv = g.values.size();
  MemoryPlan plan;
  plan.offset.assign(nv, -1);
  plan.capacity.assign(nv, -1);
  std::vector<int> def(nv, -1), last(nv, -1);
  std::vector<char> outside(nv, 0);
  for (int id : g.inputs) outside[static_cast<size_t>(id)] = 1;
  for (int id : g.outputs) outside[static_cast<size_t>(id)] = 1;
  int end = static_cast<int>(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    bool planned = writes_planned(g.nodes[i]);
    for (int id : g.nodes[i].inputs)
      if (id >= 0)
        last[static_cast<size_t>(id)] =
            std::max(last[static_cast<size_t>(id)], planned ? static_cast<int>(i) : end);
    for (int id : g.nodes[i].outputs) {
      if (id < 0) continue;
      def[static_cast<size_t>(id)] = static_cast<int>(i);
      if (!planned) outside[static_cast<size_t>(id)] = 1;
    }
  }
  for (int id : g.inputs) outside[static_cast<size_t>(id)] = 1;
  for (int id : g.outputs) outside[static_cast<size_t>(id)] = 1;
  struct Item {
    int id;
    int64_t bytes;
  };
  std::vector<Item> items;
  for (size_t v = 0; v < nv; ++v) {
    const ir::Value& val = g.values[v];
    if (outside[v] || val.is_constant() || def[v] < 0 || !val.shape.rank_known ||
        dtype_size(val.dtype) == 0)
      continue;
    int64_t n = 1;
    for (const ir::Dim& d : val.shape.dims) {
      auto it = dim_max.find(d.symbol);
      int64_t size = d.is_known() ? d.value : (it == dim_max.end() ? -1 : it->second);
      if (size < 0) {
        n = -1;
        break;
      }
      n *= size;
    }
    if (n < 0) continue;
    if (last[v] < def[v]) last[v] = def[v];  // written, never read: live at its node only
    items.push_back(
        {static_cast<int>(v), (n * static_cast<int64_t>(dtype_size(val.dtype)) + 63) / 64 * 64});
  }
  // Largest first, each at the lowest offset clear of every placed value it is live with
  // (lifetimes [def, last] inclusive: a node's inputs and outputs never share bytes).
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return a.bytes > b.bytes; });
  std::vector<Item> placed;
  for (const Item& it : items) {
    size_t a = static_cast<size_t>(it.id);
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (const Item& p : placed) {
      size_t b = static_cast<size_t>(p.id);
      if (def[a] <= last[b] && def[b] <= last[a])
        busy.emplace_back(plan.offset[b], plan.offset[b] + p.bytes);
    }
    std::sort(busy.begin(), busy.end());
    int64_t at = 0;
    for (const auto& [lo, hi] : busy) {
      if (at + it.bytes <= lo) break;
      at = std::max(at, hi);
    }
    plan.offset[a] = at;
    plan.capacity[a] = it.bytes;
    plan.total = std::max(plan.total, at + it.bytes);
    placed.push_back(it);
  }
  return plan;
}

}  // namespace gptrt::reference
