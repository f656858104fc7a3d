// The CUDA backend's own GEMM for few rows (the recipe's batch-1 shapes and decode steps), where
// cuBLASLt's tiles leave most of the chip idle: y[M, N] = act(LN(x)[M, K] @ W^T + bias) + residual
// with W stored [N, K] in FP16/BF16, FP32 accumulation on the tensor cores (mma.sync m16n8k16).
//
// Shape of the work: each block of 8 warps owns 8 * tn output columns at a time (grid-stride over
// column groups) and all M <= 16 * MT rows. The rows sit in shared memory, written once per block:
// either the FP16/BF16 input itself or, with a fused LayerNorm, the normalised FP32 input. The
// weights stream from memory through a per-lane cp.async ring: in a chunk of 32 k, lane (g, c)
// fetches the 16 bytes W[n0 + g][k0 + 8c .. 8c + 7] (each 32-byte sector whole), and the k order
// inside the chunk is relabelled so those 8 values are exactly the B fragments of two m16n8k16
// steps; the A fragments come from shared memory under the same relabelling (one 16-byte load per
// row per chunk, rows padded so a quarter-warp hits 32 distinct banks). The
// 8 / tn warps that share columns split K, and their sums meet in shared memory in a fixed order
// (deterministic). Epilogue: bias, GELU (tanh or erf), residual, FP32 or FP16/BF16 output.
//
// Programmatic dependent launch (sm_90): a block loads its first weights before waiting for the
// kernel before it, so the weight stream starts while that kernel finishes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {

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
  int row_stride;   // shared-memory row length in elements (>= k + 32, see skinny_row_stride)
  int tn;           // n8 tiles per block: 1, 2, 4 or 8 (8 / tn warps split K)
  int ring_stages;  // weight stages in shared memory (skinny_ring_stages)
};

// Shared-memory row length for K: k rounded up to 64, plus 32 (so rows start 64 bytes apart
// modulo 128: the 8 lanes of a quarter-warp read two rows' 64 bytes from distinct banks).
__host__ __device__ inline int skinny_row_stride(int k) {
  return (k + 63) / 64 * 64 + 32;
}
// Row tiles of 16 the skinny kernel takes (more rows go to cuBLASLt): on the H200 (commit
// c496f23) a DistilGPT2 forward pass of 1 or 8 rows ran 1.5x faster than with cuBLASLt, one of 64
// rows (4 tiles, one block per SM) 1.35x slower.
constexpr int kSkinnyMaxTiles = 2;
// Weight chunks per warp per pipeline stage, and stages in flight.
constexpr int kSkinnyBatch = 4, kSkinnyStages = 4;
// The rows the kernel for m rows reads: its row tiles of 16, less the last tile's upper 8 where
// m leaves them empty (skinny_linear_kernel's kHi).
__host__ __device__ inline int skinny_read_rows(int m) {
  const int mt = (m + 15) / 16;
  return 16 * mt - (m > 16 * mt - 8 ? 0 : 8);
}
// Stages of the weight ring a block needs: kSkinnyStages, or the block's (column group, K step)
// items when they are fewer. The ring wraps only past kSkinnyStages items, so a block of fewer
// items uses stages 0..items-1 alone, and the shared memory of the others is left for the
// blocks of the kernels beside it (at 12 rows, FC2's 48 KB of weights per block in 64 KB of
// stages, QKV's 32 KB).
inline int skinny_ring_stages(int k, int n, int tn, int grid) {
  const int splits = 8 / tn, chunks = (k + 31) / 32, groups = (n + 8 * tn - 1) / (8 * tn);
  const int steps = ((chunks + splits - 1) / splits + kSkinnyBatch - 1) / kSkinnyBatch;
  const int64_t items = static_cast<int64_t>((groups + grid - 1) / grid) * steps;
  return static_cast<int>(std::min<int64_t>(kSkinnyStages, std::max<int64_t>(items, 1)));
}
// The weight ring, the rows it reads, partial sums of the 8 warps, LayerNorm gamma and beta: as
// little as the rows need, so that a block fits beside the previous kernel's (a decode step's QKV
// beside FC2, whose 3072-long rows took 99 KB for 16 rows).
inline size_t skinny_smem_bytes(int m, int k, bool layer_norm, int ring_stages = kSkinnyStages) {
  const int mt = (m + 15) / 16;
  return static_cast<size_t>(ring_stages) * kSkinnyBatch * 256 * 16 +
         static_cast<size_t>(skinny_read_rows(m)) * skinny_row_stride(k) * 2 +
         size_t{8} * mt * 128 * 4 + (layer_norm ? size_t{8} * static_cast<size_t>(k) : 0);
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

// Two floats as one 32-bit pair of T.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (std::is_same_v<T, __half>) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  } else {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
}

