// Causal attention with padding mask and KV cache, tuned for latency (short sequences, decode
// steps): each block of kAttentionWarps warps takes one (row r, head h, block of kAttentionWarps
// queries), one query per warp. Queries 0..t-1 of row r sit at positions past..past+t-1 (past read
// from device memory, 0 when null, so one captured graph serves every decode step); keys 0..past-1
// come from the cache kc/vc [b, key_stride, e], keys from past on straight from qkv [b, t, 3e];
// with a cache, the first query block also appends its new keys and values at past + i. Key j of
// row r counts when mask[r * key_stride + j] != 0 (null: all). The block stages keys and values in
// tiles in shared memory, all threads loading at once (one memory round trip per tile, not per
// key); each warp scores a tile with a lane per key, keeps an online softmax and adds the tile's
// values with a lane per head element (head size d <= 32 * kPerLane).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {

struct AttentionArgs {
  const float* qkv;  // [b, t, 3e] (packed: [rows, 3e])
  float* kc;         // caches [b, key_stride, e], or null
  float* vc;
  const void* mask;  // [b, key_stride] of M, or null
  const int64_t* past;
  void* out;  // [b, t, e] in T (packed: [rows, e])
  int64_t b, t, key_stride, e, heads;
  float scale;
  // A packed pass (attention_decode_kernel only): `rows` tokens one after another, token i of
  // cache row packed[i] / t at column past + packed[i] % t, each sequence's tokens consecutive and
  // in column order; packed[i] < 0 a filler (zeros out, nothing cached). Null: one token per
  // cache row (t == 1), token i of row i.
  const int32_t* packed;
  int64_t rows;
};

__host__ __device__ inline int attention_key_tile(int64_t d) {
  return d <= 64 ? 64 : 32;
}
// Key rows in shared memory: d + 4 floats when d % 4 == 0 (16-byte reads; a quarter-warp's 8
// lanes, one key each, hit distinct banks), else odd (d | 1) for the scalar path.
__host__ __device__ inline int attention_key_stride(int d) {
  return d % 4 == 0 ? d + 4 : d | 1;
}
constexpr int kAttentionWarps = 4;
inline size_t attention_smem_bytes(int64_t d) {
  int64_t tile = attention_key_tile(d);
  return static_cast<size_t>(tile * attention_key_stride(static_cast<int>(d)) + tile * d +
                             kAttentionWarps * (d + tile)) *
         4;
}
// Blocks: one per (row, head, block of kAttentionWarps queries).
inline int64_t attention_blocks(const AttentionArgs& a) {
  return a.b * a.heads * ((a.t + kAttentionWarps - 1) / kAttentionWarps);
}

