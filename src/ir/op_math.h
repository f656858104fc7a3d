// Index arithmetic shared by shape inference and the kernels, so both agree exactly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace gptrt::ir {

/// ONNX Slice: clamps a start (is_end=false) or end index into the valid range for `step`.
inline int64_t clamp_slice_index(int64_t v, int64_t dim, bool is_end, int64_t step) {
  if (v < 0) v += dim;
  if (step > 0) return std::clamp<int64_t>(v, 0, dim);
  return is_end ? std::clamp<int64_t>(v, -1, dim - 1) : std::clamp<int64_t>(v, 0, dim - 1);
}

/// Number of elements a Slice with clamped bounds selects. The step is first bounded by the
/// dimension's size (a longer step selects the same single element), so nothing overflows for
/// any int64 step a file gives.
inline int64_t slice_length(int64_t start, int64_t end, int64_t step) {
  const int64_t span = std::max<int64_t>(std::abs(end - start), 1);
  if (step > span) step = span;
  if (step < -span) step = -span;
  int64_t len = step > 0 ? (end - start + step - 1) / step : (start - end - step - 1) / (-step);
  return std::max<int64_t>(0, len);
}

/// A Slice step bounded to +-max(dim, 1): the same selection, and stride * step cannot overflow.
inline int64_t bounded_slice_step(int64_t step, int64_t dim) {
  const int64_t limit = std::max<int64_t>(dim, 1);
  return std::clamp<int64_t>(step, -limit, limit);
}

}  // namespace gptrt::ir
