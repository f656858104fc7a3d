// Graph passes, one per file. Each returns how many nodes it changed or removed.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "ir/graph.h"

namespace gptrt::passes {

/// Evaluates every node whose result is known at build time (constant inputs, shapes of
/// static dims, shape arithmetic that collapsed) and turns its outputs into constants.
int fold_constants(ir::Graph& graph);

/// Removes nodes whose outputs nobody reads and values nobody uses; renumbers values.
int eliminate_dead_code(ir::Graph& graph);

/// Replaces symbolic input dims by concrete sizes (a profile with min == max) and re-infers
/// shapes, so shape subgraphs fold away. Returns how many input dims it fixed.
int specialize_shapes(ir::Graph& graph, const std::map<std::string, Shape>& input_shapes);

}  // namespace gptrt::passes