template <int kPerLane, typename T, typename M>
__global__ void attention_kernel(AttentionArgs a) {
  GPTRT_TRACE_KERNEL();
  extern __shared__ float attention_smem[];
  float* smem = attention_smem;
  constexpr int kWarps = kAttentionWarps;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int d = static_cast<int>(a.e / a.heads);
  const int tile = attention_key_tile(d);
  const int kstride = attention_key_stride(d);
  const bool vec = d % 4 == 0 && a.e % 4 == 0;
  const int64_t e = a.e, t = a.t, key_stride = a.key_stride;
  const float* qkv = a.qkv;
  const M* mask = static_cast<const M*>(a.mask);
  float* ks = smem;
  float* vs = ks + tile * kstride;
  float* qs = vs + tile * d + warp * d;
  float* probs = vs + tile * d + kWarps * d + warp * tile;
  const int64_t query_blocks = (t + kWarps - 1) / kWarps;
  const int64_t work = a.b * a.heads * query_blocks;
  // The cached length (written two or more launches back: see kernel_common.cuh) before the wait.
  const int64_t past = a.past ? *a.past : 0;
  wait_for_previous_kernel();
  let_next_kernel_start();
  for (int64_t item = blockIdx.x; item < work; item += gridDim.x) {  // (one per block)
    const int64_t r = item / (a.heads * query_blocks), h = item / query_blocks % a.heads;
    const int64_t first_query = item % query_blocks * kWarps;
    const int64_t i = first_query + warp;  // this warp's query
    const bool active = i < t;
    const int64_t qpos = past + i;
    const int64_t keys = past + min(t, first_query + kWarps);  // block's
    __syncthreads();  // the previous item's shared memory is used up
    // Requests keys and values [j0, j0 + n) into the tile (every piece at once, one commit).
    auto request_tile = [&](int64_t j0, int64_t n) {
      const int per = vec ? 4 : 1;  // elements per thread and step
#pragma unroll 4
      for (int at = threadIdx.x * per; at < static_cast<int>(n) * d; at += blockDim.x * per) {
        int jj = at / d, u = at % d;
        int64_t j = j0 + jj;
        const float* kp = j < past ? a.kc + (r * key_stride + j) * e + h * d
                                   : qkv + (r * t + j - past) * 3 * e + e + h * d;
        const float* vp = j < past ? a.vc + (r * key_stride + j) * e + h * d
                                   : qkv + (r * t + j - past) * 3 * e + 2 * e + h * d;
        if (vec) {
          copy_async<16>(ks + jj * kstride + u, kp + u, true);
          copy_async<16>(vs + jj * d + u, vp + u, true);
        } else {
          copy_async<4>(ks + jj * kstride + u, kp + u, true);
          copy_async<4>(vs + jj * d + u, vp + u, true);
        }
      }
      copy_async_commit();
    };
    // Whether keys j0 + lane and j0 + lane + 32 count (causality aside): the loads are issued here
    // and waited for only when the scores need them.
    bool live[2];
    auto request_live = [&](int64_t j0, int64_t n) {
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        const int jj = lane + 32 * q;
        live[q] = jj < n && (!mask || mask[r * key_stride + j0 + jj] != 0);
      }
    };
    // The first tile, its mask and this warp's query are requested before anything waits for a
    // load (the cache copy below does): one memory round trip before the scores, not three.
    request_tile(0, min(static_cast<int64_t>(tile), keys));
    request_live(0, min(static_cast<int64_t>(tile), keys));
    if (active) {
      const float* row = qkv + (r * t + i) * 3 * e + h * d;
      if (vec) {
        for (int u = 4 * lane; u < d; u += 128) copy_async<16>(qs + u, row + u, true);
      } else {
        for (int u = lane; u < d; u += 32) copy_async<4>(qs + u, row + u, true);
      }
    }
    copy_async_commit();
    if (a.kc && first_query == 0) {
      for (int at = threadIdx.x; at < static_cast<int>(t) * d; at += blockDim.x) {
        int q = at / d, u = at % d;
        const float* row = qkv + (r * t + q) * 3 * e + h * d + u;
        a.kc[(r * key_stride + past + q) * e + h * d + u] = row[e];
        a.vc[(r * key_stride + past + q) * e + h * d + u] = row[2 * e];
      }
    }
    float m = -INFINITY, l = 0.f, acc[kPerLane] = {};
    for (int64_t j0 = 0; j0 < keys; j0 += tile) {
      const int64_t n = min(static_cast<int64_t>(tile), keys - j0);
      if (j0 > 0) {
        __syncthreads();  // the previous tile is used up
        request_tile(j0, n);
        request_live(j0, n);
      }
      copy_async_wait<0>();
      __syncthreads();
      if (!active || j0 > qpos) continue;
      // Scores, a lane per key.
      float sc[2];
      float tile_max = -INFINITY;
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        int jj = lane + 32 * q;
        int64_t j = j0 + jj;
        sc[q] = -INFINITY;
        if (live[q] && j <= qpos) {
          float dot = 0;
          if (vec) {
            for (int u = 0; u < d; u += 4) {
              float4 qv = *reinterpret_cast<const float4*>(qs + u);
              float4 kv = *reinterpret_cast<const float4*>(ks + jj * kstride + u);
              dot += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
            }
          } else {
            for (int u = 0; u < d; ++u) dot += qs[u] * ks[jj * kstride + u];
          }
          sc[q] = dot * a.scale;
          tile_max = fmaxf(tile_max, sc[q]);
        }
      }
      for (int o = 16; o > 0; o >>= 1)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffff, tile_max, o));
      if (tile_max == -INFINITY) continue;  // every key of this tile is masked for this query
      const float new_m = fmaxf(m, tile_max);
      const float correction = m == -INFINITY ? 0.f : __expf(m - new_m);
      float tile_sum = 0;
