// A layer's QKV projection and its causal attention as one kernel, for a few rows (a decode
// step's, or a short forward pass's) in FP16/BF16 on sm_90: one launch and one kernel boundary
// fewer per layer than skinny_linear_kernel followed by attention_decode_kernel/attention_kernel.
//
// Shape of the work: x [m = b * t, k] (LayerNorm fused) -> qkv [m, 3e] (never stored) -> out
// [b, t, e] in T, heads of size 64. A thread-block cluster of kQkvRanks = 8 blocks takes one head;
// block `rank` computes head dimensions [8 rank, 8 rank + 8) of the head's query, key and value
// (three n8 column tiles of W [3e, k], all of K split over the 8 warps, m16n8k16 on the tensor
// cores with the skinny kernel's lane layout and relabelled k order), so every weight is read by
// one block. The dot products of a query with the keys are sums over the 64 dimensions: each block
// writes its 8-dimension partial score for every (query, key) into its shared memory, the cluster
// meets at a barrier, and every block adds the 8 blocks' partials in rank order (the same scores,
// bit for bit, in all 8), takes the softmax and multiplies by its own 8 dimensions of the values.
// With a KV cache, keys and values before `past` come from the cache (requested right after the
// wait, while the LayerNorm and the multiply run) and each block appends its slice of the new ones.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"
#include "backends/cuda/skinny_linear.cuh"

namespace gptrt::cuda {

constexpr int kQkvRanks = 8;  // blocks per head: one cluster
constexpr int kQkvDims = 8;   // head dimensions per block (one n8 tile)
constexpr int kQkvHead = kQkvRanks * kQkvDims;
constexpr int kQkvMaxSlots = 8;  // 32-long chunks of K per warp (k <= 2048)

// Shared memory the kernel may take, and (query row, key) pairs it takes (rows x the cache's
// length, one pair per thread): beyond them the two kernels run. Every block of a cluster adds up
// the scores of every pair from the 8 blocks' partials, so its work grows with rows x keys where
// the two kernels spread it over rows. On the H100 (`gptrt bench --decode`, FP16, 45 positions,
// A/B in one run), a decode step fused against two kernels: batch 1 0.137-0.138 against
// 0.139-0.141 ms, batch 2 0.144 against 0.147-0.149, batch 4 0.149 against 0.151-0.152, batch 8
// (360 pairs) 0.164-0.165 against 0.160-0.162.
constexpr size_t kQkvAttentionMaxSmem = 100 * 1024;
constexpr int64_t kQkvAttentionMaxPairs = 256;

struct QkvAttentionArgs {
  SkinnyArgs lin;       // the projection: x, LayerNorm, w [3e, k], bias; m = b * t rows; y unused
  const void* mask;     // [b, key_stride] of M (0: the key does not count), or null
  const int64_t* past;  // cached length, or null (no cache: 0)
  float* kc;            // caches [b, key_stride, e], or null
  float* vc;
  void* out;  // [b, t, e] in T
  int b, t, key_stride, e;
  int past_early;  // past, the cache and the flags were written two or more launches back
  float scale;
};

// Shared memory, in this order: the weights [slots][3][256 threads] x 16 bytes (then the warps'
// partial sums), the rows [read_rows][row_stride] of T, gamma and beta [2][k], the block's
// query/key/value slices [16][3][8] and their bias [3][8], the cached key/value slices
// [b][key_stride][2][8], partial scores and scores [m][key_stride] each. Sizes in bytes.
struct QkvAttentionSmem {
  size_t weights, rows, gamma_beta, fresh, cached, scores, total;
};
__host__ __device__ inline QkvAttentionSmem qkv_attention_smem(int m, int k, int b,
                                                               int key_stride) {
  QkvAttentionSmem s{};
  const int slots = (k / 32 + kQkvRanks - 1) / kQkvRanks;
  s.weights = static_cast<size_t>(slots) * 3 * 256 * 16;  // (>= the partial sums' 12 KB)
  s.rows = static_cast<size_t>(skinny_read_rows(m)) * skinny_row_stride(k) * 2;
  s.gamma_beta = size_t{8} * static_cast<size_t>(k);
  s.fresh = (size_t{16} + 1) * 3 * kQkvDims * 4;
  s.cached = static_cast<size_t>(b) * key_stride * 2 * kQkvDims * 4;
  s.scores = static_cast<size_t>(m) * key_stride * 4;
  s.total = s.weights + s.rows + s.gamma_beta + s.fresh + s.cached + 2 * s.scores;
  return s;
}

__device__ __forceinline__ void cluster_arrive_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
// A float from block `rank` of the cluster, at the address `local` has in this block.
__device__ __forceinline__ float cluster_load(const float* local, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(local)), remote;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
  return v;
#else
  return *local;
#endif
}
__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
  return r;
}

