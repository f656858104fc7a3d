// Runs a graph op by op with the reference kernels (the generic plan).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gptrt/tensor.h"
#include "ir/graph.h"

namespace gptrt::reference {

/// Runs a node of a backend's own domain (e.g. gptrt.PackedLinear); the reference kernels run
/// every default-domain op.
using BackendRunner =
    std::function<std::vector<Tensor>(const ir::Node&, const std::vector<const Tensor*>&)>;

/// Executes one graph; holds what it precomputes (when each value can be freed).
class Executor {
 public:
  explicit Executor(const ir::Graph& graph, BackendRunner backend = nullptr);
  /// Time spent per op type ("MatMul", "gptrt.PackedLinear") and how many calls.
  using Profile = std::map<std::string, std::pair<double, int64_t>>;
  /// Runs the graph on `inputs` (by input name); returns the graph outputs in order. With
  /// `profile`, adds each node's wall time (ms) to its op type.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs,
                          Profile* profile = nullptr) const;

 private:
  const ir::Graph& graph_;
  BackendRunner backend_;
  std::vector<int> last_use_;  // per value: index of the last node reading it, -1 if none
};

}  // namespace gptrt::reference
