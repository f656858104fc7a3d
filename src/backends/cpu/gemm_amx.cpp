// AMX-BF16 GEMM (kAmxBf16) of X against pair-packed BF16 panels, for every row count: even a
// decode step's single row reads its weights faster through tile loads than through the
// vdpbf16ps GEMV.
// A tile register holds 16 rows of 64 bytes. X's rows, rounded to BF16, are 16 x 32 tiles
// ([rows][K2], row-major, as pair_rows writes them); 16 pairs of a panel ((k, k + 1) for 16
// columns, 64 bytes a pair) are a 32 x 16 tile as pack_weights lays them out; `tdpbf16ps` adds
// their product to a 16 x 16 FP32 tile. Four sum tiles (two row tiles by two panels) take each
// step's four tile loads: on the 2-core Xeon VM one core runs ~2.9 TFLOPS of such steps, where
// its AVX-512 FMAs give ~0.16. Compiled with -mamx-tile -mamx-bf16 -mavx512f -mavx512bf16
// (CMakeLists.txt); called only when the CPU has AMX and Linux has granted the tile state.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cpu/fused_kernels.h"
#include "backends/cpu/gemm.h"
#include "gptrt/error.h"
#include "platform/compiler.h"
#include "platform/platform.h"

#if defined(_WIN32)
// MinGW-w64's GCC passes the stride of _tile_loadd / _tile_stored as a `long`, 32 bits on
// Windows, which the assembler refuses as an index register: the instructions with a 64-bit one.
#undef _tile_loadd
#define _tile_loadd(dst, base, stride)                             \
  __asm__ volatile("tileloadd\t(%0,%1,1), %%tmm" #dst ::"r"(base), \
                   "r"(static_cast<long long>(stride))             \
                   : "memory")
#undef _tile_stored
#define _tile_stored(dst, base, stride)                                \
  __asm__ volatile("tilestored\t%%tmm" #dst ", (%0,%1,1)" ::"r"(base), \
                   "r"(static_cast<long long>(stride))                 \
                   : "memory")
#endif

namespace gptrt::cpu {

bool amx_permitted() {
  return platform::amx_permitted();
}

namespace {

constexpr int64_t kTile = 16;   // rows of every tile: of X, of pairs of K, of sums
constexpr int64_t kTileK = 32;  // values of K one step takes (a tile row: 64 bytes of BF16)
constexpr int64_t kTileElems = kTile * kPanel;  // a sum tile's floats, a panel step's BF16 pairs

// Palette 1: tiles 0-3 hold sums, 4-5 rows of X, 6-7 panel steps; each 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// Loads the tile configuration on this thread (once: every GEMM uses the same).
void configure_tiles() {
  thread_local bool configured = false;
  if (configured) return;
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = kTile;
    config.bytes_per_row[t] = 64;
  }
  _tile_loadconfig(&config);
  configured = true;
}

// K steps a block of several passes takes (192 values of K: the block's slices of a panel pair and
// of a pass's row tiles, 12 KB each, stay in L1 while every pass reads the panels' slice; with
// the row buffer 64-byte aligned and the step prefetch at 1, a BF16 forward pass at 8x16 on the
// Xeon VM 22.4 -> 20.4 ms in one bench run,
// docs/lab/2026-12-07-cpu-bf16-dots-int8-and-openvino.md).
constexpr int64_t kBlockSteps = 6;

// Steps ahead whose tiles are asked into L1 (tile loads from L2 wait for it): all of K in a pass,
// 2 (+20% in a one-core micro-benchmark on the Xeon VM, 1 and 4 less); in K blocks, 1 (a forward
// pass at 8x16 3-4% faster than at 2).
constexpr int64_t kPrefetchWhole = 2, kPrefetchBlocked = 1;

// The cache lines of step s: a row tile's 16 rows (one line each), a panel step's 16 lines.
template <int RT, int CT>
GPTRT_ALWAYS_INLINE void prefetch_step(const uint16_t* a, int64_t lda, const uint16_t* b0,
                                       const uint16_t* b1, int64_t s) {
  const auto* pa = reinterpret_cast<const char*>(a + s * kTileK);
  for (int64_t i = 0; i < RT * kTile; ++i) _mm_prefetch(pa + i * lda * 2, _MM_HINT_T0);
  const auto* p0 = reinterpret_cast<const char*>(b0 + s * kTileElems * 2);
  const auto* p1 = reinterpret_cast<const char*>(b1 + s * kTileElems * 2);
  for (int64_t i = 0; i < kTile; ++i) {
    _mm_prefetch(p0 + i * 64, _MM_HINT_T0);
    if constexpr (CT > 1) _mm_prefetch(p1 + i * 64, _MM_HINT_T0);
  }
}

// The next panel pair's weights, asked from memory into L2 a few lines a step while this one's
// passes run, so that its first pass does not wait for memory: lines [first, end) of `at`.
struct Ahead {
  const char* at = nullptr;
  int64_t first = 0, end = 0, per_step = 0;
};

// A thread's scratch of at least n elements from `store`, 64-byte aligned: a tile row that
// straddles two cache lines takes two (the 2 x 2 step on data in L1, one core of the Xeon VM:
// 14.8 ns a tdpbf16ps unaligned, 4.7 aligned, 4.6 with no loads).
template <typename T>
T* aligned_scratch(std::vector<T>& store, int64_t n) {
  store.resize(static_cast<size_t>(n) + 64 / sizeof(T));
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(store.data()) + 63) & ~uintptr_t{63});
}