// Requests block columns [dim0, dim0 + 8) of the cached keys and values before `past` into
// cached[b][key][k, v][8] (one cp.async group); returns the padding flags of the thread's first
// two (query row, key) pairs (1 where there is no mask or no such pair).
template <typename M>
struct QkvFlags {
  M first, second;
};
template <typename M>
__device__ __forceinline__ QkvFlags<M> qkv_request_cache(const QkvAttentionArgs& a, int dim0,
                                                         int past, float* cached) {
  for (int i = threadIdx.x; i < a.b * past * 4; i += blockDim.x) {
    const int r = i / (past * 4), j = i / 4 % past, which = i % 4;  // (K, V) x 16-byte halves
    const float* src = (which < 2 ? a.kc : a.vc) +
                       (static_cast<int64_t>(r) * a.key_stride + j) * a.e + dim0 + which % 2 * 4;
    copy_async(cached + ((r * a.key_stride + j) * 2 + which / 2) * kQkvDims + which % 2 * 4, src,
               true);
  }
  copy_async_commit();
  const M* mask = static_cast<const M*>(a.mask);
  const int span = past + a.t, x = threadIdx.x, y = threadIdx.x + blockDim.x;
  QkvFlags<M> flags{1, 1};
  if (mask && x / span < a.lin.m)
    flags.first = mask[static_cast<int64_t>(x / span / a.t) * a.key_stride + x % span];
  if (mask && y / span < a.lin.m)
    flags.second = mask[static_cast<int64_t>(y / span / a.t) * a.key_stride + y % span];
  return flags;
}

