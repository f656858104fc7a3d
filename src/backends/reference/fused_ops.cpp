// The fused ops of the gptrt domain (what the passes make of a GPT-2 export), written plainly
// with double accumulation: the ground truth the CPU and CUDA kernels are tested against.
//   Embedding(ids [B,S], position_ids? [B,S] or [1,S], wte [V,E], wpe [P,E], past?) -> [B,S,E]
//       wte[id] + wpe[position]; positions are 0..S-1 when position_ids is omitted, or
//       P..P+S-1 with a past key [B,H,P,D] (a with-past export's own positions).
//   Linear(x [...,K], W [K,N] (or [N,K] with transB), bias? [N], residual? [...,N]) -> [...,N]
//       activation(x @ W + bias) + residual; activation "" | "gelu_tanh" | "gelu_erf".
//   Attention(qkv [B,S,3E], mask? [B,P+S], past_key? [B,H,P,D], past_value? [B,H,P,D])
//       -> [B,S,E], present_key? [B,H,P+S,D], present_value? [B,H,P+S,D]; attrs num_heads, scale
//       causal self-attention of each head over the past and the new keys (query i sits at
//       position P+i); keys whose mask is 0 are left out; a query with no key left (a padding
//       row) gives zeros. The presents are the past followed by the new keys and values.
//   CacheGate(past [B,H,P,D], flag bool[1]) -> past when flag, else [B,H,0,D] (a merged
//       decoder's use_cache_branch).
#include <cmath>
#include <vector>

#include "backends/reference/fused_ops.h"
#include "backends/reference/kernels.h"

