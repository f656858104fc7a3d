// The CUDA backend's own GEMM for few rows (the recipe's batch-1 shapes and decode steps), where
// cuBLASLt's tiles leave most of the chip idle: y[M, N] = act(LN(x)[M, K] @ W^T + bias) + residual
// with W stored [N, K] in FP16/BF16, FP32 accumulation on the tensor cores (mma.sync m16n8k16).
//
// Shape of the work: each block of 8 warps owns 8 * tn output columns at a time (grid-stride over
// column groups) and all M <= 16 * MT rows. The rows sit in shared memory, written once per block:
// either the FP16/BF16 input itself or, with a fused LayerNorm, the normalised FP32 input. The
// weights stream from memory straight into registers, never through shared memory: in a chunk of
// 32 k, lane (g, c) loads the 16 bytes W[n0 + g][k0 + 8c .. 8c + 7] (each 32-byte sector whole),
// and the k order inside the chunk is relabelled so those 8 values are exactly the B fragments of
// two m16n8k16 steps; the A fragments come from shared memory under the same relabelling (one
// 16-byte load per row per chunk, rows padded so a quarter-warp hits 32 distinct banks). The
// 8 / tn warps that share columns split K, and their sums meet in shared memory in a fixed order
// (deterministic). Epilogue: bias, GELU (tanh or erf), residual, FP32 or FP16/BF16 output.
//
// Programmatic dependent launch (sm_90): a block loads its first weights before waiting for the
// kernel before it, so the weight stream starts while that kernel finishes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "backends/reference/fused_ops.h"

namespace gptrt::cuda {

// Waits for the previous kernel in the stream (its writes visible); a no-op without programmatic
// dependent launch. Every kernel calls it before it reads an activation or writes anything.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Lets the next kernel in the stream start its prologue (it still waits for this one to finish).
__device__ __forceinline__ void let_next_kernel_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ float activate(float v, int act) {
  if (act == reference::kActGeluTanh)
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  if (act == reference::kActGeluErf) return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
  return v;
}

struct SkinnyArgs {
  const void* x;  // [M, K]: FP32 when ln_gamma is set (LayerNorm fused), else T
  const float* ln_gamma;
  const float* ln_beta;
  float ln_eps;
  const void* w;     // [N, K] in T
  const void* bias;  // [N] or null; T when bias_half, else FP32
  int bias_half;
  const float* residual;  // [M, N] FP32 or null (may alias y)
  void* y;                // [M, N]; T when y_half, else FP32
  int y_half;
  int act;
  int m, n, k;
  int row_stride;  // shared-memory row length in elements (>= k + 32, see skinny_row_stride)
  int tn;          // n8 tiles per block: 1, 2, 4 or 8 (8 / tn warps split K)
};

// Shared-memory row length for K: k rounded up to 64, plus 32 (so rows start 64 bytes apart
// modulo 128: the 8 lanes of a quarter-warp read two rows' 64 bytes from distinct banks).
inline int skinny_row_stride(int k) {
  return (k + 63) / 64 * 64 + 32;
}
// Rows, partial sums of the 8 warps, LayerNorm gamma and beta.
inline size_t skinny_smem_bytes(int mt, int k) {
  return static_cast<size_t>(mt) * 16 * skinny_row_stride(k) * 2 + size_t{8} * mt * 128 * 4 +
         size_t{8} * static_cast<size_t>(k);
}

template <typename T>
__device__ __forceinline__ T to_t(float v);
template <>
__device__ __forceinline__ __half to_t<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 to_t<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__device__ __forceinline__ void mma_16816(float* d, uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __half>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  __trap();  // the host launches this kernel on sm_80 and newer only
#endif
}

__device__ __forceinline__ uint4 load_weights(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}

// The rows into shared memory: [16 * MT][row_stride] in T, zero past row m and column k. With a
// fused LayerNorm each warp normalises its rows from registers (one read of the row; gamma and
// beta already in shared memory).
template <typename T, int MT>
__device__ void skinny_load_rows(const SkinnyArgs& p, T* xs, const float* gamma_beta) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, stride = p.row_stride;
  if (!p.ln_gamma) {
    const T* x = static_cast<const T*>(p.x);
    const int vecs = stride / 8;
    for (int i = threadIdx.x; i < 16 * MT * vecs; i += blockDim.x) {
      int r = i / vecs, c = i % vecs * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r < p.m && c < p.k)
        v = *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * p.k + c);
      *reinterpret_cast<uint4*>(xs + r * stride + c) = v;
    }
    return;
  }
  constexpr int kVecs = 8;  // rows of up to 32 * 8 * 4 = 1024 values stay in registers
  const float* x = static_cast<const float*>(p.x);
  const float* gamma = gamma_beta;
  const float* beta = gamma_beta + p.k;
  const int nv = p.k / 4;
  const float inv_k = 1.0f / static_cast<float>(p.k);
  for (int r = warp; r < 16 * MT; r += 8) {
    T* dst = xs + r * stride;
    for (int c = p.k + lane; c < stride; c += 32) dst[c] = to_t<T>(0.f);
    if (r >= p.m) {
      for (int c = lane; c < p.k; c += 32) dst[c] = to_t<T>(0.f);
      continue;
    }
    const float* src = x + static_cast<int64_t>(r) * p.k;
    if (nv <= 32 * kVecs) {
      float4 v[kVecs];
#pragma unroll
      for (int j = 0; j < kVecs; ++j) {
        int at = lane + 32 * j;
        v[j] = at < nv ? reinterpret_cast<const float4*>(src)[at] : make_float4(0, 0, 0, 0);
      }
      float sum = 0;
#pragma unroll
      for (int j = 0; j < kVecs; ++j) sum += v[j].x + v[j].y + v[j].z + v[j].w;
      const float mean = warp_sum(sum) * inv_k;
      float var = 0;
#pragma unroll
      for (int j = 0; j < kVecs; ++j) {
        if (lane + 32 * j >= nv) continue;
        float a = v[j].x - mean, b = v[j].y - mean, c = v[j].z - mean, d = v[j].w - mean;
        var += a * a + b * b + c * c + d * d;
      }
      const float inv = rsqrtf(warp_sum(var) * inv_k + p.ln_eps);
#pragma unroll
      for (int j = 0; j < kVecs; ++j) {
        int at = lane + 32 * j;
        if (at >= nv) continue;
        const float vals[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          int c = 4 * at + q;
          dst[c] = to_t<T>((vals[q] - mean) * inv * gamma[c] + beta[c]);
        }
      }
    } else {  // longer rows: three passes over the (cached) row
      float sum = 0;
      for (int c = lane; c < p.k; c += 32) sum += src[c];
      const float mean = warp_sum(sum) * inv_k;
      float var = 0;
      for (int c = lane; c < p.k; c += 32) var += (src[c] - mean) * (src[c] - mean);
      const float inv = rsqrtf(warp_sum(var) * inv_k + p.ln_eps);
      for (int c = lane; c < p.k; c += 32)
        dst[c] = to_t<T>((src[c] - mean) * inv * gamma[c] + beta[c]);
    }
  }
}

