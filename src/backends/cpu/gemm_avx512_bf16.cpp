// AVX512-BF16 micro-kernels for BF16 panels packed as (k, k + 1) pairs (pack_weights with
// `pairs`): each 32-bit lane of a 64-byte panel row holds one column's two weights, and
// `vdpbf16ps` multiplies them by the row's two values (rounded to BF16, pair_rows) and adds both
// products to an FP32 accumulator. Per 64 bytes of weights that is one load, one broadcast and
// one instruction, where widening BF16 to FP32 takes two of each and two conversions: a one-row
// GEMV is bound by its instructions that way (on the 2-core Xeon VM, 9 against 11.4 GB/s a
// thread), and at the memory's speed this way. Compiled with -mavx512f -mavx512bf16
// (CMakeLists.txt); called only when the CPU has both.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "backends/cpu/gemm.h"
#include "core/half.h"
#include "platform/compiler.h"

namespace gptrt::cpu {
namespace {

// Pair p of a panel (its 16 columns' weights at k = 2p and 2p + 1).
GPTRT_ALWAYS_INLINE __m512bh panel_pair(const uint16_t* panel, int64_t p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(panel + p * 2 * kPanel));
}
// Row value pair p, in every lane.
GPTRT_ALWAYS_INLINE __m512bh row_pair(const uint32_t* x, int64_t p) {
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(x[p])));
}
// Ahead of the loads: 4 KiB of the panel (64 pairs).
GPTRT_ALWAYS_INLINE void prefetch_pairs(const uint16_t* panel, int64_t p) {
  _mm_prefetch(reinterpret_cast<const char*>(panel + (p + 64) * 2 * kPanel), _MM_HINT_T0);
}

// One row: four accumulators over consecutive pairs, so that the dot products do not wait on
// each other.
GPTRT_ALWAYS_INLINE void one_row(const uint32_t* x, int64_t pairs, const uint16_t* panel,
                                 __m512 init, __mmask16 mask, float* c, bool accumulate) {
  __m512 a0 = accumulate ? _mm512_maskz_loadu_ps(mask, c) : init;
  __m512 a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 4 <= pairs; p += 4) {
    prefetch_pairs(panel, p);
    a0 = _mm512_dpbf16_ps(a0, row_pair(x, p), panel_pair(panel, p));
    a1 = _mm512_dpbf16_ps(a1, row_pair(x, p + 1), panel_pair(panel, p + 1));
    a2 = _mm512_dpbf16_ps(a2, row_pair(x, p + 2), panel_pair(panel, p + 2));
    a3 = _mm512_dpbf16_ps(a3, row_pair(x, p + 3), panel_pair(panel, p + 3));
  }
  for (; p < pairs; ++p) a0 = _mm512_dpbf16_ps(a0, row_pair(x, p), panel_pair(panel, p));
  _mm512_mask_storeu_ps(c, mask, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// The R rows' pointers (rows <= R of them real, the others reuse row 0 and are dropped) and
// accumulators (C's tile, or the bias), and the real rows' stores.
template <int R, typename X>
GPTRT_ALWAYS_INLINE void start_rows(const X* x, int64_t ldx, int64_t rows, __m512 init,
                                    __mmask16 mask, const float* c, int64_t ldc, bool accumulate,
                                    const X* (&xr)[R], __m512 (&acc)[R]) {
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) {
    xr[r] = r < rows ? x + r * ldx : x;
    acc[r] = accumulate && r < rows ? _mm512_maskz_loadu_ps(mask, c + r * ldc) : init;
  }
}
template <int R>
GPTRT_ALWAYS_INLINE void store_rows(int64_t rows, __mmask16 mask, float* c, int64_t ldc,
                                    const __m512 (&acc)[R]) {
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r)
    if (r < rows) _mm512_mask_storeu_ps(c + r * ldc, mask, acc[r]);
}

// R rows in R accumulators, on dot products.
template <int R>
GPTRT_ALWAYS_INLINE void block(const uint32_t* x, int64_t ldx, int64_t rows, int64_t pairs,
                               const uint16_t* panel, __m512 init, __mmask16 mask, float* c,
                               int64_t ldc, bool accumulate) {
  const uint32_t* xr[R];
  __m512 acc[R];
  start_rows<R>(x, ldx, rows, init, mask, c, ldc, accumulate, xr, acc);
  for (int64_t p = 0; p < pairs; ++p) {
    prefetch_pairs(panel, p);
    const __m512bh b = panel_pair(panel, p);
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r) acc[r] = _mm512_dpbf16_ps(acc[r], row_pair(xr[r], p), b);
  }
  store_rows<R>(rows, mask, c, ldc, acc);
}

