// The CUDA backend (see cuda_backend.h). Host code uses only CUDA 11/12-era runtime and cuBLAS
// APIs (cudaStreamBeginCapture, cudaGraphInstantiate with flags, cublasGemmEx), so CUDA 12 users
// can build it.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include "backends/cuda/attention.cuh"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/qkv_attention.cuh"
#include "backends/cuda/skinny_fp32.cuh"
#include "backends/cuda/skinny_linear.cuh"
#include "backends/cuda/skinny_stream.cuh"
#include "ir/memory_plan.h"
#include "backends/reference/fused_ops.h"
#include "core/half.h"
#include "gptrt/error.h"

namespace gptrt::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(ErrorCode::kInternal,
                std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::kInternal,
                std::string("cuBLAS error ") + std::to_string(static_cast<int>(s)) + " in " + what);
}

// ---- kernels ---------------------------------------------------------------------------------

__global__ void embedding_kernel(const int64_t* ids, const int64_t* pos, const float* wte,
                                 const float* wpe, int64_t s, int64_t e, float* out) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  int64_t row = blockIdx.x;
  int64_t p = pos ? pos[row] : row % s;
  const float* a = wte + ids[row] * e;
  const float* b = wpe + p * e;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) out[row * e + k] = a[k] + b[k];
}

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

// Launches kernels on one stream, each allowed to start while the one before it finishes
// (programmatic dependent launch, sm_90) when `overlap` is on: the kernels wait for their
// predecessor themselves (wait_for_previous_kernel).
//
// Every kernel it launches asks for `carveout` percent of the largest shared-memory carveout
// (once per kernel function, for the process; -1: the default). A block can only join an SM whose
// carveout has room for it, and an SM keeps the carveout of the blocks it runs: with the default,
// a decode step's FC1 (192 blocks) found room beside no proj block and went two per SM to the 97
// SMs that proj left first. FP16/BF16 engines take all of it (their GEMMs stream weights through
// shared memory); FP32 engines 75%, which leaves L1 room for their GEMM's weight loads (measured
// on the H100: FP16 best at 100, FP32 at 75 of 25/50/75/100; see docs/BENCHMARKS.md).
struct Launcher {
  cudaStream_t stream = nullptr;
  bool overlap = false;
  int carveout = -1;
  mutable bool after_copy = false;  // the next launch follows a copy: a plain dependency
  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                  Args... args) const {
    clustered(kernel, grid, block, smem, 0, args...);
  }
  // The same in thread-block clusters of `cluster` blocks along x (0: none; sm_90).
  template <typename... Params, typename... Args>
  void clustered(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, int cluster,
                 Args... args) const {
    if (carveout >= 0) {
      static std::mutex mu;
      static std::set<const void*> done;
      std::lock_guard<std::mutex> lock(mu);
      if (done.insert(reinterpret_cast<const void*>(kernel)).second)
        check(
            cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout),
            "cudaFuncSetAttribute (carveout)");
    }
    cudaLaunchAttribute attr[2];
    unsigned attrs = 0;
    if (overlap && !after_copy) {
      attr[attrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[attrs++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster > 0) {
      attr[attrs].id = cudaLaunchAttributeClusterDimension;
      attr[attrs].val.clusterDim.x = static_cast<unsigned>(cluster);
      attr[attrs].val.clusterDim.y = 1;
      attr[attrs++].val.clusterDim.z = 1;
    }
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attr;
    config.numAttrs = attrs;
    after_copy = false;
    check(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...), "kernel launch");
  }
};

// Launches attention_kernel with the register count the head size needs (M: the mask's type).
// Decode steps (one query per row against the cache and its flags) take attention_decode_kernel.
template <typename T, typename M>
void launch_attention(const AttentionArgs& a, const Launcher& launch) {
  const size_t decode_smem = attention_decode_smem_bytes(a.e / a.heads, a.key_stride);
  const bool decode = std::is_same_v<M, uint8_t> && a.t == 1 && a.kc && a.mask && a.past &&
                      decode_smem <= kAttentionDecodeMaxSmem;
  dim3 grid(static_cast<unsigned>(decode ? a.b * a.heads : attention_blocks(a)));
  size_t smem = decode ? decode_smem : attention_smem_bytes(a.e / a.heads);
  auto go = [&](auto per_lane) {
    auto kernel = decode ? attention_decode_kernel<decltype(per_lane)::value, T>
                         : attention_kernel<decltype(per_lane)::value, T, M>;
    if (smem > 48 * 1024)
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem)),
            "cudaFuncSetAttribute (attention)");
    launch(kernel, grid, dim3(32 * kAttentionWarps), smem, a);
  };
  switch ((a.e / a.heads + 31) / 32) {
    case 1:
      go(std::integral_constant<int, 1>{});
      break;
    case 2:
      go(std::integral_constant<int, 2>{});
      break;
    case 3:
      go(std::integral_constant<int, 3>{});
      break;
    case 4:
      go(std::integral_constant<int, 4>{});
      break;
    default:
      go(std::integral_constant<int, 8>{});
      break;
  }
}

// y[r] = x[r, t - 1]: each row's last position (the only logits generation needs).
template <typename T>
__global__ void last_rows_kernel(const T* x, int64_t t, int64_t e, T* y) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x)
    y[blockIdx.x * e + k] = x[(blockIdx.x * t + t - 1) * e + k];
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

__global__ void spin_kernel(int64_t ns) {
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<int64_t>(now - start) < ns);
}

// A generation step's embedding, its inputs read straight from mapped pinned host memory (one
// read over the bus, no copies): `in` holds ids [rows], positions [rows], the cached length, then
// the padding flags [flag_bytes] (the layout decode_step writes). Block r embeds row r; all the
// blocks' threads copy the cached length and the flags, 8 bytes at a time, to device memory for
// the attention kernels (which read them before their wait: they run two or more launches
// later). The first kernel of a step, launched without overlap: it waits for nothing.
__global__ void step_embedding_kernel(const int64_t* in, int64_t rows, int64_t flag_bytes,
                                      int64_t* past, uint8_t* valid, const float* wte,
                                      const float* wpe, int64_t e, float* out, int64_t* ids,
                                      int64_t* pos) {
  GPTRT_TRACE_KERNEL();
  let_next_kernel_start();
  const int64_t row = blockIdx.x;
  if (threadIdx.x == 0) {  // (for chunk_advance_kernel, in a graph of several steps)
    ids[row] = in[row];
    pos[row] = in[rows + row];
  }
  const float* a = wte + in[row] * e;
  const float* b = wpe + in[rows + row] * e;
  const int64_t* flags = in + 2 * rows + 1;
  const int64_t at = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x,
                stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (at == 0) *past = in[2 * rows];
  for (int64_t i = at; i < flag_bytes / 8; i += stride)
    reinterpret_cast<int64_t*>(valid)[i] = flags[i];
  const uint8_t* tail = reinterpret_cast<const uint8_t*>(flags);
  for (int64_t i = flag_bytes / 8 * 8 + at; i < flag_bytes; i += stride) valid[i] = tail[i];
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) out[row * e + k] = a[k] + b[k];
}

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

int blocks_for(int64_t n, int threads) {
  return static_cast<int>((n + threads - 1) / threads);
}

// ---- device weights, shared by every context of one engine -----------------------------------

// 16-bit matrices are stored with their row count rounded up to a multiple of 8 (zero rows
// after the last): a linear layer whose N is not a multiple of 8 (the LM head) can then run
// through cuBLASLt as a GEMM of that many rows (see Runner::Impl::pitched_cols).
struct DeviceWeights {
  std::map<int, void*> ptr;  // value id -> device copy of its constant
  ~DeviceWeights() {
    for (auto& [id, p] : ptr) cudaFree(p);
  }
};

std::mutex g_weights_mu;
std::map<const void*, std::weak_ptr<DeviceWeights>> g_weights;

std::shared_ptr<DeviceWeights> weights_for(const void* owner, const ir::Graph& g) {
  std::lock_guard<std::mutex> lock(g_weights_mu);
  if (auto w = g_weights[owner].lock()) return w;
  auto w = std::make_shared<DeviceWeights>();
  for (size_t i = 0; i < g.values.size(); ++i) {
    const ir::Value& v = g.values[i];
    if (!v.is_constant() || v.constant.nbytes() == 0) continue;
    size_t bytes = v.constant.nbytes();
    if (v.constant.shape().size() == 2 &&
        (v.dtype == DType::kFloat16 || v.dtype == DType::kBFloat16))
      bytes = static_cast<size_t>((v.constant.dim(0) + 7) / 8 * 8 * v.constant.dim(1) * 2);
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc (weights)");
    w->ptr[static_cast<int>(i)] = p;
    if (bytes > v.constant.nbytes())
      check(cudaMemset(static_cast<char*>(p) + v.constant.nbytes(), 0, bytes - v.constant.nbytes()),
            "weights padding");
    check(cudaMemcpy(p, v.constant.raw(), v.constant.nbytes(), cudaMemcpyHostToDevice),
          "weights upload");
  }
  g_weights[owner] = w;
  return w;
}

}  // namespace

bool compiled_in() {
  return true;
}

std::string device_sm(std::string* why) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    if (why)
      *why = e != cudaSuccess ? std::string("no usable NVIDIA GPU (") + cudaGetErrorString(e) + ")"
                              : "no NVIDIA GPU found";
    return "";
  }
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return "sm_" + std::to_string(p.major) + std::to_string(p.minor);
}

std::string device_name() {
  std::string why, sm = device_sm(&why);
  if (sm.empty()) return "";
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return std::string(p.name) + " (" + sm + ")";
}

namespace {

// FP16/BF16 engines keep a value in that type when only linear layers read it (as their input):
// the LayerNorm outputs, the attention outputs and the MLP's inner activations. The residual
// stream, qkv and the logits stay FP32.
std::vector<char> half_values(const ir::Graph& g, Precision precision) {
  std::vector<char> half(g.values.size(), 0);
  if (precision != Precision::kFp16 && precision != Precision::kBf16) return half;
  std::vector<int> readers(g.values.size(), 0), linear_readers(g.values.size(), 0);
  for (const ir::Node& n : g.nodes) {
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k] < 0) continue;
      ++readers[static_cast<size_t>(n.inputs[k])];
      if (n.op_type == "Linear" && k == 0) ++linear_readers[static_cast<size_t>(n.inputs[k])];
    }
  }
  for (const ir::Node& n : g.nodes) {
    int id = n.outputs[0];
    half[static_cast<size_t>(id)] =
        readers[static_cast<size_t>(id)] > 0 &&
        readers[static_cast<size_t>(id)] == linear_readers[static_cast<size_t>(id)];
  }
  for (int id : g.outputs) half[static_cast<size_t>(id)] = 0;
  return half;
}

