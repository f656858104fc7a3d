// The CUDA backend's FP32 GEMM for few rows (exact FP32 arithmetic on the CUDA cores, no TF32):
// y[M, N] = act(LN(x)[M, K] @ W^T + bias) + residual with W stored [N, K] in FP32, M <= 16.
//
// Shape of the work: a block of 8 warps owns 8 / S column pairs (S = the K splits, 1, 2, 4 or 8);
// warp (pair g, split s) holds its two weight rows' share of K in registers, V float4s per row
// and lane: k = (s * V + v) * 128 + 4 * lane. Those loads are issued before the block waits for
// the previous kernel (programmatic dependent launch), so the weights stream in while it
// finishes. The rows then come into shared memory as FP32 (normalised there when a LayerNorm is
// fused), each lane multiplies its weights with every row (MR x 2 sums), and the warp reduces the
// sums with a butterfly that leaves one sum per lane. The K splits meet in shared memory in a
// fixed order (deterministic), then bias, GELU (tanh or erf) and the residual.
//
// The rows sit in shared memory at a pitch of 128 * V * S floats (>= K) and in groups of four
// (one row when MR is 1); the columns from K to the pitch and the rows from m to the next group
// are zeroed before the wait, so the multiply runs whole groups with no bounds: the loads of a
// group's rows issue together and its eight sums interleave (with a bound per row and per float4,
// each load waited for its own eight FMAs: 2.3 of the 4.6 µs of a decode step's QKV at 8 rows on
// the H100).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/skinny_linear.cuh"

namespace gptrt::cuda {

constexpr int kFp32Cols = 2;  // output columns per warp

// The rows the multiply reads: m rounded up to a group (4 rows, or 1 when MR is 1).
__host__ __device__ inline int skinny_fp32_rows(int m) {
  return m == 1 ? 1 : (m + 3) / 4 * 4;
}

// Shared memory: the rows [skinny_fp32_rows(m)][pitch] (pitch = 128 * V * splits >= k), the
// warps' sums [8][MR * 2], LayerNorm gamma and beta.
inline size_t skinny_fp32_smem_bytes(int m, int k, int pitch, bool layer_norm) {
  return (static_cast<size_t>(skinny_fp32_rows(m)) * pitch + 8 * 16 * kFp32Cols +
          (layer_norm ? 2 * k : 0)) *
         4;
}

// Zeros where a multiply over FP32 rows [rows][pitch] reads past them (columns k to the pitch,
// rows m to `rows`); the rows' own cells are written after the wait.
__device__ __forceinline__ void skinny_fp32_zero_padding(const SkinnyArgs& p, float* xs, int pitch,
                                                         int rows) {
  if (pitch <= p.k && rows <= p.m) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int r = warp; r < rows; r += blockDim.x / 32)
    for (int c = (r < p.m ? p.k : 0) + 4 * lane; c < pitch; c += 128)
      *reinterpret_cast<float4*>(xs + r * pitch + c) = make_float4(0, 0, 0, 0);
}

// Sums v[i] over the warp's lanes for every i < NV (a power of two up to 32) with 31 or fewer
// shuffles: returns the sum of value `idx`, which the lane learns (lanes holding the same idx
// hold the same sum).
template <int NV>
__device__ __forceinline__ float warp_reduce_scatter(float (&v)[NV], int lane, int& idx) {
  idx = 0;
  int count = NV;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    if (count > 1) {
      const bool upper = (lane & o) != 0;
      const int half = count / 2;
#pragma unroll
      for (int i = 0; i < NV / 2; ++i) {
        if (i >= half) break;
        const float send = upper ? v[i] : v[i + half];
        const float keep = upper ? v[i + half] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffff, send, o);
      }
      if (upper) idx += half;
      count = half;
    } else {
      v[0] += __shfl_xor_sync(0xffffffff, v[0], o);
    }
  }
  return v[0];
}