template <typename T, int MT>
__global__ void __launch_bounds__(256, 2) skinny_linear_kernel(SkinnyArgs p) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* xs = reinterpret_cast<T*>(smem);
  float* partial = reinterpret_cast<float*>(smem + 16 * MT * p.row_stride * sizeof(T));
  float* gamma_beta = partial + 8 * MT * 128;  // [2][k] with a fused LayerNorm
  constexpr int kBatch = 8;  // weight chunks per warp per step (two steps in flight)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tn = p.tn, splits = 8 / tn, tile = warp % tn, part = warp / tn;
  const int chunks = (p.k + 31) / 32, cols = 8 * tn, groups = (p.n + cols - 1) / cols;
  // Every warp walks the same number of steps per column group (so the block's barriers line
  // up); chunk slots past K load zeros and are skipped.
  const int slots = (chunks + splits - 1) / splits, steps = (slots + kBatch - 1) / kBatch;
  const T* w = static_cast<const T*>(p.w);

  auto load_step = [&](uint4(&dst)[kBatch], int group, int step) {
    int n = group * cols + tile * 8 + g;
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      int chunk = part + (step * kBatch + i) * splits;
      int k = chunk * 32 + c * 8;
      dst[i] = n < p.n && chunk < chunks && k < p.k
                   ? load_weights(w + static_cast<int64_t>(n) * p.k + k)
                   : make_uint4(0, 0, 0, 0);
    }
  };

  // Output i of a column group (i < tn * MT * 128, thread threadIdx.x + 256 q holds it in the
  // epilogue): its row and column, and where its partial sums sit.
  const int outputs = tn * MT * 128;
  auto row_of = [&](int i) {
    int rest = i % (MT * 128), l = rest / 4 % 32;
    return rest / 128 * 16 + (l >> 2) + (rest % 4 >= 2 ? 8 : 0);
  };
  auto col_of = [&](int group, int i) {
    int rest = i % (MT * 128), l = rest / 4 % 32;
    return group * cols + i / (MT * 128) * 8 + (l & 3) * 2 + (rest & 1);
  };
  auto bias_at = [&](int col) {
    if (!p.bias || col >= p.n) return 0.f;
    return p.bias_half ? static_cast<float>(static_cast<const T*>(p.bias)[col])
                       : static_cast<const float*>(p.bias)[col];
  };
  auto residual_at = [&](int row, int col) {
    return p.residual && row < p.m && col < p.n ? p.residual[static_cast<int64_t>(row) * p.n + col]
                                                : 0.f;
  };

  // Before the previous kernel has finished: the first weights, the first group's bias and the
  // LayerNorm's parameters. Right after it: the first group's residual, then the rows.
  constexpr int kEarly = 4;  // outputs per thread whose bias and residual are fetched early
  int group = blockIdx.x, step = 0;
  uint4 cur[kBatch], next[kBatch];
  float early_bias[kEarly], early_residual[kEarly];
  if (group < groups) load_step(cur, group, 0);
