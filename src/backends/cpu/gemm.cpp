#include "backends/cpu/gemm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/cpu/fused_kernels.h"
#include "backends/int8_weights.h"
#include "core/half.h"
#include "gptrt/error.h"
#include "platform/compiler.h"
#include "platform/platform.h"

namespace gptrt::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return "generic";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Bf16:
      return "avx512_bf16";
    case Isa::kAmxBf16:
      return "amx_bf16";
  }
  return "generic";
}

Isa isa_from_name(const std::string& name) {
  if (name == "generic") return Isa::kGeneric;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  if (name == "avx512_bf16") return Isa::kAvx512Bf16;
  if (name == "amx_bf16") return Isa::kAmxBf16;
  throw Error(
      ErrorCode::kEngineMismatch,
      "unknown CPU ISA '" + name + "' (expected generic, avx2, avx512, avx512_bf16 or amx_bf16)");
}

bool isa_supported(Isa isa) {
  const platform::CpuInfo& c = platform::cpu_info();
  switch (isa) {
    case Isa::kGeneric:
      return true;
    case Isa::kAvx2:
      return c.avx2 && c.fma;
    case Isa::kAvx512:
      return c.avx512f;
    case Isa::kAvx512Bf16:
      return c.avx512f && c.avx512_bf16;
    case Isa::kAmxBf16:
#if defined(__x86_64__) || defined(_M_X64)
      return c.avx512f && c.avx512_bf16 && c.amx_bf16 && amx_permitted();
#else
      return false;
#endif
  }
  return false;
}

