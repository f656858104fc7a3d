// AVX-512F micro-kernels: up to 16 rows x 16 columns, FP32 or BF16 panels (BF16 widened in
// registers: it is the top half of a float32), in forms for 1, 2, 4, 8, 12 and 16 rows (the
// smallest that holds the call's rows). One row (a decode step's GEMV) keeps four accumulators over
// consecutive K instead, so that the FMAs do not wait on each other and the panel streams at
// the memory's speed. Compiled with -mavx512f (CMakeLists.txt); called only when the CPU has it.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backends/cpu/gemm.h"
#include "platform/compiler.h"

namespace gptrt::cpu {
namespace {

// Row kk of a panel as 16 floats.
template <typename W>
GPTRT_ALWAYS_INLINE __m512 panel_row(const W* panel, int64_t kk) {
  if constexpr (std::is_same_v<W, float>) {
    return _mm512_loadu_ps(panel + kk * kPanel);
  } else {
    // (The zero-masked forms: GCC 12 warns that the plain ones' undefined source is
    // uninitialised.)
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + kk * kPanel));
    const __m512i wide = _mm512_maskz_cvtepu16_epi32(0xffff, h);
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, wide, 16));
  }
}

// Ahead of the loads: 4 KiB of the panel (64 rows of FP32, 128 of BF16). (Always inlined: once
// the two-panel form called it too, GCC compiled the one-panel forms without their prefetches,
// and a 12-row LM head ran 9.0-9.4 -> 13.2-13.5 ms.)
template <typename W>
GPTRT_ALWAYS_INLINE void prefetch_ahead(const W* panel, int64_t kk) {
  constexpr int64_t kAhead = 4096 / (kPanel * sizeof(W));
  _mm_prefetch(reinterpret_cast<const char*>(panel + (kk + kAhead) * kPanel), _MM_HINT_T0);
}

// One row: four accumulators over consecutive K, so that the FMAs do not wait on each other.
// (The forms below are inlined into kernel(): called as functions, their prologues cost 3-5% at
// 96 rows, where a call runs 256 steps of K for 8 rows.)

template <typename W>
GPTRT_ALWAYS_INLINE void one_row(const float* x, int64_t k, const W* panel, __m512 init,
                                 __mmask16 mask, float* c, bool accumulate) {
  __m512 a0 = accumulate ? _mm512_maskz_loadu_ps(mask, c) : init;
  __m512 a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 4 <= k; kk += 4) {
    prefetch_ahead(panel, kk);
    a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[kk]), panel_row(panel, kk), a0);
    a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[kk + 1]), panel_row(panel, kk + 1), a1);
    a2 = _mm512_fmadd_ps(_mm512_set1_ps(x[kk + 2]), panel_row(panel, kk + 2), a2);
    a3 = _mm512_fmadd_ps(_mm512_set1_ps(x[kk + 3]), panel_row(panel, kk + 3), a3);
  }
  for (; kk < k; ++kk) a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[kk]), panel_row(panel, kk), a0);
  _mm512_mask_storeu_ps(c, mask, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// Up to 8 rows in 8 named accumulators (the blocks of a long GEMM: on the AVX-512 VM this form
// ran 2.5-5% faster at 96 rows than block<8>'s array); fewer rows reuse row 0's pointer and drop
// the extra results.
template <typename W>
GPTRT_ALWAYS_INLINE void eight_rows(const float* x, int64_t ldx, int64_t rows, int64_t k,
                                    const W* panel, __m512 init, __mmask16 mask, float* c,
                                    int64_t ldc, bool accumulate) {
  const float* xr[8];
  for (int r = 0; r < 8; ++r) xr[r] = r < rows ? x + r * ldx : x;
  __m512 c0 = init, c1 = init, c2 = init, c3 = init, c4 = init, c5 = init, c6 = init, c7 = init;
  if (accumulate) {
    __m512* acc_in[8] = {&c0, &c1, &c2, &c3, &c4, &c5, &c6, &c7};
    for (int64_t r = 0; r < rows; ++r) *acc_in[r] = _mm512_maskz_loadu_ps(mask, c + r * ldc);
  }
  const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5],
              *x6 = xr[6], *x7 = xr[7];
  for (int64_t kk = 0; kk < k; ++kk) {
    prefetch_ahead(panel, kk);
    __m512 b = panel_row(panel, kk);
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

// R rows (2, 4, 12 or 16; rows <= R of them real, the others reuse row 0 and are dropped) in R
// accumulators.
template <int R, typename W>
GPTRT_ALWAYS_INLINE void block(const float* x, int64_t ldx, int64_t rows, int64_t k, const W* panel,
                               __m512 init, __mmask16 mask, float* c, int64_t ldc,
                               bool accumulate) {
  const float* xr[R];
  __m512 acc[R];
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) {
    xr[r] = r < rows ? x + r * ldx : x;
    acc[r] = accumulate && r < rows ? _mm512_maskz_loadu_ps(mask, c + r * ldc) : init;
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    prefetch_ahead(panel, kk);
    const __m512 b = panel_row(panel, kk);
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][kk]), b, acc[r]);
  }
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r)
    if (r < rows) _mm512_mask_storeu_ps(c + r * ldc, mask, acc[r]);
}

