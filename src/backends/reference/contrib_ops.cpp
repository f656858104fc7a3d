// ONNX Runtime's contrib ops (domain com.microsoft) that its transformer optimizer writes into
// GPT-2 models, in float32 with double accumulation (float16 inputs are widened by run_node):
//   FastGelu(X, bias?)            tanh GELU of X + bias (bias over the last dim)
//   BiasGelu(A, B)                erf GELU of A + B
//   Gelu(X)                       erf GELU
//   QuickGelu(X), attr alpha      X * sigmoid(alpha * X) (alpha 1.702)
//   SkipLayerNormalization(input, skip, gamma, beta?, bias?) -> output, mean?, inv_std_var?,
//       input_skip_bias_sum?     LayerNorm over the last dim of input + skip + bias
//   SkipSimplifiedLayerNormalization(input, skip, gamma, bias?) -> the same outputs, RMSNorm
// A bias has the last dim's size; a skip has the input's shape or a suffix of it (broadcast
// over the leading dims).
#include <cmath>

#include "backends/reference/fused_ops.h"
#include "backends/reference/kernels.h"

namespace gptrt::reference {
namespace {

const Tensor& float32_in(const KernelCall& c, size_t i) {
  const Tensor& t = c.in(i);
  if (t.dtype() != DType::kFloat32)
    c.fail("input " + std::to_string(i) + " is " + dtype_name(t.dtype()) + ", expected float32");
  return t;
}

// Optional float32 input `i` whose element count must be `n` (a bias or gamma of the last dim),
// or whose count divides x's (a skip broadcast over leading dims) when `suffix`.
const float* vector_in(const KernelCall& c, size_t i, int64_t n, bool required) {
  const Tensor* t = c.optional(i);
  if (!t) {
    if (required) c.fail("input " + std::to_string(i) + " is required");
    return nullptr;
  }
  if (t->dtype() != DType::kFloat32 || t->numel() != n)
    c.fail("input " + std::to_string(i) + " must be float32 of " + std::to_string(n) +
           " elements, found " + dtype_name(t->dtype()) + " " + shape_str(t->shape()));
  return t->data<float>();
}

// A skip input: x's shape, or a suffix of it that repeats over the leading dims.
const float* skip_in(const KernelCall& c, size_t i, const Tensor& x, int64_t* period) {
  const Tensor& s = float32_in(c, i);
  const Shape& xs = x.shape();
  const Shape& ss = s.shape();
  bool suffix = ss.size() <= xs.size() && !ss.empty();
  for (size_t k = 0; suffix && k < ss.size(); ++k)
    suffix = ss[ss.size() - 1 - k] == xs[xs.size() - 1 - k] ||
             (ss[ss.size() - 1 - k] == 1 && k + 1 == ss.size());
  if (!suffix || s.numel() == 0 || x.numel() % s.numel() != 0)
    c.fail("skip " + shape_str(ss) + " does not broadcast to the input " + shape_str(xs));
  *period = s.numel();
  return s.data<float>();
}

int64_t last_dim(const KernelCall& c, const Tensor& x) {
  if (x.rank() == 0) c.fail("the input must not be a scalar");
  return x.shape().back();
}

std::vector<Tensor> gelu_family(const KernelCall& c, bool tanh_form) {
  const Tensor& x = float32_in(c, 0);
  int64_t h = last_dim(c, x);
  const float* bias = nullptr;
  const float* other = nullptr;
  if (c.node.op_type == "BiasGelu") {
    const Tensor& b = float32_in(c, 1);
    if (b.numel() == h)
      bias = b.data<float>();
    else if (b.shape() == x.shape())
      other = b.data<float>();
    else
      c.fail("B " + shape_str(b.shape()) + " is neither [" + std::to_string(h) + "] nor A's shape");
  } else {
    bias = vector_in(c, 1, h, false);
  }
  Tensor y(DType::kFloat32, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data<float>()[i] + (bias ? bias[i % h] : 0.f) + (other ? other[i] : 0.f);
    y.data_mut<float>()[i] = static_cast<float>(gelu(v, tanh_form));
  }
  return {y};
}

std::vector<Tensor> fast_gelu(const KernelCall& c) {
  return gelu_family(c, true);
}
std::vector<Tensor> bias_gelu(const KernelCall& c) {
  return gelu_family(c, false);
}
std::vector<Tensor> erf_gelu(const KernelCall& c) {
  return gelu_family(c, false);
}

std::vector<Tensor> quick_gelu(const KernelCall& c) {
  const Tensor& x = float32_in(c, 0);
  double alpha = c.node.attr_float("alpha", 1.702f);
  Tensor y(DType::kFloat32, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = x.data<float>()[i];
    y.data_mut<float>()[i] = static_cast<float>(v / (1.0 + std::exp(-alpha * v)));
  }
  return {y};
}

template <bool kSimplified>
std::vector<Tensor> skip_norm(const KernelCall& c) {
  const Tensor& x = float32_in(c, 0);
  int64_t h = last_dim(c, x), period = 0;
  const float* skip = skip_in(c, 1, x, &period);
  const float* gamma = vector_in(c, 2, h, true);
  const float* beta = kSimplified ? nullptr : vector_in(c, 3, h, false);
  const float* bias = vector_in(c, kSimplified ? 3 : 4, h, false);
  double eps = c.node.attr_float("epsilon", 1e-5f);
  int64_t rows = h ? x.numel() / h : 0;
  Shape stat = x.shape();
  stat.back() = 1;
  Tensor y(DType::kFloat32, x.shape()), mean_out(DType::kFloat32, stat),
      inv_out(DType::kFloat32, stat), sum_out(DType::kFloat32, x.shape());
  std::vector<double> s(static_cast<size_t>(h));
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t k = 0; k < h; ++k) {
      int64_t i = r * h + k;
      s[static_cast<size_t>(k)] =
          static_cast<double>(x.data<float>()[i]) + skip[i % period] + (bias ? bias[k] : 0.f);
      sum_out.data_mut<float>()[i] = static_cast<float>(s[static_cast<size_t>(k)]);
      mean += s[static_cast<size_t>(k)];
    }
    mean = kSimplified ? 0.0 : mean / static_cast<double>(h);
    for (int64_t k = 0; k < h; ++k)
      var += (s[static_cast<size_t>(k)] - mean) * (s[static_cast<size_t>(k)] - mean);
    double inv = 1.0 / std::sqrt(var / static_cast<double>(h) + eps);
    for (int64_t k = 0; k < h; ++k)
      y.data_mut<float>()[r * h + k] = static_cast<float>(
          (s[static_cast<size_t>(k)] - mean) * inv * gamma[k] + (beta ? beta[k] : 0.f));
    mean_out.data_mut<float>()[r] = static_cast<float>(mean);
    inv_out.data_mut<float>()[r] = static_cast<float>(inv);
  }
  return {y, mean_out, inv_out, sum_out};
}

}  // namespace

void register_contrib_ops(void (*add)(const char*, KernelFn)) {
  add("com.microsoft.FastGelu", fast_gelu);
  add("com.microsoft.BiasGelu", bias_gelu);
  add("com.microsoft.Gelu", erf_gelu);
  add("com.microsoft.QuickGelu", quick_gelu);
  add("com.microsoft.SkipLayerNormalization", skip_norm<false>);
  add("com.microsoft.SkipSimplifiedLayerNormalization", skip_norm<true>);
}

}  // namespace gptrt::reference
