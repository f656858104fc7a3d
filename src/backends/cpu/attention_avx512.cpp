// AVX-512F attention for heads of 16, 32, 64 or 128 (attention_core takes it where the CPU has
// AVX-512): a query's head in V registers, each key's score one product of V vectors and one
// horizontal sum, the weights e^(s - max) 16 at a time, and the values summed into V registers.
// The portable loop of fused_kernels.cpp kept its sums in memory and added each key's 16 lanes
// one after another through the stack (a 900-token context took a BF16 decode step from 7.7 to
// 11.8 ms). Compiled with -mavx512f (CMakeLists.txt); called only when the CPU has it.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "backends/cpu/fused_kernels.h"
#include "platform/compiler.h"

namespace gptrt::cpu {
namespace {

// (The zero-masked forms of the intrinsics: GCC 12 warns that the plain ones' undefined source
// is uninitialised.)
constexpr __mmask16 kAll = 0xffff;

// The sum of 16 lanes.
GPTRT_ALWAYS_INLINE float sum16(__m512 v) {
  v = _mm512_add_ps(
      v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));  // 256-bit halves
  v = _mm512_add_ps(
      v, _mm512_maskz_shuffle_f32x4(kAll, v, v, _MM_SHUFFLE(2, 3, 0, 1)));  // 128-bit quarters
  __m128 s4 = _mm512_maskz_extractf32x4_ps(0xf, v, 0);
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
  return _mm_cvtss_f32(s4);
}

// e^x for 16 lanes: the polynomial of fused_kernels.cpp's exp_inline, x clamped to
// [-87.3, 88.3], 2^n applied by vscalefps.
GPTRT_ALWAYS_INLINE __m512 exp16(__m512 x) {
  x = _mm512_maskz_max_ps(kAll, _mm512_maskz_min_ps(kAll, x, _mm512_set1_ps(88.3f)),
                          _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_maskz_roundscale_ps(
      kAll, _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
      _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(kAll, p, n);
}

template <int V>
void queries(const AttentionView& a, int64_t r, int64_t h, int64_t i0, int64_t i1, int64_t t,
             int64_t past, int64_t e, float scale, float* out) {
  constexpr int64_t d = 16 * V;
  thread_local std::vector<float> weight;  // a query's scores, then its weights (kept)
  weight.resize(static_cast<size_t>(past + t + 16));
  float* w = weight.data();
  const uint8_t* valid = a.key_valid ? a.key_valid + r * a.valid_batch : nullptr;
  for (int64_t i = i0; i < i1; ++i) {
    const float* q = a.q + (r * a.q_batch + i) * a.q_row + h * d;
    __m512 qv[V];
    GPTRT_UNROLL(8)
    for (int u = 0; u < V; ++u) qv[u] = _mm512_loadu_ps(q + 16 * u);
    const int64_t keys = past + i + 1;  // causal: keys up to the query's own position
    float mx = -INFINITY;
    for (int64_t j = 0; j < keys; ++j) {
      if (valid && !valid[j]) {
        w[j] = -INFINITY;
        continue;
      }
      const float* k = a.k + (r * a.kv_batch + j) * a.kv_row + h * d;
      __m512 dot = _mm512_mul_ps(qv[0], _mm512_loadu_ps(k));
      GPTRT_UNROLL(8)
      for (int u = 1; u < V; ++u) dot = _mm512_fmadd_ps(qv[u], _mm512_loadu_ps(k + 16 * u), dot);
      const float s = sum16(dot) * scale;
      w[j] = s;
      mx = s > mx ? s : mx;
    }
    float* o = out + (r * t + i) * e + h * d;
    if (mx == -INFINITY) {  // no valid key: zeros
      for (int64_t u = 0; u < d; ++u) o[u] = 0.f;
      continue;
    }
    __m512 total = _mm512_setzero_ps();
    const __m512 top = _mm512_set1_ps(mx), masked = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < keys; j += 16) {
      const __mmask16 in = static_cast<__mmask16>(j + 16 <= keys ? 0xffff : (1u << (keys - j)) - 1);
      const __m512 s = _mm512_maskz_loadu_ps(in, w + j);
      const __mmask16 live = _mm512_mask_cmp_ps_mask(in, s, masked, _CMP_NEQ_OQ);
      const __m512 p = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(s, top)));
      _mm512_mask_storeu_ps(w + j, in, p);
      total = _mm512_add_ps(total, p);
    }
    __m512 acc[V];
    GPTRT_UNROLL(8)
    for (int u = 0; u < V; ++u) acc[u] = _mm512_setzero_ps();
    for (int64_t j = 0; j < keys; ++j) {
      if (w[j] == 0.f) continue;  // masked (or e^(s - max) below FP32's range)
      const float* v = a.v + (r * a.kv_batch + j) * a.kv_row + h * d;
      const __m512 wj = _mm512_set1_ps(w[j]);
      GPTRT_UNROLL(8)
      for (int u = 0; u < V; ++u) acc[u] = _mm512_fmadd_ps(wj, _mm512_loadu_ps(v + 16 * u), acc[u]);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / sum16(total));
    GPTRT_UNROLL(8)
    for (int u = 0; u < V; ++u) _mm512_storeu_ps(o + 16 * u, _mm512_mul_ps(acc[u], inv));
  }
}

}  // namespace

bool attention_queries_avx512(const AttentionView& a, int64_t r, int64_t h, int64_t i0, int64_t i1,
                              int64_t t, int64_t past, int64_t e, int64_t d, float scale,
                              float* out) {
  // One instantiation per head size of 16 * V (V registers a head).
  using Queries = void (*)(const AttentionView&, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, float, float*);
  const Queries run = d == 16    ? queries<1>
                      : d == 32  ? queries<2>
                      : d == 64  ? queries<4>
                      : d == 128 ? queries<8>
                                 : nullptr;
  if (!run) return false;
  run(a, r, h, i0, i1, t, past, e, scale, out);
  return true;
}

}  // namespace gptrt::cpu
