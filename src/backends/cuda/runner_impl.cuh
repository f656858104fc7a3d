// The CUDA backend's runner state (Runner::Impl), shared by the files that implement it:
// runner.cu (construction, memory, the forward pass, CUDA graphs, profiling), gemm_dispatch.cu
// (the skinny kernels' plans, linear layers), gemm_cublaslt.cu (cuBLASLt's plans and calls),
// fused_attention.cu (the QKV projection and attention as one kernel) and decoder.cu (the KV
// cache and decode steps).
#pragma once

#if GPTRT_WITH_CUBLAS
#include <cublasLt.h>
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "backends/cuda/attention.cuh"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/qkv_attention.cuh"
#include "backends/cuda/skinny_fp32.cuh"
#include "backends/cuda/skinny_linear.cuh"
#include "backends/cuda/skinny_stream.cuh"
#include "backends/cuda/weights.cuh"
#include "ir/memory_plan.h"

namespace gptrt::cuda {

/// Per value of `g`: whether it is kept in FP16/BF16 (read only by linear layers) at `precision`.
std::vector<char> half_values(const ir::Graph& g, Precision precision);

struct Runner::Impl {
  std::shared_ptr<const void> owner;
  const ir::Graph& g;
  Precision precision;
  std::shared_ptr<DeviceWeights> weights;
  cudaStream_t stream = nullptr;
  ir::MemoryPlan plan;
  char* arena = nullptr;
  std::vector<char> half;    // values kept in FP16/BF16
  float* scratch = nullptr;  // FP32 GEMM output before an exact-GELU kernel
  int64_t scratch_bytes = 0;
  // GEMM outputs at a padded pitch (pitched_cols), kPitchedRows rows at a time.
  static constexpr int64_t kPitchedRows = 256;
  void* pitched = nullptr;
  int64_t pitched_capacity = 0;
#if GPTRT_WITH_CUBLAS
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  static constexpr size_t kWorkspace = size_t{32} << 20;
  // One cuBLASLt plan per (linear node, rows): descriptors and the heuristic's algorithm.
  struct LtPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::map<std::pair<size_t, int64_t>, LtPlan> lt_plans;
  // The cuBLASLt plan of node `index` for `rows` rows (created on first use): y = act(x @ W +
  // bias) (+ C) with y's rows `pitch` apart.
  const LtPlan& lt_plan(size_t index, const ir::Node& n, int64_t rows, int64_t k, int64_t cols,
                        int64_t pitch, cudaDataType_t out_type, int act, int bias_id);
#endif
  // Linear layers on the CUDA cores alone (plain_gemm_kernel) instead of cuBLASLt: on GPUs before
  // sm_70 (the kernels' SM, kernel_sm()), in builds without cuBLAS, or GPTRT_CUDA_GEMM=plain.
  bool plain_gemms = false;
  // cuBLASLt's handle and workspace (gemm_cublaslt.cu), made unless plain_gemms; released.
  static size_t cublaslt_workspace_bytes();
  void create_cublaslt();
  void release_cublaslt();
  // A linear node as linear() describes it, on cuBLASLt / on plain_gemm_kernel.
  void cublaslt_linear(size_t index, const ir::Node& n, int64_t m, void* y, const void* x_in);
  void plain_linear(const ir::Node& n, int64_t m, void* y, const void* x_in);
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
    // Packed passes: per (tokens, t, kind of result) its graph, at most kMaxPackedGraphs.
    std::map<std::tuple<int64_t, int64_t, int>, cudaGraphExec_t> packed_graphs;
    int64_t* chunk_picks = nullptr;
    int32_t* from = nullptr;  // gather_columns' sources [batch, cache_s]
    // A packed pass's token places [batch * prompt] and each row's last token [batch] (see
    // AttentionArgs::packed, last_rows_kernel).
    int32_t* at = nullptr;
    int32_t* last_of = nullptr;
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
  static constexpr size_t kMaxPackedGraphs = 128;
  static constexpr int64_t kPackedRowStep = 16;  // packed passes' rows: multiples of it
  std::vector<int64_t> packed_ids, packed_pos;   // (packed_step's, rounded up)
  std::vector<int32_t> packed_at;
  // While a packed generation pass is enqueued: its tokens (0: a pass of [batch, t]).
  int64_t packed_rows = 0;
  // GPTRT_CUDA_PACKED=0 runs packed passes padded to [batch, t] (comparisons, tests).
  bool packed_enabled = true;
  void* pinned_in = nullptr;
  void* pinned_out = nullptr;
  int64_t pinned_in_bytes = 0, pinned_out_bytes = 0;
  const void* mapped_for = nullptr;  // pinned_in as the GPU addresses it (null: not mapped)
  int64_t* mapped_in = nullptr;
  cudaEvent_t ev[4] = {};
  // run_device: the first index outside its range per staged input (ids, mask, positions; ~0:
  // none), on the device and its pinned copy, and the caller's stream's point to start after.
  unsigned long long* bad = nullptr;
  unsigned long long* pinned_bad = nullptr;
  cudaEvent_t caller_ready = nullptr;
  bool use_graphs = true;
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs;
  Launcher launch;
  int sm_major = 0, sm_count = 1;
  size_t smem_optin = 0;
  bool skinny_enabled = false;
  bool skinny_fp32_enabled = false;
  Options opts;       // the switches (options.h), read once
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
       const std::map<std::string, int64_t>& dim_max);