// LayerNorm rows r0, r0 + 8, ... (kAtOnce of them, one per h) of warp `warp` into shared memory,
// each row read once into registers (kVecs float4s per lane: rows of up to 128 * kVecs values),
// four values per lane at a time; gamma and beta already in shared memory.
template <typename T, int kAtOnce, int kVecs>
__device__ __forceinline__ void skinny_layer_norm_rows(const SkinnyArgs& p, T* xs,
                                                       const float* gamma_beta, int r0) {
  const int lane = threadIdx.x & 31, nv = p.k / 4;
  const float inv_k = 1.0f / static_cast<float>(p.k);
  const float* x = static_cast<const float*>(p.x);
  const float4* gamma = reinterpret_cast<const float4*>(gamma_beta);
  const float4* beta = reinterpret_cast<const float4*>(gamma_beta + p.k);
  float4 v[kAtOnce][kVecs];
#pragma unroll
  for (int h = 0; h < kAtOnce; ++h) {
    const int r = r0 + 8 * h;
    const float4* src = reinterpret_cast<const float4*>(x + static_cast<int64_t>(r) * p.k);
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      int at = lane + 32 * j;
      v[h][j] = r < p.m && at < nv ? src[at] : make_float4(0, 0, 0, 0);
    }
  }
  float mean[kAtOnce], inv[kAtOnce];
#pragma unroll
  for (int h = 0; h < kAtOnce; ++h) {
    float sum = 0;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) sum += (v[h][j].x + v[h][j].y) + (v[h][j].z + v[h][j].w);
    mean[h] = warp_sum(sum) * inv_k;
  }
  // The centred values replace the row (padding lanes stay 0: they add nothing to the variance).
#pragma unroll
  for (int h = 0; h < kAtOnce; ++h) {
    float var = 0;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const bool live = lane + 32 * j < nv;
      float4& a = v[h][j];
      a = live ? make_float4(a.x - mean[h], a.y - mean[h], a.z - mean[h], a.w - mean[h])
               : make_float4(0, 0, 0, 0);
      var += (a.x * a.x + a.y * a.y) + (a.z * a.z + a.w * a.w);
    }
    inv[h] = rsqrtf(warp_sum(var) * inv_k + p.ln_eps);
  }
#pragma unroll
  for (int h = 0; h < kAtOnce; ++h) {
    const int r = r0 + 8 * h;
    if (r >= p.m) break;
    T* dst = xs + r * p.row_stride;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      int at = lane + 32 * j;
      if (at >= nv) continue;
      const float4 gm = gamma[at], bt = beta[at], a = v[h][j];
      const float iv = inv[h];
      const float4 out = make_float4(a.x * iv * gm.x + bt.x, a.y * iv * gm.y + bt.y,
                                     a.z * iv * gm.z + bt.z, a.w * iv * gm.w + bt.w);
      if constexpr (std::is_same_v<T, float>) {
        *reinterpret_cast<float4*>(dst + 4 * at) = out;
      } else {
        uint2 packed;
        packed.x = pack2<T>(out.x, out.y);
        packed.y = pack2<T>(out.z, out.w);
        *reinterpret_cast<uint2*>(dst + 4 * at) = packed;
      }
    }
  }
}

// Requests the fused LayerNorm's gamma and beta into shared memory ([2][k] FP32) as one cp.async
// group of their own (committed even without a LayerNorm, so that the groups keep counting):
// every skinny kernel's first request, before its wait.
__device__ __forceinline__ void skinny_request_layer_norm(const SkinnyArgs& p, float* gamma_beta) {
  if (!p.ln_gamma) {
    copy_async_commit();
    return;
  }
  for (int i = threadIdx.x * 4; i < p.k; i += blockDim.x * 4) {
    copy_async(gamma_beta + i, p.ln_gamma + i, true);
    copy_async(gamma_beta + p.k + i, p.ln_beta + i, true);
  }
  copy_async_commit();
}

