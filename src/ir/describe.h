// What a graph looks like to users: its inputs, outputs, op counts and parameters, and one line
// per node (what `gptrt inspect` prints).
#pragma once

#include <string>

#include "gptrt/engine.h"
#include "ir/graph.h"

namespace gptrt::ir {

/// Inputs, outputs, op counts and parameter sizes of a graph.
ModelInfo describe_graph(const Graph& graph);
/// One line for a node: "out [shape] = domain.Op(inputs) attrs" (constants as name<shape>).
std::string describe_node(const Graph& graph, const Node& node);

}  // namespace gptrt::ir
