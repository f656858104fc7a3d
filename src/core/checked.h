// Checked size arithmetic: element counts and byte sizes that every reader (ONNX, safetensors,
// npy, engine, config) and shape inference compute from numbers a file gave. Overflow never
// wraps: it throws a gptrt::Error that names what was being sized.
#pragma once

#include <cstdint>
#include <string>

#include "gptrt/error.h"
#include "gptrt/tensor.h"

namespace gptrt::checked {

/// a * b, or an Error (code) saying `what` is too large. Both must be >= 0.
int64_t mul(int64_t a, int64_t b, const std::string& what, ErrorCode code = ErrorCode::kParseError);
/// a + b, likewise.
int64_t add(int64_t a, int64_t b, const std::string& what, ErrorCode code = ErrorCode::kParseError);
/// Elements of `shape` (every dim >= 0), or an Error naming `what`.
int64_t numel(const Shape& shape, const std::string& what, ErrorCode code = ErrorCode::kParseError);
/// Bytes of a `dtype` tensor of `shape`, or an Error naming `what`.
int64_t bytes(const Shape& shape, DType dtype, const std::string& what,
              ErrorCode code = ErrorCode::kParseError);

/// A size a user gave (an environment variable, `variable`): bytes, or a number with a K, M, G
/// or T suffix (powers of 1024; "8G", "1.5GiB", "512MB"); anything else, or less than one byte,
/// is an Error (kInvalidArgument) naming the variable and what it holds.
int64_t parse_size(const std::string& text, const std::string& variable);

}  // namespace gptrt::checked
