#include "ir/memory_plan.h"

#include <algorithm>

namespace gptrt::ir {

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

}  // namespace gptrt::ir