Isa best_isa() {
#if defined(__x86_64__) || defined(_M_X64)
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

Isa best_isa_for(DType dtype) {
#if defined(__x86_64__) || defined(_M_X64)
  if (dtype == DType::kBFloat16 && isa_supported(Isa::kAmxBf16)) return Isa::kAmxBf16;
  if (dtype == DType::kBFloat16 && isa_supported(Isa::kAvx512Bf16)) return Isa::kAvx512Bf16;
#endif
  return best_isa();
}

bool packs_pairs(Isa isa) {
  return isa == Isa::kAvx512Bf16 || isa == Isa::kAmxBf16;
}

bool bf16_dot_blocks() {
  // On the Xeon (Sapphire Rapids) VM, 2 threads, a DistilGPT2-size forward pass with the ISA
  // forced to avx512_bf16, widened against dot products: 8x12 53 against 76 ms, 16x12 108 against
  // 154, 8x32 143 against 206, 1x12 9.5 against 10.5 (FP32 53 / 106 / 139 / 12.9): there one
  // vdpbf16ps (32 multiply-adds) issues at half the rate of two FMAs. Zen 4 issues one 512-bit
  // FMA (16) a cycle and one vdpbf16ps a cycle too.
  static const bool dots = [] {
    const char* v = std::getenv("GPTRT_CPU_BF16_DOTS");
    if (!v || !*v) return platform::cpu_info().vendor == "AuthenticAMD";
    const std::string s = v;
    if (s != "0" && s != "1")
      throw Error(ErrorCode::kInvalidArgument,
                  "GPTRT_CPU_BF16_DOTS is '" + s +
                      "'; it takes 1 (BF16 GEMMs on dot products), 0 (weights widened to FP32) "
                      "or nothing (by CPU vendor)");
    return s == "1";
  }();
  return dots;
}

bool rounds_rows(Isa isa, int64_t m) {
  return isa == Isa::kAmxBf16 ||
         (isa == Isa::kAvx512Bf16 && (m <= kPairDotRows || bf16_dot_blocks()));
}

namespace {
bool avx512(Isa isa) {
  return isa == Isa::kAvx512 || isa == Isa::kAvx512Bf16 || isa == Isa::kAmxBf16;
}
}  // namespace

// Must match the row capacity of each micro-kernel (gemm_avx2.cpp: 6, gemm_avx512.cpp and
// gemm_avx512_bf16.cpp: 16).
int64_t kernel_rows(Isa isa) {
  return avx512(isa) ? 16 : 6;
}

namespace {
// The row block gemm_packed gives a kernel when the rows do not fit in one: 8 with AVX-512 (on
// the 2-core AVX-512 VM, 96 and 192 rows ran 2-7% slower in blocks of 12 or 16), 6 with AVX2.
int64_t block_rows(Isa isa) {
  return avx512(isa) ? 8 : 6;
}
}  // namespace

PanelKernel panel_kernel(Isa isa, bool bf16) {
#if defined(__x86_64__) || defined(_M_X64)
  if (packs_pairs(isa) && bf16) return panel_kernel_avx512_pairs_widened;
  if (avx512(isa)) return bf16 ? panel_kernel_avx512_bf16 : panel_kernel_avx512;
  if (bf16) return isa == Isa::kGeneric ? panel_kernel_generic_bf16 : panel_kernel_avx2_bf16;
  if (isa == Isa::kAvx2) return panel_kernel_avx2;
#endif
  return bf16 ? panel_kernel_generic_bf16 : panel_kernel_generic;
}

Shape packed_shape(int64_t k, int64_t n, DType dtype, Isa isa) {
  if (dtype == DType::kInt8) return {(n + kPanel - 1) / kPanel, k, kPanel};
  const bool pairs = dtype == DType::kBFloat16 && packs_pairs(isa);
  // K2: whole pairs, or whole AMX tiles (32 values of K).
  const int64_t k_multiple = isa == Isa::kAmxBf16 ? 32 : 2;
  return {(n + kPanel - 1) / kPanel, pairs ? (k + k_multiple - 1) / k_multiple * k_multiple : k,
          kPanel};
}

Tensor pack_weights(const Tensor& w, bool transposed, DType dtype, Isa isa) {
  if (w.dtype() != DType::kFloat32 || w.rank() != 2 ||
      (dtype != DType::kFloat32 && dtype != DType::kBFloat16)) {
    throw Error(ErrorCode::kInternal,
                "pack_weights needs a 2-D float32 matrix packed to float32 or bfloat16, found " +
                    shape_str(w.shape()));
  }
  const bool pairs = dtype == DType::kBFloat16 && packs_pairs(isa);
  int64_t k = transposed ? w.dim(1) : w.dim(0), n = transposed ? w.dim(0) : w.dim(1);
  Shape shape = packed_shape(k, n, dtype, isa);
  int64_t panels = shape[0], k2 = shape[1];
  Tensor out(dtype, shape);  // zero-filled: padding columns (and row) stay 0
  const float* src = w.data<float>();
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t kk = 0; kk < k; ++kk) {
      for (int64_t j = 0; j < kPanel && p * kPanel + j < n; ++j) {
        int64_t col = p * kPanel + j;
        int64_t at =
            p * k2 * kPanel + (pairs ? kk / 2 * 2 * kPanel + 2 * j + kk % 2 : kk * kPanel + j);
        float v = transposed ? src[col * k + kk] : src[kk * n + col];
        if (dtype == DType::kFloat32)
          out.data_mut<float>()[at] = v;
        else
          out.data_mut<uint16_t>()[at] = float_to_bf16(v);
      }
    }
  }
  return out;
}

Tensor pack_weights_int8(const Tensor& w, bool transposed, int64_t group, Tensor* scales) {
  const backends::Int8Weights q = backends::quantize_int8(w, transposed, group);
  const int64_t n = q.q.dim(0), k = q.q.dim(1), panels = (n + kPanel - 1) / kPanel;
  const int64_t groups = group == 0 ? 1 : k / group;
  *scales = group == 0 ? Tensor(DType::kFloat32, {panels * kPanel})
                       : Tensor(DType::kFloat32, {panels, groups, kPanel});
  Tensor out(DType::kInt8, {panels, k, kPanel});  // zero-filled: padding columns stay 0
  for (int64_t col = 0; col < panels * kPanel; ++col) {
    for (int64_t g = 0; g < groups; ++g)
      scales->data_mut<float>()[((col / kPanel) * groups + g) * kPanel + col % kPanel] =
          col < n ? q.scales.data<float>()[col * groups + g] : 1.f;
    if (col >= n) continue;
    int8_t* dst = out.data_mut<int8_t>() + (col / kPanel) * k * kPanel + col % kPanel;
    const int8_t* row = q.q.data<int8_t>() + col * k;
    for (int64_t kk = 0; kk < k; ++kk) dst[kk * kPanel] = row[kk];
  }
  return out;
}

