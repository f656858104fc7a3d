// The backend seam: what every backend (reference, cpu, cuda) implements, and the registry that
// finds them. Build time asks a backend for its target and lowers the plan through it; load time
// asks it to check an engine; run time asks it for a forward runner (or the per-node kernels that
// the runtime's executor walks) and for a KV-cache decoder over slots. Nothing outside
// src/backends/ branches on which backend it is: it asks the backend.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gptrt/decoder.h"
#include "gptrt/engine.h"
#include "gptrt/error.h"
#include "gptrt/tensor.h"
#include "ir/graph.h"

namespace gptrt::backends {

/// Memory planned for a node's outputs: output k may be written to data[k] (capacity[k] bytes),
/// or anywhere when data[k] is null.
struct OutputBuffers {
  std::vector<void*> data;
  std::vector<int64_t> capacity;
  /// Output k: a view of its planned memory when the shape fits, else newly allocated.
  Tensor make(size_t k, DType dtype, Shape shape) const;
};

/// Per-op GPU or wall time (ms) and calls, keyed by op or kernel kind.
using Profile = std::map<std::string, std::pair<double, int64_t>>;

/// What one engine gives a backend at run time: its plan, what it was built for, and an owner
/// that keeps the plan's weights alive (the engine).
struct PlanRef {
  std::shared_ptr<const void> owner;
  const ir::Graph* graph = nullptr;
  const EngineInfo* info = nullptr;
  /// The largest value of every symbolic input dimension over the engine's profiles.
  std::map<std::string, int64_t> dim_max;
};

/// Runs the nodes of a plan one at a time for the runtime's executor (backends whose plan is a
/// graph of kernels: reference, cpu). One per execution context.
class NodeKernels {
 public:
  virtual ~NodeKernels() = default;
  /// Threads the kernels run on.
  virtual int threads() const = 0;
  /// True when `node`'s kernel writes its outputs where OutputBuffers say (the arena plans them).
  virtual bool writes_planned(const ir::Node& node) const = 0;
  /// Runs `node` on `inputs` (nullptr for omitted ones); outputs into `out` where they fit.
  virtual std::vector<Tensor> run(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                                  const OutputBuffers& out) = 0;
};

/// Runs a whole plan per forward pass (backends that own their memory and launches: cuda).
/// The first input value found outside its range by a run on the device (input empty: none).
struct BadValue {
  std::string input;
  int64_t index = 0, value = 0;  // flat index into the input, and the value there
};

class PlanRunner {
 public:
  virtual ~PlanRunner() = default;
  /// Inputs in device memory (names, dtypes and shapes already checked) -> the caller's device
  /// buffers, after the work queued on `stream`; each input named in `limits` has its values
  /// checked against [0, limit) as it is staged (the first one outside is returned, the outputs
  /// then undefined). Backends that run on the host throw kUnsupported.
  virtual BadValue run_device(const std::map<std::string, DeviceTensor>& inputs,
                              const std::vector<DeviceTensor>& outputs,
                              const std::map<std::string, int64_t>& limits, void* stream) {
    (void)inputs, (void)outputs, (void)limits, (void)stream;
    throw Error(ErrorCode::kUnsupported, "this backend runs on the host: pass host tensors");
  }
  /// Inputs by name (already checked against the profiles) -> outputs on the host. With
  /// `profile`, time per kernel kind is added to it.
  virtual std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs,
                                  Profile* profile) = 0;
  /// Host-to-device, compute and device-to-host times of the last run.
  virtual ExecutionContext::Timings last_timings() const = 0;
  /// Replay captured graphs (CUDA graphs) where the backend has them.
  virtual void set_graphs(bool on) = 0;
  /// Bytes of activation memory.
  virtual int64_t activation_bytes() const = 0;
};

using gptrt::SlotTokens;

/// Sizes a decoder is planned for, once: its KV cache never grows after.
struct DecoderShape {
  int64_t slots = 1;       // sequences held at once
  int64_t capacity = 0;    // positions per slot (prompt + generated), <= n_positions
  int64_t max_prompt = 0;  // the longest pass over one slot (prefill chunk), <= capacity
};

