// Hugging Face GPT-2 folder (config.json + model.safetensors) -> ir::Graph, built from the same
// ONNX ops an export has, so every pass and backend treats both alike.
#pragma once

#include <string>

#include "onnx/importer.h"

namespace gptrt::hf {

/// Reads DIR/config.json and DIR/model.safetensors (float32, float16 or bfloat16 tensors; tied or
/// untied head) and builds the GPT-2 forward: inputs input_ids and attention_mask [batch_size,
/// seq_len] (int64), output logits [batch_size, seq_len, vocab]. Throws gptrt::Error for another
/// architecture, a missing or misshapen tensor (naming it), or unreadable files.
onnx::ImportedModel import_folder(const std::string& dir);

}  // namespace gptrt::hf
