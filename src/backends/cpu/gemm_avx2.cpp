// AVX2 + FMA micro-kernel: 6 rows x 16 columns in 12 named accumulators (an array of them is
// spilled to the stack by GCC). Fewer rows reuse row 0's pointer and drop the extra results.
// Compiled with -mavx2 -mfma (CMakeLists.txt); called only when the CPU has both.
#include <immintrin.h>

#include <cstring>

#include "backends/cpu/gemm.h"

namespace gptrt::cpu {
namespace {

inline void store_row(float* c, __m256 lo, __m256 hi, int64_t cols) {
  if (cols == kPanel) {
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
    return;
  }
  alignas(32) float tmp[kPanel];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  std::memcpy(c, tmp, static_cast<size_t>(cols) * sizeof(float));
}

// Row r of C (cols of them) as two vectors, for accumulating over K in blocks.
inline void load_row(const float* c, int64_t cols, __m256& lo, __m256& hi) {
  if (cols == kPanel) {
    lo = _mm256_loadu_ps(c);
    hi = _mm256_loadu_ps(c + 8);
    return;
  }
  alignas(32) float tmp[kPanel] = {};
  std::memcpy(tmp, c, static_cast<size_t>(cols) * sizeof(float));
  lo = _mm256_load_ps(tmp);
  hi = _mm256_load_ps(tmp + 8);
}

// Row kk of a panel as two vectors of 8 floats (bfloat16 panels widened: bf16 is the top half
// of a float32).
template <bool kBf16>
inline void load_b(const void* panel, int64_t kk, __m256& b0, __m256& b1) {
  if constexpr (kBf16) {
    const auto* p = static_cast<const uint16_t*>(panel) + kk * kPanel;
    __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    b0 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw)), 16));
    b1 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw, 1)), 16));
  } else {
    const float* p = static_cast<const float*>(panel) + kk * kPanel;
    b0 = _mm256_loadu_ps(p);
    b1 = _mm256_loadu_ps(p + 8);
  }
}

// One row (a decode step): four independent accumulator pairs over k, so the FMAs do not wait
// on each other and the weights stream at memory speed.
template <bool kBf16>
void kernel_row(const float* x, int64_t k, const void* panel, const float* bias16, float* c,
                int64_t cols, bool accumulate) {
  constexpr int64_t kLineElems = kBf16 ? 32 : 16;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, d0 = a0, d1 = a0, e0 = a0, e1 = a0;
  if (accumulate) {
    load_row(c, cols, a0, a1);
  } else if (bias16) {
    a0 = _mm256_loadu_ps(bias16);
    a1 = _mm256_loadu_ps(bias16 + 8);
  }
  int64_t kk = 0;
  for (; kk + 4 <= k; kk += 4) {
    // The 64-byte lines of these four steps, one K block ahead.
    for (int64_t j = 0; j < 4; j += kLineElems / kPanel) {
      _mm_prefetch(static_cast<const char*>(panel) + (kk + 256 + j) * kPanel * (kBf16 ? 2 : 4),
                   _MM_HINT_T0);
    }
    __m256 w0, w1;
    load_b<kBf16>(panel, kk, w0, w1);
    __m256 v = _mm256_broadcast_ss(x + kk);
    a0 = _mm256_fmadd_ps(v, w0, a0);
    a1 = _mm256_fmadd_ps(v, w1, a1);
    load_b<kBf16>(panel, kk + 1, w0, w1);
    v = _mm256_broadcast_ss(x + kk + 1);
    b0 = _mm256_fmadd_ps(v, w0, b0);
    b1 = _mm256_fmadd_ps(v, w1, b1);
    load_b<kBf16>(panel, kk + 2, w0, w1);
    v = _mm256_broadcast_ss(x + kk + 2);
    d0 = _mm256_fmadd_ps(v, w0, d0);
    d1 = _mm256_fmadd_ps(v, w1, d1);
    load_b<kBf16>(panel, kk + 3, w0, w1);
    v = _mm256_broadcast_ss(x + kk + 3);
    e0 = _mm256_fmadd_ps(v, w0, e0);
    e1 = _mm256_fmadd_ps(v, w1, e1);
  }
  for (; kk < k; ++kk) {
    __m256 w0, w1;
    load_b<kBf16>(panel, kk, w0, w1);
    __m256 v = _mm256_broadcast_ss(x + kk);
    a0 = _mm256_fmadd_ps(v, w0, a0);
    a1 = _mm256_fmadd_ps(v, w1, a1);
  }
  store_row(c, _mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(d0, e0)),
            _mm256_add_ps(_mm256_add_ps(a1, b1), _mm256_add_ps(d1, e1)), cols);
}