// `t` in the precision's storage type (FP16, BF16, else FP32); a [K, N] weight transposed to
// [N, K] when `transpose`.
Tensor stored(const Tensor& t, Precision precision, bool transpose) {
  std::vector<int64_t> shape = t.shape();
  if (transpose) std::swap(shape[0], shape[1]);
  const bool half = precision == Precision::kFp16 || precision == Precision::kBf16;
  Tensor h(precision == Precision::kFp16   ? DType::kFloat16
           : precision == Precision::kBf16 ? DType::kBFloat16
                                           : DType::kFloat32,
           shape);
  int64_t rows = t.dim(0), cols = t.numel() / std::max<int64_t>(rows, 1);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float x = t.data<float>()[i];
    int64_t at = transpose ? i % cols * rows + i / cols : i;
    if (!half)
      h.data_mut<float>()[at] = x;
    else
      h.data_mut<uint16_t>()[at] =
          precision == Precision::kFp16 ? float_to_half(x) : float_to_bf16(x);
  }
  return h;
}

}  // namespace

bool has_kernel(const ir::Node& n) {
  return (n.domain == ir::kFusedDomain &&
          (n.op_type == "Embedding" || n.op_type == "Linear" || n.op_type == "Attention")) ||
         (n.domain.empty() && n.op_type == "LayerNormalization" && n.attr_int("axis", -1) == -1);
}

void lower(ir::Graph& g, Precision precision) {
  std::vector<char> half = half_values(g, precision);
  for (ir::Node& n : g.nodes) {
    if (!has_kernel(n)) throw Error(ErrorCode::kUnsupported, n.describe() + " has no CUDA kernel");
    if (n.op_type == "Attention") {
      int64_t e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
      int64_t d = e / n.attr_int("num_heads", 1);
      if (d > 256)
        throw Error(ErrorCode::kUnsupported, n.describe() + ": head size " + std::to_string(d) +
                                                 " is over 256, the CUDA attention kernel's limit");
    }
    if (n.op_type != "Linear") continue;
    // Every linear weight stored [N, K] (transB = 1: what the skinny kernels read; cuBLASLt reads
    // either), in FP16/BF16 for those precisions, as a new value so that a tied embedding keeps
    // its FP32 table; for FP16/BF16 also the bias when the output is kept in that type (cuBLASLt
    // adds it in the output type).
    const bool half_weights = precision == Precision::kFp16 || precision == Precision::kBf16;
    auto convert = [&](size_t input, bool transpose) {
      const ir::Value& v = g.values[static_cast<size_t>(n.inputs[input])];
      std::string name = v.name +
                         (!half_weights                   ? ""
                          : precision == Precision::kFp16 ? ".fp16"
                                                          : ".bf16") +
                         (transpose ? ".T" : "");
      int id = g.find(name);
      if (id < 0) id = g.add_constant(name, stored(v.constant, precision, transpose));
      n.inputs[input] = id;
    };
    const bool transpose = n.attr_int("transB", 0) == 0;
    if (half_weights || transpose) convert(1, transpose);
    n.attrs["transB"] = ir::int_attr(1);
    if (!half_weights) continue;
    bool erf = n.attr_string("activation", "") == "gelu_erf";  // bias added in FP32 scratch
    if (n.inputs.size() > 2 && n.inputs[2] >= 0 && half[static_cast<size_t>(n.outputs[0])] && !erf)
      convert(2, false);
  }
}

struct Runner::Impl {
  std::shared_ptr<const void> owner;
  const ir::Graph& g;
  Precision precision;
  std::shared_ptr<DeviceWeights> weights;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  static constexpr size_t kWorkspace = size_t{32} << 20;
  ir::MemoryPlan plan;
  char* arena = nullptr;
  std::vector<char> half;    // values kept in FP16/BF16
  float* scratch = nullptr;  // FP32 GEMM output before an exact-GELU kernel
  int64_t scratch_bytes = 0;
  // GEMM outputs at a padded pitch (pitched_cols), kPitchedRows rows at a time.
  static constexpr int64_t kPitchedRows = 256;
  void* pitched = nullptr;
  int64_t pitched_capacity = 0;
  // One cuBLASLt plan per (linear node, rows): descriptors and the heuristic's algorithm.
  struct LtPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::map<std::pair<size_t, int64_t>, LtPlan> lt_plans;
  // Generation: per attention layer a KV cache [batch, cache_s, hidden], padding flags, the
  // number of cached positions (read by the kernels, so one graph serves every decode step), each
  // row's last position before the LM head, and the decode-step graph.
  struct KvCache {
    std::vector<float*> k, v;
    uint8_t* valid = nullptr;
    int64_t* past = nullptr;
    void* last = nullptr;
    int64_t* picks = nullptr;  // argmax per row
    float* part_v = nullptr;   // argmax_kernel's parts [b][kArgmaxParts] and counts [b]
    int64_t* part_i = nullptr;
    unsigned* done = nullptr;
    int64_t batch = 0, cache_s = 0, prompt = 0;
    cudaGraphExec_t step_graphs[4] = {};  // decode step, by (argmax?, logits?)
    // Greedy decode steps several to a graph (decode_step with steps > 1): per count its graph,
    // and the steps' picks [kMaxSteps][batch].
    std::map<int64_t, cudaGraphExec_t> chunk_graphs;
    int64_t* chunk_picks = nullptr;
    int64_t single_steps = 0;  // decode steps run one per replay since the cache was planned
  } kv;
  float* out = nullptr;  // logits [b, s, vocab] (grown, never per run)
  int64_t out_bytes = 0;
  int64_t* ids = nullptr;
  int64_t* mask = nullptr;
  int64_t* pos = nullptr;
  int64_t io_elems = 0;  // capacity of ids/mask/pos
  // While a generation step is enqueued on mapped host memory: its inputs there (device address).
  const int64_t* step_in = nullptr;
  void* pinned_in = nullptr;
  void* pinned_out = nullptr;
  int64_t pinned_in_bytes = 0, pinned_out_bytes = 0;
  const void* mapped_for = nullptr;  // pinned_in as the GPU addresses it (null: not mapped)
  int64_t* mapped_in = nullptr;
  cudaEvent_t ev[4] = {};
  bool use_graphs = true;
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs;
  Launcher launch;
  int sm_major = 0, sm_count = 1;
  size_t smem_optin = 0;
  bool skinny_enabled = false;
  bool skinny_fp32_enabled = false;
  int forced_tn = 0;  // GPTRT_CUDA_SKINNY_TN: column tiles per block (tests cover each)
  // GPTRT_CUDA_STREAM: 1 runs every skinny layer that skinny_stream_kernel can run on it (tests),
  // 0 none (comparisons); unset, the LM head where it pays (skinny_fp32_plan, skinny_plan).
  int stream_mode = -1;
  // GPTRT_CUDA_DECODE_STEPS: greedy decode steps per graph at most (1: one step per replay);
  // unset, kMaxDecodeSteps once kStepsBeforeChunks single steps have run on this cache (capturing
  // a graph of 8 steps costs ~2 ms, what ~200 steps save: short one-shot runs never pay it).
  int64_t max_steps = kMaxDecodeSteps;
  bool steps_set = false;
  static constexpr int64_t kStepsBeforeChunks = 256;
  int64_t max_greedy_steps() const {
    return steps_set || kv.single_steps >= kStepsBeforeChunks || !kv.chunk_graphs.empty()
               ? max_steps
               : 1;
  }
  // GPTRT_CUDA_FUSED_ATTENTION: 0 runs every QKV projection and its attention as two kernels
  // (comparisons); unset or 1, qkv_attention_kernel where it can run (qkv_attention_runs).
  bool fused_attention_enabled = true;
  // Per Linear node the Attention node that alone reads its output (-1: none), and, in a
  // forward pass, the Attention node its fused kernel has already run (-1: none).
  std::vector<int> attention_after;
  int attention_done = -1;
  // LayerNorm fusion: per Linear node the LayerNormalization node feeding it that the skinny
  // kernel can absorb (-1: none); per such LayerNorm node its readers (all Linear, as input 0).
  std::vector<int> ln_before;
  std::vector<std::vector<size_t>> ln_readers;
  // Per (linear node, rows): whether the skinny kernel runs it, and how.
  struct SkinnyPlan {
    bool ok = false;
    bool fp32 = false;    // skinny_fp32_kernel: mt = its MR, tn = its K splits, v = its V
    bool stream = false;  // skinny_stream_kernel instead: mt = its MR, pitch its rows' pitch
    int pitch = 0;        // (FP32, streaming) its rows' pitch in shared memory
    int mt = 0, tn = 1, grid = 0, v = 0;
    int ring = kSkinnyStages;  // (skinny_linear_kernel) its weight ring's stages
    size_t smem = 0;
  };
  std::map<std::pair<size_t, int64_t>, SkinnyPlan> skinny_plans;
  // Profiling: an event after each kernel and its label (pool of events reused).
  std::vector<cudaEvent_t> mark_events;
  std::vector<std::string> mark_labels;
  bool marking = false;
  std::string gemm_kind;  // how linear() ran its last node, for the labels

