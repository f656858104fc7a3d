// Synthesises a Hugging Face GPT-2 folder with seeded random weights of the real architecture,
// so benchmarks and tests need no download.
#pragma once

#include <cstdint>
#include <string>

#include "hf/gpt2_config.h"

namespace gptrt::hf {

/// Writes DIR/config.json and DIR/model.safetensors (float32, tied head, transformers' tensor
/// names and layouts). Weights: N(0, 0.02) matrices and embeddings, small random biases,
/// LayerNorm gains near 1. Deterministic for a seed. Throws gptrt::Error on I/O failure.
void make_model(const Gpt2Config& config, uint64_t seed, const std::string& dir);

}  // namespace gptrt::hf