void dequantize_int8(const int8_t* src, int64_t k0, int64_t k, const float* scales16, int64_t group,
                     float* dst) {
  for (int64_t kk = 0; kk < k; ++kk) {
    const float* scale = scales16 + (k0 + kk) / group * kPanel;
    for (int64_t j = 0; j < kPanel; ++j)
      dst[kk * kPanel + j] = static_cast<float>(src[kk * kPanel + j]) * scale[j];
  }
}

namespace {

template <typename W>
void generic_kernel(const float* x, int64_t ldx, int64_t rows, int64_t k, const W* panel,
                    const float* bias16, float* c, int64_t ldc, int64_t cols, bool accumulate) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc[kPanel];
    for (int64_t j = 0; j < kPanel; ++j)
      acc[j] = accumulate ? (j < cols ? c[r * ldc + j] : 0.f) : (bias16 ? bias16[j] : 0.f);
    const float* xr = x + r * ldx;
    for (int64_t kk = 0; kk < k; ++kk) {
      float a = xr[kk];
      const W* b = panel + kk * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) {
        if constexpr (std::is_same_v<W, float>) {
          acc[j] += a * b[j];
        } else {
          acc[j] += a * bf16_to_float(b[j]);
        }
      }
    }
    std::memcpy(c + r * ldc, acc, static_cast<size_t>(cols) * sizeof(float));
  }
}

}  // namespace

void panel_kernel_generic(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                          const float* bias16, float* c, int64_t ldc, int64_t cols,
                          bool accumulate) {
  generic_kernel(x, ldx, rows, k, static_cast<const float*>(panel), bias16, c, ldc, cols,
                 accumulate);
}

void panel_kernel_generic_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k,
                               const void* panel, const float* bias16, float* c, int64_t ldc,
                               int64_t cols, bool accumulate) {
  generic_kernel(x, ldx, rows, k, static_cast<const uint16_t*>(panel), bias16, c, ldc, cols,
                 accumulate);
}

void widen_bf16(const uint16_t* src, int64_t n, float* dst) {
  // bf16 is the top half of a float32; this loop vectorises (SSE2 unpack with zeros).
  for (int64_t i = 0; i < n; ++i)
    dst[i] = std::bit_cast<float>(static_cast<uint32_t>(src[i]) << 16);  // exact
}