// The rows into shared memory: [16 * MT][row_stride] in T (FP16/BF16, or FP32 for
// skinny_fp32_kernel), rows < m and columns < k only (the multiply reads nothing else), in one
// memory round trip where it can: plain rows with cp.async (every piece requested at once, each
// thread's pieces found without a division per piece), LayerNorm rows kAtOnce per warp at a time
// in registers (skinny_layer_norm_rows; three passes over the cached row when it is longer than
// 1024 values).
template <typename T, int kAtOnce = 2>
__device__ void skinny_load_rows(const SkinnyArgs& p, T* xs, const float* gamma_beta) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, stride = p.row_stride;
  if (!p.ln_gamma) {
    const T* x = static_cast<const T*>(p.x);
    constexpr int kPer = 16 / sizeof(T);
    const int pieces = p.k / kPer;                 // 16 bytes each (k % kPer == 0)
    if (pieces <= static_cast<int>(blockDim.x)) {  // whole rows per pass of the block
      const int per_pass = blockDim.x / pieces, c = threadIdx.x % pieces * kPer;
      for (int r = threadIdx.x / pieces; r < p.m && threadIdx.x < per_pass * pieces; r += per_pass)
        copy_async(xs + r * stride + c, x + static_cast<int64_t>(r) * p.k + c, true);
    } else {
      for (int r = 0; r < p.m; ++r)
        for (int c = threadIdx.x * kPer; c < p.k; c += blockDim.x * kPer)
          copy_async(xs + r * stride + c, x + static_cast<int64_t>(r) * p.k + c, true);
    }
    copy_async_commit();
    copy_async_wait<0>();  // (and the weight stages requested before: needed next anyway)
    return;
  }
  const int nv = p.k / 4;
  if (nv > 32 * 8) {  // longer rows: three passes over the (cached) row
    const float* x = static_cast<const float*>(p.x);
    const float inv_k = 1.0f / static_cast<float>(p.k);
    for (int r = warp; r < p.m; r += 8) {
      T* dst = xs + r * stride;
      const float* src = x + static_cast<int64_t>(r) * p.k;
      const float* g = gamma_beta;
      const float* b = gamma_beta + p.k;
      float sum = 0;
      for (int c = lane; c < p.k; c += 32) sum += src[c];
      const float mean = warp_sum(sum) * inv_k;
      float var = 0;
      for (int c = lane; c < p.k; c += 32) var += (src[c] - mean) * (src[c] - mean);
      const float inv = rsqrtf(warp_sum(var) * inv_k + p.ln_eps);
      for (int c = lane; c < p.k; c += 32) dst[c] = to_t<T>((src[c] - mean) * inv * g[c] + b[c]);
    }
    return;
  }
  for (int r0 = warp; r0 < p.m; r0 += 8 * kAtOnce) {  // rows r0, r0 + 8, ...
    if (nv <= 32 * 6)                                 // (DistilGPT2's 768)
      skinny_layer_norm_rows<T, kAtOnce, 6>(p, xs, gamma_beta, r0);
    else
      skinny_layer_norm_rows<T, kAtOnce, 8>(p, xs, gamma_beta, r0);
  }
}

// The weights stream through a ring of kSkinnyStages stages in shared memory with cp.async:
// each lane copies exactly the 16-byte pieces it will multiply, so a lane waits only for its own
// copies (no barrier). The first stages are requested before the previous kernel has finished.
//
// MT: row tiles of 16 (m <= 16 * MT); kHi: whether the last tile's upper 8 rows hold rows (m >
// 16 * MT - 8); without them the multiply passes zeros for those fragments instead of reading
// them. The rows the multiply reads but m does not fill (and the columns from k up to the chunk's
// end) are zeroed before the wait, so its shared-memory reads need no bounds.
template <typename T, int MT, bool kHi>
__global__ void __launch_bounds__(256, 2) skinny_linear_kernel(SkinnyArgs p) {
  GPTRT_TRACE_KERNEL();
  extern __shared__ __align__(16) unsigned char smem[];
  uint4* ring = reinterpret_cast<uint4*>(smem);       // [stage][chunk][thread]
  constexpr int kReadRows = 16 * MT - (kHi ? 0 : 8);  // (skinny_read_rows)
  T* xs = reinterpret_cast<T*>(smem + static_cast<size_t>(p.ring_stages) * kSkinnyBatch * 256 * 16);
  float* partial = reinterpret_cast<float*>(xs + kReadRows * p.row_stride);
  float* gamma_beta = partial + 8 * MT * 128;  // [2][k] with a fused LayerNorm
  constexpr int kBatch = kSkinnyBatch, kStages = kSkinnyStages;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tn = p.tn, splits = 8 / tn, tile = warp % tn, part = warp / tn;
  const int chunks = (p.k + 31) / 32, cols = 8 * tn, groups = (p.n + cols - 1) / cols;
  // Every warp walks the same number of steps per column group (so the block's barriers line
  // up); chunk slots past K load zeros and are skipped.
  const int slots = (chunks + splits - 1) / splits, steps = (slots + kBatch - 1) / kBatch;
  const int my_groups = blockIdx.x < groups ? (groups - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
  const int items = my_groups * steps;  // (group, step) pairs of this block, in order
  // This lane's first weight and first shared-memory element of chunk slot 0; slot s adds
  // s * splits * 32 to both.
  const int k0 = part * 32 + c * 8, k_step = splits * 32;
  const T* w_lane = static_cast<const T*>(p.w) + k0;
  const T* a_lo = xs + g * p.row_stride + k0;

  // Requests items in order: the next one's weights into its ring stage (one commit group, empty
  // past the last item, so that the groups keep counting).
  int rq_item = 0, rq_group = blockIdx.x, rq_step = 0, rq_stage = 0;
  auto request = [&]() {
    if (rq_item < items) {
      const int n = rq_group * cols + tile * 8 + g;
      const T* base = w_lane + static_cast<int64_t>(n < p.n ? n : 0) * p.k;
      uint4* slot = ring + rq_stage * kBatch * 256 + threadIdx.x;
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int off = (rq_step * kBatch + i) * k_step;
        copy_async(slot + i * 256, base + (k0 + off < p.k ? off : 0), n < p.n && k0 + off < p.k);
      }
      ++rq_item;
      rq_stage = rq_stage + 1 == kStages ? 0 : rq_stage + 1;
      if (++rq_step == steps) {
        rq_step = 0;
        rq_group += gridDim.x;
      }
    }
    copy_async_commit();
  };

  // Output i of a column group (i < tn * MT * 128; thread threadIdx.x + 256 q holds it in the
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

  // Before the previous kernel has finished: the LayerNorm's parameters (their own copy group,
  // the oldest), the first weight stages and the first group's bias, all requested without
  // waiting for any (a block that reaches its wait late starts late). Right after the wait: the
  // first group's residual, then the rows.
  constexpr int kEarly = 4;  // outputs per thread whose bias and residual are fetched early
  skinny_request_layer_norm(p, gamma_beta);
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) request();
  float early_bias[kEarly], early_residual[kEarly];
