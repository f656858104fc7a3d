// LayerNorm over rows: one block a row, FP32 statistics, outputs in FP32 or the GEMMs' 16-bit type.
// Included by the one file that launches them (their definitions are local to it).
#pragma once

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {
namespace {

__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = 0;
  for (int w = 0; w < (blockDim.x + 31) / 32; ++w) t += shared[w];
  return t;
}

// Outputs in T: float, or the GEMM input type (FP16/BF16) when only linear layers read them.
template <typename T>
__global__ void layer_norm_kernel(const float* x, const float* g, const float* b, float eps,
                                  int64_t e, T* y) {
  GPTRT_TRACE_KERNEL();
  __shared__ float shared[32];
  // Rows of up to kHeld values a thread: gamma and beta requested before the wait (constants),
  // the row read once into registers; the same sums in the same order as the loop below.
  constexpr int kHeld = 4;
  const int64_t threads = blockDim.x;
  const bool held = e <= kHeld * threads;
  float gv[kHeld] = {}, bv[kHeld] = {};
  if (held) {
#pragma unroll
    for (int i = 0; i < kHeld; ++i) {
      const int64_t k = threadIdx.x + i * threads;
      if (k < e) {
        gv[i] = g[k];
        bv[i] = b[k];
      }
    }
  }
  wait_for_previous_kernel();
  let_next_kernel_start();
  const float* px = x + blockIdx.x * e;
  T* py = y + blockIdx.x * e;
  if (held) {
    float v[kHeld];
    float sum = 0;
#pragma unroll
    for (int i = 0; i < kHeld; ++i) {
      const int64_t k = threadIdx.x + i * threads;
      v[i] = k < e ? px[k] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kHeld; ++i)
      if (threadIdx.x + i * threads < e) sum += v[i];
    const float mean = block_sum(sum, shared) / static_cast<float>(e);
    float var = 0;
#pragma unroll
    for (int i = 0; i < kHeld; ++i)
      if (threadIdx.x + i * threads < e) var += (v[i] - mean) * (v[i] - mean);
    const float inv = rsqrtf(block_sum(var, shared) / static_cast<float>(e) + eps);
#pragma unroll
    for (int i = 0; i < kHeld; ++i) {
      const int64_t k = threadIdx.x + i * threads;
      if (k < e) py[k] = to_t<T>((v[i] - mean) * inv * gv[i] + bv[i]);
    }
    return;
  }
  float sum = 0;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) sum += px[k];
  float mean = block_sum(sum, shared) / static_cast<float>(e);
  float var = 0;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) var += (px[k] - mean) * (px[k] - mean);
  float inv = rsqrtf(block_sum(var, shared) / static_cast<float>(e) + eps);
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x)
    py[k] = to_t<T>((px[k] - mean) * inv * g[k] + b[k]);
}

}  // namespace
}  // namespace gptrt::cuda
