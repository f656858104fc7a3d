// INT8 weights, as every backend stores them: symmetric, one scale per output column, or per
// output column and group of K values.
#pragma once

#include <cstdint>
#include <string>

#include "gptrt/tensor.h"

namespace gptrt::backends {

/// A weight matrix in INT8: `q` [N, K] (row j holds output column j's K weights), `scales` [N]
/// (one per output column) or [N, K / G] (groups of G weights along K);
/// w[k][j] ~ q[j][k] * scales[j][k / G].
struct Int8Weights {
  Tensor q;
  Tensor scales;
};

/// The smallest group size gptrt takes (every group a whole number of 16-value steps).
constexpr int64_t kInt8GroupStep = 16;

/// Empty when `group` (0: per output column) can quantise a weight of K `k`; otherwise why not
/// (the group must be a positive multiple of kInt8GroupStep that divides K).
std::string int8_group_problem(int64_t k, int64_t group);

/// Throws kInvalidArgument naming `what` (the layer) when int8_group_problem refuses `group` for
/// its K: what both backends' lowerings say to a bad --int8Group.
void check_int8_group(int64_t k, int64_t group, const std::string& what);

/// Quantises float32 `w` ([K, N], or [N, K] when `transposed`) per output column j and group of
/// `group` K values (0: all of K): scale s = max |w| / 127 over the group (1 for a group of zeros
/// or one holding a non-finite value), q = w / s rounded to nearest, clamped to [-127, 127].
/// Throws kInternal for anything but a 2-D float32 matrix, kInvalidArgument for a group that
/// int8_group_problem refuses.
Int8Weights quantize_int8(const Tensor& w, bool transposed, int64_t group = 0);

/// The group size that `scales` ([N] or [N, groups]) implies for K `k`: k for [N], k / groups
/// for [N, groups]; 0 when the shape fits neither (N is not checked).
int64_t int8_group_of(const Shape& scales, int64_t k);

}  // namespace gptrt::backends