#pragma unroll
  for (int q = 0; q < kEarly; ++q) {
    int i = threadIdx.x + q * 256;
    early_bias[q] = i < outputs ? bias_at(col_of(blockIdx.x, i)) : 0.f;
  }
  {  // zeros where the multiply reads beyond the rows: rows [m, read_rows), columns [k, kpad)
    constexpr int kPer = 16 / sizeof(T);
    const int kpad = (p.k + 31) / 32 * 32, pieces = kpad / kPer, first = min(p.m, kReadRows);
    for (int i = threadIdx.x; i < (kReadRows - first) * pieces; i += blockDim.x)
      *reinterpret_cast<uint4*>(xs + (first + i / pieces) * p.row_stride + i % pieces * kPer) =
          make_uint4(0, 0, 0, 0);
    if (kpad != p.k)  // (k % 8 == 0: whole pieces)
      for (int i = threadIdx.x; i < first * (kpad - p.k) / kPer; i += blockDim.x) {
        const int per_row = (kpad - p.k) / kPer;
        *reinterpret_cast<uint4*>(xs + i / per_row * p.row_stride + p.k + i % per_row * kPer) =
            make_uint4(0, 0, 0, 0);
      }
  }
  wait_for_previous_kernel();
  let_next_kernel_start();
#pragma unroll
  for (int q = 0; q < kEarly; ++q) {
    int i = threadIdx.x + q * 256;
    early_residual[q] = i < outputs ? residual_at(row_of(i), col_of(blockIdx.x, i)) : 0.f;
  }
  copy_async_wait<kStages - 1>();  // gamma and beta (the weight stages may still be in flight)
  __syncthreads();
  GPTRT_TRACE_MARK(0);
  skinny_load_rows<T>(p, xs, gamma_beta);
  __syncthreads();
  GPTRT_TRACE_MARK(1);

  float acc[MT][4] = {};
  const uint4 zero = make_uint4(0, 0, 0, 0);
  int group = blockIdx.x, step = 0, stage = 0;
  for (int item = 0; item < items; ++item) {
    request();
    copy_async_wait<kStages - 1>();  // this lane's copies for `item` have landed
    const uint4* slot = ring + stage * kBatch * 256 + threadIdx.x;
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int off = (step * kBatch + i) * k_step;
      if (k0 - c * 8 + off >= p.k) break;  // past K for the whole warp
      const uint4 b = slot[i * 256];       // (zeros past K)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const uint4 lo = *reinterpret_cast<const uint4*>(a_lo + mt * 16 * p.row_stride + off);
        const uint4 hi =
            mt == MT - 1 && !kHi
                ? zero
                : *reinterpret_cast<const uint4*>(a_lo + (mt * 16 + 8) * p.row_stride + off);
        mma_16816<T>(acc[mt], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
        mma_16816<T>(acc[mt], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
      }
    }
    stage = stage + 1 == kStages ? 0 : stage + 1;
    if (++step < steps) continue;
    step = 0;
    GPTRT_TRACE_MARK(2);
    // End of a column group: partial sums of every warp, then the K splits added in a fixed
    // order, bias, activation, residual.
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
    group += gridDim.x;
  }
  copy_async_wait<0>();
}

}  // namespace gptrt::cuda