// kHi: whether rows 8..15 hold rows (m > 8). Grid: (e / 64) * 8 blocks of 256 threads in
// clusters of 8; block b's head is b / 8.
template <typename T, typename M, bool kHi>
__global__ void __launch_bounds__(256, 2) qkv_attention_kernel(QkvAttentionArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  GPTRT_TRACE_KERNEL();
  extern __shared__ __align__(16) unsigned char smem[];
  const SkinnyArgs& p = a.lin;
  const QkvAttentionSmem sz = qkv_attention_smem(p.m, p.k, a.b, a.key_stride);
  constexpr int kReadRows = kHi ? 16 : 8;
  uint4* ring = reinterpret_cast<uint4*>(smem);     // [slot][tile][thread]
  float* partial = reinterpret_cast<float*>(smem);  // (after the multiply) [warp][tile][lane][4]
  T* xs = reinterpret_cast<T*>(smem + sz.weights);
  float* gamma_beta = reinterpret_cast<float*>(smem + sz.weights + sz.rows);
  float* fresh = gamma_beta + 2 * p.k;                       // [row][q, k, v][8]
  float* bias_s = fresh + 16 * 3 * kQkvDims;                 // [q, k, v][8]
  float* cached = bias_s + 3 * kQkvDims;                     // [b][key][k, v][8]
  float* part = cached + a.b * a.key_stride * 2 * kQkvDims;  // [row][key], read by the cluster
  float* scores = part + p.m * a.key_stride;                 // [row][key]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int head = blockIdx.x / kQkvRanks;
  const unsigned rank = cluster_rank();
  const int dim0 = head * kQkvHead + static_cast<int>(rank) * kQkvDims;  // first column of q
  const int e = a.e, chunks = p.k / 32, slots = (chunks + kQkvRanks - 1) / kQkvRanks;

  // Before the previous kernel has finished: gamma and beta, every weight this block multiplies
  // (lane (g, c) of warp w: W[tile * e + dim0 + g][32 (8 s + w) + 8 c, + 8) for slot s), the bias
  // of the block's 24 columns, the zeros of the rows the multiply reads beyond m.
  // (The cached length first where it may be read before the wait: the cache requests below
  // need it, and should not queue behind the weights'.)
  int past = a.past && a.past_early ? static_cast<int>(*a.past) : 0;
  skinny_request_layer_norm(p, gamma_beta);
  const T* w = static_cast<const T*>(p.w);
  for (int s = 0; s < slots; ++s) {
    const int chunk = s * kQkvRanks + warp;
#pragma unroll
    for (int tile = 0; tile < 3; ++tile) {
      const int64_t n = tile * e + dim0 + g;
      copy_async(ring + (s * 3 + tile) * 256 + threadIdx.x,
                 w + n * p.k + (chunk < chunks ? chunk * 32 + c * 8 : 0), chunk < chunks);
    }
  }
  copy_async_commit();
  float bias = 0.f;  // (into shared memory after the wait: no thread blocks before it)
  if (threadIdx.x < 3 * kQkvDims && p.bias) {
    const int col = static_cast<int>(threadIdx.x) / kQkvDims * e + dim0 + threadIdx.x % kQkvDims;
    bias = p.bias_half ? static_cast<float>(static_cast<const T*>(p.bias)[col])
                       : static_cast<const float*>(p.bias)[col];
  }
  for (int i = threadIdx.x; i < (kReadRows - min(p.m, kReadRows)) * p.k / 8; i += blockDim.x) {
    const int per_row = p.k / 8;
    *reinterpret_cast<uint4*>(xs + (p.m + i / per_row) * p.row_stride + i % per_row * 8) =
        make_uint4(0, 0, 0, 0);
  }
  // The cached keys' and values' slices and the padding flags: requested before the wait where
  // they were written two or more launches back (past_early: not the step's first layer), else
  // once the rows are loaded (the LayerNorm's row reads go first); waited for after the multiply.
  const M* mask = static_cast<const M*>(a.mask);
  QkvFlags<M> flag{1, 1};  // the flags of this thread's first two pairs (see below)
  if (a.past_early) flag = qkv_request_cache<M>(a, dim0, past, cached);
  wait_for_previous_kernel();
  let_next_kernel_start();
  if (!a.past_early) copy_async_commit();  // (an empty group in its place: the counts hold)
  copy_async_wait<2>();                    // gamma and beta
  __syncthreads();
  skinny_load_rows<T>(p, xs, gamma_beta);
  if (threadIdx.x < 3 * kQkvDims) bias_s[threadIdx.x] = bias;
  if (!a.past_early) {
    past = a.past ? static_cast<int>(*a.past) : 0;
    flag = qkv_request_cache<M>(a, dim0, past, cached);
  }
  copy_async_wait<1>();  // this lane's weights
  __syncthreads();
  GPTRT_TRACE_MARK(0);

  // The multiply: warp w takes chunks w, w + 8, ... of K for all three tiles.
  float acc[3][4] = {};
  {
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const T* a_lo = xs + g * p.row_stride + warp * 32 + c * 8;
    for (int s = 0; s < slots; ++s) {
      if (s * kQkvRanks + warp >= chunks) break;
      const int off = s * kQkvRanks * 32;
      const uint4 lo = *reinterpret_cast<const uint4*>(a_lo + off);
      const uint4 hi = kHi ? *reinterpret_cast<const uint4*>(a_lo + 8 * p.row_stride + off) : zero;
#pragma unroll
      for (int tile = 0; tile < 3; ++tile) {
        const uint4 b = ring[(s * 3 + tile) * 256 + threadIdx.x];
        mma_16816<T>(acc[tile], lo.x, hi.x, lo.y, hi.y, b.x, b.y);
        mma_16816<T>(acc[tile], lo.z, hi.z, lo.w, hi.w, b.z, b.w);
      }
    }
  }
  __syncthreads();  // the weights are used up: their space takes the partial sums
#pragma unroll
  for (int tile = 0; tile < 3; ++tile)
    *reinterpret_cast<float4*>(partial + ((warp * 3 + tile) * 32 + lane) * 4) =
        make_float4(acc[tile][0], acc[tile][1], acc[tile][2], acc[tile][3]);
  __syncthreads();
  // The warps' sums in a fixed order, plus the bias: fresh[row][tile][d] (in the m16n8 layout,
  // lane 4 (row % 8) + d / 2 holds (row, d), in element 2 (row >= 8) + d % 2).
  for (int o = threadIdx.x; o < p.m * 3 * kQkvDims; o += blockDim.x) {
    const int row = o / (3 * kQkvDims), col = o % (3 * kQkvDims), tile = col / kQkvDims,
              d = col % kQkvDims;
    const int l = (row & 7) * 4 + d / 2, at = (row >= 8 ? 2 : 0) + (d & 1);
    float v = 0;
    for (int wp = 0; wp < 8; ++wp) v += partial[((wp * 3 + tile) * 32 + l) * 4 + at];
    fresh[o] = v + bias_s[col];
  }
  copy_async_wait<0>();  // the cached slices
  __syncthreads();
  GPTRT_TRACE_MARK(1);

  // Key j of batch row r: its slice (kind 0 key, 1 value) from the cache or the new ones.
  auto slice = [&](int r, int j, int kind) -> const float* {
    return j < past ? cached + ((r * a.key_stride + j) * 2 + kind) * kQkvDims
                    : fresh + ((r * a.t + j - past) * 3 + 1 + kind) * kQkvDims;
  };
  // (query row, key) pairs, a thread each: row x / span, key x % span, for the keys up to the
  // row's own position (causal). A masked key's partial is -inf in every block, so its sum is.
  const int span = past + a.t, pairs = p.m * span;
#pragma unroll 1
  for (int x = threadIdx.x, n = 0; x < pairs; x += blockDim.x, ++n) {
    const int row = x / span, j = x % span, r = row / a.t;
    if (j > past + row % a.t) continue;
    const bool counts = n < 2 ? (n == 0 ? flag.first : flag.second) != 0
                              : !mask || mask[static_cast<int64_t>(r) * a.key_stride + j] != 0;
    const float* q = fresh + row * 3 * kQkvDims;
    const float* k = slice(r, j, 0);
    const float4 q0 = *reinterpret_cast<const float4*>(q),
                 q1 = *reinterpret_cast<const float4*>(q + 4);
    const float4 k0 = *reinterpret_cast<const float4*>(k),
                 k1 = *reinterpret_cast<const float4*>(k + 4);
    part[row * a.key_stride + j] =
        counts ? ((q0.x * k0.x + q0.y * k0.y) + (q0.z * k0.z + q0.w * k0.w)) +
                     ((q1.x * k1.x + q1.y * k1.y) + (q1.z * k1.z + q1.w * k1.w))
               : -INFINITY;
  }
  cluster_arrive_release();
  cluster_wait();
  GPTRT_TRACE_MARK(2);
  // The scores: the 8 blocks' partials in rank order (all 8 requested before the first is
  // added); then this block is done reading the others' shared memory.
#pragma unroll 1
  for (int x = threadIdx.x; x < pairs; x += blockDim.x) {
    const int row = x / span, j = x % span;
    if (j > past + row % a.t) continue;
    const float* at = part + row * a.key_stride + j;
    float ps[kQkvRanks];
#pragma unroll
    for (unsigned from = 0; from < kQkvRanks; ++from) ps[from] = cluster_load(at, from);
    float sum = 0;
#pragma unroll
    for (unsigned from = 0; from < kQkvRanks; ++from) sum += ps[from];
    scores[row * a.key_stride + j] = sum * a.scale;  // (-inf stays -inf)
  }
  cluster_arrive_relaxed();
  if (a.kc) {  // this block's slices of the new keys and values, appended to the cache
    for (int o = threadIdx.x; o < p.m * 2 * kQkvDims; o += blockDim.x) {
      const int row = o / (2 * kQkvDims), which = o / kQkvDims % 2, d = o % kQkvDims;
      const int r = row / a.t, i = row % a.t;
      (which == 0 ? a.kc
                  : a.vc)[(static_cast<int64_t>(r) * a.key_stride + past + i) * e + dim0 + d] =
          fresh[row * 3 * kQkvDims + (1 + which) * kQkvDims + d];
    }
  }
  __syncthreads();
  // Softmax and the values: `lanes` threads per row (a warp up to 8 rows, half a warp up to 16),
  // each lane a head dimension d and every (lanes / 8)-th key; sums over the lanes by shuffles in
  // a fixed order. Rows past m run with no keys, so that every lane reaches the shuffles.
  const int lanes = p.m <= 8 ? 32 : 16, row = threadIdx.x / lanes, li = threadIdx.x % lanes;
  const int keys = row < p.m ? past + row % a.t + 1 : 0, r = row / a.t;
  float* sr = scores + row * a.key_stride;
  float mx = -INFINITY;
  for (int j = li; j < keys; j += lanes) mx = fmaxf(mx, sr[j]);
  for (int o = lanes / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, o));
  for (int j = li; j < keys; j += lanes) sr[j] = sr[j] == -INFINITY ? 0.f : __expf(sr[j] - mx);
  __syncwarp();
  const int d = li % kQkvDims, groups = lanes / kQkvDims;
  float l = 0, v = 0;
  for (int j = li / kQkvDims; j < keys; j += groups) {
    const float pr = sr[j];
    l += pr;
    v += pr * slice(r, j, 1)[d];
  }
  for (int o = kQkvDims; o < lanes; o <<= 1) {
    l += __shfl_xor_sync(0xffffffff, l, o);
    v += __shfl_xor_sync(0xffffffff, v, o);
  }
  if (row < p.m && li < kQkvDims)
    static_cast<T*>(a.out)[static_cast<int64_t>(row) * e + dim0 + d] = to_t<T>(l > 0 ? v / l : 0.f);
  cluster_wait();  // no block leaves while another may still read its partial scores
#else
  __trap();  // the host launches this kernel on sm_90 and newer only
#endif
}

}  // namespace gptrt::cuda
