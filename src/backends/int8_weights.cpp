#include "backends/int8_weights.h"

#include <algorithm>
#include <cmath>

#include "gptrt/error.h"

namespace gptrt::backends {

std::string int8_group_problem(int64_t k, int64_t group) {
  if (group == 0) return {};
  if (group < kInt8GroupStep || group % kInt8GroupStep != 0)
    return "the INT8 group size " + std::to_string(group) + " is not a positive multiple of " +
           std::to_string(kInt8GroupStep);
  if (k % group != 0)
    return "the INT8 group size " + std::to_string(group) +
           " does not divide K = " + std::to_string(k);
  return {};
}

void check_int8_group(int64_t k, int64_t group, const std::string& what) {
  if (std::string why = int8_group_problem(k, group); !why.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "--int8Group: " + why + " of " + what +
                    "; pick a multiple of 16 that divides every layer's K");
}

Int8Weights quantize_int8(const Tensor& w, bool transposed, int64_t group) {
  if (w.dtype() != DType::kFloat32 || w.rank() != 2)
    throw Error(ErrorCode::kInternal,
                "INT8 quantisation needs a 2-D float32 matrix, found " + shape_str(w.shape()));
  const int64_t k = transposed ? w.dim(1) : w.dim(0), n = transposed ? w.dim(0) : w.dim(1);
  if (std::string why = int8_group_problem(k, group); !why.empty())
    throw Error(ErrorCode::kInvalidArgument, why + "; pick a group size that divides it");
  const int64_t size = group == 0 ? k : group, groups = k / size;
  const float* src = w.data<float>();
  auto at = [&](int64_t kk, int64_t col) {
    return transposed ? src[col * k + kk] : src[kk * n + col];
  };
  Int8Weights out{Tensor(DType::kInt8, {n, k}),
                  group == 0 ? Tensor(DType::kFloat32, {n}) : Tensor(DType::kFloat32, {n, groups})};
  for (int64_t col = 0; col < n; ++col) {
    int8_t* row = out.q.data_mut<int8_t>() + col * k;
    for (int64_t g = 0; g < groups; ++g) {
      float most = 0;
      for (int64_t kk = g * size; kk < (g + 1) * size; ++kk)
        most = std::max(most, std::fabs(at(kk, col)));
      const float s = most > 0 && std::isfinite(most) ? most / 127.f : 1.f;
      out.scales.data_mut<float>()[col * groups + g] = s;
      for (int64_t kk = g * size; kk < (g + 1) * size; ++kk)
        row[kk] = static_cast<int8_t>(std::clamp(std::nearbyint(at(kk, col) / s), -127.f, 127.f));
    }
  }
  return out;
}

int64_t int8_group_of(const Shape& scales, int64_t k) {
  if (scales.size() == 1) return k;
  if (scales.size() == 2 && scales[1] > 0 && k % scales[1] == 0) return k / scales[1];
  return 0;
}

}  // namespace gptrt::backends
