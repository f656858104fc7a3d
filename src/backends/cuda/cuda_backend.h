// The CUDA backend: the recognised GPT-2 decoder on an NVIDIA GPU. GEMMs on gptrt's skinny kernels
// and cuBLASLt (FP32 without TF32, TF32, or FP16/BF16 weights with FP32 accumulation), or before
// sm_70 and without cuBLAS on plain FP32 kernels (plain_gemm.cuh); own kernels for the
// embedding, LayerNorm, causal attention with padding mask and the bias/GELU/residual epilogue;
// weights uploaded once per engine and shared by its contexts; activations in one device arena
// planned for the profiles' largest shapes; one CUDA graph per input shape, captured on first
// use and replayed. Host code only here (no CUDA headers), so the rest of gptrt builds without
// the toolkit; builds without it get the stub in cuda_backend_none.cpp.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/options.h"
#include "gptrt/engine.h"
#include "ir/graph.h"

namespace gptrt::cuda {

/// True when this gptrt was built with the CUDA backend.
bool compiled_in();
/// "sm_90" for GPU 0, or "" with `why` saying what is missing (no toolkit, driver or GPU).
std::string device_sm(std::string* why = nullptr);
/// "NVIDIA H200 (sm_90)" for messages and reports, or "".
std::string device_name();
/// The SM whose kernel families GPU 0 runs (61, 75, 80, 90; 0 without a GPU): the lowest of its
/// own, and the architecture this build's kernels were compiled for that the GPU loads (a build
/// of compute_61 PTX only runs on an H100 as on a GTX 1060, through the driver's JIT).
int kernel_sm();
/// True when the CUDA backend was built with cuBLASLt (GPTRT_CUDA_CUBLAS=ON, the default).
bool cublas_compiled_in();

/// True when the CUDA backend runs `node` (the fused decoder's ops).
bool has_kernel(const ir::Node& node);

/// Prepares a recognised, fused decoder graph for the GPU at `precision`: FP16/BF16 engines
/// store the linear layers' weights in that type (FP32 otherwise), INT8 engines as INT8 [N, K]
/// with per-row scales (Linear input 4; [N], or [N, K / int8_group] in groups) and the rest as
/// FP16 engines. Throws for a graph it cannot run, naming the node.
void lower(ir::Graph& graph, Precision precision, int64_t int8_group = 0);

/// A plan as the GPU runs it. An INT8 plan runs as FP16: each INT8 weight dequantised (q * its
/// row's scale, rounded to FP16) into a copy of the plan made once per engine and shared by its
/// runners and decoders (`owner` keeps it and the engine alive); other plans run as they are.
struct RunnablePlan {
  std::shared_ptr<const void> owner;
  const ir::Graph* graph = nullptr;
  Precision precision = Precision::kFp32;
};
RunnablePlan runnable_plan(std::shared_ptr<const void> owner, const ir::Graph& plan,
                           Precision precision);
/// Throws kEngineMismatch (naming `path`) unless every Linear of an INT8 plan has INT8 weights
/// [N, K] and float32 scales [N] at input 4, and no other plan has INT8 weights or scales.
void check_int8_weights(const ir::Graph& plan, Precision precision, const std::string& path);

/// Runs a plan of one op as the backend lowered it (LayerNormalization, Linear, Attention or
/// Embedding; inputs of fixed shapes) on the GPU, for tests of each kernel against the reference;
/// a linear layer's input is stored in the engine's 16-bit type as the op before it would.
std::vector<Tensor> run_op(std::shared_ptr<const void> owner, const ir::Graph& plan,
                           Precision precision, const std::map<std::string, Tensor>& inputs);

/// One forward pass's times (ms): host-to-device copies, GPU compute, device-to-host copies.
struct Timings {
  double h2d_ms = 0, compute_ms = 0, d2h_ms = 0;
};

/// Runs one engine's plan on the GPU; one per ExecutionContext, with its own stream.
class Runner {
 public:
  /// `owner` keeps the graph (and its weights) alive; the weights go to the GPU once per engine.
  Runner(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision,
         const std::map<std::string, int64_t>& dim_max);
  ~Runner();
  /// Per kernel kind: total GPU milliseconds and launches (ExecutionContext::profile()).
  using Profile = std::map<std::string, std::pair<double, int64_t>>;
  /// Inputs by name (already checked against the profiles) -> outputs on the host. With
  /// `profile`, the kernels run one by one (no CUDA graph) behind a spin kernel that lets the
  /// stream fill up, and each kernel's GPU time is added to `profile`.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs, Timings* timings,
                          Profile* profile = nullptr);
  /// Inputs in device memory (by name; names, dtypes and shapes checked) -> the logits in the
  /// caller's device buffer `outputs[0]`, after the work queued on `stream` (a cudaStream_t);
  /// finished on return. Integer inputs are staged on the GPU, each named in `limits` checked
  /// against [0, limit) there: the first value outside is returned (the logits then undefined).
  backends::BadValue run_device(const std::map<std::string, DeviceTensor>& inputs,
                                const std::vector<DeviceTensor>& outputs,
                                const std::map<std::string, int64_t>& limits, void* stream);
  /// Replay a captured CUDA graph per input shape (default on); off: launch every kernel.
  void set_use_graphs(bool on);
  /// Bytes of device memory for activations (the arena and the output buffer).
  int64_t activation_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Device memory for callers without the CUDA headers (tests, tools): allocated on GPU 0 when
/// made, freed when destroyed.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }
  void upload(const void* host, int64_t bytes);
  void download(void* host, int64_t bytes) const;

