#include "backends/cpu/fused_kernels.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/reference/fused_ops.h"
#include "platform/compiler.h"
#include "platform/platform.h"

// The loops below are compiled three times, for AVX-512, AVX2 and baseline x86-64, and the
// loader picks the clone this CPU runs (GCC's target_clones): the same source and operations, in
// 16, 8 or 4 lanes, with rounding (floor) an instruction rather than a libm call. (On the 2-core
// Xeon VM a 256-row forward pass spent a quarter of its time in the baseline GELU epilogue.)
// (Not under ThreadSanitizer: the loader runs the clones' resolvers before its runtime starts,
// and an instrumented resolver faults.)
// (Nor on Windows, whose loader has no ifunc: the baseline loops there.)
// (GPTRT_VECTOR_CLONES, platform/compiler.h.)

namespace gptrt::cpu {
namespace {

// e^x as 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2] (Cephes' polynomial), for x in
// [-87.3, 88.3].
GPTRT_ALWAYS_INLINE float exp_in_range(float x) {
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // n is a whole number in [-126, 127]: adding 1.5 * 2^23 puts it in the low mantissa bits.
  // (A float-to-int cast would be undefined for a NaN input, which weights from a file may
  // hold; this way NaN stays NaN.)
  uint32_t bits = (std::bit_cast<uint32_t>(n + 12582912.0f) - 0x4B400000u + 127u) << 23;
  return p * std::bit_cast<float>(bits);
}

GPTRT_ALWAYS_INLINE float exp_inline(float x) {
  return exp_in_range(std::min(std::max(x, -87.3f), 88.3f));
}

// The GELUs clamp their exponent to [-20, 20] instead: beyond, the result moves by under 3e-9 of
// x. (With the clamp at exp's limits, GCC's vector loops computed the clamped lanes' results,
// such as x / (1 + e^88.3), for every lane: subnormal for |x| < 2.6, and each such division
// took a microcode assist, 7x the loop's time.)
GPTRT_ALWAYS_INLINE float clamp20(float x) {
  return std::min(std::max(x, -20.f), 20.f);
}

GPTRT_ALWAYS_INLINE float gelu_tanh_inline(float x) {
  // 0.5 x (1 + tanh(u)) = x - x / (1 + e^{2u}), u = sqrt(2/pi) (x + 0.044715 x^3)
  float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x - x / (1.0f + exp_in_range(clamp20(2.0f * u)));
}

GPTRT_ALWAYS_INLINE float gelu_erf_inline(float x) {
  // erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7).
  float z = std::fabs(x) * 0.7071067811865476f;
  float t = 1.0f / (1.0f + 0.3275911f * z);
  float y = t * (0.254829592f +
                 t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  float erf_abs = 1.0f - y * exp_in_range(clamp20(-z * z));
  float erf = x < 0 ? -erf_abs : erf_abs;
  return 0.5f * x * (1.0f + erf);
}

}  // namespace

float exp_approx(float x) {
  return exp_inline(x);
}
float gelu_tanh_approx(float x) {
  return gelu_tanh_inline(x);
}
float gelu_erf_approx(float x) {
  return gelu_erf_inline(x);
}

namespace {

GPTRT_VECTOR_CLONES void layer_norm_range(const float* x, const float* gamma, const float* beta,
                                          float eps, float* y, int64_t r0, int64_t r1, int64_t e) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* px = x + r * e;
    float* py = y + r * e;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < e; ++k) sum += px[k];
    float mean = sum / static_cast<float>(e);
    float var = 0;
#pragma omp simd reduction(+ : var)
    for (int64_t k = 0; k < e; ++k) var += (px[k] - mean) * (px[k] - mean);
    float inv = 1.0f / std::sqrt(var / static_cast<float>(e) + eps);
#pragma omp simd
    for (int64_t k = 0; k < e; ++k) py[k] = (px[k] - mean) * inv * gamma[k] + beta[k];
  }
}

}  // namespace

