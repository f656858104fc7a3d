// Hugging Face's logits processors and sampling for one row, in generate()'s order.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "gptrt/generate.h"

namespace gptrt::generate {

/// Applies the repetition penalty (over `seen`), then picks greedily, or samples after
/// temperature, top-k and top-p, as Hugging Face does; `l` (one row of logits) is modified.
int64_t pick_token(std::vector<float>& l, const std::vector<int64_t>& seen,
                   const GenerationConfig& c, std::mt19937_64& rng);

}  // namespace gptrt::generate