// RT row tiles of X (`a`, rows `lda` elements apart) times CT panels (`b0`, `b1`) over steps
// [s0, s1) of the `steps` of 32 values of K, added to the sums stored by the call before
// (`resume`) or to zero; sum tile (rt, ct) is stored at sums + (2 rt + ct) * 256.
template <int RT, int CT>
GPTRT_ALWAYS_INLINE void multiply(const uint16_t* a, int64_t lda, const uint16_t* b0,
                                  const uint16_t* b1, int64_t s0, int64_t s1, bool resume,
                                  const Ahead& ahead, float* sums, int64_t steps) {
  const int64_t ahead_steps = s1 - s0 < steps ? kPrefetchBlocked : kPrefetchWhole;
  const auto stride = static_cast<int>(lda * 2);
  if (resume) {
    _tile_loadd(0, sums, 64);
    if constexpr (CT > 1) _tile_loadd(1, sums + kTileElems, 64);
    if constexpr (RT > 1) _tile_loadd(2, sums + 2 * kTileElems, 64);
    if constexpr (RT > 1 && CT > 1) _tile_loadd(3, sums + 3 * kTileElems, 64);
  } else {
    _tile_zero(0);
    if constexpr (CT > 1) _tile_zero(1);
    if constexpr (RT > 1) _tile_zero(2);
    if constexpr (RT > 1 && CT > 1) _tile_zero(3);
  }
  // Each product issued as soon as its two tiles are loaded (12-15% faster than all four loads
  // first, in a one-core micro-benchmark on the Xeon VM).
  for (int64_t s = s0; s < s1; ++s) {
    if (s + ahead_steps < s1) prefetch_step<RT, CT>(a, lda, b0, b1, s + ahead_steps);
    const int64_t i0 = ahead.first + (s - s0) * ahead.per_step;
    for (int64_t i = i0; i < std::min(ahead.end, i0 + ahead.per_step); ++i)
      _mm_prefetch(ahead.at + i * 64, _MM_HINT_T1);
    _tile_loadd(4, a + s * kTileK, stride);
    _tile_loadd(6, b0 + s * kTileElems * 2, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (CT > 1) {
      _tile_loadd(7, b1 + s * kTileElems * 2, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if constexpr (RT > 1) {
      _tile_loadd(5, a + kTile * lda + s * kTileK, stride);
      _tile_dpbf16ps(2, 5, 6);
    }
    if constexpr (RT > 1 && CT > 1) _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, sums, 64);
  if constexpr (CT > 1) _tile_stored(1, sums + kTileElems, 64);
  if constexpr (RT > 1) _tile_stored(2, sums + 2 * kTileElems, 64);
  if constexpr (RT > 1 && CT > 1) _tile_stored(3, sums + 3 * kTileElems, 64);
}

// An INT8 panel ([k][16] int8) as BF16 pairs ([k2 / 2][16][2], zeros past k), as pack_weights
// lays out a BF16 panel for the tiles: q exactly (|q| <= 127 has 7 significant bits) when
// `scales16` is null, else q * s rounded to BF16 (scales16: [k / group][16]; a pair never
// straddles groups, whose sizes are multiples of 16).
void int8_panel_to_pairs(const int8_t* src, int64_t k, int64_t k2, const float* scales16,
                         int64_t group, uint16_t* dst) {
  // Column j's scale at lanes 2j and 2j + 1 (columns 0-7 in `lo`, 8-15 in `hi`).
  const __m512i lo_index = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i hi_index = _mm512_add_epi32(lo_index, _mm512_set1_epi32(8));
  for (int64_t kk = 0; kk < k2; kk += 2) {
    const __m128i r0 = kk < k ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + kk * kPanel))
                              : _mm_setzero_si128();
    const __m128i r1 =
        kk + 1 < k ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (kk + 1) * kPanel))
                   : _mm_setzero_si128();
    // Columns 0-7, then 8-15, each as its (k, k + 1) pair. (The maskz forms: GCC 12 takes the
    // plain ones' undefined pass-through for an uninitialised read.)
    __m512 lo = _mm512_maskz_cvtepi32_ps(
        0xffff, _mm512_maskz_cvtepi8_epi32(0xffff, _mm_unpacklo_epi8(r0, r1)));
    __m512 hi = _mm512_maskz_cvtepi32_ps(
        0xffff, _mm512_maskz_cvtepi8_epi32(0xffff, _mm_unpackhi_epi8(r0, r1)));
    if (scales16 && kk < k) {
      const __m512 scale = _mm512_loadu_ps(scales16 + kk / group * kPanel);
      lo = _mm512_mul_ps(lo, _mm512_maskz_permutexvar_ps(0xffff, lo_index, scale));
      hi = _mm512_mul_ps(hi, _mm512_maskz_permutexvar_ps(0xffff, hi_index, scale));
    }
    _mm512_storeu_si512(dst + kk * kPanel, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
  }
}

}  // namespace

