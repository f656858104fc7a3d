#include <vector>

#include "passes/passes.h"

namespace gptrt::passes {

int eliminate_dead_code(ir::Graph& g) {
  std::vector<char> used(g.values.size(), 0);
  for (int id : g.outputs) used[static_cast<size_t>(id)] = 1;
  std::vector<char> live(g.nodes.size(), 0);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const ir::Node& n = g.nodes[i];
    bool needed = false;
    for (int id : n.outputs) needed = needed || (id >= 0 && used[static_cast<size_t>(id)]);
    if (!needed) continue;
    live[i] = 1;
    for (int id : n.inputs) {
      if (id >= 0) used[static_cast<size_t>(id)] = 1;
    }
  }
  int removed = 0;
  std::vector<ir::Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (live[i])
      nodes.push_back(std::move(g.nodes[i]));
    else
      ++removed;
  }
  g.nodes = std::move(nodes);

  // Keep graph inputs, live node inputs/outputs; renumber.
  std::vector<char> keep(g.values.size(), 0);
  for (int id : g.inputs) keep[static_cast<size_t>(id)] = 1;
  for (int id : g.outputs) keep[static_cast<size_t>(id)] = 1;
  for (const ir::Node& n : g.nodes) {
    for (int id : n.inputs)
      if (id >= 0) keep[static_cast<size_t>(id)] = 1;
    for (int id : n.outputs)
      if (id >= 0) keep[static_cast<size_t>(id)] = 1;
  }
  std::vector<int> remap(g.values.size(), -1);
  std::vector<ir::Value> values;
  for (size_t i = 0; i < g.values.size(); ++i) {
    if (!keep[i]) continue;
    remap[i] = static_cast<int>(values.size());
    values.push_back(std::move(g.values[i]));
  }
  g.values = std::move(values);
  auto fix = [&](std::vector<int>& ids) {
    for (int& id : ids)
      if (id >= 0) id = remap[static_cast<size_t>(id)];
  };
  fix(g.inputs);
  fix(g.outputs);
  for (ir::Node& n : g.nodes) {
    fix(n.inputs);
    fix(n.outputs);
  }
  g.reindex();
  return removed;
}

}  // namespace gptrt::passes