#pragma unroll
      for (int q = 0; q < 2; ++q) {
        int jj = lane + 32 * q;
        float pr = sc[q] == -INFINITY ? 0.f : __expf(sc[q] - new_m);
        tile_sum += pr;
        if (jj < tile) probs[jj] = pr;
      }
      tile_sum = warp_sum(tile_sum);
      l = l * correction + tile_sum;
      m = new_m;
      __syncwarp();
      // Values, a lane per head element.
#pragma unroll
      for (int kk = 0; kk < kPerLane; ++kk) acc[kk] *= correction;
      const int64_t last = min(n, qpos - j0 + 1);
      for (int jj = 0; jj < static_cast<int>(last); ++jj) {
        float pr = probs[jj];
#pragma unroll
        for (int kk = 0; kk < kPerLane; ++kk)
          if (lane + 32 * kk < d) acc[kk] += pr * vs[jj * d + lane + 32 * kk];
      }
      __syncwarp();
    }
    if (!active) continue;
    const float inv = l > 0 ? 1.0f / l : 0.f;
    T* o = static_cast<T*>(a.out) + (r * t + i) * e + h * d;
    for (int kk = 0; kk < kPerLane; ++kk)
      if (lane + 32 * kk < d) o[lane + 32 * kk] = to_t<T>(acc[kk] * inv);
  }
}

// Decode steps (one query per row, t == 1, against the KV cache with its padding flags) and packed
// passes (AttentionArgs::packed: a query per token, sequences of different lengths side by side):
// one block of kAttentionWarps warps per (token, head). What earlier steps and the step's first
// kernel wrote is read before waiting for the QKV projection (a kernel may read, before its wait,
// what kernels two or more launches before it wrote: see kernel_common.cuh): the cached length,
// the flags and the first tile of cached keys and values. After the wait only the pass's own
// tokens remain to be read: the query, and the keys and values of the sequence's tokens in this
// pass up to the query's (the rows just before it in the QKV projection's output; no block reads
// what another writes to the cache). Scores for all keys, a thread per key, go to shared memory;
// one softmax over the block; then the values, each warp summing a quarter of the keys' values,
// the warps' sums added in a fixed order.
// Shared memory the decode kernel may take (caches of up to ~35,000 positions at head size 64;
// longer ones take attention_kernel, and packed passes are padded).
constexpr size_t kAttentionDecodeMaxSmem = 160 * 1024;
inline size_t attention_decode_smem_bytes(int64_t d, int64_t key_stride) {
  int64_t tile = attention_key_tile(d);
  return static_cast<size_t>(tile * attention_key_stride(static_cast<int>(d)) + tile * d + d +
                             kAttentionWarps * d + 2 * kAttentionWarps + key_stride) *
         4;
}
// Whether attention_decode_kernel runs for head size d and caches of key_stride positions (a
// packed pass has no other kernel).
inline bool packed_attention_runs(int64_t d, int64_t key_stride) {
  return attention_decode_smem_bytes(d, key_stride) <= kAttentionDecodeMaxSmem;
}

