// GEMM with weights packed at build time: C[M,N] = X[M,K] @ W[K,N] (+ bias[N]), X and C float32,
// W float32 or bfloat16 (widened in registers, accumulation in float32). W is stored as
// ceil(N/16) panels of K x 16 (zero-padded), the layout the micro-kernels stream; each ISA has
// its own micro-kernel, chosen at run time. For avx512_bf16 and amx_bf16, BF16 panels hold
// (k, k + 1) pairs instead (K rounded up to even, or to 32 for AMX tiles), which `vdpbf16ps` and
// the AMX tile multiply take with X's values rounded to BF16.
#pragma once

#include <cstdint>
#include <string>

#include "backends/cpu/thread_pool.h"
#include "gptrt/tensor.h"

namespace gptrt::cpu {

/// Columns per packed panel.
constexpr int64_t kPanel = 16;

/// Instruction sets with a micro-kernel. kAvx512Bf16 runs FP32 weights as kAvx512 does, and BF16
/// weights packed as pairs on AVX512-BF16 dot products; kAmxBf16 runs those pairs on AMX tiles
/// (gemm_amx.cpp).
enum class Isa { kGeneric, kAvx2, kAvx512, kAvx512Bf16, kAmxBf16 };
/// "generic", "avx2", "avx512", "avx512_bf16" or "amx_bf16".
const char* isa_name(Isa isa);
/// Parses isa_name(); throws gptrt::Error for an unknown name.
Isa isa_from_name(const std::string& name);
/// The best ISA this CPU (and OS) supports for FP32 weights (kAvx512 at most: an FP32 engine
/// does not need AVX512-BF16 to run).
Isa best_isa();
/// The best ISA for weights of `dtype`: for bfloat16 kAmxBf16, else kAvx512Bf16, where the CPU
/// has it.
Isa best_isa_for(DType dtype);
/// Whether `isa` packs bfloat16 weights as (k, k + 1) pairs.
bool packs_pairs(Isa isa);
/// True when this CPU (and, for AMX, the OS) can run kernels of `isa`.
bool isa_supported(Isa isa);
/// Whether gemm_packed rounds X's rows to bfloat16 for bfloat16 weights on `isa` at `m` rows
/// (the dot-product and AMX kernels multiply BF16 by BF16; the others keep X in FP32).
bool rounds_rows(Isa isa, int64_t m);

/// Whether kAvx512Bf16 runs GEMMs of more than kPairDotRows rows on dot products
/// (panel_pair_kernel_avx512_dots) rather than widening the weights to FP32 for FMAs: on AMD CPUs
/// (Zen 4/5 issue a 512-bit vdpbf16ps as fast as an FMA, twice the work), not on Intel's (which
/// issue it at half an FMA's rate: slower than widening). GPTRT_CPU_BF16_DOTS=1|0 forces it;
/// another value throws.
bool bf16_dot_blocks();
/// Packs a float32 matrix for the kernels of `isa`: `w` is [K, N], or [N, K] when `transposed`
/// (Gemm transB). (INT8: pack_weights_int8.) Returns `dtype` (float32, or bfloat16 rounded to
/// nearest even)
/// [ceil(N/16), K, 16]; bfloat16 for an ISA that packs_pairs: [ceil(N/16), K2, 16] for K2 = K
/// rounded up to even (32 for kAmxBf16: whole tiles), element (k, j) of a panel at
/// (k / 2) * 32 + 2 j + k % 2, the pad rows zero.
Tensor pack_weights(const Tensor& w, bool transposed, DType dtype = DType::kFloat32,
                    Isa isa = Isa::kGeneric);
/// The shape pack_weights gives a [K, N] matrix packed as `dtype` for `isa`.
Shape packed_shape(int64_t k, int64_t n, DType dtype, Isa isa);

/// Micro-kernel: rows (<= kernel_rows(isa)) of X times one panel, written to C's `cols` (<= 16)
/// columns, plus bias16 (16 floats, may be null); with `accumulate`, added to what C holds (the
/// driver splits K into blocks that stay in L1).
using PanelKernel = void (*)(const float* x, int64_t ldx, int64_t rows, int64_t k,
                             const void* panel, const float* bias16, float* c, int64_t ldc,
                             int64_t cols, bool accumulate);
/// Rows one call of the kernel of `isa` handles.
int64_t kernel_rows(Isa isa);
/// The kernel of `isa` for float32 panels, or for bfloat16 panels of FP32 rows when `bf16`
/// (kAvx512Bf16: pair-packed; gemm_packed takes panel_kernel_avx512_pairs for few rows).
PanelKernel panel_kernel(Isa isa, bool bf16);

// Per-ISA kernels (gemm_avx2.cpp and gemm_avx512.cpp are compiled for their ISA).
void panel_kernel_generic(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                          const float* bias16, float* c, int64_t ldc, int64_t cols,
                          bool accumulate);
void panel_kernel_generic_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k,
                               const void* panel, const float* bias16, float* c, int64_t ldc,
                               int64_t cols, bool accumulate);