  Impl(std::shared_ptr<const void> o, const ir::Graph& graph, Precision p,
       const std::map<std::string, int64_t>& dim_max)
      : owner(std::move(o)), g(graph), precision(p) {
    // GPTRT_CUDA_PDL=0 and GPTRT_CUDA_GEMM=cublaslt switch the two off (for comparisons).
    const char* pdl_env = std::getenv("GPTRT_CUDA_PDL");
    const char* gemm_env = std::getenv("GPTRT_CUDA_GEMM");
    const char* tn_env = std::getenv("GPTRT_CUDA_SKINNY_TN");
    if (tn_env) forced_tn = std::atoi(tn_env);
    if (const char* env = std::getenv("GPTRT_CUDA_STREAM")) {
      if (std::string(env) != "0" && std::string(env) != "1")
        throw Error(ErrorCode::kInvalidArgument,
                    std::string("GPTRT_CUDA_STREAM is '") + env +
                        "'; expected 0 (no streaming GEMM) or 1 (on every layer it can run); "
                        "unset it for the default");
      stream_mode = env[0] - '0';
    }
    if (const char* env = std::getenv("GPTRT_CUDA_DECODE_STEPS")) {
      char* end = nullptr;
      max_steps = std::strtol(env, &end, 10);
      steps_set = true;
      if (end == env || *end || max_steps < 1 || max_steps > kMaxDecodeSteps)
        throw Error(ErrorCode::kInvalidArgument,
                    std::string("GPTRT_CUDA_DECODE_STEPS is '") + env + "'; expected 1 to " +
                        std::to_string(kMaxDecodeSteps) +
                        " (greedy decode steps per CUDA graph); unset it for the default");
    }
    if (const char* env = std::getenv("GPTRT_CUDA_FUSED_ATTENTION")) {
      if (std::string(env) != "0" && std::string(env) != "1")
        throw Error(ErrorCode::kInvalidArgument,
                    std::string("GPTRT_CUDA_FUSED_ATTENTION is '") + env +
                        "'; expected 0 (QKV projection and attention as two kernels) or 1 (one "
                        "kernel where it can run); unset it for the default");
      fused_attention_enabled = env[0] == '1';
    }
    if (forced_tn != 0 && forced_tn != 1 && forced_tn != 2 && forced_tn != 4 && forced_tn != 8)
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("GPTRT_CUDA_SKINNY_TN is '") + tn_env + "'; expected 1, 2, 4 or 8");
    // Nothing is made before the switches are checked; if anything below fails, what was made
    // is released (the destructor does not run for a constructor that throws).
    try {
      weights = weights_for(owner.get(), g);
      check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
      check(cublasLtCreate(&lt), "cublasLtCreate");
      check(cudaMalloc(&workspace, kWorkspace), "cudaMalloc (cuBLAS workspace)");
      for (cudaEvent_t& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
      half = half_values(g, p);
      int dev = 0, optin = 0;
      check(cudaGetDevice(&dev), "cudaGetDevice");
      check(cudaDeviceGetAttribute(&sm_major, cudaDevAttrComputeCapabilityMajor, dev),
            "SM version");
      check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, dev), "SM count");
      check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
            "shared memory size");
      smem_optin = static_cast<size_t>(optin);
      launch.stream = stream;
      launch.overlap = sm_major >= 9 && !(pdl_env && std::string(pdl_env) == "0");
      launch.carveout = p == Precision::kFp16 || p == Precision::kBf16 ? 100 : 75;
      skinny_enabled = sm_major >= 8 && (p == Precision::kFp16 || p == Precision::kBf16) &&
                       !(gemm_env && std::string(gemm_env) == "cublaslt");
      skinny_fp32_enabled = sm_major >= 8 && (p == Precision::kFp32 || p == Precision::kTf32) &&
                            !(gemm_env && std::string(gemm_env) == "cublaslt");
      if (skinny_fp32_enabled)
        for (int mr : {1, 8, 16})
          for (int v : {2, 3, 4, 6})
            if (fp32_kernel(mr, v)) allow_all_shared_memory(fp32_kernel(mr, v));
      if (skinny_fp32_enabled || skinny_enabled)
        for (int mr : {1, 8, 16}) allow_all_shared_memory(stream_kernel(mr));
      if (skinny_enabled)
        for (int m = 8; m <= 16 * kSkinnyMaxTiles; m += 8)
          allow_all_shared_memory(skinny_kernel(m));
      find_layer_norm_fusions();
      find_attention_fusions();
      plan = ir::plan_memory(g, dim_max, [](const ir::Node&) { return true; });
      if (plan.total > 0)
        check(cudaMalloc(reinterpret_cast<void**>(&arena), static_cast<size_t>(plan.total)),
              "cudaMalloc (activation arena)");
      int64_t rows = 1;
      for (const auto& [sym, v] : dim_max) rows *= v;
      reserve_row_buffers(rows);
    } catch (...) {
      release();
      throw;
    }
  }

  // The scratch buffers a pass of `rows` rows needs (grown, never shrunk): FP32 GEMM outputs
  // before an exact-GELU kernel, and GEMM outputs at a padded pitch (see pitched_cols).
  void reserve_row_buffers(int64_t rows) {
    int64_t gelu_bytes = 0, pitched_bytes = 0;
    for (const ir::Node& n : g.nodes) {
      if (n.op_type != "Linear") continue;
      const int64_t cols = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
      if (n.attr_string("activation", "") == "gelu_erf")
        gelu_bytes = std::max(gelu_bytes, rows * cols * 4);
      const int64_t pitch = pitched_cols(n);
      if (pitch != cols)
        pitched_bytes = std::max(pitched_bytes, std::min(rows, kPitchedRows) * pitch *
                                                    (storage(n.outputs[0]) == CUDA_R_32F ? 4 : 2));
    }
    grow(&scratch, &scratch_bytes, gelu_bytes, false);
    grow(&pitched, &pitched_capacity, pitched_bytes, false);
  }

  ~Impl() { release(); }
  // Everything the Runner made (null handles are skipped: a constructor that failed midway).
  void release() {
    free_kv();
    for (auto& [k, ge] : graphs) cudaGraphExecDestroy(ge);
    for (auto& [k, lp] : lt_plans) {
      cublasLtMatmulDescDestroy(lp.op);
      cublasLtMatrixLayoutDestroy(lp.a);
      cublasLtMatrixLayoutDestroy(lp.b);
      cublasLtMatrixLayoutDestroy(lp.c);
    }
    cudaFree(arena);
    cudaFree(scratch);
    cudaFree(pitched);
    cudaFree(out);
    cudaFree(ids);
    cudaFree(mask);
    cudaFree(pos);
    cudaFree(workspace);
    cudaFreeHost(pinned_in);
    cudaFreeHost(pinned_out);
    for (cudaEvent_t e : ev)
      if (e) cudaEventDestroy(e);
    for (cudaEvent_t e : mark_events) cudaEventDestroy(e);
    if (lt) cublasLtDestroy(lt);
    if (stream) cudaStreamDestroy(stream);
  }

  void drop_graphs() {
    for (auto& [k, ge] : graphs) cudaGraphExecDestroy(ge);
    graphs.clear();
  }

  void* value_ptr(int id) {
    if (id < 0) return nullptr;
    auto w = weights->ptr.find(id);
    if (w != weights->ptr.end()) return w->second;
    if (id == g.outputs[0]) return out;
    int64_t off = plan.offset[static_cast<size_t>(id)];
    if (off < 0)
      throw Error(ErrorCode::kInternal,
                  "value '" + g.values[static_cast<size_t>(id)].name + "' has no device memory");
    return arena + off;
  }

  cudaDataType_t storage(int id) const {
    if (!half[static_cast<size_t>(id)]) return CUDA_R_32F;
    return precision == Precision::kFp16 ? CUDA_R_16F : CUDA_R_16BF;
  }

  using SkinnyKernel = void (*)(SkinnyArgs);
  // Lets `kernel` take all the shared memory a block may have, less its static shared memory.
  void allow_all_shared_memory(SkinnyKernel kernel) {
    cudaFuncAttributes attr{};
    check(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes");
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem_optin - attr.sharedSizeBytes)),
          "cudaFuncSetAttribute");
  }

  // The skinny kernel for m rows (1 <= m <= 16 * kSkinnyMaxTiles): one instantiation per eight
  // rows.
  SkinnyKernel skinny_kernel(int64_t m) const {
    static_assert(kSkinnyMaxTiles == 2, "one instantiation per eight rows");
    static const SkinnyKernel fp16[] = {
        skinny_linear_kernel<__half, 1, false>, skinny_linear_kernel<__half, 1, true>,
        skinny_linear_kernel<__half, 2, false>, skinny_linear_kernel<__half, 2, true>};
    static const SkinnyKernel bf16[] = {skinny_linear_kernel<__nv_bfloat16, 1, false>,
                                        skinny_linear_kernel<__nv_bfloat16, 1, true>,
                                        skinny_linear_kernel<__nv_bfloat16, 2, false>,
                                        skinny_linear_kernel<__nv_bfloat16, 2, true>};
    return (precision == Precision::kFp16 ? fp16 : bf16)[(m + 7) / 8 - 1];
  }

  SkinnyKernel fp32_kernel(int mr, int v) const {
    static const SkinnyKernel kernels[3][4] = {
        {skinny_fp32_kernel<1, 2>, skinny_fp32_kernel<1, 3>, skinny_fp32_kernel<1, 4>,
         skinny_fp32_kernel<1, 6>},
        {skinny_fp32_kernel<8, 2>, skinny_fp32_kernel<8, 3>, skinny_fp32_kernel<8, 4>,
         skinny_fp32_kernel<8, 6>},
        {skinny_fp32_kernel<16, 2>, skinny_fp32_kernel<16, 3>, skinny_fp32_kernel<16, 4>,
         nullptr}};  // (16 x 6 spills)
    return kernels[mr == 1 ? 0 : mr == 8 ? 1 : 2][v == 6 ? 3 : v - 2];
  }

  // skinny_stream_kernel for this engine's weights and MR rows (1, 8 or 16).
  SkinnyKernel stream_kernel(int mr) const {
    static const SkinnyKernel kernels[3][3] = {
        {skinny_stream_kernel<float, 1>, skinny_stream_kernel<float, 8>,
         skinny_stream_kernel<float, 16>},
        {skinny_stream_kernel<__half, 1>, skinny_stream_kernel<__half, 8>,
         skinny_stream_kernel<__half, 16>},
        {skinny_stream_kernel<__nv_bfloat16, 1>, skinny_stream_kernel<__nv_bfloat16, 8>,
         skinny_stream_kernel<__nv_bfloat16, 16>}};
    const int t = precision == Precision::kFp16 ? 1 : precision == Precision::kBf16 ? 2 : 0;
    return kernels[t][mr == 1 ? 0 : mr == 8 ? 1 : 2];
  }
  // Switches plan `sp` (rows m, MR sp.mt) to skinny_stream_kernel where its shared memory fits
  // and a block fits on an SM.
  void use_stream(SkinnyPlan& sp, int64_t m, int64_t k, int64_t cols, bool layer_norm) const {
    const size_t smem =
        skinny_stream_smem_bytes(static_cast<int>(m), static_cast<int>(k), layer_norm);
    if (smem > smem_optin) return;
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, stream_kernel(sp.mt), 256, smem),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    if (per_sm < 1) return;
    const int64_t warps = (cols + kStreamCols - 1) / kStreamCols;  // column groups
    sp.stream = true;
    sp.smem = smem;
    sp.pitch = skinny_stream_pitch(static_cast<int>(k));
    sp.grid = static_cast<int>(std::min<int64_t>((warps + 7) / 8, int64_t{per_sm} * sm_count));
  }

  // The FP32 skinny kernel's plan: rows up to 16 (MR 1, 8 or 16), the fewest K splits (each lane
  // holding at most 6 float4s per weight row, 4 with 16 rows) that give every SM a block, else
  // the most; V (2, 3, 4 or 6) the fewest float4s that cover a lane's share of K (every float4
  // past K is multiplied, as zeros).
  SkinnyPlan skinny_fp32_plan(int64_t m, int64_t k, int64_t cols, bool layer_norm) const {
    SkinnyPlan sp;
    const int max_v = m > 8 ? 4 : 6;
    if (m < 1 || m > 16 || k % 4 != 0 || k > 128 * max_v * 8 || cols >= (1 << 24)) return sp;
    auto blocks = [&](int splits) {
      return (cols + 8 / splits * kFp32Cols - 1) / (8 / splits * kFp32Cols);
    };
    for (int splits : {1, 2, 4, 8}) {
      if (k > 128 * max_v * splits) continue;
      sp.tn = splits;
      if (blocks(splits) >= sm_count) break;
    }
    int64_t per_lane = (k + 128 * sp.tn - 1) / (128 * sp.tn);  // float4s per weight row
    sp.v = per_lane <= 2 ? 2 : per_lane <= 4 ? static_cast<int>(per_lane) : 6;
    sp.mt = m == 1 ? 1 : m <= 8 ? 8 : 16;
    sp.pitch = 128 * sp.v * sp.tn;
    sp.smem =
        skinny_fp32_smem_bytes(static_cast<int>(m), static_cast<int>(k), sp.pitch, layer_norm);
    if (sp.smem > smem_optin) return sp;
    // As many blocks as fit on the GPU at once; each takes several column blocks if needed.
    int per_sm = 0;
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fp32_kernel(sp.mt, sp.v), 256,
                                                        sp.smem),
          "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
    sp.grid = static_cast<int>(
        std::min<int64_t>(blocks(sp.tn), static_cast<int64_t>(std::max(per_sm, 1)) * sm_count));
    sp.fp32 = true;
    sp.ok = true;
    // Many times more column blocks than fit at once (the LM head) at 9 to 16 rows: the weights
    // stream through shared memory (skinny_stream_kernel), one block per SM, where the rows
    // leave room. (On the H100, traced: the head at 12 rows 80 -> 56 µs; at 1 and 8 rows
    // skinny_fp32_kernel already reads 2.9-3.2 TB/s, and layers that take fewer passes over
    // their column blocks (QKV, FC2) ran slower streamed.)
    if (stream_mode == 1 || (stream_mode < 0 && m > 8 && blocks(sp.tn) >= 4 * sp.grid))
      use_stream(sp, m, k, cols, layer_norm);
    return sp;
  }

  void find_layer_norm_fusions() {
    ln_before.assign(g.nodes.size(), -1);
    ln_readers.assign(g.nodes.size(), {});
    std::vector<int> producer(g.values.size(), -1), readers(g.values.size(), 0);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (int o : g.nodes[i].outputs)
        if (o >= 0) producer[static_cast<size_t>(o)] = static_cast<int>(i);
      for (int in : g.nodes[i].inputs)
        if (in >= 0) ++readers[static_cast<size_t>(in)];
    }
    for (int o : g.outputs) ++readers[static_cast<size_t>(o)];
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const ir::Node& n = g.nodes[i];
      if (n.op_type != "Linear" || n.inputs[0] < 0) continue;
      int p = producer[static_cast<size_t>(n.inputs[0])];
      if (p < 0) continue;
      const ir::Node& ln = g.nodes[static_cast<size_t>(p)];
      if (ln.op_type != "LayerNormalization" || ln.inputs.size() < 3 || ln.inputs[2] < 0) continue;
      ln_before[i] = p;
      ln_readers[static_cast<size_t>(p)].push_back(i);
    }
    for (size_t l = 0; l < g.nodes.size(); ++l) {
      if (ln_readers[l].empty()) continue;
      if (static_cast<size_t>(readers[static_cast<size_t>(g.nodes[l].outputs[0])]) ==
          ln_readers[l].size())
        continue;
      for (size_t r : ln_readers[l]) ln_before[r] = -1;  // something else reads the LayerNorm
      ln_readers[l].clear();
    }
  }

  void find_attention_fusions() {
    attention_after.assign(g.nodes.size(), -1);
    std::vector<int> readers(g.values.size(), 0);
    for (const ir::Node& n : g.nodes)
      for (int in : n.inputs)
        if (in >= 0) ++readers[static_cast<size_t>(in)];
    for (int o : g.outputs) ++readers[static_cast<size_t>(o)];
    for (size_t i = 0; i + 1 < g.nodes.size(); ++i) {
      const ir::Node& n = g.nodes[i];
      const ir::Node& next = g.nodes[i + 1];
      if (n.op_type == "Linear" && next.op_type == "Attention" && !next.inputs.empty() &&
          next.inputs[0] == n.outputs[0] && readers[static_cast<size_t>(n.outputs[0])] == 1)
        attention_after[i] = static_cast<int>(i + 1);
    }
  }

  // Linear node `index` (the QKV projection, m = b * t rows) and the Attention node after it as
  // one qkv_attention_kernel, if it can run them: sm_90 clusters, an FP16/BF16 skinny plan of one
  // row tile with the LayerNorm fused, heads of 64, K a multiple of 32 up to 2048, no residual or
  // activation, and shared memory (the cached keys' slices included) within what a block may take
  // beside the kernels around it. Returns whether it launched.
  bool qkv_attention(size_t index, const ir::Node& n, int64_t b, int64_t t, bool decode,
                     bool with_mask, size_t layer) {
    if (!fused_attention_enabled || sm_major < 9 || !skinny_enabled || !launch.overlap ||
        attention_after[index] < 0 || b * t > 16 || group_rows(index, b * t) != b * t ||
        ln_before[index] < 0 ||
        !layer_norm_fused(static_cast<size_t>(ln_before[index]), b * t, b * t))
      return false;
    const SkinnyPlan& sp = skinny_plan(index, b * t);
    if (!sp.ok || sp.fp32 || sp.stream) return false;
    const ir::Node& attn = g.nodes[static_cast<size_t>(attention_after[index])];
    const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
    const int64_t e = g.values[static_cast<size_t>(attn.outputs[0])].shape.dims.back().value;
    const int64_t heads = attn.attr_int("num_heads", 1), k = w.constant.dim(1);
    const int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
    if (heads * kQkvHead != e || w.constant.dim(0) != 3 * e || k % 32 != 0 ||
        k > 32 * kQkvRanks * kQkvMaxSlots || (n.inputs.size() > 3 && n.inputs[3] >= 0) ||
        !n.attr_string("activation", "").empty() || storage(attn.outputs[0]) == CUDA_R_32F)
      return false;
    const int64_t key_stride = decode ? kv.cache_s : t;
    const QkvAttentionSmem sz =
        qkv_attention_smem(static_cast<int>(b * t), static_cast<int>(k), static_cast<int>(b),
                           static_cast<int>(key_stride));
    if (sz.total > kQkvAttentionMaxSmem || b * t * key_stride > kQkvAttentionMaxPairs) return false;
    const ir::Node& ln = g.nodes[static_cast<size_t>(ln_before[index])];
    QkvAttentionArgs a{};
    SkinnyArgs& l = a.lin;
    l.x = value_ptr(ln.inputs[0]);
    l.ln_gamma = static_cast<const float*>(value_ptr(ln.inputs[1]));
    l.ln_beta = static_cast<const float*>(value_ptr(ln.inputs[2]));
    l.ln_eps = ln.attr_float("epsilon", 1e-5f);
    l.w = value_ptr(n.inputs[1]);
    l.bias = bias_id >= 0 ? value_ptr(bias_id) : nullptr;
    l.bias_half = bias_id >= 0 && g.values[static_cast<size_t>(bias_id)].dtype != DType::kFloat32;
    l.m = static_cast<int>(b * t);
    l.n = static_cast<int>(3 * e);
    l.k = static_cast<int>(k);
    l.row_stride = skinny_row_stride(l.k);
    a.b = static_cast<int>(b);
    a.t = static_cast<int>(t);
    a.key_stride = static_cast<int>(key_stride);
    a.e = static_cast<int>(e);
    a.scale = attn.attr_float("scale", 1.f);
    a.out = value_ptr(attn.outputs[0]);
    if (decode) {
      a.kc = kv.k[layer];
      a.vc = kv.v[layer];
      a.mask = kv.valid;
      a.past = kv.past;
      a.past_early = layer > 0;  // (the step's first kernel writes them)
    } else {                     // (the mask was copied in before the pass)
      a.mask = with_mask && attn.inputs.size() > 1 && attn.inputs[1] >= 0 ? mask : nullptr;
      a.past_early = 1;
    }
    const dim3 grid(static_cast<unsigned>(heads * kQkvRanks)), block(256);
    const bool hi = b * t > 8;
    bool launched = false;
    typed(attn.outputs[0], [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same_v<T, float>) {
        auto kernel = decode ? (hi ? qkv_attention_kernel<T, uint8_t, true>
                                   : qkv_attention_kernel<T, uint8_t, false>)
                             : (hi ? qkv_attention_kernel<T, int64_t, true>
                                   : qkv_attention_kernel<T, int64_t, false>);
        check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(sz.total)),
              "cudaFuncSetAttribute (QKV attention)");
        // Clusters of 8 that the GPU cannot place at this shared memory size fall back.
        cudaLaunchConfig_t config{};
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = kQkvRanks;
        attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
        config.gridDim = grid;
        config.blockDim = block;
        config.dynamicSmemBytes = sz.total;
        config.attrs = attr;
        config.numAttrs = 1;
        int clusters = 0;
        if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess ||
            clusters < 1) {
          cudaGetLastError();
          return;
        }
        launch.clustered(kernel, grid, block, sz.total, kQkvRanks, a);
        launched = true;
      }
    });
    if (launched) gemm_kind = "skinny+LN+attention";
    return launched;
  }

  const SkinnyPlan& skinny_plan(size_t index, int64_t m) {
    auto key = std::make_pair(index, m);
    auto it = skinny_plans.find(key);
    if (it != skinny_plans.end()) return it->second;
    SkinnyPlan sp;
    const ir::Node& n = g.nodes[index];
    const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
    int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
    if (skinny_fp32_enabled && wv.dtype == DType::kFloat32 && n.attr_int("transB", 0) != 0 &&
        storage(n.outputs[0]) == CUDA_R_32F)
      return skinny_plans
          .emplace(key, skinny_fp32_plan(m, wv.constant.dim(1), wv.constant.dim(0),
                                         ln_before[index] >= 0))
          .first->second;
    DType want = precision == Precision::kFp16 ? DType::kFloat16 : DType::kBFloat16;
    int64_t mt = (m + 15) / 16, k = wv.constant.dim(1), cols = wv.constant.dim(0);
    if (skinny_enabled && wv.dtype == want && n.attr_int("transB", 0) != 0 && k % 8 == 0 &&
        mt >= 1 && mt <= kSkinnyMaxTiles && k < (1 << 24) && cols < (1 << 24) &&
        (res_id < 0 || storage(res_id) == CUDA_R_32F) &&
        skinny_smem_bytes(static_cast<int>(m), static_cast<int>(k), ln_before[index] >= 0) <=
            smem_optin) {
      sp.ok = true;
      sp.mt = static_cast<int>(mt);
      sp.smem = skinny_smem_bytes(static_cast<int>(m), static_cast<int>(k), ln_before[index] >= 0);
      // The narrowest column group that lets every block own one group with all blocks resident
      // at once (two per SM where they fit: on the H100, commit 6b5d7bd, decode steps' QKV and
      // FC1 ran 12% and 21% faster in 144 and 192 blocks than in 72 and 96 of twice the width);
      // the widest, with as many blocks as fit, when even that is too many groups (the LM head).
      auto groups = [&](int tn) { return (cols + 8 * tn - 1) / (8 * tn); };
      int per_sm = 0;
      check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, skinny_kernel(m), 256, sp.smem),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
      const int64_t resident = static_cast<int64_t>(std::max(per_sm, 1)) * sm_count;
      sp.tn = 8;
      for (int tn : {1, 2, 4})
        if (groups(tn) <= resident) {
          sp.tn = tn;
          break;
        }
      if (forced_tn) sp.tn = forced_tn;
      sp.grid = static_cast<int>(std::min<int64_t>(groups(sp.tn), resident));
      // (The blocks per SM above are counted at the whole ring's size; the ring itself is only
      // as deep as a block's items, so that blocks fit beside the previous kernel's.)
      sp.ring = skinny_ring_stages(static_cast<int>(k), static_cast<int>(cols), sp.tn, sp.grid);
      sp.smem = skinny_smem_bytes(static_cast<int>(m), static_cast<int>(k), ln_before[index] >= 0,
                                  sp.ring);
      // The LM head (a fused LayerNorm, so FP32 rows, and more than two column groups per
      // resident block) at one row, a decode step's: skinny_stream_kernel, whose warps read 512
      // contiguous bytes of a weight row at a time (on the H100, one binary, interleaved: 1x1
      // 0.145 -> 0.141 ms, decode at batch 1 0.176 -> 0.166 ms per token; at 8 rows and more its
      // FP32 FMAs lose to the tensor cores: 8x1 0.158 -> 0.162 ms, 1x12 0.178 -> 0.195 ms).
      // GPTRT_CUDA_STREAM=1 takes it for every such layer up to 16 rows (tests).
      if (ln_before[index] >= 0 && m <= 16 &&
          (stream_mode == 1 || (stream_mode < 0 && m == 1 && groups(8) > 2 * resident))) {
        sp.mt = m == 1 ? 1 : m <= 8 ? 8 : 16;
        use_stream(sp, m, k, cols, true);
        if (!sp.stream) sp.mt = static_cast<int>(mt);
      }
    }
    return skinny_plans.emplace(key, sp).first->second;
  }

  // True when LayerNorm node `l` is left to the skinny kernels of its readers (rows: the rows
  // each reader runs).
  bool layer_norm_fused(size_t l, int64_t rows, int64_t head_rows) {
    if (ln_readers[l].empty()) return false;
    for (size_t r : ln_readers[l])
      if (!skinny_plan(r, group_rows(r, g.nodes[r].outputs[0] == g.outputs[0] ? head_rows : rows))
               .ok)
        return false;
    return true;
  }

  // A decoder's first prompt pass (prefill) of up to kPrefillGroupMax rows, at a batch the
  // skinny kernels decode, takes its linear layers on those kernels in groups of up to
  // `row_group` rows (32, FP32 16) instead of cuBLASLt, whose first matmuls in a process took
  // 78-230 ms on the H100 (the prefill of a one-shot `gptrt generate` of 8 or 16 prompts; 0.8-2.5
  // ms with the groups). Later passes take cuBLASLt, faster once warm (FP32 8 x 32 generation, a
  // loop of generate calls: 7.0 ms against 7.5 ms with groups for every pass). 0: no groups.
  static constexpr int64_t kPrefillGroupMax = 256;
  int64_t row_group = 0;
  bool prefilled = false;  // a prompt pass has run on this decoder
  // The rows linear node `index` of `rows` rows is planned for: where groups apply, the most
  // (a multiple of 8 up to row_group) that its skinny kernel takes; otherwise `rows`.
  int64_t group_rows(size_t index, int64_t rows) {
    if (row_group == 0 || rows <= row_group) return rows;
    for (int64_t group = row_group; group >= 8; group -= 8)
      if (skinny_plan(index, group).ok) return group;
    return rows;
  }

  static cudaDataType_t cuda_type(DType d) {
    return d == DType::kFloat16 ? CUDA_R_16F : d == DType::kBFloat16 ? CUDA_R_16BF : CUDA_R_32F;
  }

  // The output row length a cuBLASLt GEMM writes at: its columns, or for an FP16/BF16 layer
  // stored [N, K] whose N is not a multiple of 8 (the vocabulary's 50257 logits), N rounded up:
  // the GEMM then computes that many columns (the weights' zero rows, see DeviceWeights) at an
  // aligned pitch, which cuBLASLt's fast kernels need. On the H100 (commit bcdb160) the FP16 LM
  // head at 96 rows took 122 µs with N = 50257 and 38 µs with 50264; at 256 rows 217 and 49 µs
  // (FP32 was compute-bound either way: it keeps N). Such GEMMs write into `pitched`,
  // kPitchedRows rows at a time, and compact_rows_kernel moves the rows into place. Not with a
  // bias or a residual (they have N values a row) or an exact GELU.
  int64_t pitched_cols(const ir::Node& n) const {
    const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
    const bool trans = n.attr_int("transB", 0) != 0;
    const int64_t cols = w.constant.dim(trans ? 0 : 1);
    const bool bias = n.inputs.size() > 2 && n.inputs[2] >= 0;
    const bool residual = n.inputs.size() > 3 && n.inputs[3] >= 0;
    if (!trans || w.dtype == DType::kFloat32 || bias || residual ||
        n.attr_string("activation", "") == "gelu_erf")
      return cols;
    return (cols + 7) / 8 * 8;
  }

  // The cuBLASLt plan of node `index` for `rows` rows (created on first use): y = act(x @ W +
  // bias) (+ C) with y's rows `pitch` apart.
  const LtPlan& lt_plan(size_t index, const ir::Node& n, int64_t rows, int64_t k, int64_t cols,
                        int64_t pitch, cudaDataType_t out_type, int act, int bias_id) {
    auto key = std::make_pair(index, rows);
    auto it = lt_plans.find(key);
    if (it != lt_plans.end()) return it->second;
    const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
    const bool trans = n.attr_int("transB", 0) != 0;
    LtPlan lp;
    cublasComputeType_t ct =
        precision == Precision::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    check(cublasLtMatmulDescCreate(&lp.op, ct, CUDA_R_32F), "cublasLtMatmulDescCreate");
    cublasOperation_t ta = trans ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
          "TRANSA");
    check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
          "TRANSB");
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (bias_id >= 0)
      epi = act == reference::kActGeluTanh ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    else if (act == reference::kActGeluTanh)
      epi = CUBLASLT_EPILOGUE_GELU;
    check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
          "EPILOGUE");
    if (bias_id >= 0) {
      const void* bias = value_ptr(bias_id);
      check(cublasLtMatmulDescSetAttribute(lp.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                           sizeof bias),
            "BIAS_POINTER");
    }
    // Column-major views of the row-major operands: W [K, N] is N x K (ld N), or K x N (ld K)
    // transposed; x [rows, K] is K x rows; y [rows, N] is N x rows. With a pitch (stored [N, K]
    // only), `pitch` columns of W (zero rows past N) and of y.
    cudaDataType_t wt = cuda_type(wv.dtype), xt = storage(n.inputs[0]);
    check(cublasLtMatrixLayoutCreate(&lp.a, wt, trans ? k : cols, trans ? pitch : k,
                                     trans ? k : cols),
          "layout A");
    check(cublasLtMatrixLayoutCreate(&lp.b, xt, k, rows, k), "layout B");
    check(cublasLtMatrixLayoutCreate(&lp.c, out_type, pitch, rows, pitch), "layout C/D");
    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    size_t ws = kWorkspace;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                               sizeof ws),
          "workspace");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt, lp.op, lp.a, lp.b, lp.c, lp.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      throw Error(ErrorCode::kUnsupported, n.describe() +
                                               ": cuBLASLt has no algorithm for this GEMM (" +
                                               std::to_string(rows) + "x" + std::to_string(k) +
                                               "x" + std::to_string(cols) + ")");
    lp.algo = result.algo;
    return lt_plans.emplace(key, lp).first->second;
  }

  // Whether linear node `index` at m rows runs on a skinny kernel (with its LayerNorm when
  // `ln_fused`).
  bool skinny_runs(size_t index, int64_t m, const ir::Node& n, bool ln_fused) {
    const SkinnyPlan& sp = skinny_plan(index, m);
    return sp.ok && (sp.fp32 || ln_fused || storage(n.inputs[0]) != CUDA_R_32F);
  }

  // Linear node `index` on its skinny kernel for m rows of x (the LayerNorm `ln`'s input when
  // set) and the residual's rows (or null), into y.
  void skinny(size_t index, const ir::Node& n, int64_t m, void* y, const void* x,
              const ir::Node* ln, const float* residual) {
    const SkinnyPlan& sp = skinny_plan(index, m);
    const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
    int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
    SkinnyArgs a{};
    a.x = x;
    if (ln) {
      a.ln_gamma = static_cast<const float*>(value_ptr(ln->inputs[1]));
      a.ln_beta = static_cast<const float*>(value_ptr(ln->inputs[2]));
      a.ln_eps = ln->attr_float("epsilon", 1e-5f);
    }
    a.w = value_ptr(n.inputs[1]);
    a.bias = bias_id >= 0 ? value_ptr(bias_id) : nullptr;
    a.bias_half = bias_id >= 0 && g.values[static_cast<size_t>(bias_id)].dtype != DType::kFloat32;
    a.residual = residual;
    a.y = y;
    a.y_half = storage(n.outputs[0]) != CUDA_R_32F;
    a.act = reference::activation_from_name(n.attr_string("activation", ""));
    a.m = static_cast<int>(m);
    a.n = static_cast<int>(w.constant.dim(0));
    a.k = static_cast<int>(w.constant.dim(1));
    a.row_stride = sp.fp32 || sp.stream ? sp.pitch : skinny_row_stride(a.k);
    a.tn = sp.tn;
    a.ring_stages = sp.ring;
    if (sp.stream) {
      if (!sp.fp32 && !ln)  // (its rows must be FP32: planned only with a LayerNorm fused)
        throw Error(ErrorCode::kInternal,
                    n.describe() + ": the streaming GEMM was planned without its LayerNorm");
      launch(stream_kernel(sp.mt), dim3(static_cast<unsigned>(sp.grid)), dim3(256), sp.smem, a);
      gemm_kind = std::string(sp.fp32 ? "skinny FP32 stream" : "skinny stream") + (ln ? "+LN" : "");
      return;
    }
    if (sp.fp32) {
      launch(fp32_kernel(sp.mt, sp.v), dim3(static_cast<unsigned>(sp.grid)), dim3(256), sp.smem, a);
      gemm_kind = ln ? "skinny FP32+LN" : "skinny FP32";
      return;
    }
    launch(skinny_kernel(m), dim3(static_cast<unsigned>(sp.grid)), dim3(256), sp.smem, a);
    gemm_kind = ln ? "skinny+LN" : "skinny";
  }

  // y[m, N] = act(x[m, K] @ W + bias) + residual. The skinny kernel where its plan says so (x
  // being the input of the LayerNorm before this node when `ln_fused`); otherwise one cuBLASLt
  // call: the bias (and the tanh GELU) as its epilogue, the residual as C with beta = 1, and for
  // exact GELU the bias epilogue into FP32 scratch, then gelu_erf_kernel. `x_in` overrides x.
  void linear(size_t index, const ir::Node& n, int64_t m, void* y, const void* x_in = nullptr,
              bool ln_fused = false) {
    // One skinny call, or one per row group (see row_group) on its rows of x, y and the residual.
    const int64_t group = group_rows(index, m);
    if (skinny_runs(index, group, n, ln_fused)) {
      const ir::Node* ln = ln_fused ? &g.nodes[static_cast<size_t>(ln_before[index])] : nullptr;
      const int x_id = ln ? ln->inputs[0] : n.inputs[0];
      const auto* x = static_cast<const char*>(x_in ? x_in : value_ptr(x_id));
      const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
      const int64_t k = w.constant.dim(1), cols = w.constant.dim(0);  // (stored [N, K])
      const int64_t x_size = ln || storage(x_id) == CUDA_R_32F ? 4 : 2;
      const int64_t y_size = storage(n.outputs[0]) == CUDA_R_32F ? 4 : 2;
      const int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
      auto* res = static_cast<const float*>(value_ptr(res_id));
      for (int64_t r0 = 0; r0 < m; r0 += group)
        skinny(index, n, std::min(group, m - r0), static_cast<char*>(y) + r0 * cols * y_size,
               x + r0 * k * x_size, ln, res ? res + r0 * cols : nullptr);
      return;
    }
    const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
    bool trans = n.attr_int("transB", 0) != 0;
    int64_t k = wv.constant.dim(trans ? 1 : 0), cols = wv.constant.dim(trans ? 0 : 1);
    int act = reference::activation_from_name(n.attr_string("activation", ""));
    int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
    int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
    bool erf = act == reference::kActGeluErf;
    cudaDataType_t out_type = erf ? CUDA_R_32F : storage(n.outputs[0]);
    const int64_t pitch = pitched_cols(n);
    gemm_kind = erf ? "cuBLASLt+GELU kernel" : pitch != cols ? "cuBLASLt, pitched" : "cuBLASLt";
    const float one = 1.f, zero = 0.f;
    const size_t x_size = storage(n.inputs[0]) == CUDA_R_32F ? 4 : 2;
    const size_t y_size = out_type == CUDA_R_32F ? 4 : 2;
    const auto* x = static_cast<const char*>(x_in ? x_in : value_ptr(n.inputs[0]));
    const void* res = !erf && res_id >= 0 ? value_ptr(res_id) : nullptr;
    // Rows at a padded pitch go through `pitched` kPitchedRows at a time.
    const int64_t step = pitch != cols ? std::min<int64_t>(m, kPitchedRows) : m;
    for (int64_t r0 = 0; r0 < m; r0 += step) {
      const int64_t rows = std::min(step, m - r0);
      const LtPlan& lp = lt_plan(index, n, rows, k, cols, pitch, out_type, act, bias_id);
      void* d = erf             ? static_cast<void*>(scratch)
                : pitch != cols ? static_cast<void*>(pitched)
                                : static_cast<void*>(static_cast<char*>(y) +
                                                     r0 * cols * static_cast<int64_t>(y_size));
      check(cublasLtMatmul(lt, lp.op, &one, value_ptr(n.inputs[1]), lp.a,
                           x + r0 * k * static_cast<int64_t>(x_size), lp.b, res ? &one : &zero,
                           res ? res : d, lp.c, d, lp.c, &lp.algo, workspace, kWorkspace, stream),
            "cublasLtMatmul");
      if (pitch != cols) {
        dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + 255) / 256, 64)),
                  static_cast<unsigned>(rows));
        typed(n.outputs[0], [&](auto tag) {
          using T = decltype(tag);
          launch(compact_rows_kernel<T>, grid, dim3(256), 0, static_cast<const T*>(pitched), pitch,
                 cols, static_cast<T*>(y) + r0 * cols);
        });
      }
    }
    if (erf) {
      const float* r = res_id >= 0 ? static_cast<const float*>(value_ptr(res_id)) : nullptr;
      int64_t total = m * cols;
      dim3 grid(static_cast<unsigned>(blocks_for(total, 256)));
      typed(n.outputs[0], [&](auto tag) {
        using T = decltype(tag);
        launch(gelu_erf_kernel<T>, grid, dim3(256), 0, scratch, r, total, static_cast<T*>(y));
      });
    }
  }

  // Launches `kernel` templated on the storage type of value `id`.
  template <typename F>
  void typed(int id, F&& f) {
    cudaDataType_t t = storage(id);
    if (t == CUDA_R_32F)
      f(float{});
    else if (t == CUDA_R_16F)
      f(__half{});
    else
      f(__nv_bfloat16{});
  }

  // Every kernel of one forward pass for [b, s] on `stream` (captured or launched directly).
  void forward(int64_t b, int64_t s, bool with_pos, bool with_mask, bool decode = false) {
    int64_t rows = b * s, head_rows = decode ? b : rows;  // the LM head's rows
    const int64_t group = skinny_enabled ? 16 * kSkinnyMaxTiles : skinny_fp32_enabled ? 16 : 0;
    attention_done = -1;
    row_group = decode && s > 1 && !prefilled && b <= group && rows <= kPrefillGroupMax ? group : 0;
    if (decode && s > 1) prefilled = true;
    dim3 row_blocks(static_cast<unsigned>(rows)), threads(256);
    size_t layer = 0;
    for (size_t idx = 0; idx < g.nodes.size(); ++idx) {
      const ir::Node& n = g.nodes[idx];
      void* y = value_ptr(n.outputs[0]);
      if (n.op_type == "Embedding") {
        const ir::Value& wpe = g.values[static_cast<size_t>(n.inputs[3])];
        const auto* wte_p = static_cast<const float*>(value_ptr(n.inputs[2]));
        const auto* wpe_p = static_cast<const float*>(value_ptr(n.inputs[3]));
        if (step_in)  // a generation step's inputs, from mapped host memory
          launch(step_embedding_kernel, row_blocks, threads, 0, step_in, rows, b * kv.cache_s,
                 kv.past, kv.valid, wte_p, wpe_p, wpe.constant.dim(1), static_cast<float*>(y), ids,
                 pos);
        else
          launch(embedding_kernel, row_blocks, threads, 0, ids, with_pos ? pos : nullptr, wte_p,
                 wpe_p, s, wpe.constant.dim(1), static_cast<float*>(y));
      } else if (n.op_type == "LayerNormalization") {
        if (layer_norm_fused(idx, rows, head_rows)) continue;  // its readers normalise
        int64_t e = g.values[static_cast<size_t>(n.inputs[1])].constant.numel();
        typed(n.outputs[0], [&](auto tag) {
          using T = decltype(tag);
          launch(layer_norm_kernel<T>, row_blocks, threads, 0,
                 static_cast<const float*>(value_ptr(n.inputs[0])),
                 static_cast<const float*>(value_ptr(n.inputs[1])),
                 static_cast<const float*>(value_ptr(n.inputs[2])), n.attr_float("epsilon", 1e-5f),
                 e, static_cast<T*>(y));
        });
      } else if (n.op_type == "Attention") {
        if (static_cast<int>(idx) == attention_done) {  // (run by qkv_attention_kernel)
          ++layer;
          continue;
        }
        AttentionArgs a{};
        a.qkv = static_cast<const float*>(value_ptr(n.inputs[0]));
        a.out = y;
        a.b = b;
        a.t = s;
        a.e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
        a.heads = n.attr_int("num_heads", 1);
        a.scale = n.attr_float("scale", 1.f);
        if (decode) {  // against the KV cache, padding from its flags
          a.kc = kv.k[layer];
          a.vc = kv.v[layer];
          a.mask = kv.valid;
          a.past = kv.past;
          a.key_stride = kv.cache_s;
        } else {
          a.mask = with_mask && n.inputs.size() > 1 && n.inputs[1] >= 0 ? mask : nullptr;
          a.key_stride = s;
        }
        typed(n.outputs[0], [&](auto tag) {
          using T = decltype(tag);
          if (decode)
            launch_attention<T, uint8_t>(a, launch);
          else
            launch_attention<T, int64_t>(a, launch);
        });
        ++layer;
      } else if (decode && n.outputs[0] == g.outputs[0]) {  // LM head: last positions only
        // (of the LayerNorm's input when the skinny kernel normalises)
        bool ln = ln_before[idx] >= 0 &&
                  layer_norm_fused(static_cast<size_t>(ln_before[idx]), rows, head_rows);
        int src = ln ? g.nodes[static_cast<size_t>(ln_before[idx])].inputs[0] : n.inputs[0];
        const void* x = value_ptr(src);
        if (s > 1) {
          int64_t e = g.values[static_cast<size_t>(src)].shape.dims.back().value;
          typed(src, [&](auto tag) {
            using T = decltype(tag);
            launch(last_rows_kernel<T>, dim3(static_cast<unsigned>(b)), threads, 0,
                   static_cast<const T*>(x), s, e, static_cast<T*>(kv.last));
          });
          x = kv.last;
        }
        linear(idx, n, b, y, x, ln);
      } else if (qkv_attention(idx, n, b, s, decode, with_mask, layer)) {
        attention_done = attention_after[idx];
      } else {  // Linear
        bool ln = ln_before[idx] >= 0 &&
                  layer_norm_fused(static_cast<size_t>(ln_before[idx]), rows, head_rows);
        linear(idx, n, rows, y, nullptr, ln);
      }
      check(cudaGetLastError(), "kernel launch");
      if (marking) mark(n, rows);
    }
  }

  void mark(const ir::Node& n, int64_t rows) {
    std::string label = n.op_type;
    if (n.op_type == "Linear") {
      const ir::Value& w = g.values[static_cast<size_t>(n.inputs[1])];
      bool head = n.outputs[0] == g.outputs[0];
      int64_t k = w.constant.dim(n.attr_int("transB", 0) ? 1 : 0), cols = w.constant.numel() / k;
      label += (head ? " (LM head) " : " ") + std::to_string(k) + "->" + std::to_string(cols) +
               " " + gemm_kind;
    }
    label += ", " + std::to_string(rows) + " rows";
    size_t i = mark_labels.size();
    if (i == mark_events.size()) {
      mark_events.push_back(nullptr);
      check(cudaEventCreate(&mark_events.back()), "cudaEventCreate");
    }
    check(cudaEventRecord(mark_events[i], stream), "cudaEventRecord");
    mark_labels.push_back(label);
  }

