#include "backends/int8_weights.h"

#include <algorithm>
#include <cmath>

#include "gptrt/error.h"

namespace gptrt::backends {

Int8Weights quantize_int8(const Tensor& w, bool transposed) {
  if (w.dtype() != DType::kFloat32 || w.rank() != 2)
    throw Error(ErrorCode::kInternal,
                "INT8 quantisation needs a 2-D float32 matrix, found " + shape_str(w.shape()));
  const int64_t k = transposed ? w.dim(1) : w.dim(0), n = transposed ? w.dim(0) : w.dim(1);
  const float* src = w.data<float>();
  auto at = [&](int64_t kk, int64_t col) {
    return transposed ? src[col * k + kk] : src[kk * n + col];
  };
  Int8Weights out{Tensor(DType::kInt8, {n, k}), Tensor(DType::kFloat32, {n})};
  for (int64_t col = 0; col < n; ++col) {
    float most = 0;
    for (int64_t kk = 0; kk < k; ++kk) most = std::max(most, std::fabs(at(kk, col)));
    const float s = most > 0 && std::isfinite(most) ? most / 127.f : 1.f;
    out.scales.data_mut<float>()[col] = s;
    int8_t* row = out.q.data_mut<int8_t>() + col * k;
    for (int64_t kk = 0; kk < k; ++kk)
      row[kk] = static_cast<int8_t>(std::clamp(std::nearbyint(at(kk, col) / s), -127.f, 127.f));
  }
  return out;
}

}  // namespace gptrt::backends
