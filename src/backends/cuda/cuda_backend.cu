// The CUDA backend (see cuda_backend.h). Host code uses only CUDA 11/12-era runtime and cuBLAS
// APIs (cudaStreamBeginCapture, cudaGraphInstantiate with flags, cublasGemmEx), so CUDA 12 users
// can build it.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <mutex>

#include "backends/cuda/cuda_backend.h"
#include "backends/reference/executor.h"
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

template <typename T>
__device__ __forceinline__ void store(T* p, int64_t i, float v) {
  if constexpr (std::is_same_v<T, float>)
    p[i] = v;
  else if constexpr (std::is_same_v<T, __half>)
    p[i] = __float2half_rn(v);
  else
    p[i] = __float2bfloat16_rn(v);
}

// Outputs in T: float, or the GEMM input type (FP16/BF16) when only linear layers read them.
template <typename T>
__global__ void layer_norm_kernel(const float* x, const float* g, const float* b, float eps,
                                  int64_t e, T* y) {
  __shared__ float shared[32];
  const float* px = x + blockIdx.x * e;
  T* py = y + blockIdx.x * e;
  float sum = 0;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) sum += px[k];
  float mean = block_sum(sum, shared) / static_cast<float>(e);
  float var = 0;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) var += (px[k] - mean) * (px[k] - mean);
  float inv = rsqrtf(block_sum(var, shared) / static_cast<float>(e) + eps);
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x)
    store(py, k, (px[k] - mean) * inv * g[k] + b[k]);
}

__device__ float gelu_erf(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

// Causal attention, one warp per query. Queries 0..t-1 of row r sit at positions past..past+t-1
// (past read from device memory, 0 when null, so one captured graph serves every decode step);
// keys 0..past-1 come from the cache kc/vc [b, key_stride, e], keys from past on straight from
// qkv [b, t, 3e]; with a cache, each query also appends its own key and value at past + i. Key j
// of row r counts when mask[r * key_stride + j] != 0 (null: all). Heads of size d <= 32 *
// kPerLane (lane l holds elements l, l + 32, ...); scores in shared memory (key_stride per warp).
template <int kPerLane, typename T, typename M>
__global__ void attention_kernel(const float* qkv, float* kc, float* vc, const M* mask,
                                 const int64_t* past_dev, int64_t t, int64_t key_stride, int64_t e,
                                 int64_t heads, float scale, T* out) {
  extern __shared__ float scores_all[];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t bh = blockIdx.x, r = bh / heads, h = bh % heads;
  int64_t i = static_cast<int64_t>(blockIdx.y) * (blockDim.x / 32) + warp;
  if (i >= t) return;
  int64_t past = past_dev ? *past_dev : 0, d = e / heads;
  float* score = scores_all + warp * key_stride;
  const float* row = qkv + (r * t + i) * 3 * e;
  if (kc) {
    for (int64_t u = lane; u < d; u += 32) {
      kc[(r * key_stride + past + i) * e + h * d + u] = row[e + h * d + u];
      vc[(r * key_stride + past + i) * e + h * d + u] = row[2 * e + h * d + u];
    }
  }
  float q[kPerLane];
  for (int k = 0; k < kPerLane; ++k) q[k] = lane + 32 * k < d ? row[h * d + lane + 32 * k] : 0.f;
  auto key = [&](int64_t j, int part) {  // part 1: key, 2: value
    return j < past ? (part == 1 ? kc : vc) + (r * key_stride + j) * e + h * d
                    : qkv + (r * t + j - past) * 3 * e + part * e + h * d;
  };
  int64_t keys = past + i + 1;
  float mx = -INFINITY;
  for (int64_t j = 0; j < keys; ++j) {
    bool ok = !mask || mask[r * key_stride + j] != 0;
    float dot = 0;
    if (ok) {
      const float* k = key(j, 1);
      for (int kk = 0; kk < kPerLane; ++kk)
        if (lane + 32 * kk < d) dot += q[kk] * k[lane + 32 * kk];
      for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffff, dot, o);
      dot *= scale;
      mx = fmaxf(mx, dot);
    }
    if (lane == 0) score[j] = ok ? dot : -INFINITY;
  }
  __syncwarp();
  float acc[kPerLane] = {};
  float sum = 0;
  if (mx > -INFINITY) {
    for (int64_t j = 0; j < keys; ++j) {
      float sj = score[j];
      if (sj == -INFINITY) continue;
      float w = __expf(sj - mx);
      sum += w;
      const float* v = key(j, 2);
      for (int kk = 0; kk < kPerLane; ++kk)
        if (lane + 32 * kk < d) acc[kk] += w * v[lane + 32 * kk];
    }
  }
  float inv = sum > 0 ? 1.0f / sum : 0.f;
  T* o = out + (r * t + i) * e + h * d;
  for (int kk = 0; kk < kPerLane; ++kk)
    if (lane + 32 * kk < d) store(o, lane + 32 * kk, acc[kk] * inv);
}