  // The scratch buffers a pass of `rows` rows needs (grown, never shrunk): FP32 GEMM outputs
  // before an exact-GELU kernel, and GEMM outputs at a padded pitch (see pitched_cols).
  void reserve_row_buffers(int64_t rows);

  ~Impl() {
    release();
  }
  // Everything the Runner made (null handles are skipped: a constructor that failed midway).
  void release();

  void drop_graphs();

  // Grows the staged inputs (ids, mask, positions) to `rows` and the logits to `out_need` bytes,
  // dropping the captured graphs that point into the old buffers.
  void reserve_io(int64_t rows, int64_t out_need);
  // The forward pass of [b, s] on the staged inputs into `out`, on `stream`: kernel by kernel
  // behind a spin kernel when profiling, else its captured graph (captured on first use) or
  // direct launches.
  void enqueue_forward(int64_t b, int64_t s, bool with_pos, bool with_mask,
                       Runner::Profile* profile);
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs, Timings* t,
                          Runner::Profile* profile);
  backends::BadValue run_device(const std::map<std::string, DeviceTensor>& inputs,
                                const std::vector<DeviceTensor>& outputs,
                                const std::map<std::string, int64_t>& limits, cudaStream_t caller);

  void* value_ptr(int id);
  // Device copies of a one-op plan's float inputs (run_op), by value id.
  std::map<int, void*> op_inputs;
  // A plan of one op on `inputs`: its output on the host (cuda::run_op).
  std::vector<Tensor> run_op(const std::map<std::string, Tensor>& inputs);

  cudaDataType_t storage(int id) const {
    if (!half[static_cast<size_t>(id)]) return CUDA_R_32F;
    return precision == Precision::kFp16 ? CUDA_R_16F : CUDA_R_16BF;
  }

  using SkinnyKernel = void (*)(SkinnyArgs);
  // Lets `kernel` take all the shared memory a block may have, less its static shared memory.
  void allow_all_shared_memory(SkinnyKernel kernel);

  // The skinny kernel for m rows (1 <= m <= 16 * kSkinnyMaxTiles): one instantiation per eight
  // rows.
  SkinnyKernel skinny_kernel(int64_t m) const;

  SkinnyKernel fp32_kernel(int mr, int v) const;

  // skinny_stream_kernel for this engine's weights and MR rows (1, 8 or 16).
  SkinnyKernel stream_kernel(int mr) const;
  // Switches plan `sp` (rows m, MR sp.mt) to skinny_stream_kernel where its shared memory fits
  // and a block fits on an SM.
  void use_stream(SkinnyPlan& sp, int64_t m, int64_t k, int64_t cols, bool layer_norm) const;

  // The FP32 skinny kernel's plan: rows up to 16 (MR 1, 8 or 16), the fewest K splits (each lane
  // holding at most 6 float4s per weight row, 4 with 16 rows) that give every SM a block, else
  // the most; V (2, 3, 4 or 6) the fewest float4s that cover a lane's share of K (every float4
  // past K is multiplied, as zeros).
  SkinnyPlan skinny_fp32_plan(int64_t m, int64_t k, int64_t cols, bool layer_norm) const;

  void find_layer_norm_fusions();

  void find_attention_fusions();

  // Linear node `index` (the QKV projection, m = b * t rows) and the Attention node after it as
  // one qkv_attention_kernel, if it can run them: sm_90 clusters, an FP16/BF16 skinny plan of one
  // row tile with the LayerNorm fused, heads of 64, K a multiple of 32 up to 2048, no residual or
  // activation, and shared memory (the cached keys' slices included) within what a block may take
  // beside the kernels around it. Returns whether it launched.
  bool qkv_attention(size_t index, const ir::Node& n, int64_t b, int64_t t, bool decode,
                     bool with_mask, size_t layer);

  const SkinnyPlan& skinny_plan(size_t index, int64_t m);

  // True when LayerNorm node `l` is left to the skinny kernels of its readers (rows: the rows
  // each reader runs).
  bool layer_norm_fused(size_t l, int64_t rows, int64_t head_rows);

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
  int64_t group_rows(size_t index, int64_t rows);

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
  int64_t pitched_cols(const ir::Node& n) const;

  // Whether linear node `index` at m rows runs on a skinny kernel (with its LayerNorm when
  // `ln_fused`).
  bool skinny_runs(size_t index, int64_t m, const ir::Node& n, bool ln_fused);

  // Linear node `index` on its skinny kernel for m rows of x (the LayerNorm `ln`'s input when
  // set) and the residual's rows (or null), into y.
  void skinny(size_t index, const ir::Node& n, int64_t m, void* y, const void* x,
              const ir::Node* ln, const float* residual);

  // y[m, N] = act(x[m, K] @ W + bias) + residual. The skinny kernel where its plan says so (x
  // being the input of the LayerNorm before this node when `ln_fused`); otherwise one
  // plain_gemm_kernel where plain_gemms, else one cuBLASLt call: the bias (and the tanh GELU) as
  // its epilogue, the residual as C with beta = 1, and for exact GELU the bias epilogue into FP32
  // scratch, then gelu_erf_kernel. `x_in` overrides x.
  void linear(size_t index, const ir::Node& n, int64_t m, void* y, const void* x_in = nullptr,
              bool ln_fused = false);

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
  void forward(int64_t b, int64_t s, bool with_pos, bool with_mask, bool decode = false);

  void mark(const ir::Node& n, int64_t rows);

