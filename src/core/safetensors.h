// safetensors files (Hugging Face weights, test goldens), read as views over a mapping.
#pragma once

#include <map>
#include <string>

#include "gptrt/tensor.h"

namespace gptrt::safetensors {

/// Every tensor of `path` as a view that keeps the mapping alive. Throws gptrt::Error.
std::map<std::string, Tensor> read(const std::string& path);

}  // namespace gptrt::safetensors