// MR: rows (>= m, 1, 8 or 16); V: float4s per weight row and lane (K <= 128 * V * splits).
// SkinnyArgs as for skinny_linear_kernel, all FP32; tn holds the K splits, row_stride the pitch
// (128 * V * splits). A block takes column blocks blockIdx.x, + gridDim.x, ... (more than one
// where there are more than fit on the GPU at once, the LM head), the rows loaded once.
template <int MR, int V>
__global__ void __launch_bounds__(256, 2) skinny_fp32_kernel(SkinnyArgs p) {
  GPTRT_TRACE_KERNEL();
  extern __shared__ __align__(16) float fsmem[];
  constexpr int C = kFp32Cols, NV = MR * C;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int splits = p.tn, pairs = 8 / splits, pair = warp % pairs, split = warp / pairs;
  const int column_blocks = (p.n + pairs * C - 1) / (pairs * C);
  constexpr int G = MR == 1 ? 1 : 4;  // rows per group
  const int pitch = p.row_stride, rows = skinny_fp32_rows(p.m);
  float* xs = fsmem;                                     // [rows][pitch]
  float* sums = xs + static_cast<size_t>(rows) * pitch;  // [8][NV]
  float* gamma_beta = sums + 8 * 16 * C;                 // [2][k]
  const float* w = static_cast<const float*>(p.w);

  float4 wr[C][V];
  auto load_weights = [&](int block) {
    const int n0 = (block * pairs + pair) * C;
#pragma unroll
    for (int c = 0; c < C; ++c)
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int k = (split * V + v) * 128 + 4 * lane, n = n0 + c;
        wr[c][v] = n < p.n && k < p.k
                       ? *reinterpret_cast<const float4*>(w + static_cast<int64_t>(n) * p.k + k)
                       : make_float4(0, 0, 0, 0);
      }
  };
  // Epilogue thread e: output idx = e % NV of pair e / NV (row idx / C, column + idx % C).
  const int e_pair = threadIdx.x / NV, e_idx = threadIdx.x % NV, e_row = e_idx / C;
  auto e_col = [&](int block) { return (block * pairs + e_pair) * C + e_idx % C; };
  auto e_live = [&](int block) { return e_pair < pairs && e_row < p.m && e_col(block) < p.n; };
  auto bias_of = [&](int block) {
    return e_live(block) && p.bias ? static_cast<const float*>(p.bias)[e_col(block)] : 0.f;
  };
  auto residual_of = [&](int block) {
    return e_live(block) && p.residual
               ? p.residual[static_cast<int64_t>(e_row) * p.n + e_col(block)]
               : 0.f;
  };

  // Before the previous kernel has finished: the LayerNorm's parameters (copied straight into
  // shared memory), the first column block's weights and bias, all requested without waiting
  // for any (a block that reaches its wait late starts late). Then the rows, once.
  skinny_request_layer_norm(p, gamma_beta);
  load_weights(blockIdx.x);
  float bias = bias_of(blockIdx.x);
  // Zeros where the multiply reads past the rows (columns k to the pitch, rows m to the group's
  // end); the rows' own cells are written after the wait.
  skinny_fp32_zero_padding(p, xs, pitch, rows);
  wait_for_previous_kernel();
  let_next_kernel_start();
  float residual = residual_of(blockIdx.x);
  copy_async_wait<0>();
  __syncthreads();  // gamma and beta
  GPTRT_TRACE_MARK(0);
  skinny_load_rows<float, 1>(p, xs, gamma_beta);  // (one row at a time: the weights hold
                                                  // registers)
  __syncthreads();
  GPTRT_TRACE_MARK(1);

  for (int block = blockIdx.x; block < column_blocks; block += gridDim.x) {
    // Every row times this warp's weights.
    float acc[NV];
#pragma unroll
    for (int i = 0; i < NV; ++i) acc[i] = 0.f;
#pragma unroll
    for (int m0 = 0; m0 < MR; m0 += G) {
      if (m0 >= p.m) break;
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const float* x = xs + static_cast<size_t>(m0) * pitch + (split * V + v) * 128 + 4 * lane;
        float4 xv[G];
#pragma unroll
        for (int r = 0; r < G; ++r) xv[r] = *reinterpret_cast<const float4*>(x + r * pitch);
#pragma unroll
        for (int r = 0; r < G; ++r)
#pragma unroll
          for (int c = 0; c < C; ++c) {
            float& a = acc[(m0 + r) * C + c];
            a = fmaf(wr[c][v].x, xv[r].x, a);
            a = fmaf(wr[c][v].y, xv[r].y, a);
            a = fmaf(wr[c][v].z, xv[r].z, a);
            a = fmaf(wr[c][v].w, xv[r].w, a);
          }
      }
    }
    GPTRT_TRACE_MARK(2);
    // The weights are used up: the next column block's stream in during the reduction and the
    // epilogue.
    const float block_bias = bias, block_residual = residual;
    if (block + static_cast<int>(gridDim.x) < column_blocks) {
      load_weights(block + gridDim.x);
      bias = bias_of(block + gridDim.x);
      residual = residual_of(block + gridDim.x);
    }
    int idx = 0;
    const float total = warp_reduce_scatter<NV>(acc, lane, idx);
    if ((lane & (32 / NV - 1)) == 0) sums[(split * pairs + pair) * NV + idx] = total;
    __syncthreads();
    if (e_live(block)) {
      float v = 0;
      for (int s = 0; s < splits; ++s) v += sums[(s * pairs + e_pair) * NV + e_idx];
      v = activate(v + block_bias, p.act) + block_residual;
      static_cast<float*>(p.y)[static_cast<int64_t>(e_row) * p.n + e_col(block)] = v;
    }
    __syncthreads();  // the sums are read before the next block's
  }
}

}  // namespace gptrt::cuda
