// Linear layers on the CUDA cores alone, for GPUs without tensor cores worth using (sm_61, the
// recipe's Pascal GTX 1060) and for builds without cuBLAS: y[m, n] = act(x[m, :] . W[:, n] +
// bias[n]) + residual[m, n] in FP32 arithmetic, whatever the operands' storage (FP32, FP16 or
// BF16: on Pascal FP16 is storage only, its FP16 arithmetic running at 1/64 of the FP32 rate).
#pragma once
// (Its kernel is defined here: include it in one .cu file, gemm_dispatch.cu.)

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {

// How an operand is stored.
enum class Storage : int { kF32 = 0, kF16 = 1, kBf16 = 2 };

__device__ __forceinline__ float load_float(const void* p, int64_t i, Storage s) {
  if (s == Storage::kF16) return __half2float(static_cast<const __half*>(p)[i]);
  if (s == Storage::kBf16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store_float(void* p, int64_t i, float v, Storage s) {
  if (s == Storage::kF16)
    static_cast<__half*>(p)[i] = to_t<__half>(v);
  else if (s == Storage::kBf16)
    static_cast<__nv_bfloat16*>(p)[i] = to_t<__nv_bfloat16>(v);
  else
    static_cast<float*>(p)[i] = v;
}

struct PlainGemmArgs {
  const void* x = nullptr;  // [m, k]
  const void* w = nullptr;  // [n, k] when w_nk, else [k, n]
  const void* bias = nullptr;
  const void* residual = nullptr;  // [m, n] stored as y, or null
  void* y = nullptr;               // [m, n]
  Storage x_type = Storage::kF32, w_type = Storage::kF32, bias_type = Storage::kF32,
          y_type = Storage::kF32;
  bool w_nk = true;
  int act = 0;
  int m = 0, n = 0, k = 0;
};

// The tile of y a block computes (kPlainTile x kPlainTile, 4 x 4 values a thread of 256) and
// the K values each step brings into shared memory.
constexpr int kPlainTile = 64;
constexpr int kPlainStep = 16;
constexpr int kPlainThreads = 256;

// One tile of y per block (grid: column tiles, row tiles). A thread owns rows 4 * (t / 16) + i
// and columns t % 16 + 16 * j: a warp's reads of the W tile are 32 consecutive floats in shared
// memory, its reads of the x tile two broadcasts.
__global__ void __launch_bounds__(kPlainThreads) plain_gemm_kernel(PlainGemmArgs a) {
  GPTRT_TRACE_KERNEL();
  __shared__ float xs[kPlainStep][kPlainTile + 1];  // [k][row]
  __shared__ float ws[kPlainStep][kPlainTile + 1];  // [k][column]
  const int row0 = static_cast<int>(blockIdx.y) * kPlainTile;
  const int col0 = static_cast<int>(blockIdx.x) * kPlainTile;
  const int t = static_cast<int>(threadIdx.x), tr = t / 16 * 4, tc = t % 16;
  float acc[4][4] = {};
  wait_for_previous_kernel();
  for (int k0 = 0; k0 < a.k; k0 += kPlainStep) {
    // 16 x 64 values of each operand, 4 a thread: along K for x and for W stored [n, k] (16
    // consecutive values of a row), along n for W stored [k, n].
    for (int e = t; e < kPlainStep * kPlainTile; e += kPlainThreads) {
      const int kk = e % kPlainStep, r = e / kPlainStep;
      const int row = row0 + r, kx = k0 + kk;
      xs[kk][r] = row < a.m && kx < a.k
                      ? load_float(a.x, static_cast<int64_t>(row) * a.k + kx, a.x_type)
                      : 0.f;
      if (a.w_nk) {
        const int col = col0 + r;
        ws[kk][r] = col < a.n && kx < a.k
                        ? load_float(a.w, static_cast<int64_t>(col) * a.k + kx, a.w_type)
                        : 0.f;
      } else {
        const int c = e % kPlainTile, kw = k0 + e / kPlainTile, col = col0 + c;
        ws[e / kPlainTile][c] =
            col < a.n && kw < a.k ? load_float(a.w, static_cast<int64_t>(kw) * a.n + col, a.w_type)
                                  : 0.f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kPlainStep; ++kk) {
      float xv[4], wv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xv[i] = xs[kk][tr + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wv[j] = ws[kk][tc + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = row0 + tr + i;
    if (row >= a.m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = col0 + tc + 16 * j;
      if (col >= a.n) continue;
      float v = acc[i][j];
      if (a.bias) v += load_float(a.bias, col, a.bias_type);
      v = activate(v, a.act);
      const int64_t at = static_cast<int64_t>(row) * a.n + col;
      if (a.residual) v += load_float(a.residual, at, a.y_type);
      store_float(a.y, at, v, a.y_type);
    }
  }
}

}  // namespace gptrt::cuda
