// Build time and run time, split as TensorRT splits them: a Network (imported model) and a
// BuildConfig make an Engine (immutable, saved as one file); an Engine makes ExecutionContexts
// that hold per-run state.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gptrt/tensor.h"

namespace gptrt {

/// min/opt/max of one input's shape inside an optimization profile.
struct ShapeRange {
  Shape min, opt, max;
};

/// Admitted shapes of every dynamic input; an engine holds one or more.
struct OptimizationProfile {
  std::vector<std::pair<std::string, ShapeRange>> inputs;  // in the network's input order
  /// The range of `name`, or nullptr.
  const ShapeRange* find(const std::string& name) const;
};

/// Numeric precision an engine computes in.
/// kInt8: INT8 weights (symmetric, a scale per output channel), FP32 activations (cpu backend).
enum class Precision : int32_t { kFp32 = 0, kFp16 = 1, kBf16 = 2, kTf32 = 3, kInt8 = 4 };
/// "fp32", "tf32", "fp16", "bf16" or "int8".
const char* precision_name(Precision precision);
/// The precision precision_name() gives `name`; throws gptrt::Error listing the names.
Precision precision_from_name(const std::string& name);

/// Where an engine runs. Recorded in the engine; an engine runs only on its own target.
enum class Backend : int32_t { kReference = 0, kCpu = 1, kCuda = 2 };
/// "reference", "cpu" or "cuda".
const char* backend_name(Backend backend);
/// The backend backend_name() gives `name`; throws gptrt::Error listing the names.
Backend backend_from_name(const std::string& name);
/// True when this build of gptrt can run engines of `backend`.
bool backend_available(Backend backend);
/// True when `backend` computes on an accelerator (inputs and outputs cross to it: its runs
/// report host-to-device, compute and device-to-host times and may replay CUDA graphs).
bool backend_on_device(Backend backend);

/// One network input or output as users see it.
struct TensorDesc {
  std::string name;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> dims;           // -1 where the dimension is dynamic
  std::vector<std::string> dim_names;  // symbolic name of each dynamic dimension, else ""
};

/// What `gptrt inspect` prints about a model or an engine.
struct ModelInfo {
  std::string source;  // file the model came from
  std::string producer, producer_version;
  int64_t ir_version = 0;
  int64_t opset = 0;
  std::vector<TensorDesc> inputs, outputs;
  std::map<std::string, int64_t> op_counts;
  int64_t node_count = 0;
  int64_t parameter_count = 0;       // elements of all floating-point initializers
  int64_t parameter_bytes = 0;       // bytes of all initializers
  std::vector<std::string> notices;  // e.g. "output is last_hidden_state, not logits"
};

/// An imported model: the graph gptrt compiles. Cheap to copy (shared, immutable).
/// A model's graph after the fusion passes (what `gptrt inspect --fused` prints).
struct FusedGraph {
  bool decoder_recognised = false;
  std::string decoder;  // one line: the GPT-2 decoder found, or what blocked recognising it
  std::vector<std::string> nodes;  // one line per node: "out [shape] = domain.Op(inputs) attrs"
  std::map<std::string, int64_t> op_counts;
};

class Network {
 public:
  /// Reads an ONNX file (external data is looked up next to it). Throws gptrt::Error.
  static Network from_onnx(const std::string& path);
  /// Reads a Hugging Face GPT-2 folder (config.json + model.safetensors). Throws gptrt::Error.
  static Network from_hf(const std::string& dir);
  /// Inputs, outputs, op counts and parameter sizes.
  ModelInfo info() const;
  /// Runs constant folding and the fusion passes on a copy of the graph and describes it.
  FusedGraph fused() const;
  /// Writes the network as an ONNX file (e.g. a Hugging Face folder's GPT-2 as ONNX ops, for
  /// ONNX Runtime without a PyTorch exporter). Throws gptrt::Error.
  void save_onnx(const std::string& path) const;