template <typename W>
void kernel(const float* x, int64_t ldx, int64_t rows, int64_t k, const W* panel,
            const float* bias16, float* c, int64_t ldc, int64_t cols, bool accumulate) {
  const __m512 init = bias16 ? _mm512_loadu_ps(bias16) : _mm512_setzero_ps();
  const __mmask16 mask = static_cast<__mmask16>(cols == kPanel ? 0xffff : (1u << cols) - 1);
  if (rows == 1) return one_row(x, k, panel, init, mask, c, accumulate);
  if (rows <= 2) return block<2>(x, ldx, rows, k, panel, init, mask, c, ldc, accumulate);
  if (rows <= 4) return block<4>(x, ldx, rows, k, panel, init, mask, c, ldc, accumulate);
  if (rows <= 8) return eight_rows(x, ldx, rows, k, panel, init, mask, c, ldc, accumulate);
  if (rows <= 12) return block<12>(x, ldx, rows, k, panel, init, mask, c, ldc, accumulate);
  block<16>(x, ldx, rows, k, panel, init, mask, c, ldc, accumulate);
}

// The first R rows of a packed block (rows <= R real) by two panels in 2 R accumulators: per K
// step two panel loads and R broadcasts from one contiguous stream (the rows packed K-major,
// pack_pair_rows) feed 2 R FMAs. With the rows unpacked, their 12 row pointers did not fit the
// general registers and the loop reloaded two of them from the stack every step (the lab, one
// thread, everything in L1: 167 -> 175 GFLOP/s). The panels' next lines are requested only
// where asked (the first row block of a K block: the others find the slice in L1).
template <int R, bool kPrefetch>
GPTRT_ALWAYS_INLINE void two_panels(const float* xp, int64_t rows, int64_t k, const float* p0,
                                    const float* p1, __m512 init0, __m512 init1, __mmask16 mask1,
                                    float* c, int64_t ldc, bool accumulate, const float* l2,
                                    int64_t l2_every) {
  __m512 a0[R], a1[R];
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) {
    a0[r] = accumulate && r < rows ? _mm512_loadu_ps(c + r * ldc) : init0;
    a1[r] = accumulate && r < rows ? _mm512_maskz_loadu_ps(mask1, c + r * ldc + kPanel) : init1;
  }
  int64_t countdown = l2_every;
  for (int64_t kk = 0; kk < k; ++kk) {
    if constexpr (kPrefetch) {
      prefetch_ahead(p0, kk);
      prefetch_ahead(p1, kk);
    } else if (l2 && --countdown == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(l2), _MM_HINT_T1);
      l2 += kPanel;
      countdown = l2_every;
    }
    const __m512 b0 = _mm512_loadu_ps(p0 + kk * kPanel), b1 = _mm512_loadu_ps(p1 + kk * kPanel);
    const float* xk = xp + kk * kPairRows;
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(xk[r]);
      a0[r] = _mm512_fmadd_ps(xv, b0, a0[r]);
      a1[r] = _mm512_fmadd_ps(xv, b1, a1[r]);
    }
  }
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) {
    if (r < rows) {
      _mm512_storeu_ps(c + r * ldc, a0[r]);
      _mm512_mask_storeu_ps(c + r * ldc + kPanel, mask1, a1[r]);
    }
  }
}

// R rows of X times an INT8 panel over all of K: each K step's 16 weights widened in registers
// (sign-extend, convert) and multiplied by the R rows' values, four K steps in flight per row in
// separate accumulators (so that the FMAs do not wait on each other); each group's sums times
// its columns' scales added up (one group of all of K per output column: the sums times the
// scales once at the end), plus the bias.
// (U accumulators a row: 4 for up to 2 rows, 2 for 3-4, 1 beyond: 4 to 8 FMA chains.)
template <int R, int U = (R <= 2   ? 4
                          : R <= 4 ? 2
                                   : 1)>
GPTRT_ALWAYS_INLINE void int8_block(const float* x, int64_t ldx, int64_t k, const int8_t* panel,
                                    const float* scales16, int64_t group, __m512 init,
                                    __mmask16 mask, float* c, int64_t ldc, int64_t rows = R) {
  // Rows past `rows` read row 0 and are not stored.
  const float* xr[R];
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) xr[r] = x + (r < rows ? r : 0) * ldx;
  __m512 total[R];
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) total[r] = init;
  auto weights = [&](int64_t kk) {
    // (The zero-masked forms: GCC 12 warns that the plain ones' undefined source is used.)
    return _mm512_maskz_cvtepi32_ps(
        0xffff,
        _mm512_maskz_cvtepi8_epi32(
            0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(panel + kk * kPanel))));
  };
  for (int64_t g0 = 0; g0 < k; g0 += group) {
    const int64_t g1 = std::min(k, g0 + group);
    __m512 acc[R][U];
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < U; ++u) acc[r][u] = _mm512_setzero_ps();
    int64_t kk = g0;
    for (; kk + 4 <= g1; kk += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(panel + (kk + 256) * kPanel), _MM_HINT_T0);
      GPTRT_UNROLL(4)
      for (int u = 0; u < 4; ++u) {
        const __m512 w = weights(kk + u);
        GPTRT_UNROLL(16)
        for (int r = 0; r < R; ++r)
          acc[r][u % U] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][kk + u]), w, acc[r][u % U]);
      }
    }
    for (; kk < g1; ++kk) {
      const __m512 w = weights(kk);
      GPTRT_UNROLL(16)
      for (int r = 0; r < R; ++r)
        acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][kk]), w, acc[r][0]);
    }
    const __m512 scale = _mm512_loadu_ps(scales16 + g0 / group * kPanel);
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r) {
      __m512 sum = acc[r][0];
      GPTRT_UNROLL(4)
      for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[r][u]);
      total[r] = _mm512_fmadd_ps(sum, scale, total[r]);
    }
  }
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r)
    if (r < rows) _mm512_mask_storeu_ps(c + r * ldc, mask, total[r]);
}

}  // namespace

