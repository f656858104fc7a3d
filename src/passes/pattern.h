// Helpers the fusion passes share: who produces and who reads each value, and constant scalars.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace gptrt::passes {

/// Producer node and reader nodes of every value of a graph (indices into graph.nodes).
struct Uses {
  std::vector<int> producer;                // -1 for inputs and constants
  std::vector<std::vector<int>> consumers;  // nodes reading the value
  std::vector<char> is_output;              // a graph output

  explicit Uses(const ir::Graph& g);
  /// The node producing value `id` if it has op type `op` (default domain), else nullptr.
  const ir::Node* producer_of(const ir::Graph& g, int id, const std::string& op) const;
  /// True when value `id` is read by exactly one node and is not a graph output.
  bool single_use(int id) const;
};

/// The value of a constant with one element (any float or integer dtype).
std::optional<double> scalar_constant(const ir::Value* v);

using ir::float_attr;
using ir::int_attr;
using ir::string_attr;

}  // namespace gptrt::passes