namespace gptrt::reference {

double gelu(double x, bool tanh_form) {
  if (tanh_form) {
    constexpr double kC = 0.7978845608028654;  // sqrt(2 / pi)
    return 0.5 * x * (1.0 + std::tanh(kC * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}

int activation_from_name(const std::string& name) {
  if (name.empty() || name == "none") return kActNone;
  if (name == "gelu_tanh") return kActGeluTanh;
  if (name == "gelu_erf") return kActGeluErf;
  return -1;
}

namespace {

std::vector<Tensor> embedding(const KernelCall& c) {
  std::vector<int64_t> ids = c.ints(0);
  const Tensor* pos_t = c.optional(1);
  std::vector<int64_t> pos = pos_t ? c.ints(1) : std::vector<int64_t>{};
  const Tensor& wte = c.in(2);
  const Tensor& wpe = c.in(3);
  const Tensor& id_t = c.in(0);
  const Tensor* past_t = c.optional(4);
  const int64_t offset = past_t && past_t->rank() == 4 ? past_t->dim(2) : 0;
  if (id_t.rank() != 2 || wte.rank() != 2 || wpe.rank() != 2 || wte.dim(1) != wpe.dim(1) ||
      wte.dtype() != DType::kFloat32 || wpe.dtype() != DType::kFloat32)
    c.fail("needs ids [B,S] and float32 tables [V,E], [P,E]");
  int64_t b = id_t.dim(0), s = id_t.dim(1), e = wte.dim(1);
  if (pos_t &&
      !(pos_t->rank() == 2 && pos_t->dim(1) == s && (pos_t->dim(0) == b || pos_t->dim(0) == 1)))
    c.fail("position_ids " + shape_str(pos_t->shape()) + " does not match ids " +
           shape_str(id_t.shape()));
  Tensor out(DType::kFloat32, {b, s, e});
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t t = 0; t < s; ++t) {
      int64_t id = ids[static_cast<size_t>(r * s + t)];
      int64_t p =
          pos_t ? pos[static_cast<size_t>((pos_t->dim(0) == 1 ? 0 : r) * s + t)] : offset + t;
      if (id < 0 || id >= wte.dim(0))
        c.fail("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
               std::to_string(wte.dim(0)) + ")");
      if (p < 0 || p >= wpe.dim(0))
        c.fail("position " + std::to_string(p) + " is outside [0, " + std::to_string(wpe.dim(0)) +
               ")");
      const float* a = wte.data<float>() + id * e;
      const float* q = wpe.data<float>() + p * e;
      float* o = out.data_mut<float>() + (r * s + t) * e;
      for (int64_t k = 0; k < e; ++k) o[k] = a[k] + q[k];
    }
  }
  return {out};
}

std::vector<Tensor> linear(const KernelCall& c) {
  const Tensor& x = c.in(0);
  const Tensor& w = c.in(1);
  const Tensor* bias = c.optional(2);
  const Tensor* res = c.optional(3);
  bool trans_b = c.node.attr_int("transB", 0) != 0;
  int act = activation_from_name(c.node.attr_string("activation", ""));
  if (act < 0) c.fail("unknown activation '" + c.node.attr_string("activation", "") + "'");
  if (x.dtype() != DType::kFloat32 || w.dtype() != DType::kFloat32 || w.rank() != 2 || x.rank() < 1)
    c.fail("needs float32 x [...,K] and W 2-D");
  int64_t k = trans_b ? w.dim(1) : w.dim(0), n = trans_b ? w.dim(0) : w.dim(1);
  if (x.shape().back() != k)
    c.fail("x " + shape_str(x.shape()) + " does not end in K = " + std::to_string(k));
  Shape os = x.shape();
  os.back() = n;
  if (bias && bias->numel() != n)
    c.fail("bias has " + std::to_string(bias->numel()) + " elements, N = " + std::to_string(n));
  if (res && res->shape() != os)
    c.fail("residual " + shape_str(res->shape()) + " is not the output shape " + shape_str(os));
  int64_t m = x.numel() / k;
  Tensor out(DType::kFloat32, os);
  const float* px = x.data<float>();
  const float* pw = w.data<float>();
  std::vector<double> acc(static_cast<size_t>(n));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j)
      acc[static_cast<size_t>(j)] = bias ? bias->data<float>()[j] : 0.0;
    for (int64_t kk = 0; kk < k; ++kk) {
      double a = px[r * k + kk];
      if (trans_b) {
        for (int64_t j = 0; j < n; ++j) acc[static_cast<size_t>(j)] += a * pw[j * k + kk];
      } else {
        const float* row = pw + kk * n;
        for (int64_t j = 0; j < n; ++j) acc[static_cast<size_t>(j)] += a * row[j];
      }
    }
    float* o = out.data_mut<float>() + r * n;
    for (int64_t j = 0; j < n; ++j) {
      double v = acc[static_cast<size_t>(j)];
      if (act != kActNone) v = gelu(v, act == kActGeluTanh);
      if (res) v += res->data<float>()[r * n + j];
      o[j] = static_cast<float>(v);
    }
  }
  return {out};
}

std::vector<Tensor> attention(const KernelCall& c) {
  const Tensor& qkv = c.in(0);
  const Tensor* mask_t = c.optional(1);
  const Tensor* past_k = c.optional(2);
  const Tensor* past_v = c.optional(3);
  int64_t heads = c.node.attr_int("num_heads", 0);
  double scale = c.node.attr_float("scale", 0.f);
  if (qkv.dtype() != DType::kFloat32 || qkv.rank() != 3 || heads <= 0 ||
      qkv.dim(2) % (3 * heads) != 0)
    c.fail("needs float32 qkv [B,S,3E] with 3E divisible by 3 * num_heads");
  int64_t b = qkv.dim(0), s = qkv.dim(1), e = qkv.dim(2) / 3, d = e / heads;
  int64_t past = 0;
  if ((past_k == nullptr) != (past_v == nullptr)) c.fail("needs both a past key and value");
  if (past_k) {
    past = past_k->rank() == 4 ? past_k->dim(2) : -1;
    for (const Tensor* p : {past_k, past_v})
      if (p->dtype() != DType::kFloat32 || p->shape() != Shape{b, heads, past, d})
        c.fail("the past " + shape_str(p->shape()) + " is not float32 [" + std::to_string(b) +
               ", " + std::to_string(heads) + ", past, " + std::to_string(d) + "]");
  }
  const int64_t t_all = past + s;  // keys a query may see: the past, then the new ones
  std::vector<int64_t> mask;
  if (mask_t) {
    if (mask_t->shape() != Shape{b, t_all})
      c.fail("mask " + shape_str(mask_t->shape()) + " is not [B, past + S] = [" +
             std::to_string(b) + ", " + std::to_string(t_all) + "]");
    mask.resize(static_cast<size_t>(b * t_all));
    for (int64_t i = 0; i < b * t_all; ++i)
      mask[static_cast<size_t>(i)] = nonzero(*mask_t, i) ? 1 : 0;
  }
  // Keys and values of every position, [B, H, past + S, D]: the presents.
  Tensor keys(DType::kFloat32, {b, heads, t_all, d}), values(DType::kFloat32, {b, heads, t_all, d});
  const float* p = qkv.data<float>();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j < t_all; ++j)
        for (int64_t t = 0; t < d; ++t) {
          int64_t o = ((r * heads + h) * t_all + j) * d + t;
          bool old = j < past;
          keys.data_mut<float>()[o] =
              old ? past_k->data<float>()[((r * heads + h) * past + j) * d + t]
                  : p[(r * s + j - past) * 3 * e + e + h * d + t];
          values.data_mut<float>()[o] =
              old ? past_v->data<float>()[((r * heads + h) * past + j) * d + t]
                  : p[(r * s + j - past) * 3 * e + 2 * e + h * d + t];
        }
  Tensor out(DType::kFloat32, {b, s, e});
  std::vector<double> score(static_cast<size_t>(t_all));
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* kh = keys.data<float>() + (r * heads + h) * t_all * d;
      const float* vh = values.data<float>() + (r * heads + h) * t_all * d;
      for (int64_t i = 0; i < s; ++i) {
        const float* q = p + (r * s + i) * 3 * e + h * d;
        const int64_t last = past + i;
        double mx = -INFINITY;
        for (int64_t j = 0; j <= last; ++j) {
          if (mask_t && !mask[static_cast<size_t>(r * t_all + j)]) continue;
          double dot = 0;
          for (int64_t t = 0; t < d; ++t) dot += static_cast<double>(q[t]) * kh[j * d + t];
          score[static_cast<size_t>(j)] = dot * scale;
          mx = std::max(mx, score[static_cast<size_t>(j)]);
        }
        float* o = out.data_mut<float>() + (r * s + i) * e + h * d;
        std::vector<double> acc(static_cast<size_t>(d), 0.0);
        double sum = 0;
        for (int64_t j = 0; j <= last && mx > -INFINITY; ++j) {
          if (mask_t && !mask[static_cast<size_t>(r * t_all + j)]) continue;
          double w = std::exp(score[static_cast<size_t>(j)] - mx);
          sum += w;
          for (int64_t t = 0; t < d; ++t) acc[static_cast<size_t>(t)] += w * vh[j * d + t];
        }
        for (int64_t t = 0; t < d; ++t)
          o[t] = sum > 0 ? static_cast<float>(acc[static_cast<size_t>(t)] / sum) : 0.f;
      }
    }
  }
  if (!past_k) return {out};
  return {out, keys, values};
}