void panel_kernel_avx2(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                       const float* bias16, float* c, int64_t ldc, int64_t cols, bool accumulate);
void panel_kernel_avx2_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                            const float* bias16, float* c, int64_t ldc, int64_t cols,
                            bool accumulate);
void panel_kernel_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, const void* panel,
                         const float* bias16, float* c, int64_t ldc, int64_t cols, bool accumulate);
void panel_kernel_avx512_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k,
                              const void* panel, const float* bias16, float* c, int64_t ldc,
                              int64_t cols, bool accumulate);

/// Rows of a block of panel_pair_kernel_avx512.
constexpr int64_t kPairRows = 12;
/// AVX-512 kernel for long GEMMs (FP32 panels, or BF16 ones widened per K block): a block of
/// kPairRows rows of X, packed K-major by pack_pair_rows (`rows` of them real), times two FP32
/// panels (`panel1` holding columns 16..cols-1, 16 < cols <= 32), bias32 (32 floats, may be
/// null). With `prefetch` it asks L1 for the panels' lines ahead of its loads; otherwise, with
/// `l2` set, L2 for one line of 16 floats at `l2` every `l2_every` K steps (k / l2_every lines).
void panel_pair_kernel_avx512(const float* xp, int64_t rows, int64_t k, const float* panel0,
                              const float* panel1, const float* bias32, float* c, int64_t ldc,
                              int64_t cols, bool accumulate, bool prefetch,
                              const float* l2 = nullptr, int64_t l2_every = 1);
/// Up to kPairRows rows of X (ldx apart, k columns) as one block of panel_pair_kernel_avx512's:
/// xp[kk * kPairRows + r], zeros for the rows past `rows`.
void pack_pair_rows(const float* x, int64_t ldx, int64_t rows, int64_t k, float* xp);

/// kAvx512Bf16's kernel for long GEMMs of pair-packed BF16 panels (`k` even): a block of
/// kPairRows rows packed as BF16 pairs K-major by pack_pair_rows_bf16 (`rows` of them real) times
/// two panels (`panel1` holding columns 16..cols-1, 16 < cols <= 32) or one (`panel1` null, cols
/// <= 16) on `vdpbf16ps`; bias, accumulate, prefetch and l2 as panel_pair_kernel_avx512.
void panel_pair_kernel_avx512_dots(const uint32_t* xp, int64_t rows, int64_t k, const void* panel0,
                                   const void* panel1, const float* bias32, float* c, int64_t ldc,
                                   int64_t cols, bool accumulate, bool prefetch,
                                   const float* l2 = nullptr, int64_t l2_every = 1);
/// Up to kPairRows rows of X (ldx apart, k columns) rounded to BF16 as one block of
/// panel_pair_kernel_avx512_dots's: xp[p * kPairRows + r] = (x[r][2p], x[r][2p + 1]) for
/// p < k2 / 2, zeros past k and for the rows past `rows`.
void pack_pair_rows_bf16(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k2,
                         uint32_t* xp);

/// Rows up to which kAvx512Bf16 multiplies pair-packed bfloat16 panels with `vdpbf16ps` (rows
/// rounded to bfloat16): there the GEMM is bound by the memory and its instructions, and one dot
/// product per 64 bytes of weights pays; with more rows the FMAs set the pace and the weights are
/// widened to FP32 as on kAvx512 (rows FP32). (On the 2-core Xeon VM: a decode step at batch 1
/// 10-14% faster on dot products; a 12-row forward pass 30-40% slower.)
constexpr int64_t kPairDotRows = 4;
/// kAvx512Bf16's kernels for pair-packed bfloat16 panels (`k` even): on dot products for up to
/// kPairDotRows rows, `x` holding the rows as bfloat16 pairs (pair_rows; ldx in pairs); widened,
/// for up to 16 rows of FP32 `x`.
void panel_kernel_avx512_pairs(const float* x, int64_t ldx, int64_t rows, int64_t k,
                               const void* panel, const float* bias16, float* c, int64_t ldc,
                               int64_t cols, bool accumulate);
