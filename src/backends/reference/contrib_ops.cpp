// ONNX Runtime's contrib ops (domain com.microsoft) that its transformer optimizer writes into
// GPT-2 models, in float32 with double accumulation (float16 inputs are widened by run_node):
//   FastGelu(X, bias?)            tanh GELU of X + bias (bias over the last dim)
//   BiasGelu(A, B)                erf GELU of A + B
//   Gelu(X)                       erf GELU
//   QuickGelu(X), attr alpha      X * sigmoid(alpha * X) (alpha 1.702)
//   SkipLayerNormalization(input, skip, gamma, beta?, bias?) -> output, mean?, inv_std_var?,
//       input_skip_bias_sum?     LayerNorm over the last dim of input + skip + bias
//   SkipSimplifiedLayerNormalization(input, skip, gamma, bias?) -> the same outputs, RMSNorm
//   Attention(input [B,S,C], weights [C,3H], bias? [3H], mask_index? [B,S] int32 0/1) ->
//       output [B,S,H], present? [2,B,heads,S,H/heads]; attrs num_heads, unidirectional, scale,
//       mask_filter_value: self-attention with the projections inside; masked keys get
//       mask_filter_value (-10000) added and (with unidirectional) future keys are left out, as
//       ONNX Runtime does.
//       Past state, other mask forms and attention_bias are refused by name.
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

std::vector<Tensor> attention(const KernelCall& c) {
  const Tensor& x = float32_in(c, 0);
  const Tensor& w = float32_in(c, 1);
  if (x.rank() != 3 || w.rank() != 2 || w.dim(0) != x.dim(2) || w.dim(1) % 3 != 0)
    c.fail("needs input [B,S,C] and weights [C,3H], found " + shape_str(x.shape()) + " and " +
           shape_str(w.shape()));
  for (size_t i = 4; i < c.inputs.size(); ++i)
    if (c.inputs[i])
      c.fail(std::string("input ") + std::to_string(i) +
             (i == 4   ? " (past)"
              : i == 5 ? " (attention_bias)"
                       : "") +
             " is not supported; export without past state (gptrt keeps its own KV cache)");
  if (!c.node.attr_ints("qkv_hidden_sizes").empty()) {
    auto q = c.node.attr_ints("qkv_hidden_sizes");
    if (q.size() != 3 || q[0] != q[1] || q[1] != q[2] || q[0] * 3 != w.dim(1))
      c.fail("qkv_hidden_sizes other than three equal parts are not supported");
  }
  const int64_t b = x.dim(0), s = x.dim(1), cin = x.dim(2), h = w.dim(1) / 3;
  const int64_t heads = c.node.attr_int("num_heads", 0);
  if (heads < 1 || h % heads != 0)
    c.fail("num_heads " + std::to_string(heads) + " does not divide the hidden size " +
           std::to_string(h));
  const int64_t d = h / heads;
  const float* bias = vector_in(c, 2, 3 * h, false);
  const Tensor* mask = c.optional(3);
  if (mask && !(mask->rank() == 2 && mask->dim(0) == b && mask->dim(1) == s &&
                (mask->dtype() == DType::kInt32 || mask->dtype() == DType::kInt64)))
    c.fail("mask_index " + shape_str(mask->shape()) +
           " is not a 0/1 mask [batch, sequence]; other mask forms are not supported");
  const bool causal = c.node.attr_int("unidirectional", 0) != 0;
  const double filter = c.node.attr_float("mask_filter_value", -10000.f);
  const double scale = c.node.attr_float("scale", 0.f) > 0 ? c.node.attr_float("scale", 0.f)
                                                           : 1.0 / std::sqrt(double(d));
  // qkv [B, S, 3H] = x @ W + bias.
  std::vector<double> qkv(static_cast<size_t>(b * s * 3 * h));
  for (int64_t r = 0; r < b * s; ++r)
    for (int64_t j = 0; j < 3 * h; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < cin; ++k)
        acc += double(x.data<float>()[r * cin + k]) * w.data<float>()[k * 3 * h + j];
      qkv[static_cast<size_t>(r * 3 * h + j)] = acc;
    }
  auto at = [&](int64_t r, int64_t t, int part, int64_t hd, int64_t k) {
    return qkv[static_cast<size_t>(((r * s + t) * 3 + part) * h + hd * d + k)];
  };
  Tensor out(DType::kFloat32, {b, s, h});
  Tensor present(DType::kFloat32, {2, b, heads, s, d});
  std::vector<double> score(static_cast<size_t>(s));
  for (int64_t r = 0; r < b; ++r)
    for (int64_t hd = 0; hd < heads; ++hd) {
      for (int64_t t = 0; t < s; ++t)
        for (int64_t k = 0; k < d; ++k) {
          present.data_mut<float>()[(((0 * b + r) * heads + hd) * s + t) * d + k] =
              static_cast<float>(at(r, t, 1, hd, k));
          present.data_mut<float>()[(((1 * b + r) * heads + hd) * s + t) * d + k] =
              static_cast<float>(at(r, t, 2, hd, k));
        }
      for (int64_t i = 0; i < s; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < s; ++j) {
          double dot = 0;
          for (int64_t k = 0; k < d; ++k) dot += at(r, i, 0, hd, k) * at(r, j, 1, hd, k);
          double v = dot * scale;
          // Masked: the filter value added in float32, as ONNX Runtime does (at -10000 a
          // float32 score keeps ~3 decimals: rows whose keys are all masked follow that).
          if (mask && !nonzero(*mask, r * s + j))
            v = static_cast<float>(static_cast<float>(v) + static_cast<float>(filter));
          if (causal && j > i) v = -INFINITY;  // future keys are left out, not penalised
          score[static_cast<size_t>(j)] = v;
          mx = std::max(mx, v);
        }
        double sum = 0;
        for (int64_t j = 0; j < s; ++j) sum += std::exp(score[static_cast<size_t>(j)] - mx);
        for (int64_t k = 0; k < d; ++k) {
          double acc = 0;
          for (int64_t j = 0; j < s; ++j)
            acc += std::exp(score[static_cast<size_t>(j)] - mx) / sum * at(r, j, 2, hd, k);
          out.data_mut<float>()[(r * s + i) * h + hd * d + k] = static_cast<float>(acc);
        }
      }
    }
  return {out, present};
}

}  // namespace

void register_contrib_ops(void (*add)(const char*, KernelFn)) {
  add("com.microsoft.Attention", attention);
  add("com.microsoft.FastGelu", fast_gelu);
  add("com.microsoft.BiasGelu", bias_gelu);
  add("com.microsoft.Gelu", erf_gelu);
  add("com.microsoft.QuickGelu", quick_gelu);
  add("com.microsoft.SkipLayerNormalization", skip_norm<false>);
  add("com.microsoft.SkipSimplifiedLayerNormalization", skip_norm<true>);
}

}  // namespace gptrt::reference