#pragma unroll
  for (int q = 0; q < kEarly; ++q) {
    int i = threadIdx.x + q * 256;
    early_bias[q] = i < outputs ? bias_at(col_of(group, i)) : 0.f;
  }
  if (p.ln_gamma)
    for (int i = threadIdx.x; i < p.k; i += blockDim.x) {
      gamma_beta[i] = p.ln_gamma[i];
      gamma_beta[p.k + i] = p.ln_beta[i];
    }
  wait_for_previous_kernel();
  let_next_kernel_start();
#pragma unroll
  for (int q = 0; q < kEarly; ++q) {
    int i = threadIdx.x + q * 256;
    early_residual[q] = i < outputs ? residual_at(row_of(i), col_of(group, i)) : 0.f;
  }
  __syncthreads();
  skinny_load_rows<T, MT>(p, xs, gamma_beta);
  __syncthreads();

  float acc[MT][4] = {};
  while (group < groups) {
    int next_group = group, next_step = step + 1;
    if (next_step == steps) {
      next_step = 0;
      next_group += gridDim.x;
    }
    if (next_group < groups) load_step(next, next_group, next_step);
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int chunk = part + (step * kBatch + i) * splits;
      if (chunk >= chunks) break;  // the same for the whole warp
      const int k = chunk * 32 + c * 8;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        uint4 lo = *reinterpret_cast<const uint4*>(xs + (mt * 16 + g) * p.row_stride + k);
        uint4 hi = *reinterpret_cast<const uint4*>(xs + (mt * 16 + g + 8) * p.row_stride + k);
        mma_16816<T>(acc[mt], lo.x, hi.x, lo.y, hi.y, cur[i].x, cur[i].y);
        mma_16816<T>(acc[mt], lo.z, hi.z, lo.w, hi.w, cur[i].z, cur[i].w);
      }
    }
    if (step + 1 == steps) {
      // Partial sums of every warp, then the K splits added in a fixed order.
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        *reinterpret_cast<float4*>(partial + ((warp * MT + mt) * 32 + lane) * 4) =
            make_float4(acc[mt][0], acc[mt][1], acc[mt][2], acc[mt][3]);
        acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.f;
      }
      __syncthreads();
      auto finish = [&](int i, float bias, float residual) {
        int row = row_of(i), col = col_of(group, i);
        if (row >= p.m || col >= p.n) return;
        int t = i / (MT * 128), rest = i % (MT * 128);
        float v = 0;
        for (int s = 0; s < splits; ++s) v += partial[(s * tn + t) * MT * 128 + rest];
        v = activate(v + bias, p.act) + residual;
        int64_t at = static_cast<int64_t>(row) * p.n + col;
        if (p.y_half)
          static_cast<T*>(p.y)[at] = to_t<T>(v);
        else
          static_cast<float*>(p.y)[at] = v;
      };
      const bool early = group == static_cast<int>(blockIdx.x);
#pragma unroll
      for (int q = 0; q < kEarly; ++q) {
        int i = threadIdx.x + q * 256;
        if (i >= outputs) break;
        finish(i, early ? early_bias[q] : bias_at(col_of(group, i)),
               early ? early_residual[q] : residual_at(row_of(i), col_of(group, i)));
      }
      for (int i = threadIdx.x + kEarly * 256; i < outputs; i += blockDim.x)
        finish(i, bias_at(col_of(group, i)), residual_at(row_of(i), col_of(group, i)));
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) cur[i] = next[i];
    group = next_group;
    step = next_step;
  }
}

}  // namespace gptrt::cuda
