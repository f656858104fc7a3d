// GEMM with weights packed at build time: C[M,N] = X[M,K] @ W[K,N] (+ bias[N]), X and C float32,
// W float32 or bfloat16 (widened in registers, accumulation in float32). W is stored as
// ceil(N/16) panels of K x 16 (zero-padded), the layout the micro-kernels stream; each ISA has
// its own micro-kernel, chosen at run time.
#pragma once

#include <cstdint>
#include <string>

#include "backends/cpu/thread_pool.h"
#include "gptrt/tensor.h"

namespace gptrt::cpu {

/// Columns per packed panel.
constexpr int64_t kPanel = 16;

/// Instruction sets with a micro-kernel.
enum class Isa { kGeneric, kAvx2, kAvx512 };
/// "generic", "avx2" or "avx512".
const char* isa_name(Isa isa);
/// Parses isa_name(); throws gptrt::Error for an unknown name.
Isa isa_from_name(const std::string& name);
/// The best ISA this CPU (and OS) supports.
Isa best_isa();
/// True when this CPU can run kernels of `isa`.
bool isa_supported(Isa isa);

/// Packs a float32 matrix: `w` is [K, N], or [N, K] when `transposed` (Gemm transB). Returns
/// `dtype` (float32, or bfloat16 rounded to nearest even) [ceil(N/16), K, 16].
Tensor pack_weights(const Tensor& w, bool transposed, DType dtype = DType::kFloat32);

/// Micro-kernel: rows (<= kernel_rows(isa)) of X times one panel, written to C's `cols` (<= 16)
/// columns, plus bias16 (16 floats, may be null); with `accumulate`, added to what C holds (the
/// driver splits K into blocks that stay in L1).
using PanelKernel = void (*)(const float* x, int64_t ldx, int64_t rows, int64_t k,
                             const void* panel, const float* bias16, float* c, int64_t ldc,
                             int64_t cols, bool accumulate);
/// Rows one call of the kernel of `isa` handles.
int64_t kernel_rows(Isa isa);
/// The kernel of `isa` for float32 panels, or for bfloat16 panels when `bf16`.
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

/// Widens `n` bfloat16 values to float32 (exact).
void widen_bf16(const uint16_t* src, int64_t n, float* dst);

/// What a GEMM applies to each finished tile while it is in cache: c = act(c) + residual.
struct Epilogue {
  int activation = 0;               // reference::kAct*
  const float* residual = nullptr;  // [M, N], or null
};

/// C[M,N] = act(X[M,K] @ W + bias) + residual with `packed` from pack_weights; threads split the
/// panels.
void gemm_packed(Isa isa, const float* x, int64_t m, int64_t k, const Tensor& packed, int64_t n,
                 const float* bias, float* c, ThreadPool& pool, const Epilogue& epilogue = {});

}  // namespace gptrt::cpu