template <bool kBf16>
void kernel(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
            const float* bias16, float* c, int64_t ldc, int64_t cols, bool accumulate) {
  if (rows == 1) {
    kernel_row<kBf16>(x, k, panel, bias16, c, cols, accumulate);
    return;
  }
  constexpr int64_t kLineElems = kBf16 ? 32 : 16;  // elements of a 64-byte line
  const float* x0 = x;
  const float* x1 = rows > 1 ? x + 1 * ldx : x0;
  const float* x2 = rows > 2 ? x + 2 * ldx : x0;
  const float* x3 = rows > 3 ? x + 3 * ldx : x0;
  const float* x4 = rows > 4 ? x + 4 * ldx : x0;
  const float* x5 = rows > 5 ? x + 5 * ldx : x0;
  __m256 lo = bias16 ? _mm256_loadu_ps(bias16) : _mm256_setzero_ps();
  __m256 hi = bias16 ? _mm256_loadu_ps(bias16 + 8) : _mm256_setzero_ps();
  __m256 c00 = lo, c01 = hi, c10 = lo, c11 = hi, c20 = lo, c21 = hi;
  __m256 c30 = lo, c31 = hi, c40 = lo, c41 = hi, c50 = lo, c51 = hi;
  if (accumulate) {
    load_row(c, cols, c00, c01);
    if (rows > 1) load_row(c + 1 * ldc, cols, c10, c11);
    if (rows > 2) load_row(c + 2 * ldc, cols, c20, c21);
    if (rows > 3) load_row(c + 3 * ldc, cols, c30, c31);
    if (rows > 4) load_row(c + 4 * ldc, cols, c40, c41);
    if (rows > 5) load_row(c + 5 * ldc, cols, c50, c51);
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    // One 64-byte line of the panel per step: fetch 16 KiB ahead (a whole K block; into the next
    // panel at the end, which the same task reads next) so small-M calls stream weights at memory
    // bandwidth.
    if (kk % (kLineElems / kPanel) == 0) {
      const auto* line = static_cast<const char*>(panel) + (kk + 256) * kPanel * (kBf16 ? 2 : 4);
      _mm_prefetch(line, _MM_HINT_T0);
    }
    __m256 b0, b1;
    load_b<kBf16>(panel, kk, b0, b1);
    __m256 a = _mm256_broadcast_ss(x0 + kk);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(x1 + kk);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(x2 + kk);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(x3 + kk);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(x4 + kk);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(x5 + kk);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
  }
  store_row(c, c00, c01, cols);
  if (rows > 1) store_row(c + 1 * ldc, c10, c11, cols);
  if (rows > 2) store_row(c + 2 * ldc, c20, c21, cols);
  if (rows > 3) store_row(c + 3 * ldc, c30, c31, cols);
  if (rows > 4) store_row(c + 4 * ldc, c40, c41, cols);
  if (rows > 5) store_row(c + 5 * ldc, c50, c51, cols);
}

}  // namespace

void panel_kernel_avx2(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                       const float* bias16, float* c, int64_t ldc, int64_t cols, bool accumulate) {
  kernel<false>(x, ldx, rows, k, panel, bias16, c, ldc, cols, accumulate);
}

void panel_kernel_avx2_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                            const float* bias16, float* c, int64_t ldc, int64_t cols,
                            bool accumulate) {
  kernel<true>(x, ldx, rows, k, panel, bias16, c, ldc, cols, accumulate);
}

}  // namespace gptrt::cpu