void panel_kernel_avx512_int8(const float* x, int64_t ldx, int64_t rows, int64_t k,
                              const int8_t* panel, const float* scales16, int64_t group,
                              const float* bias16, float* c, int64_t ldc, int64_t cols) {
  const __m512 init = bias16 ? _mm512_loadu_ps(bias16) : _mm512_setzero_ps();
  const __mmask16 mask = static_cast<__mmask16>(cols == kPanel ? 0xffff : (1u << cols) - 1);
  switch (rows) {
    case 1:
      return int8_block<1>(x, ldx, k, panel, scales16, group, init, mask, c, ldc);
    case 2:
      return int8_block<2>(x, ldx, k, panel, scales16, group, init, mask, c, ldc);
    case 3:
    case 4:
      return int8_block<4>(x, ldx, k, panel, scales16, group, init, mask, c, ldc, rows);
    default:
      return int8_block<8>(x, ldx, k, panel, scales16, group, init, mask, c, ldc, rows);
  }
}

void dequantize_int8_avx512(const int8_t* src, int64_t k0, int64_t k, const float* scales16,
                            int64_t group, float* dst) {
  for (int64_t kk = 0; kk < k;) {
    const int64_t g = (k0 + kk) / group, end = std::min(k, (g + 1) * group - k0);
    const __m512 scale = _mm512_loadu_ps(scales16 + g * kPanel);
    for (; kk < end; ++kk) {
      const __m512i q = _mm512_maskz_cvtepi8_epi32(
          0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + kk * kPanel)));
      _mm512_storeu_ps(dst + kk * kPanel,
                       _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xffff, q), scale));
    }
  }
}

void panel_pair_kernel_avx512(const float* xp, int64_t rows, int64_t k, const float* panel0,
                              const float* panel1, const float* bias32, float* c, int64_t ldc,
                              int64_t cols, bool accumulate, bool prefetch, const float* l2,
                              int64_t l2_every) {
  const __m512 init0 = bias32 ? _mm512_loadu_ps(bias32) : _mm512_setzero_ps();
  const __m512 init1 = bias32 ? _mm512_loadu_ps(bias32 + kPanel) : _mm512_setzero_ps();
  const int64_t cols1 = cols - kPanel;
  const __mmask16 mask1 = static_cast<__mmask16>(cols1 == kPanel ? 0xffff : (1u << cols1) - 1);
  auto run = [&](auto r, auto pf) {
    two_panels<decltype(r)::value, decltype(pf)::value>(xp, rows, k, panel0, panel1, init0, init1,
                                                        mask1, c, ldc, accumulate, l2, l2_every);
  };
  using Six = std::integral_constant<int, 6>;
  using Full = std::integral_constant<int, kPairRows>;
  if (rows <= 6) return prefetch ? run(Six{}, std::true_type{}) : run(Six{}, std::false_type{});
  prefetch ? run(Full{}, std::true_type{}) : run(Full{}, std::false_type{});
}

void pack_pair_rows(const float* x, int64_t ldx, int64_t rows, int64_t k, float* xp) {
  for (int64_t r = 0; r < kPairRows; ++r) {
    float* dst = xp + r;
    if (r >= rows) {
      for (int64_t kk = 0; kk < k; ++kk) dst[kk * kPairRows] = 0.f;
      continue;
    }
    const float* src = x + r * ldx;
    for (int64_t kk = 0; kk < k; ++kk) dst[kk * kPairRows] = src[kk];
  }
}

void panel_kernel_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k,
                         const void* panel_bytes, const float* bias16, float* c, int64_t ldc,
                         int64_t cols, bool accumulate) {
  kernel(x, ldx, rows, k, static_cast<const float*>(panel_bytes), bias16, c, ldc, cols, accumulate);
}

void panel_kernel_avx512_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k,
                              const void* panel_bytes, const float* bias16, float* c, int64_t ldc,
                              int64_t cols, bool accumulate) {
  kernel(x, ldx, rows, k, static_cast<const uint16_t*>(panel_bytes), bias16, c, ldc, cols,
         accumulate);
}

}  // namespace gptrt::cpu