// Launches attention_kernel with the register count the head size needs.
template <typename T, typename M>
void launch_attention(int64_t b, int64_t t, int64_t e, int64_t heads, float scale, const float* qkv,
                      float* kc, float* vc, const M* mask, const int64_t* past_dev,
                      int64_t key_stride, T* out, cudaStream_t stream) {
  constexpr int kWarps = 4;
  dim3 grid(static_cast<unsigned>(b * heads), static_cast<unsigned>((t + kWarps - 1) / kWarps));
  size_t smem = static_cast<size_t>(kWarps * key_stride) * sizeof(float);
  auto go = [&](auto per_lane) {
    attention_kernel<decltype(per_lane)::value, T, M><<<grid, 32 * kWarps, smem, stream>>>(
        qkv, kc, vc, mask, past_dev, t, key_stride, e, heads, scale, out);
  };
  switch ((e / heads + 31) / 32) {
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
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x)
    y[blockIdx.x * e + k] = x[(blockIdx.x * t + t - 1) * e + k];
}

// Exact GELU (cuBLASLt's GELU epilogue is the tanh form): y = gelu(x) + residual, x = the GEMM
// output with its bias, in FP32 scratch.
template <typename T>
__global__ void gelu_erf_kernel(const float* x, const float* residual, int64_t n, T* y) {
  int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= n) return;
  float v = gelu_erf(x[idx]);
  if (residual) v += residual[idx];
  store(y, idx, v);
}

int blocks_for(int64_t n, int threads) {
  return static_cast<int>((n + threads - 1) / threads);
}

// ---- device weights, shared by every context of one engine -----------------------------------

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
    void* p = nullptr;
    check(cudaMalloc(&p, v.constant.nbytes()), "cudaMalloc (weights)");
    w->ptr[static_cast<int>(i)] = p;
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