#ifdef GPTRT_CUDA_TRACE
  // Traces the graph replay numbered GPTRT_CUDA_TRACE_RUN (default 100) into the file
  // GPTRT_CUDA_TRACE_FILE: one line per block, "grid sm block start wait end mark0 mark1 mark2"
  // (global timer, ns; 0 for a mark the kernel does not set). A kernel whose dynamic shared
  // memory is planned right up to the limit would not launch in such a build (the trace takes a
  // few static bytes).
  int64_t trace_runs = 0;
  bool trace_begin() {
    const char* at = std::getenv("GPTRT_CUDA_TRACE_RUN");
    if (++trace_runs != (at ? std::atoll(at) : 100) || !std::getenv("GPTRT_CUDA_TRACE_FILE"))
      return false;
    unsigned zero = 0;
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    check(cudaMemcpyToSymbol(trace_count, &zero, sizeof zero), "trace reset");
    return true;
  }
  void trace_end() {
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    unsigned count = 0;
    check(cudaMemcpyFromSymbol(&count, trace_count, sizeof count), "trace count");
    count = std::min(count, kTraceCapacity);
    std::vector<TraceRecord> records(count);
    check(cudaMemcpyFromSymbol(records.data(), trace_records, count * sizeof(TraceRecord)),
          "trace records");
    FILE* f = std::fopen(std::getenv("GPTRT_CUDA_TRACE_FILE"), "w");
    if (!f) return;
    for (const TraceRecord& r : records)
      std::fprintf(f, "%llu %u %u %llu %llu %llu %llu %llu %llu\n", r.grid, r.sm, r.block, r.start,
                   r.wait, r.end, r.marks[0], r.marks[1], r.marks[2]);
    std::fclose(f);
  }