#ifdef GPTRT_CUDA_TRACE
  // Traces the graph replay numbered GPTRT_CUDA_TRACE_RUN (default 100) into the file
  // GPTRT_CUDA_TRACE_FILE: one line per block, "grid sm block start wait end mark0 mark1 mark2"
  // (global timer, ns; 0 for a mark the kernel does not set). A kernel whose dynamic shared
  // memory is planned right up to the limit would not launch in such a build (the trace takes a
  // few static bytes).
  int64_t trace_runs = 0;
  bool trace_begin();
  void trace_end();
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

  void free_kv();

  // Generation for `b` rows of up to `cache_s` positions, prompts of up to `prompt` tokens: the
  // KV cache, the activation arena for [b, prompt], the input and logits buffers (at most once per
  // generate call, never per token; kept, with the decode-step graph, for the next call of the
  // same batch and cache length whose prompt fits).
  void reserve(int64_t b, int64_t cache_s, int64_t prompt);

  // One generation step: `t` tokens per row at cache positions past..past+t-1; the last
  // position's logits [b, vocab] into `logits` and/or each row's argmax into `argmax`. Decode
  // steps (t = 1) replay one CUDA graph. With `steps` > 1 (t = 1, greedy: argmax only, at most
  // kMaxDecodeSteps), that many decode steps in one graph, each step's inputs made on the GPU
  // from the picks of the one before (chunk_advance_kernel); argmax gets [steps][b].
  void decode_step(const int64_t* host_ids, const int64_t* host_pos, const uint8_t* host_valid,
                   int64_t t, int64_t past, std::vector<float>* logits, int64_t* argmax,
                   int64_t steps = 1);
  // A pass of `rows` tokens packed one after another (Decoder::step_packed): the linear layers
  // run `rows` rows, not batch * t. Where packed passes cannot run (GPTRT_CUDA_PACKED=0, caches
  // beyond the decode attention kernel's shared memory), the same pass padded to [batch, t].
  void packed_step(const int64_t* host_ids, const int64_t* host_pos, const int32_t* at,
                   const int32_t* last, int64_t rows, const uint8_t* host_valid, int64_t t,
                   int64_t past, std::vector<float>* logits, int64_t* argmax);

  void last_logits(std::vector<float>& logits);
  void gather_columns(const int32_t* from, int64_t used);
};

}  // namespace gptrt::cuda