 private:
  void* data_ = nullptr;
};

/// Generation on the GPU: the plan run with a KV cache (the Generator's CUDA half).
class Decoder {
 public:
  Decoder(std::shared_ptr<const void> owner, const ir::Graph& graph, Precision precision);
  ~Decoder();
  /// Plans the cache for `batch` rows of up to `positions` positions and prompts of up to
  /// `prompt` tokens (once per generate call).
  void reserve(int64_t batch, int64_t positions, int64_t prompt);
  /// `t` tokens per row (ids, positions [batch, t]) at cache positions past..past+t-1, with
  /// key_valid [batch, positions] (0 = padding). Decode steps (t = 1) replay one captured CUDA
  /// graph. `logits` (if set) gets [batch, vocab] of each row's last position; `argmax` (if set)
  /// gets each row's most likely token (the first on ties), picked on the GPU so that greedy
  /// decoding copies 8 bytes per row instead of the logits.
  void step(const int64_t* ids, const int64_t* positions, const uint8_t* key_valid, int64_t t,
            int64_t past, std::vector<float>* logits, int64_t* argmax = nullptr);
  /// One pass over `rows` tokens packed one after another (ids, positions [rows]) for rows of
  /// different token counts: token i belongs to row at[i] / t at cache position past + at[i] % t
  /// (each row's tokens consecutive and in position order, ending at past + t - 1), `last`
  /// [batch] each row's last token (-1: the row is not in the pass; its logits and argmax are
  /// then zeros). The linear layers run `rows` rows instead of batch * t; the results are those
  /// of step() on the same tokens padded to [batch, t].
  void step_packed(const int64_t* ids, const int64_t* positions, const int32_t* at,
                   const int32_t* last, int64_t rows, const uint8_t* key_valid, int64_t t,
                   int64_t past, std::vector<float>* logits, int64_t* argmax);
  /// `steps` greedy decode steps in one go (1 <= steps <= max_greedy_steps()): the first with
  /// ids and positions [batch] at cache position `past`, each later one with every row's pick of
  /// the step before, its position one further and position past + i valid in every row (as the
  /// Generator continues a row, or feeds a finished one whatever it likes: rows do not mix).
  /// `picks` gets [steps][batch]; the logits left are the last step's.
  void greedy_steps(const int64_t* ids, const int64_t* positions, const uint8_t* key_valid,
                    int64_t past, int64_t steps, int64_t* picks);
  /// How many steps greedy_steps may take now: kMaxDecodeSteps once 256 steps have run one at a
  /// time on this cache (its graph's capture, ~2 ms, then pays for itself), 1 before; or what
  /// GPTRT_CUDA_DECODE_STEPS says (1 to kMaxDecodeSteps, from the first step).
  int64_t max_greedy_steps() const;
  /// The last step's logits [batch, vocab] (copied from the GPU now).
  void last_logits(std::vector<float>& logits);
  /// Moves cached keys and values within each row: column c of row r gets column
  /// from[r * positions + c] of that row, for c < used, up to the first -1 of the row (every
  /// row's sources increase: c <= from[c], so it moves in place). Every layer's cache.
  void gather_columns(const int32_t* from, int64_t used);

 private:
  std::unique_ptr<Runner::Impl> impl_;
};

}  // namespace gptrt::cuda
