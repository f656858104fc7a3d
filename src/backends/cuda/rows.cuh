// Kernels that finish or move rows: the last position of each row, exact GELU with the
// residual, and pitched GEMM rows compacted into place.
// Included by the one file that launches them (their definitions are local to it).
#pragma once

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {
namespace {

// y[r] = x[r, t - 1]: each row's last position (the only logits generation needs); with `from`
// (a packed pass), y[r] = x[from[r]], zeros where from[r] < 0 (a row not in the pass).
template <typename T>
__global__ void last_rows_kernel(const T* x, int64_t t, int64_t e, const int32_t* from, T* y) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  const int64_t src = from ? from[blockIdx.x] : blockIdx.x * t + t - 1;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x)
    y[blockIdx.x * e + k] = src < 0 ? to_t<T>(0.f) : x[src * e + k];
}

// Exact GELU (cuBLASLt's GELU epilogue is the tanh form): y = gelu(x) + residual, x = the GEMM
// output with its bias, in FP32 scratch.
template <typename T>
__global__ void gelu_erf_kernel(const float* x, const float* residual, int64_t n, T* y) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= n) return;
  float v = activate(x[idx], reference::kActGeluErf);
  if (residual) v += residual[idx];
  y[idx] = to_t<T>(v);
}

// Keeps the GPU busy for `ns` nanoseconds, so that kernels launched behind it queue up and
// per-kernel events time the GPU, not the host's launches (profiling only).
// Rows a GEMM wrote `pitch` elements apart (see Runner::Impl::pitched_cols) into their
// contiguous place: dst[r][c] = src[r][c] for c < cols; block (x, r) takes columns x, x +
// gridDim.x * blockDim.x, ... of row r.
template <typename T>
__global__ void compact_rows_kernel(const T* src, int64_t pitch, int64_t cols, T* dst) {
  wait_for_previous_kernel();
  let_next_kernel_start();
  const int64_t r = blockIdx.y;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[r * cols + c] = src[r * pitch + c];
}

}  // namespace
}  // namespace gptrt::cuda
