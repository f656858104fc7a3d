// The persistent decoder kernel: a whole forward pass (or decode step) of the fused decoder in one
// launch, for few rows in FP16/BF16. The host lists the pass's stages (embedding, each linear
// layer with its LayerNorm fused, each attention, the last-row gather for generation); every
// block of the grid (one per SM, all resident: a cooperative launch) walks the list, takes its
// share of each stage and meets the others at a grid barrier before the next. That replaces ~32
// kernel boundaries with barriers, and a block still requests a stage's weights before the
// barrier, so they stream in while the slowest block finishes the stage before.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/attention.cuh"
#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/skinny_linear.cuh"

namespace gptrt::cuda {

// out[r] = wte[ids[r]] + wpe[pos[r]] (pos null: r % s), FP32, for rows r < rows.
struct EmbeddingArgs {
  const int64_t* ids;
  const int64_t* pos;
  const float* wte;
  const float* wpe;
  float* out;
  int64_t rows, s, e;
};
template <typename Wait>
__device__ __forceinline__ void embedding_block(const EmbeddingArgs& a, Wait wait) {
  wait();
  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const int64_t p = a.pos ? a.pos[row] : row % a.s;
    const float* x = a.wte + a.ids[row] * a.e;
    const float* y = a.wpe + p * a.e;
    for (int64_t k = threadIdx.x; k < a.e; k += blockDim.x) a.out[row * a.e + k] = x[k] + y[k];
  }
}

// y[r] = x[r, t - 1] for r < b, rows of row_bytes bytes: each row's last position, the only one
// whose logits generation needs.
struct LastRowsArgs {
  const void* x;
  void* y;
  int64_t b, t, row_bytes;
};
template <typename Wait>
__device__ __forceinline__ void last_rows_block(const LastRowsArgs& a, Wait wait) {
  wait();
  const bool words = a.row_bytes % 4 == 0;  // else 2-byte units
  const int64_t n = words ? a.row_bytes / 4 : a.row_bytes / 2;
  for (int64_t r = blockIdx.x; r < a.b; r += gridDim.x) {
    const int64_t from = (r * a.t + a.t - 1) * n, to = r * n;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      if (words)
        static_cast<uint32_t*>(a.y)[to + k] = static_cast<const uint32_t*>(a.x)[from + k];
      else
        static_cast<uint16_t*>(a.y)[to + k] = static_cast<const uint16_t*>(a.x)[from + k];
    }
  }
}

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

enum class StageKind : int { kEmbedding, kLinear, kAttention, kLastRows };
// Attention variants: head size up to 32 or 64 lanes' worth, int64 mask (forward) or uint8
// padding flags (decode).
constexpr int kDecoderWarps = 8;
struct alignas(16) Stage {
  StageKind kind;
  int per_lane;    // attention: head elements per lane (1 or 2)
  int mask_bytes;  // attention: 8 (int64 mask) or 1 (uint8 flags)
  // Weights of later stages to pull into L2 when this stage starts (null: none), each block a
  // share, so that they come from L2 rather than memory when their stage streams them.
  const void* prefetch[2];
  int64_t prefetch_bytes[2];
  union {
    EmbeddingArgs embedding;
    SkinnyArgs linear;  // one row tile (m <= 16)
    AttentionArgs attention;
    LastRowsArgs last_rows;
  };
};

// Asks L2 for this block's share of [p, p + bytes): a hint, nothing waits for it.
__device__ __forceinline__ void prefetch_l2_share(const void* p, int64_t bytes) {
  if (!p || bytes <= 0) return;
  const int64_t share = (bytes / gridDim.x + 128) / 128 * 128;
  const int64_t from = share * blockIdx.x, to = min(bytes, from + share);
  [[maybe_unused]] const char* base = static_cast<const char*>(p);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x == 0)
    for (int64_t at = from; at + 16 <= to; at += 32768) {
      const unsigned n = static_cast<unsigned>(min(int64_t{32768}, (to - at) / 16 * 16));
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(base + at), "r"(n)
                   : "memory");
    }
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  for (int64_t at = from + threadIdx.x * 128; at < to; at += blockDim.x * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(base + at));
#endif
}

