// Runs a plan op by op (the generic plan, and every plan of a backend that gives per-node
// kernels): each node on its backend's kernel, default-domain ops on the reference kernels,
// planned values in one arena, every value freed after its last use.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "gptrt/tensor.h"
#include "ir/graph.h"
#include "ir/memory_plan.h"

namespace gptrt::runtime {

/// Executes one graph; holds what it precomputes (when each value can be freed).
class Executor {
 public:
  /// `kernels` runs the nodes of a backend's own domain (null: the reference kernels run every
  /// node). With a non-empty `plan`, the executor owns an arena of plan.total bytes (reserved,
  /// touched as used) and the kernels write planned values into it: no allocation per run.
  explicit Executor(const ir::Graph& graph, backends::NodeKernels* kernels = nullptr,
                    ir::MemoryPlan plan = {});
  /// Runs the graph on `inputs` (by input name); returns the graph outputs in order. With
  /// `profile`, adds each node's wall time (ms) to its op type ("MatMul", "gptrt.PackedLinear").
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs,
                          backends::Profile* profile = nullptr) const;
  /// Bytes of the arena (0 without a plan).
  int64_t arena_bytes() const { return plan_.total; }

 private:
  const ir::Graph& graph_;
  backends::NodeKernels* kernels_;
  std::vector<int> last_use_;  // per value: index of the last node reading it, -1 if none
  ir::MemoryPlan plan_;
  std::shared_ptr<uint8_t[]> arena_;
};

}  // namespace gptrt::runtime