#endif

  template <typename T>
  static void grow(T** p, int64_t* cap, int64_t want, bool host) {
    if (want <= *cap) return;
    if (host) {
      cudaFreeHost(*p);
      check(cudaMallocHost(reinterpret_cast<void**>(p), static_cast<size_t>(want)),
            "cudaMallocHost");
    } else {
      cudaFree(*p);
      check(cudaMalloc(reinterpret_cast<void**>(p), static_cast<size_t>(want)), "cudaMalloc");
    }
    *cap = want;
  }

  void free_kv() {
    for (cudaGraphExec_t& e : kv.step_graphs) {
      if (e) cudaGraphExecDestroy(e);
      e = nullptr;
    }
    for (auto& [k, e] : kv.chunk_graphs) cudaGraphExecDestroy(e);
    kv.chunk_graphs.clear();
    cudaFree(kv.chunk_picks);
    kv.chunk_picks = nullptr;
    kv.single_steps = 0;
    for (float* p : kv.k) cudaFree(p);
    for (float* p : kv.v) cudaFree(p);
    kv.k.clear();
    kv.v.clear();
    cudaFree(kv.valid);
    cudaFree(kv.past);
    cudaFree(kv.last);
    cudaFree(kv.picks);
    kv.picks = nullptr;
    cudaFree(kv.part_v);
    cudaFree(kv.part_i);
    cudaFree(kv.done);
    kv.part_v = nullptr;
    kv.part_i = nullptr;
    kv.done = nullptr;
    kv.batch = kv.cache_s = kv.prompt = 0;  // (a failed reserve leaves nothing to reuse)
    kv.valid = nullptr;
    kv.past = nullptr;
    kv.last = nullptr;
  }

  // Generation for `b` rows of up to `cache_s` positions, prompts of up to `prompt` tokens: the
  // KV cache, the activation arena for [b, prompt], the input and logits buffers (at most once per
  // generate call, never per token; kept, with the decode-step graph, for the next call of the
  // same batch and cache length whose prompt fits).
  void reserve(int64_t b, int64_t cache_s, int64_t prompt) {
    if (kv.batch == b && kv.cache_s == cache_s && prompt <= kv.prompt) return;
    cudaStreamSynchronize(stream);
    free_kv();
    drop_graphs();
    const ir::Value& ids_v = g.values[static_cast<size_t>(g.nodes.front().inputs[0])];
    std::map<std::string, int64_t> dim_max;
    if (!ids_v.shape.dims[0].is_known()) dim_max[ids_v.shape.dims[0].symbol] = b;
    if (!ids_v.shape.dims[1].is_known()) dim_max[ids_v.shape.dims[1].symbol] = prompt;
    ir::MemoryPlan p =
        ir::plan_memory(g, dim_max, [](const ir::Node&) { return true; });
    if (p.total > plan.total) {
      cudaFree(arena);
      arena = nullptr;
      check(cudaMalloc(reinterpret_cast<void**>(&arena), static_cast<size_t>(p.total)),
            "cudaMalloc (arena)");
    }
    if (p.total > 0) plan = p;
    int64_t e = 0, layers = 0;
    for (const ir::Node& n : g.nodes) {
      if (n.op_type != "Attention") continue;
      e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
      ++layers;
    }
    for (int64_t l = 0; l < layers; ++l) {
      float* k = nullptr;
      float* v = nullptr;
      check(cudaMalloc(reinterpret_cast<void**>(&k), static_cast<size_t>(b * cache_s * e * 4)),
            "cudaMalloc (K cache)");
      check(cudaMalloc(reinterpret_cast<void**>(&v), static_cast<size_t>(b * cache_s * e * 4)),
            "cudaMalloc (V cache)");
      kv.k.push_back(k);
      kv.v.push_back(v);
    }
    check(cudaMalloc(reinterpret_cast<void**>(&kv.valid), static_cast<size_t>(b * cache_s)),
          "cudaMalloc (padding flags)");
    check(cudaMalloc(reinterpret_cast<void**>(&kv.past), sizeof(int64_t)), "cudaMalloc (past)");
    check(cudaMalloc(&kv.last, static_cast<size_t>(b * e * 4)), "cudaMalloc (last rows)");
    check(cudaMalloc(reinterpret_cast<void**>(&kv.picks), static_cast<size_t>(b * 8)),
          "cudaMalloc (picks)");
    check(cudaMalloc(reinterpret_cast<void**>(&kv.chunk_picks),
                     static_cast<size_t>(kMaxDecodeSteps * b * 8)),
          "cudaMalloc (picks of several steps)");
    check(cudaMalloc(reinterpret_cast<void**>(&kv.part_v),
                     static_cast<size_t>(b * kArgmaxParts) * sizeof(float)),
          "cudaMalloc (argmax parts)");
    check(cudaMalloc(reinterpret_cast<void**>(&kv.part_i),
                     static_cast<size_t>(b * kArgmaxParts) * sizeof(int64_t)),
          "cudaMalloc (argmax parts)");
    check(cudaMalloc(reinterpret_cast<void**>(&kv.done), static_cast<size_t>(b) * sizeof(unsigned)),
          "cudaMalloc (argmax counts)");
    check(cudaMemsetAsync(kv.done, 0, static_cast<size_t>(b) * sizeof(unsigned), stream),
          "cudaMemsetAsync");
    kv.batch = b;
    kv.cache_s = cache_s;
    kv.prompt = prompt;
    int64_t rows = b * prompt;
    reserve_row_buffers(rows);
    if (rows > io_elems) {
      for (int64_t** buf : {&ids, &mask, &pos}) {
        cudaFree(*buf);
        *buf = nullptr;
        int64_t cap = 0;
        grow(buf, &cap, rows * 8, false);
      }
      io_elems = rows;
    }
    int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
    grow(&out, &out_bytes, b * vocab * 4, false);
    grow(&pinned_out, &pinned_out_bytes, b * vocab * 4, true);
    // ids, positions, past, padding flags, then the picks of up to kMaxDecodeSteps steps (8-byte
    // aligned).
    grow(&pinned_in, &pinned_in_bytes,
         rows * 16 + 8 + (b * cache_s + 7) / 8 * 8 + kMaxDecodeSteps * b * 8, true);
  }

  // One generation step: `t` tokens per row at cache positions past..past+t-1; the last
  // position's logits [b, vocab] into `logits` and/or each row's argmax into `argmax`. Decode
  // steps (t = 1) replay one CUDA graph. With `steps` > 1 (t = 1, greedy: argmax only, at most
  // kMaxDecodeSteps), that many decode steps in one graph, each step's inputs made on the GPU
  // from the picks of the one before (chunk_advance_kernel); argmax gets [steps][b].
  void decode_step(const int64_t* host_ids, const int64_t* host_pos, const uint8_t* host_valid,
                   int64_t t, int64_t past, std::vector<float>* logits, int64_t* argmax,
                   int64_t steps = 1) {
    if (steps < 1 || steps > kMaxDecodeSteps || (steps > 1 && (t != 1 || logits || !argmax)))
      throw Error(ErrorCode::kInternal, "decode_step: " + std::to_string(steps) +
                                            " steps at once need t = 1 and greedy picks only");
    int64_t b = kv.batch, rows = b * t;
    auto* in = static_cast<int64_t*>(pinned_in);
    std::memcpy(in, host_ids, static_cast<size_t>(rows * 8));
    std::memcpy(in + rows, host_pos, static_cast<size_t>(rows * 8));
    in[2 * rows] = past;
    auto* flags = reinterpret_cast<uint8_t*>(in + 2 * rows + 1);
    std::memcpy(flags, host_valid, static_cast<size_t>(b * kv.cache_s));
    int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
    auto* picks_host = static_cast<int64_t*>(pinned_in) + 2 * rows + 1 + (b * kv.cache_s + 7) / 8;
    // The step's work on the stream: the forward pass, its embedding reading the inputs from the
    // mapped pinned buffer where the host memory is mapped (else a copy each first), the picks
    // (written straight into mapped host memory) and/or the logits back.
    if (mapped_for != pinned_in) {  // once per pinned buffer, not per step
      mapped_for = pinned_in;
      mapped_in = nullptr;
      if (cudaHostGetDevicePointer(reinterpret_cast<void**>(&mapped_in), pinned_in, 0) !=
          cudaSuccess)
        mapped_in = nullptr;
      cudaGetLastError();  // (an unmapped buffer only means the copies)
    }
    int64_t* in_dev = mapped_in;
    const bool mapped = in_dev != nullptr;
    int64_t* picks_dev = mapped ? in_dev + (picks_host - in) : kv.picks;
    auto inputs = [&] {
      if (mapped) {
        launch.after_copy = true;  // the first work of the graph or step: a plain launch
        step_in = in_dev;          // (read by step_embedding_kernel)
      } else {
        check(
            cudaMemcpyAsync(ids, in, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice, stream),
            "H2D ids");
        check(cudaMemcpyAsync(pos, in + rows, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice,
                              stream),
              "H2D positions");
        check(cudaMemcpyAsync(kv.past, in + 2 * rows, 8, cudaMemcpyHostToDevice, stream),
              "H2D past");
        check(cudaMemcpyAsync(kv.valid, flags, static_cast<size_t>(b * kv.cache_s),
                              cudaMemcpyHostToDevice, stream),
              "H2D flags");
        launch.after_copy = true;
      }
    };
    auto enqueue = [&] {
      inputs();
      forward(b, t, true, false, true);
      step_in = nullptr;
      if (argmax) {
        launch(argmax_kernel, dim3(kArgmaxParts, static_cast<unsigned>(b)), dim3(kArgmaxThreads), 0,
               out, vocab, picks_dev, kv.part_v, kv.part_i, kv.done);
        if (!mapped)
          check(cudaMemcpyAsync(picks_host, kv.picks, static_cast<size_t>(b * 8),
                                cudaMemcpyDeviceToHost, stream),
                "D2H picks");
      }
      if (logits)
        check(cudaMemcpyAsync(pinned_out, out, static_cast<size_t>(b * vocab * 4),
                              cudaMemcpyDeviceToHost, stream),
              "D2H logits");
    };
    auto enqueue_steps = [&] {  // (steps > 1)
      inputs();
      for (int64_t i = 0; i < steps; ++i) {
        if (i > 0) {
          launch(chunk_advance_kernel, dim3(1), dim3(256), 0, kv.chunk_picks + (i - 1) * b, b,
                 kv.cache_s, ids, pos, kv.past, kv.valid);
          step_in = nullptr;  // (the embedding reads ids and pos)
        }
        forward(b, 1, true, false, true);
        launch(argmax_kernel, dim3(kArgmaxParts, static_cast<unsigned>(b)), dim3(kArgmaxThreads), 0,
               out, vocab, kv.chunk_picks + i * b, kv.part_v, kv.part_i, kv.done);
      }
      step_in = nullptr;
      check(cudaMemcpyAsync(picks_host, kv.chunk_picks, static_cast<size_t>(steps * b * 8),
                            cudaMemcpyDeviceToHost, stream),
            "D2H picks");
    };
    if (t == 1 && use_graphs) {  // decode steps: all of it as one graph (per kind of result)
      cudaGraphExec_t& exec =
          steps > 1 ? kv.chunk_graphs[steps] : kv.step_graphs[(argmax ? 2 : 0) + (logits ? 1 : 0)];
      if (!exec) {
        cudaGraph_t graph = nullptr;
        check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture");
        if (steps > 1)
          enqueue_steps();
        else
          enqueue();
        check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
        check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        cudaGraphDestroy(graph);
      }
#ifdef GPTRT_CUDA_TRACE
      const bool tracing = trace_begin();
#endif
      check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
#ifdef GPTRT_CUDA_TRACE
      if (tracing) trace_end();
#endif
    } else if (steps > 1) {
      enqueue_steps();
    } else {
      enqueue();
    }
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    if (t == 1 && steps == 1) ++kv.single_steps;
    if (argmax) std::memcpy(argmax, picks_host, static_cast<size_t>(steps * b * 8));
    if (logits)
      logits->assign(static_cast<const float*>(pinned_out),
                     static_cast<const float*>(pinned_out) + b * vocab);
  }

  void last_logits(std::vector<float>& logits) {
    int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
    logits.resize(static_cast<size_t>(kv.batch * vocab));
    check(cudaMemcpyAsync(logits.data(), out, logits.size() * 4, cudaMemcpyDeviceToHost, stream),
          "D2H logits");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }

  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs, Timings* t,
                          Runner::Profile* profile) {
    const ir::Node& embed = g.nodes.front();
    std::string ids_name = g.values[static_cast<size_t>(embed.inputs[0])].name;
    const Tensor& ids_t = inputs.at(ids_name);
    int64_t b = ids_t.dim(0), s = ids_t.dim(1), rows = b * s;
    const Tensor* mask_t = nullptr;
    const Tensor* pos_t = nullptr;
    for (int id : g.inputs) {
      const std::string& name = g.values[static_cast<size_t>(id)].name;
      if (name == ids_name) continue;
      bool is_pos = embed.inputs.size() > 1 && embed.inputs[1] == id;
      auto it = inputs.find(name);
      if (it == inputs.end()) continue;
      (is_pos ? pos_t : mask_t) = &it->second;
    }
    // Inputs as int64 in pinned memory, then one copy each to fixed device buffers.
    if (rows > io_elems) {
      cudaFree(ids);
      cudaFree(mask);
      cudaFree(pos);
      ids = mask = pos = nullptr;
      int64_t cap = 0;
      grow(&ids, &cap, rows * 8, false);
      cap = 0;
      grow(&mask, &cap, rows * 8, false);
      cap = 0;
      grow(&pos, &cap, rows * 8, false);
      io_elems = rows;
      drop_graphs();
    }
    grow(&pinned_in, &pinned_in_bytes, rows * 8 * 3, true);
    int64_t* host = static_cast<int64_t*>(pinned_in);
    auto stage = [&](const Tensor* src, int64_t* dst) {
      for (int64_t i = 0; i < rows; ++i)
        dst[i] = src->dtype() == DType::kInt64 ? src->data<int64_t>()[i]
                 : src->dtype() == DType::kInt32
                     ? src->data<int32_t>()[i]
                     : static_cast<int64_t>(reference::nonzero(*src, i));
    };
    stage(&ids_t, host);
    if (mask_t) stage(mask_t, host + rows);
    if (pos_t && pos_t->dim(0) == b) stage(pos_t, host + 2 * rows);
    if (pos_t && pos_t->dim(0) == 1)
      for (int64_t r = 0; r < b; ++r)
        for (int64_t i = 0; i < s; ++i)
          host[2 * rows + r * s + i] = pos_t->dtype() == DType::kInt64 ? pos_t->data<int64_t>()[i]
                                                                       : pos_t->data<int32_t>()[i];
    // Output buffer: grown to the largest shape seen (captured graphs point into it).
    int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
    int64_t out_need = rows * vocab * 4;
    if (out_need > out_bytes) {
      drop_graphs();
      grow(&out, &out_bytes, out_need, false);
    }
    grow(&pinned_out, &pinned_out_bytes, out_need, true);

    check(cudaEventRecord(ev[0], stream), "cudaEventRecord");
    check(cudaMemcpyAsync(ids, host, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice, stream),
          "H2D ids");
    if (mask_t)
      check(cudaMemcpyAsync(mask, host + rows, static_cast<size_t>(rows * 8),
                            cudaMemcpyHostToDevice, stream),
            "H2D mask");
    if (pos_t)
      check(cudaMemcpyAsync(pos, host + 2 * rows, static_cast<size_t>(rows * 8),
                            cudaMemcpyHostToDevice, stream),
            "H2D positions");
    check(cudaEventRecord(ev[1], stream), "cudaEventRecord");
    if (profile) {
      launch(spin_kernel, dim3(1), dim3(1), 0, int64_t{2000000});  // 2 ms: the launches queue up
      marking = true;
      mark_labels.clear();
      check(cudaEventRecord(ev[1], stream), "cudaEventRecord");
      forward(b, s, pos_t != nullptr, mask_t != nullptr);
      marking = false;
    } else if (use_graphs) {
      auto key = std::make_pair(b, s);
      auto it = graphs.find(key);
      if (it == graphs.end()) {
        cudaGraph_t graph = nullptr;
        check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture");
        forward(b, s, pos_t != nullptr, mask_t != nullptr);
        check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        cudaGraphDestroy(graph);
        it = graphs.emplace(key, exec).first;
      }
#ifdef GPTRT_CUDA_TRACE
      const bool tracing = trace_begin();
#endif
      check(cudaGraphLaunch(it->second, stream), "cudaGraphLaunch");
#ifdef GPTRT_CUDA_TRACE
      if (tracing) trace_end();
#endif
    } else {
      forward(b, s, pos_t != nullptr, mask_t != nullptr);
    }
    check(cudaEventRecord(ev[2], stream), "cudaEventRecord");
    check(cudaMemcpyAsync(pinned_out, out, static_cast<size_t>(out_need), cudaMemcpyDeviceToHost,
                          stream),
          "D2H logits");
    check(cudaEventRecord(ev[3], stream), "cudaEventRecord");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    if (t) {
      float a = 0, c = 0, d = 0;
      cudaEventElapsedTime(&a, ev[0], ev[1]);
      cudaEventElapsedTime(&c, ev[1], ev[2]);
      cudaEventElapsedTime(&d, ev[2], ev[3]);
      *t = Timings{a, c, d};
    }
    for (size_t i = 0; profile && i < mark_labels.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, i ? mark_events[i - 1] : ev[1], mark_events[i]);
      auto& slot = (*profile)[mark_labels[i]];
      slot.first += ms;
      slot.second += 1;
    }
    Tensor result = Tensor::uninitialized(DType::kFloat32, {b, s, vocab});
    std::memcpy(result.data_mut<float>(), pinned_out, static_cast<size_t>(out_need));
    return {result};
  }
};