/// A backend's KV-cache decoder: a cache of slots, each one sequence with its own length. The
/// caller (gptrt::Decoder) checks slots, lengths and ids before calling.
class SlotDecoder {
 public:
  virtual ~SlotDecoder() = default;
  /// Runs `seqs` (distinct slots, each with >= 1 token, lengths already checked) in one pass:
  /// appends their keys and values to their slots and gives, for each sequence's last token,
  /// the logits (`logits` [seqs, vocab], if not null) and/or the argmax (`argmax` [seqs], the
  /// first on ties; picked where the logits are, so greedy decoding copies no logits).
  virtual void run(const std::vector<SlotTokens>& seqs, float* logits, int64_t* argmax) = 0;
  /// Empties `slot` (its length goes back to 0); the other slots are untouched.
  virtual void reset(int slot) = 0;
  /// Positions left in a cache every slot's passes share (the CUDA decoder: a pass of t tokens
  /// takes t of them for all slots; all free again once every slot is empty), or -1 where each
  /// slot has positions of its own.
  virtual int64_t shared_positions_left() const { return -1; }
  /// Greedy decode steps one call of greedy_steps may run now (1: only run()).
  virtual int64_t max_greedy_steps(const std::vector<SlotTokens>& seqs) const {
    (void)seqs;
    return 1;
  }
  /// `steps` greedy decode steps: the first feeds `seqs` (one token each), each later one each
  /// sequence's pick of the step before. `picks` gets [steps][seqs].
  virtual void greedy_steps(const std::vector<SlotTokens>& seqs, int64_t steps, int64_t* picks);
  /// The logits [seqs, vocab] of the last pass's sequences (after a run() that asked for the
  /// argmax only, or after greedy_steps: the last step's).
  virtual void last_logits(std::vector<float>& logits) = 0;
};

/// What a build asks of a backend.
struct BuildRequest {
  Precision precision = Precision::kFp32;
  std::string cpu_isa;     // the cpu backend's ISA (empty: the best this CPU has)
  int64_t int8_group = 0;  // INT8: K values a scale (0: one scale per output column)
};

/// One backend. Implementations live in their folders and register in registry.cpp.
class Backend {
 public:
  virtual ~Backend() = default;
  /// Its id, recorded in engine files.
  virtual gptrt::Backend id() const = 0;
  /// "reference", "cpu", "cuda".
  virtual const char* name() const = 0;
  /// Empty when this build of gptrt has the backend; otherwise why not and what to do.
  virtual std::string missing() const = 0;
  /// True when it computes on an accelerator (see gptrt::backend_on_device).
  virtual bool on_device() const = 0;

  // Build time.
  /// The target (ISA or SM) and precision an engine gets for `request` on this machine;
  /// `notice` hears what is accepted but computed otherwise. Throws when it cannot build.
  virtual void choose_target(const BuildRequest& request, EngineInfo& info,
                             const std::function<void(const std::string&)>& notice) const = 0;
  /// True when the builder runs the fusion passes (the GPT-2 decoder) before lower().
  virtual bool wants_fused_plan() const = 0;
  /// Rewrites the (fused, if asked) plan into this backend's kernels and packed weights.
  /// `decoder_blocker` is empty when the GPT-2 decoder was recognised, else what blocked it.
  virtual void lower(ir::Graph& plan, const EngineInfo& info, const BuildRequest& request,
                     const std::string& decoder_blocker,
                     const std::function<void(const std::string&)>& notice) const = 0;
  /// True when this backend runs `node` in an engine of `precision`.
  virtual bool supports(const ir::Node& node, Precision precision) const = 0;

  // Load time.
  /// Throws kEngineMismatch (naming `path` and what to rebuild) when this machine cannot run an
  /// engine of `info` with `plan`: ISA, SM, kernels.
  virtual void check_engine(const EngineInfo& info, const ir::Graph& plan,
                            const std::string& path) const = 0;

  // Run time.
  /// The whole-plan runner, or nullptr when the runtime's executor walks make_kernels' nodes.
  virtual std::unique_ptr<PlanRunner> make_runner(const PlanRef& plan, int threads) const = 0;
  /// Per-node kernels for the executor (backends whose make_runner gives nullptr).
  virtual std::unique_ptr<NodeKernels> make_kernels(const PlanRef& plan, int threads) const = 0;
  /// A KV-cache decoder over slots for a plan whose GPT-2 decoder was recognised; throws
  /// kUnsupported saying why not otherwise.
  virtual std::unique_ptr<SlotDecoder> make_decoder(const PlanRef& plan, const DecoderShape& shape,
                                                    int threads) const = 0;
};

/// The backend registered under `id`; throws for an unknown id (a damaged engine).
const Backend& get(gptrt::Backend id);
/// Every registered backend, in id order.
std::vector<const Backend*> all();
/// The backend id named `name` ("reference", "cpu", "cuda"); throws kInvalidArgument listing
/// the names.
gptrt::Backend parse_backend(std::string_view name);
/// The precision named `name` ("fp32", "tf32", "fp16", "bf16"); throws listing the names.
Precision parse_precision(std::string_view name);

/// The decoder plan every decoder-capable backend walks: which nodes are the embedding, the
/// attention layers and the LM head, and the model's sizes. Throws kUnsupported (saying why)
/// for a plan that is not embedding, decoder layers and an LM head of `head_op`, or that has a
/// node `runs` rejects.
struct DecoderPlan {
  int embed = -1, head = -1;
  int64_t vocab = 0, n_positions = 0, hidden = 0, layers = 0;
};
DecoderPlan find_decoder_plan(const ir::Graph& plan, const std::string& head_op,
                              const std::function<bool(const ir::Node&)>& runs);

}  // namespace gptrt::backends
