// AVX-512F micro-kernel: 8 rows x 16 columns in 8 named accumulators. Fewer rows reuse row 0's
// pointer and drop the extra results. Compiled with -mavx512f (CMakeLists.txt); called only
// when the CPU has it.
#include <immintrin.h>

#include "backends/cpu/gemm.h"

namespace gptrt::cpu {

void panel_kernel_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k,
                         const void* panel_bytes, const float* bias16, float* c, int64_t ldc,
                         int64_t cols, bool accumulate) {
  const auto* panel = static_cast<const float*>(panel_bytes);
  const float* xr[8];
  for (int r = 0; r < 8; ++r) xr[r] = r < rows ? x + r * ldx : x;
  __m512 init = bias16 ? _mm512_loadu_ps(bias16) : _mm512_setzero_ps();
  __mmask16 mask = static_cast<__mmask16>(cols == kPanel ? 0xffff : (1u << cols) - 1);
  __m512 c0 = init, c1 = init, c2 = init, c3 = init, c4 = init, c5 = init, c6 = init, c7 = init;
  if (accumulate) {
    __m512* acc_in[8] = {&c0, &c1, &c2, &c3, &c4, &c5, &c6, &c7};
    for (int64_t r = 0; r < rows; ++r) *acc_in[r] = _mm512_maskz_loadu_ps(mask, c + r * ldc);
  }
  const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5],
              *x6 = xr[6], *x7 = xr[7];
  for (int64_t kk = 0; kk < k; ++kk) {
    _mm_prefetch(reinterpret_cast<const char*>(panel + (kk + 64) * kPanel), _MM_HINT_T0);
    __m512 b = _mm512_loadu_ps(panel + kk * kPanel);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[kk]), b, c0);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[kk]), b, c1);
    c2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[kk]), b, c2);
    c3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[kk]), b, c3);
    c4 = _mm512_fmadd_ps(_mm512_set1_ps(x4[kk]), b, c4);
    c5 = _mm512_fmadd_ps(_mm512_set1_ps(x5[kk]), b, c5);
    c6 = _mm512_fmadd_ps(_mm512_set1_ps(x6[kk]), b, c6);
    c7 = _mm512_fmadd_ps(_mm512_set1_ps(x7[kk]), b, c7);
  }
  __m512 acc[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
  for (int64_t r = 0; r < rows; ++r) _mm512_mask_storeu_ps(c + r * ldc, mask, acc[r]);
}

}  // namespace gptrt::cpu
