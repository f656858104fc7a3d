// ONNX -> ir::Graph.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "platform/platform.h"

namespace gptrt::onnx {

/// An imported graph and the mappings its constants point into.
struct ImportedModel {
  ir::Graph graph;
  std::vector<std::shared_ptr<const platform::MappedFile>> files;
  /// Declared shape of each graph output (dim_param names kept), by output position.
  std::vector<ir::SymShape> declared_outputs;
};

/// Reads `path` and converts it to the IR, checking opsets, ops and types. An op gptrt cannot
/// run is an error naming the node, its op type and the opset. Throws gptrt::Error.
ImportedModel import_onnx(const std::string& path);

}  // namespace gptrt::onnx
