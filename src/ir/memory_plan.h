// Liveness analysis for activation arenas: where every intermediate value of a plan lives, planned
// once for the largest shapes an engine's profiles admit.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace gptrt::ir {

/// Where an activation arena puts each value: byte offset and capacity per value id (-1 for
/// values outside it: constants, graph inputs and outputs, sizes not bounded by the profiles).
struct MemoryPlan {
  std::vector<int64_t> offset, capacity;
  int64_t total = 0;  // bytes of the arena
  bool empty() const { return total == 0; }
};

/// Plans an arena for `graph`'s intermediate values at their largest shapes, given the largest
/// value of every symbolic input dimension (e.g. batch_size -> 16): values whose lifetimes
/// overlap get disjoint byte ranges (64-byte aligned). Only outputs of nodes for which
/// `writes_planned` is true are planned (other kernels may return views of their inputs, so a
/// planned value read by such a node stays reserved to the end). Values whose size is not
/// bounded by `dim_max` stay outside the plan.
MemoryPlan plan_memory(const ir::Graph& graph, const std::map<std::string, int64_t>& dim_max,
                       const std::function<bool(const ir::Node&)>& writes_planned);

}  // namespace gptrt::ir
