// Structural checks of a graph after import and after every pass.
#pragma once

#include "ir/graph.h"

namespace gptrt::ir {

/// Throws gptrt::Error (kInternal for pass bugs, kParseError for bad models) if a node reads a
/// value defined later or never, a value is defined twice, an output is undefined, or a value
/// a node reads has no dtype.
void verify(const Graph& graph);

}  // namespace gptrt::ir