// R rows (2 <= rows <= R) of FP32 X times a pair-packed panel, the weights widened in registers
// (k = 2p from a lane's low half, 2p + 1 from its high half): the FMAs of the BF16 forms of
// gemm_avx512.cpp in the same order, for row counts where the FMAs, not the memory, set the pace.
template <int R>
GPTRT_ALWAYS_INLINE void widened_block(const float* x, int64_t ldx, int64_t rows, int64_t pairs,
                                       const uint16_t* panel, __m512 init, __mmask16 mask, float* c,
                                       int64_t ldc, bool accumulate) {
  const float* xr[R];
  __m512 acc[R];
  start_rows<R>(x, ldx, rows, init, mask, c, ldc, accumulate, xr, acc);
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t p = 0; p < pairs; ++p) {
    prefetch_pairs(panel, p);
    const __m512i v = _mm512_loadu_si512(panel + p * 2 * kPanel);
    const __m512 b0 = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, v, 16));
    const __m512 b1 = _mm512_castsi512_ps(_mm512_and_si512(v, high));
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][2 * p]), b0, acc[r]);
    GPTRT_UNROLL(16)
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][2 * p + 1]), b1, acc[r]);
  }
  store_rows<R>(rows, mask, c, ldc, acc);
}

// The first R rows of a packed block of BF16 pairs (rows <= R real; pack_pair_rows_bf16) by two
// pair-packed panels (or one: kTwo false) in 2 R accumulators: per pair step two panel loads and
// R broadcasts from one contiguous stream feed 2 R dot products, each adding two K steps' products
// for 16 columns (the FP32 two-panel kernel's 2 R FMAs add one). Prefetching as there.
template <int R, bool kTwo, bool kPrefetch>
GPTRT_ALWAYS_INLINE void two_panel_dots(const uint32_t* xp, int64_t rows, int64_t pairs,
                                        const uint16_t* p0, const uint16_t* p1, __m512 init0,
                                        __m512 init1, __mmask16 mask0, __mmask16 mask1, float* c,
                                        int64_t ldc, bool accumulate, const float* l2,
                                        int64_t l2_every) {
  __m512 a0[R], a1[R];
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) {
    a0[r] = accumulate && r < rows ? _mm512_maskz_loadu_ps(mask0, c + r * ldc) : init0;
    if constexpr (kTwo)
      a1[r] = accumulate && r < rows ? _mm512_maskz_loadu_ps(mask1, c + r * ldc + kPanel) : init1;
  }
  int64_t countdown = l2_every;
  for (int64_t p = 0; p < pairs; ++p) {
    if constexpr (kPrefetch) {
      prefetch_pairs(p0, p);
      if constexpr (kTwo) prefetch_pairs(p1, p);
    } else if (l2 && --countdown == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(l2), _MM_HINT_T1);
      l2 += kPanel;
      countdown = l2_every;
    }
    const __m512bh b0 = panel_pair(p0, p);
    const uint32_t* xk = xp + p * kPairRows;
    if constexpr (kTwo) {
      const __m512bh b1 = panel_pair(p1, p);
      GPTRT_UNROLL(16)
      for (int r = 0; r < R; ++r) {
        const __m512bh xv = row_pair(xk, r);
        a0[r] = _mm512_dpbf16_ps(a0[r], xv, b0);
        a1[r] = _mm512_dpbf16_ps(a1[r], xv, b1);
      }
    } else {
      GPTRT_UNROLL(16)
      for (int r = 0; r < R; ++r) a0[r] = _mm512_dpbf16_ps(a0[r], row_pair(xk, r), b0);
    }
  }
  GPTRT_UNROLL(16)
  for (int r = 0; r < R; ++r) {
    if (r < rows) {
      _mm512_mask_storeu_ps(c + r * ldc, mask0, a0[r]);
      if constexpr (kTwo) _mm512_mask_storeu_ps(c + r * ldc + kPanel, mask1, a1[r]);
    }
  }
}

}  // namespace