Runner::Runner(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision,
               const std::map<std::string, int64_t>& dim_max)
    : impl_(std::make_unique<Impl>(std::move(owner), graph, precision, dim_max)) {}
Runner::~Runner() = default;
std::vector<Tensor> Runner::run(const std::map<std::string, Tensor>& inputs, Timings* t,
                                Profile* profile) {
  return impl_->run(inputs, t, profile);
}
void Runner::set_use_graphs(bool on) {
  impl_->use_graphs = on;
}

Decoder::Decoder(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision)
    : impl_(std::make_unique<Runner::Impl>(std::move(owner), graph, precision,
                                           std::map<std::string, int64_t>{})) {}
Decoder::~Decoder() = default;
void Decoder::reserve(int64_t batch, int64_t positions, int64_t prompt) {
  impl_->reserve(batch, positions, prompt);
}
void Decoder::step(const int64_t* ids, const int64_t* positions, const uint8_t* key_valid,
                   int64_t t, int64_t past, std::vector<float>* logits, int64_t* argmax) {
  impl_->decode_step(ids, positions, key_valid, t, past, logits, argmax);
}
void Decoder::greedy_steps(const int64_t* ids, const int64_t* positions, const uint8_t* key_valid,
                           int64_t past, int64_t steps, int64_t* picks) {
  impl_->decode_step(ids, positions, key_valid, 1, past, nullptr, picks, steps);
}
int64_t Decoder::max_greedy_steps() const {
  return impl_->max_greedy_steps();
}
void Decoder::last_logits(std::vector<float>& logits) {
  impl_->last_logits(logits);
}
int64_t Runner::activation_bytes() const {
  return impl_->plan.total + impl_->out_bytes;
}

}  // namespace gptrt::cuda
