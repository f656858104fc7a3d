// Greedy picks on the GPU: each row's argmax over the vocabulary, and the next decode step's
// inputs made from the picks (several steps per CUDA graph).
// Included by the one file that launches them (their definitions are local to it).
#pragma once

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {
namespace {

// Between two greedy decode steps of one graph (Runner::Impl::decode_step with steps > 1): the
// next step's inputs from the last one's picks, as the Generator would make them: each row's
// token is its pick (a finished row's is dropped on the host), its position one further, the
// cached length one more and that position valid in every row. One block.
__global__ void chunk_advance_kernel(const int64_t* picks, int64_t rows, int64_t cache_s,
                                     int64_t* ids, int64_t* pos, int64_t* past, uint8_t* valid) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  __shared__ int64_t next;
  if (threadIdx.x == 0) next = *past + 1;
  __syncthreads();
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    ids[r] = picks[r];
    pos[r] += 1;
    valid[r * cache_s + next] = 1;
  }
  if (threadIdx.x == 0) *past = next;
}

// ids[r] = the first index of row r's largest logit (greedy decoding on the GPU). Block (p, r)
// takes part p of row r's logits (one memory round trip: each thread requests all its logits
// before comparing them), writes its best to part_v/part_i [r][p], and the block that finishes
// row r last (counted in done[r], which it sets back to 0) picks the best of the parts (the
// largest logit, the first index among equal ones).
constexpr int kArgmaxParts = 32, kArgmaxThreads = 256;
// Argmax candidates: (v, at) takes (ov, oi) if oi is one (< vocab) and (v, at) is none yet or
// worse (smaller, or equal at a larger index).
__device__ __forceinline__ void take_better(float& v, int64_t& at, float ov, int64_t oi,
                                            int64_t vocab) {
  if (oi < vocab && (at == vocab || ov > v || (ov == v && oi < at))) {
    v = ov;
    at = oi;
  }
}
// The warp's best candidate, in every lane.
__device__ __forceinline__ void warp_take_best(float& v, int64_t& at, int64_t vocab) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffff, v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffff, at, o);
    take_better(v, at, ov, oi, vocab);
  }
}
__global__ void argmax_kernel(const float* logits, int64_t vocab, int64_t* ids, float* part_v,
                              int64_t* part_i, unsigned* done) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  __shared__ float best_v[kArgmaxThreads / 32];
  __shared__ int64_t best_i[kArgmaxThreads / 32];
  __shared__ bool last;
  const int64_t r = blockIdx.y, parts = gridDim.x;
  const int64_t chunk = (vocab + parts - 1) / parts, lo = blockIdx.x * chunk;
  const int64_t hi = min(vocab, lo + chunk);
  const float* row = logits + r * vocab;
  float v = -INFINITY;
  int64_t at = vocab;  // (none yet: the first logit seen is taken, NaN or not)
  constexpr int kAtOnce = 8;
  for (int64_t i0 = lo + threadIdx.x; i0 < hi; i0 += int64_t{kArgmaxThreads} * kAtOnce) {
    float x[kAtOnce];
#pragma unroll
    for (int u = 0; u < kAtOnce; ++u) {
      const int64_t i = i0 + int64_t{u} * kArgmaxThreads;
      x[u] = i < hi ? row[i] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kAtOnce; ++u) {
      const int64_t i = i0 + int64_t{u} * kArgmaxThreads;
      take_better(v, at, x[u], i < hi ? i : vocab, vocab);
    }
  }
  warp_take_best(v, at, vocab);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    best_v[warp] = v;
    best_i[warp] = at;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) take_better(v, at, best_v[w], best_i[w], vocab);
    part_v[r * parts + blockIdx.x] = v;
    part_i[r * parts + blockIdx.x] = at;
    __threadfence();
    last = atomicAdd(&done[r], 1u) == static_cast<unsigned>(parts - 1);
  }
  __syncthreads();
  if (!last || warp != 0) return;
  // The last block's first warp: a lane per part (all requested at once), then the same
  // reduction across the lanes.
  __threadfence();
  v = -INFINITY;
  at = vocab;
  for (int64_t p = lane; p < parts; p += 32)
    take_better(v, at, __ldcg(part_v + r * parts + p), __ldcg(part_i + r * parts + p), vocab);
  warp_take_best(v, at, vocab);
  if (lane == 0) {
    ids[r] = at < vocab ? at : 0;
    done[r] = 0;
  }
}

}  // namespace
}  // namespace gptrt::cuda