void gemm_packed(Isa isa, const float* x, int64_t m, int64_t k, const Tensor& packed, int64_t n,
                 const float* bias, float* c, ThreadPool& pool, const Epilogue& epilogue,
                 const Int8Scales& scales) {
  bool has_epilogue = epilogue.activation != 0 || epilogue.residual;
  bool bf16 = packed.dtype() == DType::kBFloat16;
  // INT8 weights: up to kInt8RowsInRegisters rows on AVX-512 widen them in registers (a decode
  // step's GEMV, bound by the bytes it reads: a quarter of FP32's); otherwise each K block of a
  // panel is dequantised into the L1 buffer the FP32 kernels read, as widened BF16 is.
  const bool int8 = packed.dtype() == DType::kInt8;
  if (int8 && (!scales.at || scales.groups < 1 || k % scales.groups != 0))
    throw Error(ErrorCode::kInternal,
                "gemm_packed: INT8 weights need their scales, in groups that divide K");
  const bool int8_rows = int8 && avx512(isa) && m <= kInt8RowsInRegisters;
  const int64_t group = int8 ? k / scales.groups : k;  // (INT8: K values a scale)
#if defined(__x86_64__) || defined(_M_X64)
  // Every BF16 GEMM of kAmxBf16 on the tiles, a decode step's too: there the tile loads read
  // the weights faster than the vdpbf16ps GEMV (a BF16 step at batch 1 on the Xeon VM 6.3-6.6
  // -> 4.8-5.6 ms).
  if (bf16 && isa == Isa::kAmxBf16) return gemm_amx(x, m, k, packed, n, bias, c, pool, epilogue);
  // INT8 weights beyond the rows the register kernel holds: on the tiles too, each panel pair
  // converted to BF16 pairs (exact: |q| <= 127) once per chunk of rows, the scales applied to the
  // sums (a forward pass at 8x12 on the Xeon VM: see docs/BENCHMARKS.md).
  if (int8 && isa == Isa::kAmxBf16 && m > kInt8RowsInRegisters)
    return gemm_amx(x, m, k, packed, n, bias, c, pool, epilogue, scales);
#endif
  // Pair-packed BF16 panels (avx512_bf16), K run to k2 (even; x's pad column is never read by
  // the FP32 forms: its weights are zero and it is past x's rows only in `paired`). Up to
  // kPairDotRows rows go to BF16 pairs once, [m][k2], which the dot-product kernel reads as 32-bit
  // pairs (ldx and offsets in pairs).
  const bool pairs = bf16 && packs_pairs(isa), dots = pairs && m <= kPairDotRows;
  // More rows: blocks of kPairRows rows as BF16 pairs against two panels on dot products.
  const bool dots2 = pairs && !dots && bf16_dot_blocks();
  const int64_t k2 = pairs ? packed.dim(1) : k;
  thread_local std::vector<uint16_t> paired;  // (kept: no allocation per call)
  if (dots) {
    paired.resize(static_cast<size_t>(m * k2));
#if defined(__x86_64__) || defined(_M_X64)
    pair_rows(x, m, k, k2, paired.data());
#else
    throw Error(ErrorCode::kInternal, "pair-packed BF16 panels need an x86-64 CPU");
#endif
  }
  // (FP32 rows against an odd K's pair-packed panels: copied with a zero column, so that the
  // kernels read K2 values a row.)
  thread_local std::vector<float> padded;
  if (pairs && !dots && !dots2 && k2 != k) {
    padded.assign(static_cast<size_t>(m * k2), 0.f);
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(padded.data() + r * k2, x + r * k, static_cast<size_t>(k) * sizeof(float));
  }
  const float* xs = dots                         ? reinterpret_cast<const float*>(paired.data())
                    : pairs && !dots2 && k2 != k ? padded.data()
                                                 : x;
  const int64_t ldx = dots ? k2 / 2 : k2;
  auto x_at = [&](int64_t r, int64_t k0) { return xs + r * ldx + (dots ? k0 / 2 : k0); };
  // BF16 panels: with up to two row blocks the kernel widens weights in registers as it streams
  // them; with more, each K block of a panel is widened once into an L1 buffer that the FP32
  // kernel then reads for every row block (widening per row block costs a third of the FMAs'
  // issue slots; widening into the buffer costs about half a row block); pair-packed panels alike.
  bool widen = (bf16 && m > 2 * block_rows(isa) && !dots2) || (int8 && !int8_rows);
  PanelKernel kernel = panel_kernel(isa, bf16 && !widen);
#if defined(__x86_64__) || defined(_M_X64)
  if (dots) kernel = panel_kernel_avx512_pairs;
#endif
  // Rows in one block when the kernel holds them all (a decode step's or a short prompt's: each
  // panel slice then passes through the FMAs once; at 12 rows on the AVX-512 VM, FP32 22.6 ->
  // 18.8 ms and BF16 16.2 -> 11.7 ms a forward pass); otherwise blocks of block_rows.
  int64_t mr = m <= kernel_rows(isa) ? kernel_rows(isa) : block_rows(isa);
  // Long GEMMs on AVX-512 (FP32 panels, or BF16 ones widened per K block) take panels two at a
  // time, kPairRows rows a block; so do FP32 GEMMs of 2 to kPairRows rows, in one block (12 rows,
  // weights out of cache: the LM head 6.7-6.8 -> 5.8-5.9 ms, c_fc 0.41 -> 0.33 ms against the
  // one-panel block<12>, whose 12 broadcasts per 64 bytes of weights held the load ports).
  const bool two = dots2 || (avx512(isa) && (m > kernel_rows(isa) || (m >= 2 && m <= kPairRows)) &&
                             ((!bf16 && !int8) || widen));
  if (two) mr = kPairRows;
  const int64_t step = two ? 2 : 1;
  // The two-panel kernel reads its rows packed, each block of kPairRows K-major (one stream of
  // broadcasts), packed once per call by the pool.
  thread_local std::vector<float> xpack;  // (kept: no allocation per call)
#if defined(__x86_64__) || defined(_M_X64)
  if (two) {
    const int64_t blocks = (m + kPairRows - 1) / kPairRows;
    // (dots2: each block's k2 / 2 pairs of kPairRows rows are 32-bit, as many bytes as half a
    // block of FP32 rows.)
    const int64_t block_size = dots2 ? k2 / 2 * kPairRows : k2 * kPairRows;
    xpack.resize(static_cast<size_t>(blocks * block_size));
    float* xp = xpack.data();
    pool.parallel_for(blocks, [&](int64_t b) {
      const int64_t rows = std::min(kPairRows, m - b * kPairRows);
      if (dots2)
        pack_pair_rows_bf16(x + b * kPairRows * k, k, rows, k, k2,
                            reinterpret_cast<uint32_t*>(xp + b * block_size));
      else
        pack_pair_rows(xs + b * kPairRows * ldx, ldx, rows, k2, xp + b * block_size);
    });
  }
#endif
  const float* xpacked = xpack.data();
  const auto* packed_bytes = static_cast<const uint8_t*>(packed.raw());
  size_t elem = dtype_size(packed.dtype());
  size_t panel_bytes = static_cast<size_t>(k2 * kPanel) * elem;
  // K block: 16 KiB of an FP32 panel (8 KiB of a BF16 one), half of L1. (Even: pairs stay whole.)
  constexpr int64_t kc = 256;
  // The rows of X a task keeps in L2 while it streams its panels: their K block (kc columns).
  constexpr int64_t kChunkBytes = int64_t{192} * 1024;
  int64_t panels = (n + kPanel - 1) / kPanel, units = (panels + step - 1) / step;
  // Rows of X come in chunks that stay in L2 (about 256 KiB, at least 4 row blocks) while a task
  // streams its panels; each panel is read from memory once per chunk and from cache for each
  // row block in it.
  int64_t chunk_rows =
      std::max<int64_t>(4 * mr, (kChunkBytes / (std::min(k, kc) * int64_t{4})) / mr * mr);
  int64_t chunks = (m + chunk_rows - 1) / chunk_rows;
  // Tasks take ranges of units: a panel, or two panels; 8 a thread, or 32 when the rows are one
  // block (a decode step's: bound by the memory, where a thread that finishes first leaves the
  // other reading alone, so the last task should be short; FP32 decode at batch 1 on the Xeon
  // VM, interleaved, 4 rounds: 12.2-13.3 -> 11.4-12.2 ms).
  const int64_t grain = m <= mr ? 32 : 8;
  int64_t panel_tasks = std::max<int64_t>(
      1, std::min<int64_t>(units, static_cast<int64_t>(pool.size()) * grain / chunks + 1));
  int64_t per_task = (units + panel_tasks - 1) / panel_tasks;
  pool.parallel_for(chunks * panel_tasks, [&](int64_t t) {
    int64_t r0 = (t / panel_tasks) * chunk_rows, r1 = std::min(m, r0 + chunk_rows);
    int64_t u0 = (t % panel_tasks) * per_task, u1 = std::min(units, u0 + per_task);
    float bias_pad[2 * kPanel];
    alignas(64) float wide[2 * kc * kPanel];  // a widened BF16 K block of one or two panels
    // K in blocks whose slice of the panel stays in L1 while every row block of the chunk
    // reads it; the panel streams from memory once, without pauses between row blocks. One
    // row block (a decode step's rows) reads each slice once: all of K in one call.
    const int64_t kb = r1 - r0 <= mr && !widen ? k2 : kc;
    // Rows whose packed K blocks outgrow L2 together (FC2's 3072-long rows at 180 rows: 2.2
    // MB) take K blocks outermost, each block of the rows then serving every unit of the task
    // while it stays in L2 (FC2 at 192-256 rows, weights out of cache: 253-255 -> 269-273
    // GFLOP/s); otherwise units outermost, each unit's C tile staying in L1 across its K blocks
    // (the LM head at 256 rows 291 against 264 GFLOP/s K-outer).
    const bool k_outer = two && (r1 - r0) * k2 * int64_t{4} > (int64_t{3} << 19);
    // Unit u's K block at k0 over the chunk's row blocks.
    auto unit_block = [&](int64_t u, int64_t k0) {
      const int64_t p = u * step;
      const bool pair = two && p + 1 < panels;
      int64_t cols = std::min((pair ? 2 : 1) * kPanel, n - p * kPanel);
      const float* b16 = nullptr;
      if (bias && k0 == 0) {
        std::memset(bias_pad, 0, sizeof bias_pad);
        std::memcpy(bias_pad, bias + p * kPanel, static_cast<size_t>(cols) * sizeof(float));
        b16 = bias_pad;
      }
      const auto* panel = packed_bytes + static_cast<size_t>(p) * panel_bytes;
      int64_t klen = std::min(kb, k2 - k0);
      // (A pair-packed slice starts at pair k0 / 2: the same byte offset.)
      const void* slice = panel + static_cast<size_t>(k0 * kPanel) * elem;
      const void* slice1 = pair ? static_cast<const uint8_t*>(slice) + panel_bytes : nullptr;
      if (widen) {
        auto widen_into = [&](const void* src, float* dst, int64_t panel_index) {
          if (int8) {
            const float* panel_scales = scales.at + panel_index * scales.groups * kPanel;
#if defined(__x86_64__) || defined(_M_X64)
            if (avx512(isa))
              return dequantize_int8_avx512(static_cast<const int8_t*>(src), k0, klen, panel_scales,
                                            group, dst);
#endif
            return dequantize_int8(static_cast<const int8_t*>(src), k0, klen, panel_scales, group,
                                   dst);
          }
#if defined(__x86_64__) || defined(_M_X64)
          if (pairs)
            widen_pairs(static_cast<const uint16_t*>(src), klen / 2, dst);
          else
#endif
            widen_bf16(static_cast<const uint16_t*>(src), klen * kPanel, dst);
        };
        widen_into(slice, wide, p);
        slice = wide;
        if (pair) {
          widen_into(slice1, wide + kc * kPanel, p + 1);
          slice1 = wide + kc * kPanel;
        }
      }
      // The row blocks after the first ask L2 for the slice that comes next (the panels' next
      // K block, or the next pair's first), a line every few K steps, half of them for each
      // panel: the first row block of a K block otherwise waits for its slice from memory (a
      // layer's weights are read once per pass). On the Xeon VM, weights not in cache: layers
      // at 96-256 rows 273-288 -> 296-305 GFLOP/s, the LM head 256-267 -> 281-292; a forward
      // pass at 8x8 46.1 -> 42.4 ms, 8x32 165 -> 157 ms. (The same lines asked in the first
      // two row blocks, one a K step, gained nothing: more than one core draws from memory.)
      const int64_t nb = (r1 - r0 + mr - 1) / mr, half = nb / 2;
      const uint8_t* after = nullptr;
      int64_t next_len = 0;
      if (pair && !widen && half >= 1) {
        const bool next_k = k0 + kb < k2, next_u = u + 1 < u1;
        if (k_outer ? next_u : next_k) {
          after = k_outer ? panel + 2 * panel_bytes + static_cast<size_t>(k0 * kPanel) * elem
                          : static_cast<const uint8_t*>(slice) + klen * kPanel * elem;
          next_len = k_outer ? klen : std::min(kb, k2 - k0 - kb);
        } else if (k_outer ? next_k : next_u) {
          after = k_outer ? packed_bytes + static_cast<size_t>(u0 * step) * panel_bytes +
                                static_cast<size_t>((k0 + kb) * kPanel) * elem
                          : panel + 2 * panel_bytes;
          next_len = k_outer ? std::min(kb, k2 - k0 - kb) : std::min(kb, k2);
        }
      }
      const int64_t per_block = after ? (next_len + half - 1) / half : 0;
      for (int64_t r = r0; r < r1; r += mr) {
        int64_t rows = std::min(mr, r1 - r);
        float* tile = c + r * n + p * kPanel;
        const int64_t rb = (r - r0) / mr - 1;  // (row blocks after the first: 0, 1, ...)
        const float* l2 = nullptr;
        if (per_block > 0 && rb >= 0 && rb < 2 * half) {
          const int64_t line0 = (rb % half) * per_block;
          if (line0 < next_len)
            l2 = reinterpret_cast<const float*>(after + (rb / half) * panel_bytes) + line0 * kPanel;
        }
        // The next unit's tile asked for ownership while this one runs: its first stores
        // (K block 0) would otherwise wait for each line from memory (logits are written once
        // per pass, 19-51 MB at the recipe's larger shapes).
        if (k0 == 0 && u + 1 < u1)
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = step * kPanel; j < 2 * step * kPanel; j += kPanel)
              GPTRT_PREFETCH(tile + i * n + j, 1);
#if defined(__x86_64__) || defined(_M_X64)
        if (dots2)
          panel_pair_kernel_avx512_dots(
              reinterpret_cast<const uint32_t*>(xpacked) + (r * k2 + k0 * kPairRows) / 2, rows,
              klen, slice, pair ? slice1 : nullptr, b16, tile, n, cols, k0 > 0, r == r0, l2,
              std::max<int64_t>(1, klen / 2 / std::max<int64_t>(per_block, 1)));
        else if (pair)
          panel_pair_kernel_avx512(
              xpacked + (r * k2 + k0 * kPairRows), rows, klen, static_cast<const float*>(slice),
              static_cast<const float*>(slice1), b16, tile, n, cols, k0 > 0, r == r0, l2,
              std::max<int64_t>(1, klen / std::max<int64_t>(per_block, 1)));
        else if (int8_rows)
          panel_kernel_avx512_int8(x_at(r, k0), ldx, rows, klen, static_cast<const int8_t*>(slice),
                                   scales.at + p * scales.groups * kPanel, group, b16, tile, n,
                                   cols);
        else
#endif
          kernel(x_at(r, k0), ldx, rows, klen, slice, b16, tile, n, cols, k0 > 0);
        if (has_epilogue && k0 + klen == k2) {
          gemm_epilogue(tile, n, rows, cols, epilogue.activation,
                        epilogue.residual ? epilogue.residual + r * n + p * kPanel : nullptr, n);
        }
      }
    };
    if (k_outer) {
      for (int64_t k0 = 0; k0 < k2; k0 += kb)
        for (int64_t u = u0; u < u1; ++u) unit_block(u, k0);
    } else {
      for (int64_t u = u0; u < u1; ++u)
        for (int64_t k0 = 0; k0 < k2; k0 += kb) unit_block(u, k0);
    }
  });
}

}  // namespace gptrt::cpu