void panel_kernel_avx512_pairs_widened(const float* x, int64_t ldx, int64_t rows, int64_t k,
                                       const void* panel, const float* bias16, float* c,
                                       int64_t ldc, int64_t cols, bool accumulate);
/// Widens `pairs` pairs of a pair-packed panel to float32 rows [2 pairs][16] (exact).
void widen_pairs(const uint16_t* src, int64_t pairs, float* dst);
/// Rows x [m, k] rounded to bfloat16 (nearest even) into out [m, k2], zeros from k to k2.
void pair_rows(const float* x, int64_t m, int64_t k, int64_t k2, uint16_t* out);

/// Asks the OS for the AMX tile state once; false where it refuses (or is not Linux).
bool amx_permitted();

/// Widens `n` bfloat16 values to float32 (exact).
void widen_bf16(const uint16_t* src, int64_t n, float* dst);

/// What a GEMM applies to each finished tile while it is in cache: c = act(c) + residual.
struct Epilogue {
  int activation = 0;               // reference::kAct*
  const float* residual = nullptr;  // [M, N], or null
};

/// The scales of INT8 panels: `at` [ceil(N/16)][groups][16] floats, group g of a panel scaling
/// its K values g * K / groups .. (g + 1) * K / groups (groups 1: a scale per output column).
struct Int8Scales {
  const float* at = nullptr;
  int64_t groups = 1;
};

/// C[M,N] = act(X[M,K] @ W + bias) + residual with `packed` from pack_weights (or
/// pack_weights_int8, with its `scales`); threads split the panels.
void gemm_packed(Isa isa, const float* x, int64_t m, int64_t k, const Tensor& packed, int64_t n,
                 const float* bias, float* c, ThreadPool& pool, const Epilogue& epilogue = {},
                 const Int8Scales& scales = {});

/// INT8 weights (backends::quantize_int8: per output column, or per output column and `group`
/// K values; 0: per column) packed as FP32 panels are ([ceil(N/16), K, 16] int8, the pad
/// columns 0); `scales` gets s as [ceil(N/16) * 16] per column, [ceil(N/16), K / group, 16] in
/// groups (the pad columns' 1). W = q * s.
Tensor pack_weights_int8(const Tensor& w, bool transposed, int64_t group, Tensor* scales);
/// K values k0 .. k0 + k of an INT8 panel (k rows of 16, starting at `src`) as FP32 q * s
/// (scales16: the panel's [groups][16] scales, `group` K values each); the _avx512 form 16
/// values an instruction.
void dequantize_int8(const int8_t* src, int64_t k0, int64_t k, const float* scales16, int64_t group,
                     float* dst);
void dequantize_int8_avx512(const int8_t* src, int64_t k0, int64_t k, const float* scales16,
                            int64_t group, float* dst);
/// Rows up to which AVX-512 GEMMs of INT8 panels widen the weights in registers (each K step's
/// widening then serves up to 8 rows' FMAs).
constexpr int64_t kInt8RowsInRegisters = 8;
/// rows (<= kInt8RowsInRegisters) of X times an INT8 panel over all of K, each column's sum
/// over each group of `group` K values times its scale (scales16: [K / group][16]), plus bias16
/// (may be null), written to C's `cols` columns.
void panel_kernel_avx512_int8(const float* x, int64_t ldx, int64_t rows, int64_t k,
                              const int8_t* panel, const float* scales16, int64_t group,
                              const float* bias16, float* c, int64_t ldc, int64_t cols);

/// kAmxBf16's GEMM (every row count) of X against pair-packed bfloat16 panels
/// (K2 a multiple of 32): X rounded to bfloat16 in tiles of 16 rows x 32, two row tiles by two
/// panels a step, FP32 sums in the tiles; bias and `epilogue` as gemm_packed. With `scales`, the
/// panels are pack_weights_int8's ([ceil(N/16), K, 16] int8): each pair of panels is converted to
/// BF16 pairs once per chunk of rows: per output column exactly, column j's sums then multiplied
/// by its scale; in groups as q * s rounded to BF16.
void gemm_amx(const float* x, int64_t m, int64_t k, const Tensor& packed, int64_t n,
              const float* bias, float* c, ThreadPool& pool, const Epilogue& epilogue,
              const Int8Scales& scales = {});

}  // namespace gptrt::cpu
