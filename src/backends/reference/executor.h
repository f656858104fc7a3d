// Runs a graph op by op with the reference kernels (the generic plan).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gptrt/tensor.h"
#include "ir/graph.h"

namespace gptrt::reference {

/// Memory planned for a node's outputs: output k may be written to data[k] (capacity[k] bytes),
/// or anywhere when data[k] is null.
struct OutputBuffers {
  std::vector<void*> data;
  std::vector<int64_t> capacity;
  /// Output k: a view of its planned memory when the shape fits, else newly allocated.
  Tensor make(size_t k, DType dtype, Shape shape) const;
};

/// Where an activation arena puts each value: byte offset and capacity per value id (-1 for
/// values outside it: constants, graph inputs and outputs, sizes not bounded by the profiles).
struct MemoryPlan {
  std::vector<int64_t> offset, capacity;
  int64_t total = 0;  // bytes of the arena
  bool empty() const { return total == 0; }
};

/// Runs a node of a backend's own domain (e.g. gptrt.PackedLinear) into `out`; the reference
/// kernels run every default-domain op.
using BackendRunner = std::function<std::vector<Tensor>(
    const ir::Node&, const std::vector<const Tensor*>&, const OutputBuffers& out)>;

/// Executes one graph; holds what it precomputes (when each value can be freed).
class Executor {
 public:
  /// With a non-empty `plan`, the executor owns an arena of plan.total bytes (reserved, touched
  /// as used) and the backend writes planned values into it: no allocation per run.
  explicit Executor(const ir::Graph& graph, BackendRunner backend = nullptr, MemoryPlan plan = {});
  /// Time spent per op type ("MatMul", "gptrt.PackedLinear") and how many calls.
  using Profile = std::map<std::string, std::pair<double, int64_t>>;
  /// Runs the graph on `inputs` (by input name); returns the graph outputs in order. With
  /// `profile`, adds each node's wall time (ms) to its op type.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs,
                          Profile* profile = nullptr) const;
  /// Bytes of the arena (0 without a plan).
  int64_t arena_bytes() const { return plan_.total; }

 private:
  const ir::Graph& graph_;
  BackendRunner backend_;
  std::vector<int> last_use_;  // per value: index of the last node reading it, -1 if none
  MemoryPlan plan_;
  std::shared_ptr<uint8_t[]> arena_;
};

/// Plans an arena for `graph`'s intermediate values at their largest shapes, given the largest
/// value of every symbolic input dimension (e.g. batch_size -> 16): values whose lifetimes
/// overlap get disjoint byte ranges (64-byte aligned). Only outputs of nodes for which
/// `writes_planned` is true are planned (other kernels may return views of their inputs, so a
/// planned value read by such a node stays reserved to the end). Values whose size is not
/// bounded by `dim_max` stay outside the plan.
MemoryPlan plan_memory(const ir::Graph& graph, const std::map<std::string, int64_t>& dim_max,
                       const std::function<bool(const ir::Node&)>& writes_planned);

}  // namespace gptrt::reference