// All blocks of the grid meet here; what any block wrote before it is visible to every block
// after it. bar[0] counts arrivals and bar[1] is the generation: the last block to arrive resets
// the count and bumps the generation the others wait on, so both serve every later barrier and
// launch without a reset. With `arrival`, the latest arrival time (ns) goes there (profiles).
__device__ __forceinline__ void grid_barrier(unsigned* bar, unsigned long long* arrival) {
  __syncthreads();
  if (threadIdx.x == 0) {
    if (arrival) atomicMax(arrival, global_ns());
    unsigned gen = 0, now = 0, arrived = 0;
    // The block's writes (ordered before this thread's by __syncthreads) are released with the
    // arrival; the last block acquires them all and releases them with the new generation.
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(gen) : "l"(bar + 1) : "memory");
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;"
                 : "=r"(arrived)
                 : "l"(bar)
                 : "memory");
    if (arrived == gridDim.x - 1) {
      asm volatile("st.relaxed.gpu.global.u32 [%0], 0;" ::"l"(bar) : "memory");
      asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(bar + 1), "r"(gen + 1) : "memory");
    } else {
      do {
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(bar + 1) : "memory");
      } while (now == gen);
      asm volatile("fence.acq_rel.gpu;" ::: "memory");
    }
  }
  __syncthreads();
}

// Dynamic shared memory: the stage list, then the largest stage's working memory. With `stamps`
// (profiles; zeroed before the launch): stamps[2s] = the last block's arrival at the barrier
// before stage s, stamps[2s + 1] = when block 0 left it, stamps[2 count] = the last block's end.
template <typename T>
__global__ void __launch_bounds__(32 * kDecoderWarps, 1)
    decoder_kernel(const Stage* stages, int count, unsigned* barrier, unsigned long long* stamps) {
  extern __shared__ __align__(16) unsigned char smem[];
  Stage* list = reinterpret_cast<Stage*>(smem);
  unsigned char* work = smem + static_cast<size_t>(count) * sizeof(Stage);
  const int words = static_cast<int>(count * sizeof(Stage) / 16);
  for (int i = threadIdx.x; i < words; i += blockDim.x)
    reinterpret_cast<uint4*>(smem)[i] = reinterpret_cast<const uint4*>(stages)[i];
  __syncthreads();
  for (int s = 0; s < count; ++s) {
    const Stage& st = list[s];
    auto wait = [&] {
      if (s > 0) grid_barrier(barrier, stamps ? stamps + 2 * s : nullptr);
      if (stamps && blockIdx.x == 0 && threadIdx.x == 0) stamps[2 * s + 1] = global_ns();
    };
    float* fwork = reinterpret_cast<float*>(work);
    prefetch_l2_share(st.prefetch[0], st.prefetch_bytes[0]);
    prefetch_l2_share(st.prefetch[1], st.prefetch_bytes[1]);
    switch (st.kind) {
      case StageKind::kEmbedding:
        embedding_block(st.embedding, wait);
        break;
      case StageKind::kLinear:
        skinny_linear_block<T, 1>(st.linear, work, wait);
        break;
      case StageKind::kAttention:
        if (st.mask_bytes == 1) {
          if (st.per_lane == 1)
            attention_block<1, kDecoderWarps, T, uint8_t>(st.attention, fwork, wait);
          else
            attention_block<2, kDecoderWarps, T, uint8_t>(st.attention, fwork, wait);
        } else {
          if (st.per_lane == 1)
            attention_block<1, kDecoderWarps, T, int64_t>(st.attention, fwork, wait);
          else
            attention_block<2, kDecoderWarps, T, int64_t>(st.attention, fwork, wait);
        }
        break;
      case StageKind::kLastRows:
        last_rows_block(st.last_rows, wait);
        break;
    }
    __syncthreads();  // the next stage reuses the working memory
  }
  if (stamps && threadIdx.x == 0) atomicMax(stamps + 2 * count, global_ns());
}

}  // namespace gptrt::cuda
