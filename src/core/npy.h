// NumPy .npy files: the I/O contract of `--loadInputs` and `--exportOutput`.
#pragma once

#include <string>

#include "gptrt/tensor.h"

namespace gptrt::npy {

/// Reads a C-order .npy file (float32/float64/float16/int64/int32/int8/uint8/bool).
/// Throws gptrt::Error naming the file and what is wrong with it.
Tensor read(const std::string& path);

/// Writes `tensor` as .npy; on failure leaves no file at `path`.
void write(const std::string& path, const Tensor& tensor);

}  // namespace gptrt::npy