  struct Impl;
  std::shared_ptr<const Impl> impl;
};

/// Everything the builder needs besides the network.
struct BuildConfig {
  std::vector<OptimizationProfile> profiles;  // empty: one default profile
  Precision precision = Precision::kFp32;
  Backend backend = Backend::kReference;
  std::string cpu_isa;  // cpu backend: "generic", "avx2", "avx512" or "avx512_bf16"; empty = best
  // kInt8: the K values that share a scale, a multiple of 16 dividing every layer's K (0: one
  // scale per output column).
  int64_t int8_group = 0;
  int64_t default_max_batch = 64;   // default profile: batch 1..this
  int64_t default_max_seq_len = 0;  // default profile: seq 1..this; 0 = the model's n_positions
  // With-past and merged exports: keep the past inputs and present outputs (run them as the
  // graph says); false builds the plain decoder (ids, mask -> logits; generation keeps its own
  // KV cache), which needs the decoder recognised and a backend that fuses (cpu, cuda).
  bool keep_past = true;
  std::function<void(const std::string&)> notice;  // receives one-line notices, may be empty
};

/// What an engine file says about itself.
struct EngineInfo {
  uint32_t format_version = 0;
  std::string gptrt_version;
  Backend backend = Backend::kReference;
  std::string target;  // ISA or SM the engine was built for
  Precision precision = Precision::kFp32;
  std::vector<OptimizationProfile> profiles;
  std::map<std::string, int64_t> index_limits;  // input -> exclusive upper bound of its values
  ModelInfo model;
};

class ExecutionContext;

/// A compiled, immutable model for one target. Thread-safe; share it between contexts.
class Engine : public std::enable_shared_from_this<Engine> {
 public:
  /// Compiles `network` for `config`. Throws gptrt::Error.
  static std::shared_ptr<const Engine> build(const Network& network, const BuildConfig& config);
  /// Maps an engine file; weights stay in the mapping. Throws gptrt::Error if the file is
  /// damaged, truncated, of another format version, or for a target this build cannot run.
  static std::shared_ptr<const Engine> load(const std::string& path);
  /// Writes the engine file; on failure no file is left at `path`.
  void save(const std::string& path) const;
  /// The engine as one byte string (what save writes).
  std::vector<uint8_t> serialize() const;

  const EngineInfo& info() const;
  /// The index of the first profile that admits every input shape (by input name), before any
  /// tensor exists; throws gptrt::Error (kShapeError) naming the first dimension outside every
  /// profile and the flag to rebuild with.
  int profile_for(const std::map<std::string, Shape>& shapes) const;
  /// A new context holding its own per-run state; `threads` = 0 uses every core.
  std::unique_ptr<ExecutionContext> create_execution_context(int threads = 0) const;

  struct Impl;
  explicit Engine(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

/// Named input tensors of one run.
using TensorMap = std::map<std::string, Tensor>;

/// A dense, row-major tensor in GPU memory that the caller owns
/// (ExecutionContext::execute_on_device).
struct DeviceTensor {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Shape shape;
};

/// Per-run state of one engine. Not thread-safe; make one per thread or stream.

class ExecutionContext {
 public:
  ExecutionContext(std::shared_ptr<const Engine> engine, int threads);
  /// Threads this context runs kernels on.
  int threads() const;
  ~ExecutionContext();
  /// Checks names, dtypes, shapes against the profiles and value ranges, before any work;
  /// returns the index of the first profile that admits the inputs. Throws gptrt::Error.
  int check_inputs(const TensorMap& inputs) const;
  /// Runs one forward pass; outputs come in the order of info().model.outputs.
  std::vector<Tensor> execute(const TensorMap& inputs);
  /// CUDA backend: one forward pass on inputs already in GPU memory, its outputs written to the
  /// caller's device buffers (`outputs`, in the order of info().model.outputs, each of the shape
  /// output_shapes() gives), with nothing copied through the host. The pass starts after the work
  /// queued so far on `stream` (a cudaStream_t; null: the legacy default stream) and has finished
  /// when this returns. Names, dtypes and shapes are checked first; the values (ids, positions,
  /// mask) on the GPU as they are staged, and one outside its range throws, as execute() does.
  /// Other backends throw kUnsupported: they take host tensors.
  void execute_on_device(const std::map<std::string, DeviceTensor>& inputs,
                         const std::vector<DeviceTensor>& outputs, void* stream = nullptr);
  /// The shapes of the outputs for these input shapes (checked as execute() checks them).
  std::vector<Shape> output_shapes(const std::map<std::string, Shape>& inputs) const;
  /// Starts (or stops) timing every op of later execute() calls.
  void set_profiling(bool on);
  /// Per op type: total milliseconds and calls since profiling started.
  /// Host-to-device, GPU compute and device-to-host times (ms) of the last execute (CUDA
  /// backend; zeros on CPU backends).
  struct Timings {
    double h2d_ms = 0, compute_ms = 0, d2h_ms = 0;
  };
  Timings last_timings() const;
  /// CUDA backend: replay one captured CUDA graph per input shape (default on).
  void set_cuda_graphs(bool on);
  /// Bytes of this context's activation arena (planned for the profiles' largest shapes; 0 when
  /// the backend allocates per value).
  int64_t activation_arena_bytes() const;
  std::map<std::string, std::pair<double, int64_t>> profile() const;

 private:
  struct State;
  std::shared_ptr<const Engine> engine_;
  std::unique_ptr<State> state_;
};

/// Version string of this build, e.g. "0.1.0".
const char* version();
/// Git commit this build came from, or "unknown".
const char* build_commit();

}  // namespace gptrt
