// INT8 weights, as every backend stores them: symmetric, one scale per output column.
#pragma once

#include "gptrt/tensor.h"

namespace gptrt::backends {

/// A weight matrix in INT8: `q` [N, K] (row j holds output column j's K weights), `scales` [N];
/// w[k][j] ~ q[j][k] * scales[j].
struct Int8Weights {
  Tensor q;
  Tensor scales;
};

/// Quantises float32 `w` ([K, N], or [N, K] when `transposed`) per output column j: scale s_j =
/// max_k |w_kj| / 127 (1 for a column of zeros or one holding a non-finite value), q = w / s_j
/// rounded to nearest, clamped to [-127, 127]. Throws kInternal for anything but a 2-D float32
/// matrix.
Int8Weights quantize_int8(const Tensor& w, bool transposed);

}  // namespace gptrt::backends