template <int kPerLane, typename T>
__global__ void attention_decode_kernel(AttentionArgs a) {
  GPTRT_TRACE_KERNEL();
  extern __shared__ float attention_smem[];
  constexpr int kWarps = kAttentionWarps, kThreads = 32 * kWarps;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int d = static_cast<int>(a.e / a.heads);
  const int tile = attention_key_tile(d), kstride = attention_key_stride(d);
  const bool vec = d % 4 == 0 && a.e % 4 == 0;
  const int64_t e = a.e, key_stride = a.key_stride;
  const int64_t i = blockIdx.x / a.heads, h = blockIdx.x % a.heads;  // token, head
  const int64_t at = a.packed ? a.packed[i] : i;
  if (at < 0) {  // a packed pass's filler token (its rows rounded up): zeros, no cache
    wait_for_previous_kernel();
    let_next_kernel_start();
    for (int u = threadIdx.x; u < d; u += kThreads)
      static_cast<T*>(a.out)[i * a.e + h * d + u] = to_t<T>(0.f);
    return;
  }
  const int64_t r = a.packed ? at / a.t : i;       // its cache row
  const int64_t offset = a.packed ? at % a.t : 0;  // its column past + offset
  float* ks = attention_smem;                      // [tile][kstride]
  float* vs = ks + tile * kstride;                 // [tile][d]
  float* qs = vs + tile * d;                       // [d], scaled
  float* part = qs + d;                            // [kWarps][d]: the warps' value sums
  float* stat = part + kWarps * d;                 // [2][kWarps]: the warps' maxima, then sums
  float* scores = stat + 2 * kWarps;               // [key_stride]
  const uint8_t* valid = static_cast<const uint8_t*>(a.mask) + r * key_stride;
  const float* kc = a.kc + r * key_stride * e + h * d;  // key j at kc + j * e
  const float* vc = a.vc + r * key_stride * e + h * d;
  const float* fresh = a.qkv + i * 3 * e + h * d;  // the query; its key at + e, value + 2e

  // Requests cached keys or values [j0, j0 + n) (not the new one, at `past`) into `dst` (row
  // length `stride`), every piece at once (cp.async: the thread does not wait for them; the
  // caller waits with copy_async_wait<0> before its next barrier). Padding keys are not read:
  // they are never scored, and their values are skipped (probability 0). A server's slots hold
  // sequences of different lengths in shared columns, and idle slots hold none: the bytes read
  // follow each row's own tokens, not the columns in use. (The flags, like first_valid's, were
  // written by the step's first kernel.)
  auto load_cached = [&](const float* src, float* dst, int stride, int64_t j0, int n,
                         int64_t past) {
    const int per = vec ? 4 : 1;
    for (int at = threadIdx.x * per; at < n * d; at += kThreads * per) {
      const int jj = at / d, u = at % d;
      if (j0 + jj >= past) break;  // (at grows with jj)
      if (!valid[j0 + jj]) continue;
      const float* from = src + (j0 + jj) * e + u;
      if (vec)
        copy_async<16>(dst + jj * stride + u, from, true);
      else
        copy_async<4>(dst + jj * stride + u, from, true);
    }
    copy_async_commit();
  };

  // Keys or values [j0, j0 + n) from this pass (columns past..column, the token's own last; the
  // QKV rows just before it hold the earlier ones) into `dst`; `part` 1 for keys, 2 for values.
  // Padding columns between them are not read.
  auto load_fresh = [&](float* dst, int stride, int part, int64_t j0, int n, int64_t past,
                        int64_t column) {
    for (int64_t c = max(past, j0); c <= column && c < j0 + n; ++c) {
      if (!valid[c]) continue;
      const float* from = fresh - (column - c) * 3 * e + part * e;
      for (int u = threadIdx.x; u < d; u += kThreads) dst[(c - j0) * stride + u] = from[u];
    }
  };

  const int64_t past = *a.past;  // (the step's first kernel wrote it)
  const int64_t column = past + offset, keys = column + 1;
  const int first = static_cast<int>(min(static_cast<int64_t>(tile), keys));
  load_cached(kc, ks, kstride, 0, first, past);
  load_cached(vc, vs, d, 0, first, past);
  // The first tile's padding flags (written by the step's first kernel) into a register, read
  // only after the wait: no memory round trip between the wait and the scores. (A tile has at
  // most 64 keys, fewer than the block's threads: thread jj scores key j0 + jj.)
  const bool first_valid = static_cast<int>(threadIdx.x) < first && valid[threadIdx.x] != 0;
  wait_for_previous_kernel();
  let_next_kernel_start();
  for (int u = threadIdx.x; u < d; u += kThreads) {
    qs[u] = fresh[u] * a.scale;
    a.kc[(r * key_stride + column) * e + h * d + u] = fresh[e + u];
    a.vc[(r * key_stride + column) * e + h * d + u] = fresh[2 * e + u];
  }
  load_fresh(ks, kstride, 1, 0, first, past, column);
  load_fresh(vs, d, 2, 0, first, past, column);
  copy_async_wait<0>();  // the first tile
  __syncthreads();

  // Scores, a thread per key, tile by tile (the first already loaded).
  float local_max = -INFINITY;
  for (int64_t j0 = 0; j0 < keys; j0 += tile) {
    const int n = static_cast<int>(min(static_cast<int64_t>(tile), keys - j0));
    if (j0 > 0) {
      __syncthreads();  // the previous tile is used up
      load_cached(kc, ks, kstride, j0, n, past);
      load_fresh(ks, kstride, 1, j0, n, past, column);
      copy_async_wait<0>();
      __syncthreads();
    }
    for (int jj = threadIdx.x; jj < n; jj += kThreads) {
      float dot = -INFINITY;
      const bool counts = j0 == 0 ? first_valid : valid[j0 + jj] != 0;
      if (counts) {
        float acc4[4] = {};
        if (vec) {
          for (int u = 0; u < d; u += 4) {
            const float4 qv = *reinterpret_cast<const float4*>(qs + u);
            const float4 kv = *reinterpret_cast<const float4*>(ks + jj * kstride + u);
            acc4[0] += qv.x * kv.x;
            acc4[1] += qv.y * kv.y;
            acc4[2] += qv.z * kv.z;
            acc4[3] += qv.w * kv.w;
          }
        } else {
          for (int u = 0; u < d; ++u) acc4[u & 3] += qs[u] * ks[jj * kstride + u];
        }
        dot = (acc4[0] + acc4[1]) + (acc4[2] + acc4[3]);
      }
      scores[j0 + jj] = dot;
      local_max = fmaxf(local_max, dot);
    }
  }
  // One softmax over the block: the maximum, then the exponentials and their sum.
  for (int o = 16; o > 0; o >>= 1)
    local_max = fmaxf(local_max, __shfl_xor_sync(0xffffffff, local_max, o));
  if (lane == 0) stat[warp] = local_max;
  __syncthreads();
  float m = stat[0];
  for (int w = 1; w < kWarps; ++w) m = fmaxf(m, stat[w]);
  float local_sum = 0;
  for (int64_t j = threadIdx.x; j < keys; j += kThreads) {
    const float s = scores[j];
    const float pr = s == -INFINITY ? 0.f : __expf(s - m);
    scores[j] = pr;
    local_sum += pr;
  }
  local_sum = warp_sum(local_sum);
  if (lane == 0) stat[kWarps + warp] = local_sum;

  // Values: warp w sums keys [w * tile / kWarps, (w + 1) * tile / kWarps) of each tile, a lane per
  // head element.
  float acc[kPerLane] = {};
  const int per_warp = tile / kWarps;
  for (int64_t j0 = 0; j0 < keys; j0 += tile) {
    const int n = static_cast<int>(min(static_cast<int64_t>(tile), keys - j0));
    if (j0 > 0) {
      __syncthreads();  // the previous tile (and, at the first, the scores) are used up
      load_cached(vc, vs, d, j0, n, past);
      load_fresh(vs, d, 2, j0, n, past, column);
      copy_async_wait<0>();
    }
    __syncthreads();
    const int lo = warp * per_warp, hi = min(n, lo + per_warp);
    for (int jj = lo; jj < hi; ++jj) {
      const float pr = scores[j0 + jj];
      if (pr == 0.f) continue;  // (padding: its value was not loaded)
#pragma unroll
      for (int kk = 0; kk < kPerLane; ++kk)
        if (lane + 32 * kk < d) acc[kk] += pr * vs[jj * d + lane + 32 * kk];
    }
  }
#pragma unroll
  for (int kk = 0; kk < kPerLane; ++kk)
    if (lane + 32 * kk < d) part[warp * d + lane + 32 * kk] = acc[kk];
  __syncthreads();
  float l = 0;
  for (int w = 0; w < kWarps; ++w) l += stat[kWarps + w];
  const float inv = l > 0 ? 1.0f / l : 0.f;
  T* o = static_cast<T*>(a.out) + i * e + h * d;
  for (int u = threadIdx.x; u < d; u += kThreads) {
    float v = 0;
    for (int w = 0; w < kWarps; ++w) v += part[w * d + u];
    o[u] = to_t<T>(v * inv);
  }
}

}  // namespace gptrt::cuda