Tensor to_half(const Tensor& t, Precision precision) {
  Tensor h(precision == Precision::kFp16 ? DType::kFloat16 : DType::kBFloat16, t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    float x = t.data<float>()[i];
    h.data_mut<uint16_t>()[i] = precision == Precision::kFp16 ? float_to_half(x) : float_to_bf16(x);
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
    if (n.op_type != "Linear" || precision == Precision::kFp32 || precision == Precision::kTf32)
      continue;
    // FP16/BF16: the weight in that type (a new value, so a tied embedding keeps its FP32 table),
    // and the bias too when the output is kept in that type (cuBLASLt adds it in the output type).
    auto convert = [&](size_t input) {
      const ir::Value& v = g.values[static_cast<size_t>(n.inputs[input])];
      std::string name = v.name + (precision == Precision::kFp16 ? ".fp16" : ".bf16");
      int id = g.find(name);
      if (id < 0) id = g.add_constant(name, to_half(v.constant, precision));
      n.inputs[input] = id;
    };
    convert(1);
    bool erf = n.attr_string("activation", "") == "gelu_erf";  // bias added in FP32 scratch
    if (n.inputs.size() > 2 && n.inputs[2] >= 0 && half[static_cast<size_t>(n.outputs[0])] && !erf)
      convert(2);
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
  reference::MemoryPlan plan;
  char* arena = nullptr;
  std::vector<char> half;    // values kept in FP16/BF16
  float* scratch = nullptr;  // FP32 GEMM output before an exact-GELU kernel
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
    int64_t batch = 0, cache_s = 0;
    cudaGraphExec_t step_graph = nullptr;
  } kv;
  float* out = nullptr;  // logits [b, s, vocab] (grown, never per run)
  int64_t out_bytes = 0;
  int64_t* ids = nullptr;
  int64_t* mask = nullptr;
  int64_t* pos = nullptr;
  int64_t io_elems = 0;  // capacity of ids/mask/pos
  void* pinned_in = nullptr;
  void* pinned_out = nullptr;
  int64_t pinned_in_bytes = 0, pinned_out_bytes = 0;
  cudaEvent_t ev[4] = {};
  bool use_graphs = true;
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs;

  Impl(std::shared_ptr<const void> o, const ir::Graph& graph, Precision p,
       const std::map<std::string, int64_t>& dim_max)
      : owner(std::move(o)), g(graph), precision(p) {
    weights = weights_for(owner.get(), g);
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasLtCreate(&lt), "cublasLtCreate");
    check(cudaMalloc(&workspace, kWorkspace), "cudaMalloc (cuBLAS workspace)");
    for (cudaEvent_t& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
    half = half_values(g, p);
    plan = reference::plan_memory(g, dim_max, [](const ir::Node&) { return true; });
    if (plan.total > 0)
      check(cudaMalloc(reinterpret_cast<void**>(&arena), static_cast<size_t>(plan.total)),
            "cudaMalloc (activation arena)");
    int64_t rows = 1, max_n = 0;
    for (const auto& [sym, v] : dim_max) rows *= v;
    for (const ir::Node& n : g.nodes)
      if (n.op_type == "Linear" && n.attr_string("activation", "") == "gelu_erf")
        max_n =
            std::max(max_n, g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value);
    if (max_n > 0)
      check(cudaMalloc(reinterpret_cast<void**>(&scratch), static_cast<size_t>(rows * max_n * 4)),
            "cudaMalloc (GELU scratch)");
  }

  ~Impl() {
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
    cudaFree(out);
    cudaFree(ids);
    cudaFree(mask);
    cudaFree(pos);
    cudaFree(workspace);
    cudaFreeHost(pinned_in);
    cudaFreeHost(pinned_out);
    for (cudaEvent_t e : ev) cudaEventDestroy(e);
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

  static cudaDataType_t cuda_type(DType d) {
    return d == DType::kFloat16 ? CUDA_R_16F : d == DType::kBFloat16 ? CUDA_R_16BF : CUDA_R_32F;
  }

  // y[m, N] = act(x[m, K] @ W + bias) + residual through one cuBLASLt call: the bias (and the
  // tanh GELU) as its epilogue, the residual as C with beta = 1. Exact GELU: bias epilogue into
  // FP32 scratch, then gelu_erf_kernel.
  void linear(size_t index, const ir::Node& n, int64_t m, void* y, const void* x_in = nullptr) {
    const ir::Value& wv = g.values[static_cast<size_t>(n.inputs[1])];
    bool trans = n.attr_int("transB", 0) != 0;
    int64_t k = wv.constant.dim(trans ? 1 : 0), cols = wv.constant.dim(trans ? 0 : 1);
    int act = reference::activation_from_name(n.attr_string("activation", ""));
    int bias_id = n.inputs.size() > 2 ? n.inputs[2] : -1;
    int res_id = n.inputs.size() > 3 ? n.inputs[3] : -1;
    bool erf = act == reference::kActGeluErf;
    cudaDataType_t out_type = erf ? CUDA_R_32F : storage(n.outputs[0]);
    auto key = std::make_pair(index, m);
    auto it = lt_plans.find(key);
    if (it == lt_plans.end()) {
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
      // transposed; x [m, K] is K x m; y [m, N] is N x m.
      cudaDataType_t wt = cuda_type(wv.dtype), xt = storage(n.inputs[0]);
      check(cublasLtMatrixLayoutCreate(&lp.a, wt, trans ? k : cols, trans ? cols : k,
                                       trans ? k : cols),
            "layout A");
      check(cublasLtMatrixLayoutCreate(&lp.b, xt, k, m, k), "layout B");
      check(cublasLtMatrixLayoutCreate(&lp.c, out_type, cols, m, cols), "layout C/D");
      cublasLtMatmulPreference_t pref = nullptr;
      check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
      size_t ws = kWorkspace;
      check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &ws, sizeof ws),
            "workspace");
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, lp.op, lp.a, lp.b, lp.c, lp.c, pref, 1,
                                                         &result, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      if (st != CUBLAS_STATUS_SUCCESS || found == 0)
        throw Error(ErrorCode::kUnsupported, n.describe() +
                                                 ": cuBLASLt has no algorithm for this GEMM (" +
                                                 std::to_string(m) + "x" + std::to_string(k) + "x" +
                                                 std::to_string(cols) + ")");
      lp.algo = result.algo;
      it = lt_plans.emplace(key, lp).first;
    }
    const float one = 1.f, zero = 0.f;
    const void* x = x_in ? x_in : value_ptr(n.inputs[0]);
    const void* res = !erf && res_id >= 0 ? value_ptr(res_id) : nullptr;
    void* d = erf ? static_cast<void*>(scratch) : y;
    check(cublasLtMatmul(lt, it->second.op, &one, value_ptr(n.inputs[1]), it->second.a, x,
                         it->second.b, res ? &one : &zero, res ? res : d, it->second.c, d,
                         it->second.c, &it->second.algo, workspace, kWorkspace, stream),
          "cublasLtMatmul");
    if (erf) {
      const float* r = res_id >= 0 ? static_cast<const float*>(value_ptr(res_id)) : nullptr;
      int64_t total = m * cols;
      if (storage(n.outputs[0]) == CUDA_R_32F)
        gelu_erf_kernel<float>
            <<<blocks_for(total, 256), 256, 0, stream>>>(scratch, r, total, static_cast<float*>(y));
      else if (precision == Precision::kFp16)
        gelu_erf_kernel<__half><<<blocks_for(total, 256), 256, 0, stream>>>(
            scratch, r, total, static_cast<__half*>(y));
      else
        gelu_erf_kernel<__nv_bfloat16><<<blocks_for(total, 256), 256, 0, stream>>>(
            scratch, r, total, static_cast<__nv_bfloat16*>(y));
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
    int64_t rows = b * s;
    size_t layer = 0;
    for (size_t idx = 0; idx < g.nodes.size(); ++idx) {
      const ir::Node& n = g.nodes[idx];
      void* y = value_ptr(n.outputs[0]);
      if (n.op_type == "Embedding") {
        const ir::Value& wpe = g.values[static_cast<size_t>(n.inputs[3])];
        embedding_kernel<<<static_cast<int>(rows), 256, 0, stream>>>(
            ids, with_pos ? pos : nullptr, static_cast<const float*>(value_ptr(n.inputs[2])),
            static_cast<const float*>(value_ptr(n.inputs[3])), s, wpe.constant.dim(1),
            static_cast<float*>(y));
      } else if (n.op_type == "LayerNormalization") {
        int64_t e = g.values[static_cast<size_t>(n.inputs[1])].constant.numel();
        typed(n.outputs[0], [&](auto tag) {
          using T = decltype(tag);
          layer_norm_kernel<T><<<static_cast<int>(rows), 256, 0, stream>>>(
              static_cast<const float*>(value_ptr(n.inputs[0])),
              static_cast<const float*>(value_ptr(n.inputs[1])),
              static_cast<const float*>(value_ptr(n.inputs[2])), n.attr_float("epsilon", 1e-5f), e,
              static_cast<T*>(y));
        });
      } else if (n.op_type == "Attention") {
        int64_t e = g.values[static_cast<size_t>(n.outputs[0])].shape.dims.back().value;
        int64_t heads = n.attr_int("num_heads", 1);
        const float* qkv = static_cast<const float*>(value_ptr(n.inputs[0]));
        float scale = n.attr_float("scale", 1.f);
        typed(n.outputs[0], [&](auto tag) {
          using T = decltype(tag);
          T* o = static_cast<T*>(y);
          if (decode) {  // against the KV cache, padding from its flags
            launch_attention<T, uint8_t>(b, s, e, heads, scale, qkv, kv.k[layer], kv.v[layer],
                                         kv.valid, kv.past, kv.cache_s, o, stream);
          } else {
            const int64_t* m =
                with_mask && n.inputs.size() > 1 && n.inputs[1] >= 0 ? mask : nullptr;
            launch_attention<T, int64_t>(b, s, e, heads, scale, qkv, nullptr, nullptr, m, nullptr,
                                         s, o, stream);
          }
        });
        ++layer;
      } else if (decode && n.outputs[0] == g.outputs[0]) {  // LM head: last positions only
        int64_t e = g.values[static_cast<size_t>(n.inputs[0])].shape.dims.back().value;
        typed(n.inputs[0], [&](auto tag) {
          using T = decltype(tag);
          last_rows_kernel<T><<<static_cast<int>(b), 256, 0, stream>>>(
              static_cast<const T*>(value_ptr(n.inputs[0])), s, e, static_cast<T*>(kv.last));
        });
        linear(idx, n, b, y, kv.last);
      } else {  // Linear
        linear(idx, n, rows, y);
      }
      check(cudaGetLastError(), "kernel launch");
    }
  }

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
    if (kv.step_graph) cudaGraphExecDestroy(kv.step_graph);
    kv.step_graph = nullptr;
    for (float* p : kv.k) cudaFree(p);
    for (float* p : kv.v) cudaFree(p);
    kv.k.clear();
    kv.v.clear();
    cudaFree(kv.valid);
    cudaFree(kv.past);
    cudaFree(kv.last);
    kv.valid = nullptr;
    kv.past = nullptr;
    kv.last = nullptr;
  }

  // Generation for `b` rows of up to `cache_s` positions, prompts of up to `prompt` tokens: the
  // KV cache, the activation arena for [b, prompt], the input and logits buffers (once per
  // generate call, never per token).
  void reserve(int64_t b, int64_t cache_s, int64_t prompt) {
    cudaStreamSynchronize(stream);
    free_kv();
    drop_graphs();
    const ir::Value& ids_v = g.values[static_cast<size_t>(g.nodes.front().inputs[0])];
    std::map<std::string, int64_t> dim_max;
    if (!ids_v.shape.dims[0].is_known()) dim_max[ids_v.shape.dims[0].symbol] = b;
    if (!ids_v.shape.dims[1].is_known()) dim_max[ids_v.shape.dims[1].symbol] = prompt;
    reference::MemoryPlan p =
        reference::plan_memory(g, dim_max, [](const ir::Node&) { return true; });
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
    kv.batch = b;
    kv.cache_s = cache_s;
    int64_t rows = b * prompt;
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
    grow(&pinned_in, &pinned_in_bytes, rows * 16 + b * cache_s + 8, true);
  }

  // One generation step: `t` tokens per row at cache positions past..past+t-1; the last
  // position's logits [b, vocab] into `logits`. Decode steps (t = 1) replay one CUDA graph.
  void decode_step(const int64_t* host_ids, const int64_t* host_pos, const uint8_t* host_valid,
                   int64_t t, int64_t past, std::vector<float>& logits) {
    int64_t b = kv.batch, rows = b * t;
    auto* in = static_cast<int64_t*>(pinned_in);
    std::memcpy(in, host_ids, static_cast<size_t>(rows * 8));
    std::memcpy(in + rows, host_pos, static_cast<size_t>(rows * 8));
    in[2 * rows] = past;
    auto* flags = reinterpret_cast<uint8_t*>(in + 2 * rows + 1);
    std::memcpy(flags, host_valid, static_cast<size_t>(b * kv.cache_s));
    check(cudaMemcpyAsync(ids, in, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice, stream),
          "H2D ids");
    check(cudaMemcpyAsync(pos, in + rows, static_cast<size_t>(rows * 8), cudaMemcpyHostToDevice,
                          stream),
          "H2D positions");
    check(cudaMemcpyAsync(kv.past, in + 2 * rows, 8, cudaMemcpyHostToDevice, stream), "H2D past");
    check(cudaMemcpyAsync(kv.valid, flags, static_cast<size_t>(b * kv.cache_s),
                          cudaMemcpyHostToDevice, stream),
          "H2D flags");
    if (t == 1 && use_graphs) {
      if (!kv.step_graph) {
        cudaGraph_t graph = nullptr;
        check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture");
        forward(b, 1, true, false, true);
        check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
        check(cudaGraphInstantiate(&kv.step_graph, graph, 0), "cudaGraphInstantiate");
        cudaGraphDestroy(graph);
      }
      check(cudaGraphLaunch(kv.step_graph, stream), "cudaGraphLaunch");
    } else {
      forward(b, t, true, false, true);
    }
    int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
    check(cudaMemcpyAsync(pinned_out, out, static_cast<size_t>(b * vocab * 4),
                          cudaMemcpyDeviceToHost, stream),
          "D2H logits");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    logits.assign(static_cast<const float*>(pinned_out),
                  static_cast<const float*>(pinned_out) + b * vocab);
  }

  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs, Timings* t) {
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
    if (use_graphs) {
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
      check(cudaGraphLaunch(it->second, stream), "cudaGraphLaunch");
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
    Tensor result = Tensor::uninitialized(DType::kFloat32, {b, s, vocab});
    std::memcpy(result.data_mut<float>(), pinned_out, static_cast<size_t>(out_need));
    return {result};
  }
};

Runner::Runner(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision,
               const std::map<std::string, int64_t>& dim_max)
    : impl_(std::make_unique<Impl>(std::move(owner), graph, precision, dim_max)) {}
Runner::~Runner() = default;
std::vector<Tensor> Runner::run(const std::map<std::string, Tensor>& inputs, Timings* t) {
  return impl_->run(inputs, t);
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
                   int64_t t, int64_t past, std::vector<float>& logits) {
  impl_->decode_step(ids, positions, key_valid, t, past, logits);
}
int64_t Runner::activation_bytes() const {
  return impl_->plan.total + impl_->out_bytes;
}

}  // namespace gptrt::cuda