void layer_norm_rows(const float* x, const float* gamma, const float* beta, float eps, float* y,
                     int64_t rows, int64_t e, ThreadPool& pool) {
  int64_t per = std::max<int64_t>(1, 8192 / std::max<int64_t>(e, 1));
  pool.parallel_for((rows + per - 1) / per, [&](int64_t t) {
    layer_norm_range(x, gamma, beta, eps, y, t * per, std::min(rows, (t + 1) * per), e);
  });
}

GPTRT_VECTOR_CLONES void gemm_epilogue(float* c, int64_t ldc, int64_t rows, int64_t cols, int act,
                                       const float* residual, int64_t ldr) {
  for (int64_t r = 0; r < rows; ++r) {
    float* pc = c + r * ldc;
    if (act == reference::kActGeluTanh) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) pc[j] = gelu_tanh_inline(pc[j]);
    } else if (act == reference::kActGeluErf) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) pc[j] = gelu_erf_inline(pc[j]);
    }
    if (residual) {
      const float* pr = residual + r * ldr;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) pc[j] += pr[j];
    }
  }
}

namespace {

// Queries [i0, i1) of row r and head h.
GPTRT_VECTOR_CLONES void attention_queries(const AttentionView& a, int64_t r, int64_t h, int64_t i0,
                                           int64_t i1, int64_t t, int64_t past, int64_t e,
                                           int64_t d, float scale, float* out) {
  std::vector<float> score(static_cast<size_t>(past + t));
  std::vector<float> acc(static_cast<size_t>(d));
  const uint8_t* valid = a.key_valid ? a.key_valid + r * a.valid_batch : nullptr;
  for (int64_t i = i0; i < i1; ++i) {
    const float* q = a.q + (r * a.q_batch + i) * a.q_row + h * d;
    int64_t keys = past + i + 1;  // causal: keys up to the query's own position
    float mx = -INFINITY;
    for (int64_t j = 0; j < keys; ++j) {
      if (valid && !valid[j]) continue;
      const float* k = a.k + (r * a.kv_batch + j) * a.kv_row + h * d;
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t u = 0; u < d; ++u) dot += q[u] * k[u];
      score[static_cast<size_t>(j)] = dot * scale;
      mx = std::max(mx, dot * scale);
    }
    float* o = out + (r * t + i) * e + h * d;
    std::fill(acc.begin(), acc.end(), 0.f);
    float sum = 0;
    if (mx > -INFINITY) {
      for (int64_t j = 0; j < keys; ++j) {
        if (valid && !valid[j]) continue;
        float w = exp_inline(score[static_cast<size_t>(j)] - mx);
        sum += w;
        const float* v = a.v + (r * a.kv_batch + j) * a.kv_row + h * d;
        float* pa = acc.data();
#pragma omp simd
        for (int64_t u = 0; u < d; ++u) pa[u] += w * v[u];
      }
    }
    float inv = sum > 0 ? 1.0f / sum : 0.f;
    for (int64_t u = 0; u < d; ++u) o[u] = acc[static_cast<size_t>(u)] * inv;
  }
}

}  // namespace

void attention_core(const AttentionView& a, int64_t b, int64_t t, int64_t past, int64_t e,
                    int64_t heads, float scale, float* out, ThreadPool& pool) {
  int64_t d = e / heads;
  // Tasks: (row, head, block of queries); a block of 16 queries shares its keys in cache.
  constexpr int64_t kQueries = 16;
  int64_t qblocks = (t + kQueries - 1) / kQueries;
#if defined(__x86_64__) || defined(_M_X64)
  const bool avx512 = platform::cpu_info().avx512f;
#else
  const bool avx512 = false;
#endif
  pool.parallel_for(b * heads * qblocks, [&](int64_t task) {
    int64_t r = task / (heads * qblocks), h = (task / qblocks) % heads, qb = task % qblocks;
    int64_t i0 = qb * kQueries, i1 = std::min(t, (qb + 1) * kQueries);
#if defined(__x86_64__) || defined(_M_X64)
    if (avx512 && attention_queries_avx512(a, r, h, i0, i1, t, past, e, d, scale, out)) return;
#endif
    attention_queries(a, r, h, i0, i1, t, past, e, d, scale, out);
  });
}