void panel_pair_kernel_avx512_dots(const uint32_t* xp, int64_t rows, int64_t k, const void* panel0,
                                   const void* panel1, const float* bias32, float* c, int64_t ldc,
                                   int64_t cols, bool accumulate, bool prefetch, const float* l2,
                                   int64_t l2_every) {
  const auto* p0 = static_cast<const uint16_t*>(panel0);
  const auto* p1 = static_cast<const uint16_t*>(panel1);
  const bool two = p1 != nullptr;
  const __m512 init0 = bias32 ? _mm512_loadu_ps(bias32) : _mm512_setzero_ps();
  const __m512 init1 = bias32 && two ? _mm512_loadu_ps(bias32 + kPanel) : _mm512_setzero_ps();
  auto mask_of = [](int64_t n) {
    return static_cast<__mmask16>(n >= kPanel ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
  };
  const __mmask16 mask0 = mask_of(cols), mask1 = mask_of(cols - kPanel);
  auto run = [&](auto r, auto t, auto pf) {
    two_panel_dots<decltype(r)::value, decltype(t)::value, decltype(pf)::value>(
        xp, rows, k / 2, p0, p1, init0, init1, mask0, mask1, c, ldc, accumulate, l2, l2_every);
  };
  using Six = std::integral_constant<int, 6>;
  using Full = std::integral_constant<int, kPairRows>;
  using Y = std::true_type;
  using N = std::false_type;
  if (rows <= 6) {
    if (two) return prefetch ? run(Six{}, Y{}, Y{}) : run(Six{}, Y{}, N{});
    return prefetch ? run(Six{}, N{}, Y{}) : run(Six{}, N{}, N{});
  }
  if (two) return prefetch ? run(Full{}, Y{}, Y{}) : run(Full{}, Y{}, N{});
  prefetch ? run(Full{}, N{}, Y{}) : run(Full{}, N{}, N{});
}

void pack_pair_rows_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k2,
                         uint32_t* xp) {
  for (int64_t r = 0; r < kPairRows; ++r) {
    uint32_t* dst = xp + r;
    const float* src = x + r * ldx;
    for (int64_t p = 0; p < k2 / 2; ++p) {
      uint32_t lo = 0, hi = 0;
      if (r < rows) {
        lo = float_to_bf16(src[2 * p]);
        hi = 2 * p + 1 < k ? float_to_bf16(src[2 * p + 1]) : 0;
      }
      dst[p * kPairRows] = lo | (hi << 16);
    }
  }
}

void panel_kernel_avx512_pairs_widened(const float* x, int64_t ldx, int64_t rows, int64_t k,
                                       const void* panel_bytes, const float* bias16, float* c,
                                       int64_t ldc, int64_t cols, bool accumulate) {
  const auto* panel = static_cast<const uint16_t*>(panel_bytes);
  const int64_t pairs = k / 2;
  const __m512 init = bias16 ? _mm512_loadu_ps(bias16) : _mm512_setzero_ps();
  const __mmask16 mask = static_cast<__mmask16>(cols == kPanel ? 0xffff : (1u << cols) - 1);
  if (rows <= 4)
    return widened_block<4>(x, ldx, rows, pairs, panel, init, mask, c, ldc, accumulate);
  if (rows <= 8)
    return widened_block<8>(x, ldx, rows, pairs, panel, init, mask, c, ldc, accumulate);
  if (rows <= 12)
    return widened_block<12>(x, ldx, rows, pairs, panel, init, mask, c, ldc, accumulate);
  widened_block<16>(x, ldx, rows, pairs, panel, init, mask, c, ldc, accumulate);
}

void widen_pairs(const uint16_t* src, int64_t pairs, float* dst) {
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512i v = _mm512_loadu_si512(src + p * 2 * kPanel);
    _mm512_storeu_ps(dst + 2 * p * kPanel,
                     _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xffff, v, 16)));
    _mm512_storeu_ps(dst + (2 * p + 1) * kPanel, _mm512_castsi512_ps(_mm512_and_si512(v, high)));
  }
}

void pair_rows(const float* x, int64_t m, int64_t k, int64_t k2, uint16_t* out) {
  for (int64_t r = 0; r < m; ++r) {
    const float* src = x + r * k;
    uint16_t* dst = out + r * k2;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {  // (cvtne2ps_pbh(a, b): b's 16 values, then a's)
      const __m512bh v =
          _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
      _mm512_storeu_si512(dst + i, reinterpret_cast<__m512i>(v));
    }
    for (; i < k; ++i) dst[i] = float_to_bf16(src[i]);
    for (; i < k2; ++i) dst[i] = 0;  // (the panel's pad row is zero too)
  }
}

void panel_kernel_avx512_pairs(const float* x, int64_t ldx, int64_t rows, int64_t k,
                               const void* panel_bytes, const float* bias16, float* c, int64_t ldc,
                               int64_t cols, bool accumulate) {
  const auto* xp = reinterpret_cast<const uint32_t*>(x);
  const auto* panel = static_cast<const uint16_t*>(panel_bytes);
  const int64_t pairs = k / 2;
  const __m512 init = bias16 ? _mm512_loadu_ps(bias16) : _mm512_setzero_ps();
  const __mmask16 mask = static_cast<__mmask16>(cols == kPanel ? 0xffff : (1u << cols) - 1);
  if (rows == 1) return one_row(xp, pairs, panel, init, mask, c, accumulate);
  if (rows <= 2) return block<2>(xp, ldx, rows, pairs, panel, init, mask, c, ldc, accumulate);
  block<4>(xp, ldx, rows, pairs, panel, init, mask, c, ldc, accumulate);
}

}  // namespace gptrt::cpu