std::vector<Tensor> cache_gate(const KernelCall& c) {
  const Tensor& past = c.in(0);
  const Tensor& flag = c.in(1);
  if (past.rank() != 4) c.fail("the past must be 4-D, found " + shape_str(past.shape()));
  if (flag.numel() != 1) c.fail("the flag has " + std::to_string(flag.numel()) + " elements");
  if (nonzero(flag, 0)) return {past};
  return {Tensor(past.dtype(), {past.dim(0), past.dim(1), 0, past.dim(3)})};
}

}  // namespace

bool nonzero(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kInt64:
      return t.data<int64_t>()[i] != 0;
    case DType::kInt32:
      return t.data<int32_t>()[i] != 0;
    case DType::kFloat32:
      return t.data<float>()[i] != 0.f;
    case DType::kBool:
    case DType::kUInt8:
    case DType::kInt8:
      return static_cast<const uint8_t*>(t.raw())[i] != 0;
    default:
      throw Error(ErrorCode::kInvalidArgument, std::string("attention mask of dtype ") +
                                                   dtype_name(t.dtype()) + " is not supported");
  }
}

void register_fused_ops(void (*add)(const char*, KernelFn)) {
  add("gptrt.Embedding", embedding);
  add("gptrt.Linear", linear);
  add("gptrt.Attention", attention);
  add("gptrt.CacheGate", cache_gate);
}

}  // namespace gptrt::reference
