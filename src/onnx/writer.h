// Writes an ir::Graph of ONNX ops as an ONNX model file (protobuf wire format): what gptrt's
// Hugging Face importer builds becomes a file ONNX Runtime runs, with no PyTorch exporter.
#pragma once

#include <string>

#include "ir/graph.h"

namespace gptrt::onnx {

/// Writes `graph` (default-domain ops only, its opset) to `path` through a temporary and a
/// rename. Constants become initializers (raw data), graph inputs and outputs value infos with
/// their symbolic dims. Throws gptrt::Error for an op outside the ONNX domain or an I/O error.
void write_model(const ir::Graph& graph, const std::string& path);

}  // namespace gptrt::onnx
