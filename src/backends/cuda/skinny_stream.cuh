// The CUDA backend's GEMM for few rows and more columns than the GPU's blocks hold at once (the
// LM head: 50257 columns), with FP32 weights or, in FP16/BF16 engines, 16-bit ones (multiplied in
// FP32 with the FP32 output of a fused LayerNorm). skinny_fp32_kernel holds one column block's
// weights in registers and asks for the next only when its multiply is done, so each of its ~24
// column blocks per block waited for its weights in turn (the H100's FP32 head at 12 rows: 75 µs
// for 154 MB, 2 TB/s). Here the weights stream through shared memory instead: each warp owns
// kStreamCols columns at a time over the whole of K (no K splits, so no block barrier after the
// start), in items of 256 of K that each lane copies for itself, 16 bytes per column at a time
// and a warp's 512 bytes contiguous, with cp.async into a ring of stream_stages<W>() stages, so a
// lane waits only for its own copies and the next stages are in flight while it multiplies. The
// rows sit in shared memory as FP32 at a pitch of K rounded up to 256 (zeros past K and past m to
// the row group's end), four at a time as in skinny_fp32_kernel; the warp's sums meet with a
// butterfly (32 values at a time) and the lanes holding them write the outputs. One block per SM;
// the first stages are requested before the wait. Runner's plans take it for the LM head where it
// was measured faster: FP32 at 9-16 rows, FP16/BF16 at one row (docs/lab/, "the LM head streamed").
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/skinny_fp32.cuh"
#include "backends/cuda/skinny_linear.cuh"