void causal_attention(const float* qkv, const uint8_t* key_valid, int64_t b, int64_t s, int64_t e,
                      int64_t heads, float scale, float* out, ThreadPool& pool) {
  AttentionView a{qkv, s, 3 * e, qkv + e, qkv + 2 * e, s, 3 * e, key_valid, s};
  attention_core(a, b, s, 0, e, heads, scale, out, pool);
}

void slot_attention(const float* qkv, const CachedSequence* seqs, int64_t n, int64_t e,
                    int64_t heads, float scale, float* out, ThreadPool& pool) {
  for (int64_t s = 0; s < n; ++s) {
    const CachedSequence& q = seqs[s];
    for (int64_t i = 0; i < q.count; ++i) {
      const float* src = qkv + (q.row + i) * 3 * e;
      std::memcpy(q.k + (q.past + i) * e, src + e, static_cast<size_t>(e) * 4);
      std::memcpy(q.v + (q.past + i) * e, src + 2 * e, static_cast<size_t>(e) * 4);
    }
  }
  // Tasks: (sequence, head, block of 16 queries), as attention_core's.
  constexpr int64_t kQueries = 16;
  std::vector<std::pair<int64_t, int64_t>> tasks;  // (sequence, first query)
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < seqs[s].count; i += kQueries) tasks.emplace_back(s, i);
  int64_t d = e / heads;
#if defined(__x86_64__) || defined(_M_X64)
  const bool avx512 = platform::cpu_info().avx512f;
#else
  const bool avx512 = false;
#endif
  pool.parallel_for(static_cast<int64_t>(tasks.size()) * heads, [&](int64_t task) {
    auto [s, i0] = tasks[static_cast<size_t>(task / heads)];
    int64_t h = task % heads;
    const CachedSequence& q = seqs[s];
    int64_t i1 = std::min(q.count, i0 + kQueries);
    AttentionView a{qkv + q.row * 3 * e, 0, 3 * e, q.k, q.v, 0, e, nullptr, 0};
    float* o = out + q.row * e;
#if defined(__x86_64__) || defined(_M_X64)
    if (avx512 && attention_queries_avx512(a, 0, h, i0, i1, q.count, q.past, e, d, scale, o))
      return;
#endif
    attention_queries(a, 0, h, i0, i1, q.count, q.past, e, d, scale, o);
  });
}

GPTRT_VECTOR_CLONES int64_t argmax(const float* x, int64_t n) {
  float top = -INFINITY;
#pragma omp simd reduction(max : top)
  for (int64_t i = 0; i < n; ++i) top = x[i] > top ? x[i] : top;
  for (int64_t i = 0; i < n; ++i)
    if (x[i] == top) return i;
  return 0;  // (NaNs only)
}

void embedding_rows(const int64_t* ids, const int64_t* pos, const float* wte, const float* wpe,
                    int64_t rows, int64_t e, float* out, ThreadPool& pool) {
  int64_t per = std::max<int64_t>(1, 16384 / std::max<int64_t>(e, 1));
  pool.parallel_for((rows + per - 1) / per, [&](int64_t t) {
    for (int64_t r = t * per; r < std::min(rows, (t + 1) * per); ++r) {
      const float* a = wte + ids[r] * e;
      const float* p = wpe + pos[r] * e;
      float* o = out + r * e;
#pragma omp simd
      for (int64_t k = 0; k < e; ++k) o[k] = a[k] + p[k];
    }
  });
}

}  // namespace gptrt::cpu