void gemm_amx(const float* x, int64_t m, int64_t k, const Tensor& packed, int64_t n,
              const float* bias, float* c, ThreadPool& pool, const Epilogue& epilogue,
              const Int8Scales& scales) {
  const bool int8 = scales.at != nullptr;
  // (INT8 in groups: the scales go into the converted weights; per column: onto the sums.)
  const bool grouped = int8 && scales.groups > 1;
  // K2: a multiple of kTileK (pack_weights for kAmxBf16; INT8 panels are converted to it).
  const int64_t k2 = int8 ? (k + kTileK - 1) / kTileK * kTileK : packed.dim(1);
  if (packed.rank() != 3 || k2 % kTileK != 0 || k2 < k || packed.dim(2) != kPanel ||
      (int8 && (packed.dtype() != DType::kInt8 || packed.dim(1) != k)))
    throw Error(ErrorCode::kInternal,
                "gemm_amx needs panels packed for amx_bf16 (K rounded up to " +
                    std::to_string(kTileK) + ") or INT8 panels of K rows, found " +
                    shape_str(packed.shape()) + " for K " + std::to_string(k));
  const int64_t steps = k2 / kTileK, padded_rows = (m + kTile - 1) / kTile * kTile;
  // X rounded to BF16, [padded_rows][k2], zeros past m and k (kept: no allocation per call).
  thread_local std::vector<uint16_t> rows;
  uint16_t* xb = aligned_scratch(rows, padded_rows * k2);
  const int64_t row_groups = std::min<int64_t>(padded_rows / kTile, pool.size());
  pool.parallel_for(row_groups, [&](int64_t g) {
    int64_t r0 = padded_rows * g / row_groups, r1 = padded_rows * (g + 1) / row_groups;
    if (std::min(r1, m) > r0) pair_rows(x + r0 * k, std::min(r1, m) - r0, k, k2, xb + r0 * k2);
    if (r1 > m)
      std::memset(xb + std::max(r0, m) * k2, 0,
                  static_cast<size_t>((r1 - std::max(r0, m)) * k2) * sizeof(uint16_t));
  });
  const auto* panels_at = static_cast<const uint16_t*>(packed.raw());
  const auto* int8_at = static_cast<const int8_t*>(packed.raw());
  const int64_t panels = (n + kPanel - 1) / kPanel, panel_pairs = (panels + 1) / 2;
  // Rows in chunks whose BF16 tiles (about 1 MiB) stay in L2 while a task streams its panels:
  // each panel pair is read from memory once per chunk, from L2 for each pair of row tiles.
  constexpr int64_t kChunkBytes = int64_t{1} << 20;
  const int64_t chunk_rows =
      std::max<int64_t>(2 * kTile, kChunkBytes / (k2 * 2) / (2 * kTile) * (2 * kTile));
  const int64_t chunks = (padded_rows + chunk_rows - 1) / chunk_rows;
  // Tasks per thread: 8, or 32 where each panel pair takes one pass of the rows (a decode
  // step's GEMMs, bound by the memory: the thread that finishes first leaves the other to read
  // alone, so the last task should be short; a BF16 decode step on the Xeon VM, interleaved, 5
  // rounds: 5.60-6.19 -> 5.48-6.03 ms).
  const int64_t grain = padded_rows <= 2 * kTile ? 32 : 8;
  const int64_t tasks_per_chunk = std::max<int64_t>(
      1, std::min<int64_t>(panel_pairs, static_cast<int64_t>(pool.size()) * grain / chunks + 1));
  const int64_t per_task = (panel_pairs + tasks_per_chunk - 1) / tasks_per_chunk;
  pool.parallel_for(chunks * tasks_per_chunk, [&](int64_t t) {
    configure_tiles();
    const int64_t r0 = (t / tasks_per_chunk) * chunk_rows,
                  r1 = std::min(padded_rows, r0 + chunk_rows);
    const int64_t q0 = (t % tasks_per_chunk) * per_task, q1 = std::min(panel_pairs, q0 + per_task);
    // Each pass's four sum tiles (64-byte aligned), kept between K blocks.
    thread_local std::vector<float> partial_store;
    float* partial =
        aligned_scratch(partial_store, (chunk_rows + 2 * kTile - 1) / (2 * kTile) * 4 * kTileElems);
    thread_local std::vector<uint16_t> converted_store;  // (INT8: the pair's panels as pairs)
    uint16_t* converted = int8 ? aligned_scratch(converted_store, 2 * k2 * kPanel) : nullptr;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t p = 2 * q, panels_here = std::min<int64_t>(2, panels - p);
      const uint16_t* b0 = panels_at + p * k2 * kPanel;
      if (int8) {
        for (int64_t h = 0; h < panels_here; ++h)
          int8_panel_to_pairs(int8_at + (p + h) * k * kPanel, k, k2,
                              grouped ? scales.at + (p + h) * scales.groups * kPanel : nullptr,
                              k / scales.groups, converted + h * k2 * kPanel);
        b0 = converted;
      }
      const uint16_t* b1 = panels_here > 1 ? b0 + k2 * kPanel : b0;
      const int64_t col0 = p * kPanel, cols = std::min(2 * kPanel, n - col0);
      __mmask16 masks[2];
      __m512 biases[2], scale[2];
      for (int64_t h = 0; h < panels_here; ++h) {
        const int64_t cols_h = std::min(kPanel, cols - h * kPanel);
        masks[h] = static_cast<__mmask16>(cols_h == kPanel ? 0xffff : (1u << cols_h) - 1);
        biases[h] =
            bias ? _mm512_maskz_loadu_ps(masks[h], bias + col0 + h * kPanel) : _mm512_setzero_ps();
        scale[h] = int8 && !grouped ? _mm512_maskz_loadu_ps(masks[h], scales.at + col0 + h * kPanel)
                                    : _mm512_set1_ps(1.f);
      }
      // The next pair's lines, spread over this pair's passes and steps (BF16 panels; INT8 ones
      // are read once, by the conversion).
      const int64_t passes = (r1 - r0 + 2 * kTile - 1) / (2 * kTile);
      const int64_t block_steps = passes > 1 ? kBlockSteps : steps;
      Ahead ahead;
      if (!int8 && q + 1 < q1 && passes > 1) {  // (one pass: the stream is what it waits for)
        ahead.at = reinterpret_cast<const char*>(b0 + 2 * k2 * kPanel);
        const int64_t lines = std::min<int64_t>(2, panels - p - 2) * k2 * kPanel * 2 / 64;
        ahead.per_step = (lines + passes * steps - 1) / (passes * steps);
        ahead.end = lines;
      }
      // With several passes, K in blocks (kBlockSteps), each block's slice of the panel pair read
      // by every pass while it is in L1; a pass's sums kept between blocks.
      for (int64_t s0 = 0; s0 < steps; s0 += block_steps) {
        const int64_t s1 = std::min(steps, s0 + block_steps);
        for (int64_t r = r0; r < r1; r += 2 * kTile) {
          const uint16_t* a = xb + r * k2;
          const bool two_rows = r1 - r > kTile;
          float* sums = partial + (r - r0) / (2 * kTile) * 4 * kTileElems;
          if (two_rows && panels_here > 1)
            multiply<2, 2>(a, k2, b0, b1, s0, s1, s0 > 0, ahead, sums, steps);
          else if (two_rows)
            multiply<2, 1>(a, k2, b0, b1, s0, s1, s0 > 0, ahead, sums, steps);
          else if (panels_here > 1)
            multiply<1, 2>(a, k2, b0, b1, s0, s1, s0 > 0, ahead, sums, steps);
          else
            multiply<1, 1>(a, k2, b0, b1, s0, s1, s0 > 0, ahead, sums, steps);
          ahead.first += ahead.per_step * (s1 - s0);
          if (s1 < steps) continue;
          // The sums (plus bias) into C, then the epilogue while the tile is in L1.
          const int64_t rows_here = std::min(2 * kTile, m - r);
          for (int64_t i = 0; i < rows_here; ++i) {
            const float* row = sums + (i / kTile) * 2 * kTileElems + (i % kTile) * kPanel;
            for (int64_t h = 0; h < panels_here; ++h) {
              const __m512 v = _mm512_load_ps(row + h * kTileElems);
              _mm512_mask_storeu_ps(c + (r + i) * n + col0 + h * kPanel, masks[h],
                                    _mm512_fmadd_ps(v, scale[h], biases[h]));
            }
          }
          if (epilogue.activation != 0 || epilogue.residual)
            gemm_epilogue(c + r * n + col0, n, rows_here, cols, epilogue.activation,
                          epilogue.residual ? epilogue.residual + r * n + col0 : nullptr, n);
        }
      }
    }
  });
}

}  // namespace gptrt::cpu