namespace gptrt::cuda {

constexpr int kStreamCols = 4, kStreamRing = 96 * 1024;  // columns per warp, ring bytes
template <typename W>
__host__ __device__ constexpr int
stream_vecs() {  // 16-byte pieces per lane and column in an item of 256 of K
  return 256 / 32 / (16 / static_cast<int>(sizeof(W)));
}
template <typename W>
__host__ __device__ constexpr int stream_stages() {
  return kStreamRing / (8 * kStreamCols * stream_vecs<W>() * 32 * 16);
}

inline int skinny_stream_pitch(int k) {
  return (k + 255) / 256 * 256;
}
inline size_t skinny_stream_smem_bytes(int m, int k, bool layer_norm) {
  return size_t{kStreamRing} + (static_cast<size_t>(skinny_fp32_rows(m)) * skinny_stream_pitch(k) +
                                (layer_norm ? 2 * static_cast<size_t>(k) : 0)) *
                                   4;
}

// Eight 16-bit values (one 16-byte piece) as floats.
template <typename W>
__device__ __forceinline__ void widen8(const uint4& piece, float* out) {
  const uint32_t words[4] = {piece.x, piece.y, piece.z, piece.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 f;
    if constexpr (std::is_same_v<W, __half>)
      f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
    else  // (BF16 is the top half of a float; CUDA 11's __bfloat1622float2 needs sm_80)
      f = make_float2(__uint_as_float(words[i] << 16), __uint_as_float(words[i] & 0xffff0000u));
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// W: the weights' type (float, __half or __nv_bfloat16); MR: rows (>= m: 1, 8 or 16). SkinnyArgs
// as for skinny_fp32_kernel (x FP32: with 16-bit weights only where a LayerNorm is fused; bias
// and y in W where bias_half / y_half); row_stride is skinny_stream_pitch(k), tn is unused.
template <typename W, int MR>
__global__ void __launch_bounds__(256, 1) skinny_stream_kernel(SkinnyArgs p) {
  GPTRT_TRACE_KERNEL();
  extern __shared__ __align__(16) float fsmem[];
  constexpr int C = kStreamCols, KV = stream_vecs<W>(), S = stream_stages<W>();
  constexpr int P = 16 / static_cast<int>(sizeof(W));  // values per piece
  constexpr int NV = MR * C, NR = NV < 32 ? NV : 32;   // sums per lane; reduced NR at a time
  constexpr int G = MR == 1 ? 1 : 4;                   // rows per group
  constexpr int kWarpStage = C * KV * 32;              // pieces of one warp's stage
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int pitch = p.row_stride, rows = skinny_fp32_rows(p.m), chunks = pitch / 256;
  uint4* ring = reinterpret_cast<uint4*>(fsmem) + warp * kWarpStage + lane;  // [S][8][C][KV][32]
  float* xs = fsmem + kStreamRing / 4;                                       // [rows][pitch]
  float* gamma_beta = xs + static_cast<size_t>(rows) * pitch;                // [2][k]
  const W* w = static_cast<const W*>(p.w);
  const int groups = (p.n + C - 1) / C, first = blockIdx.x * 8 + warp, stride = gridDim.x * 8;
  const int items = first < groups ? (groups - first + stride - 1) / stride * chunks : 0;

  // Requests item rq_item's weights (C columns x 256 of K) into its stage: one commit group, empty
  // past the last item so that the groups keep counting.
  int rq_item = 0, rq_group = first, rq_chunk = 0, rq_stage = 0;
  auto request = [&]() {
    if (rq_item < items) {
      uint4* slot = ring + rq_stage * 8 * kWarpStage;
#pragma unroll
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int v = 0; v < KV; ++v) {
          const int n = rq_group * C + c, k = (rq_chunk * KV + v) * 32 * P + P * lane;
          const bool valid = n < p.n && k < p.k;
          copy_async(slot + (c * KV + v) * 32, valid ? w + static_cast<int64_t>(n) * p.k + k : w,
                     valid);
        }
      ++rq_item;
      rq_stage = rq_stage + 1 == S ? 0 : rq_stage + 1;
      if (++rq_chunk == chunks) {
        rq_chunk = 0;
        rq_group += stride;
      }
    }
    copy_async_commit();
  };

  // Before the previous kernel has finished: the LayerNorm's parameters (the oldest copy group),
  // the first weight stages, and zeros where the multiply reads past the rows.
  skinny_request_layer_norm(p, gamma_beta);
#pragma unroll
  for (int s = 0; s < S - 1; ++s) request();
  skinny_fp32_zero_padding(p, xs, pitch, rows);
  wait_for_previous_kernel();
  let_next_kernel_start();
  copy_async_wait<S - 1>();  // gamma and beta
  __syncthreads();
  GPTRT_TRACE_MARK(0);
  skinny_load_rows<float, 1>(p, xs, gamma_beta);
  __syncthreads();
  GPTRT_TRACE_MARK(1);

  float acc[NV];
#pragma unroll
  for (int i = 0; i < NV; ++i) acc[i] = 0.f;
  int group = first, chunk = 0, stage = 0;
  for (int item = 0; item < items; ++item) {
    request();
    copy_async_wait<S - 1>();  // this lane's copies for `item` have landed
    const uint4* slot = ring + stage * 8 * kWarpStage;
#pragma unroll
    for (int v = 0; v < KV; ++v) {
      float wf[C][P];  // this lane's P weights of each column
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const uint4 piece = slot[(c * KV + v) * 32];
        if constexpr (P == 4) {
          wf[c][0] = __uint_as_float(piece.x);
          wf[c][1] = __uint_as_float(piece.y);
          wf[c][2] = __uint_as_float(piece.z);
          wf[c][3] = __uint_as_float(piece.w);
        } else {
          widen8<W>(piece, wf[c]);
        }
      }
#pragma unroll
      for (int m0 = 0; m0 < MR; m0 += G) {
        if (m0 >= p.m) break;
        const float* x =
            xs + static_cast<size_t>(m0) * pitch + (chunk * KV + v) * 32 * P + P * lane;
#pragma unroll
        for (int q = 0; q < P / 4; ++q) {
          float4 xv[G];
#pragma unroll
          for (int r = 0; r < G; ++r)
            xv[r] = *reinterpret_cast<const float4*>(x + r * pitch + 4 * q);
#pragma unroll
          for (int r = 0; r < G; ++r)
#pragma unroll
            for (int c = 0; c < C; ++c) {
              float& a = acc[(m0 + r) * C + c];
              a = fmaf(wf[c][4 * q], xv[r].x, a);
              a = fmaf(wf[c][4 * q + 1], xv[r].y, a);
              a = fmaf(wf[c][4 * q + 2], xv[r].z, a);
              a = fmaf(wf[c][4 * q + 3], xv[r].w, a);
            }
        }
      }
    }
    stage = stage + 1 == S ? 0 : stage + 1;
    if (++chunk < chunks) continue;
    chunk = 0;
    GPTRT_TRACE_MARK(2);
    // The group's sums, NR at a time: the lanes holding one write it (bias, GELU, residual).
#pragma unroll
    for (int h = 0; h < NV / NR; ++h) {
      float part[NR];
#pragma unroll
      for (int i = 0; i < NR; ++i) {
        part[i] = acc[h * NR + i];
        acc[h * NR + i] = 0.f;
      }
      int idx = 0;
      const float total = warp_reduce_scatter<NR>(part, lane, idx);
      const int o = h * NR + idx, row = o / C, col = group * C + o % C;
      if ((lane & (32 / NR - 1)) == 0 && row < p.m && col < p.n) {
        float v = total;
        if (p.bias)
          v += p.bias_half ? static_cast<float>(static_cast<const W*>(p.bias)[col])
                           : static_cast<const float*>(p.bias)[col];
        v = activate(v, p.act) +
            (p.residual ? p.residual[static_cast<int64_t>(row) * p.n + col] : 0.f);
        const int64_t at = static_cast<int64_t>(row) * p.n + col;
        if (p.y_half)
          static_cast<W*>(p.y)[at] = to_t<W>(v);
        else
          static_cast<float*>(p.y)[at] = v;
      }
    }
    group += stride;
  }
  copy_async_wait<0>();
}

}  // namespace gptrt::cuda
