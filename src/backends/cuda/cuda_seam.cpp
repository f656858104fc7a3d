// The cuda backend behind the seam (host C++; the CUDA code is behind cuda_backend.h, or its stub
// in builds without the toolkit): SM choice by number, lowering, engine checks, the forward
// runner and the slot decoder.
#include <algorithm>
#include <cstring>

#include "backends/backend.h"
#include "backends/cuda/cuda_backend.h"
#include "gptrt/error.h"

namespace gptrt::backends {
namespace {

// 90 for "sm_90", 0 for anything else.
int sm_number(const std::string& target) {
  if (target.rfind("sm_", 0) != 0 || target.size() < 4) return 0;
  int n = 0;
  for (size_t i = 3; i < target.size(); ++i) {
    if (target[i] < '0' || target[i] > '9') return 0;
    n = n * 10 + (target[i] - '0');
  }
  return n;
}

// ", kernels compute_61" where this build's kernels run as an older SM than the GPU's (a PTX-only
// build through the driver's JIT), else "".
std::string kernels_note() {
  std::string sm = cuda::device_sm();
  const int ksm = cuda::kernel_sm();
  return !sm.empty() && sm_number(sm) != ksm ? ", kernels compute_" + std::to_string(ksm) : "";
}

std::string device_or_throw(const std::string& what) {
  std::string why, sm = cuda::device_sm(&why);
  if (sm.empty()) throw Error(ErrorCode::kEngineMismatch, what + " and " + why);
  return sm;
}

// The fused decoder's kernels are planned for at least one row and one token.
void refuse_empty(const std::string& name, const Shape& shape) {
  if (shape_numel(shape) == 0)
    throw Error(ErrorCode::kUnsupported,
                "input '" + name + "' " + shape_str(shape) +
                    " is empty; the cuda backend runs the decoder on at least one token of one "
                    "row (the reference backend runs empty inputs)");
}

// The plan as the GPU runs it (an INT8 one as FP16: cuda::runnable_plan).
cuda::RunnablePlan runnable(const PlanRef& p) {
  return cuda::runnable_plan(p.owner, *p.graph, p.info->precision);
}

class CudaRunner final : public PlanRunner {
 public:
  explicit CudaRunner(const PlanRef& p) : CudaRunner(runnable(p), p.dim_max) {}
  CudaRunner(const cuda::RunnablePlan& r, const std::map<std::string, int64_t>& dim_max)
      : runner_(r.owner, *r.graph, r.precision, dim_max) {}
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs, Profile* profile) override {
    for (const auto& [name, t] : inputs) refuse_empty(name, t.shape());
    cuda::Timings t;
    std::vector<Tensor> out = runner_.run(inputs, &t, profile);
    timings_ = {t.h2d_ms, t.compute_ms, t.d2h_ms};
    return out;
  }
  BadValue run_device(const std::map<std::string, DeviceTensor>& inputs,
                      const std::vector<DeviceTensor>& outputs,
                      const std::map<std::string, int64_t>& limits, void* stream) override {
    for (const auto& [name, t] : inputs) refuse_empty(name, t.shape);
    return runner_.run_device(inputs, outputs, limits, stream);
  }
  ExecutionContext::Timings last_timings() const override { return timings_; }
  void set_graphs(bool on) override { runner_.set_use_graphs(on); }
  int64_t activation_bytes() const override { return runner_.activation_bytes(); }

 private:
  cuda::Runner runner_;
  ExecutionContext::Timings timings_;
};

// Slots over the CUDA decoder's cache of rows: one row per slot, the rows' positions in cache
// columns shared by all rows. A pass of t tokens (the most any sequence brings) takes the next t
// columns in every row: a sequence's tokens fill the last of them, and every other column of the
// pass is padding (key_valid 0) in its row, as in a left-padded batch. Where a pass holds
// padding (a prompt joining decoding slots) its tokens go to the GPU packed (step_packed): the
// layers compute the tokens, not slots x t. A slot's positions count
// its own tokens, so each sequence computes what it computes alone. The columns a pass spends on
// padding (slots that join mid-run, slots that wait) are taken back by compaction: each row's
// tokens moved to its first columns, in order (attention does not depend on where a key sits,
// only on its position and flag), when a pass would not fit or when padding holds as many
// columns as the longest row's tokens (every step's attention reads all columns in use).
class CudaDecoder final : public SlotDecoder {
 public:
  CudaDecoder(const PlanRef& p, const DecoderShape& shape, int64_t vocab)
      : CudaDecoder(runnable(p), shape, vocab) {}
  CudaDecoder(const cuda::RunnablePlan& r, const DecoderShape& shape, int64_t vocab)
      : gpu_(r.owner, *r.graph, r.precision),
        vocab_(vocab),
        slots_(shape.slots),
        cols_(shape.capacity),
        valid_(static_cast<size_t>(shape.slots * shape.capacity), 0),
        length_(static_cast<size_t>(shape.slots), 0) {
    gpu_.reserve(shape.slots, shape.capacity, shape.max_prompt);
  }

  void run(const std::vector<SlotTokens>& seqs, float* logits, int64_t* argmax) override {
    int64_t t = 0, tokens = 0;
    for (const SlotTokens& s : seqs) {
      t = std::max(t, s.count);
      tokens += s.count;
    }
    take_columns(t);
    fill(seqs, t);
    picks_.resize(static_cast<size_t>(slots_));
    std::vector<float>* want_logits = logits ? &logits_ : nullptr;
    int64_t* want_picks = argmax ? picks_.data() : nullptr;
    if (t > 1 && tokens < slots_ * t) {  // padding or idle slots: the tokens packed
      pack(seqs, t);
      gpu_.step_packed(packed_ids_.data(), packed_pos_.data(), at_.data(), last_.data(), tokens,
                       valid_.data(), t, col_, want_logits, want_picks);
    } else {
      gpu_.step(ids_.data(), pos_.data(), valid_.data(), t, col_, want_logits, want_picks);
    }
    logits_fresh_ = logits != nullptr;
    advance(seqs, t);
    for (size_t i = 0; i < seqs.size(); ++i) {
      size_t r = static_cast<size_t>(seqs[i].slot);
      if (logits)
        std::memcpy(logits + i * vocab(), logits_.data() + r * vocab(),
                    static_cast<size_t>(vocab()) * 4);
      if (argmax) argmax[i] = picks_[r];
    }
  }

  void reset(int slot) override {
    length_[static_cast<size_t>(slot)] = 0;
    std::fill_n(valid_.begin() + slot * cols_, cols_, uint8_t{0});
    // With every slot empty the columns are free again: the next sequences start at column 0.
    if (std::all_of(length_.begin(), length_.end(), [](int64_t len) { return len == 0; })) col_ = 0;
  }

  // What a compaction would leave free.
  int64_t shared_positions_left() const override { return cols_ - longest(); }

  int64_t max_greedy_steps(const std::vector<SlotTokens>& seqs) const override {
    // Several steps per graph mark each step's column valid in every row: only when every slot
    // holding a sequence takes part, one token each.
    size_t active = 0;
    for (int64_t len : length_) active += len > 0;
    for (const SlotTokens& s : seqs)
      if (s.count != 1 || length_[static_cast<size_t>(s.slot)] == 0) return 1;
    if (seqs.size() != active) return 1;
    return std::max<int64_t>(1, std::min(gpu_.max_greedy_steps(), cols_ - longest()));
  }

  void greedy_steps(const std::vector<SlotTokens>& seqs, int64_t steps, int64_t* picks) override {
    take_columns(steps);
    fill(seqs, 1);
    all_picks_.resize(static_cast<size_t>(steps * slots_));
    gpu_.greedy_steps(ids_.data(), pos_.data(), valid_.data(), col_, steps, all_picks_.data());
    logits_fresh_ = false;
    advance(seqs, 1);
    for (int64_t k = 1; k < steps; ++k) {  // the later steps' columns, as the GPU marked them
      for (const SlotTokens& s : seqs) {
        valid_[static_cast<size_t>(s.slot * cols_ + col_)] = 1;
        ++length_[static_cast<size_t>(s.slot)];
      }
      ++col_;
    }
    for (int64_t k = 0; k < steps; ++k)
      for (size_t i = 0; i < seqs.size(); ++i)
        picks[k * static_cast<int64_t>(seqs.size()) + static_cast<int64_t>(i)] =
            all_picks_[static_cast<size_t>(k * slots_ + seqs[i].slot)];
    last_rows_.clear();
    for (const SlotTokens& s : seqs) last_rows_.push_back(s.slot);
  }

  void last_logits(std::vector<float>& logits) override {
    if (!logits_fresh_) gpu_.last_logits(logits_);
    logits_fresh_ = true;
    logits.resize(last_rows_.size() * static_cast<size_t>(vocab()));
    for (size_t i = 0; i < last_rows_.size(); ++i)
      std::memcpy(logits.data() + i * static_cast<size_t>(vocab()),
                  logits_.data() + static_cast<size_t>(last_rows_[i]) * vocab(),
                  static_cast<size_t>(vocab()) * 4);
  }

 private:
  int64_t vocab() const { return vocab_; }

  int64_t longest() const { return *std::max_element(length_.begin(), length_.end()); }

  // Moves each row's tokens to its first columns (in order), so that the next pass starts right
  // after the longest row.
  void compact() {
    from_.assign(valid_.size(), -1);
    for (int64_t r = 0; r < slots_; ++r) {
      int64_t to = 0;
      uint8_t* flags = valid_.data() + r * cols_;
      for (int64_t c = 0; c < col_; ++c)
        if (flags[c]) from_[static_cast<size_t>(r * cols_ + to++)] = static_cast<int32_t>(c);
      std::fill_n(flags, to, uint8_t{1});
      std::fill(flags + to, flags + cols_, uint8_t{0});
    }
    gpu_.gather_columns(from_.data(), col_);
    col_ = longest();
  }

  void take_columns(int64_t t) {
    const int64_t keep = longest(), padding = col_ - keep;
    if (padding > 0 && (col_ + t > cols_ || padding >= std::max<int64_t>(kMinCompaction, keep)))
      compact();
    if (col_ + t > cols_)
      throw Error(ErrorCode::kInvalidArgument,
                  "the CUDA decoder's cache has " + std::to_string(cols_) +
                      " positions shared by its slots, the longest slot holds " +
                      std::to_string(col_) + "; a pass of " + std::to_string(t) +
                      " more tokens does not fit (on the GPU a pass takes as many positions in "
                      "every slot as its longest sequence brings); make the decoder with a larger "
                      "max_positions");
  }

  // ids, positions [slots, t] for a pass whose sequences' tokens end at the pass's last column.
  void fill(const std::vector<SlotTokens>& seqs, int64_t t) {
    ids_.assign(static_cast<size_t>(slots_ * t), 0);
    pos_.assign(static_cast<size_t>(slots_ * t), 0);
    for (int64_t r = 0; r < slots_; ++r)
      for (int64_t j = 0; j < t; ++j) valid_[static_cast<size_t>(r * cols_ + col_ + j)] = 0;
    for (const SlotTokens& s : seqs) {
      size_t r = static_cast<size_t>(s.slot);
      if (length_[r] == 0) std::fill_n(valid_.begin() + s.slot * cols_, col_, uint8_t{0});
      for (int64_t j = 0; j < s.count; ++j) {
        size_t at = r * static_cast<size_t>(t) + static_cast<size_t>(t - s.count + j);
        ids_[at] = s.tokens[j];
        pos_[at] = length_[r] + j;
        valid_[r * static_cast<size_t>(cols_) + static_cast<size_t>(col_ + t - s.count + j)] = 1;
      }
    }
  }

  // The pass's tokens one after another (each sequence's in order) from fill()'s [slots, t]:
  // their ids and positions, places in [slots, t] and each slot's last token (-1: none).
  void pack(const std::vector<SlotTokens>& seqs, int64_t t) {
    packed_ids_.clear();
    packed_pos_.clear();
    at_.clear();
    last_.assign(static_cast<size_t>(slots_), -1);
    for (const SlotTokens& s : seqs) {
      for (int64_t j = t - s.count; j < t; ++j) {
        const size_t from = static_cast<size_t>(s.slot * t + j);
        packed_ids_.push_back(ids_[from]);
        packed_pos_.push_back(pos_[from]);
        at_.push_back(static_cast<int32_t>(from));
      }
      last_[static_cast<size_t>(s.slot)] = static_cast<int32_t>(at_.size() - 1);
    }
  }

  void advance(const std::vector<SlotTokens>& seqs, int64_t t) {
    for (const SlotTokens& s : seqs) length_[static_cast<size_t>(s.slot)] += s.count;
    col_ += t;
    last_rows_.clear();
    for (const SlotTokens& s : seqs) last_rows_.push_back(s.slot);
  }

  // Padding columns below which no compaction runs unless a pass needs them.
  static constexpr int64_t kMinCompaction = 32;

  cuda::Decoder gpu_;
  int64_t vocab_;
  int64_t slots_, cols_, col_ = 0;
  std::vector<uint8_t> valid_;   // [slots, cols]
  std::vector<int64_t> length_;  // tokens per slot
  std::vector<int64_t> ids_, pos_, picks_, all_picks_;
  std::vector<int64_t> packed_ids_, packed_pos_;  // pack()'s tokens
  std::vector<int32_t> at_, last_;
  std::vector<int32_t> from_;  // compact()'s column sources [slots, cols]
  std::vector<float> logits_;  // [slots, vocab] of the last pass, when fresh
  bool logits_fresh_ = false;
  std::vector<int> last_rows_;
};

// The per-node kernels of a one-op plan (tests/ops/backend_ops_test.cpp): each run uploads the
// op's inputs, launches its kernels as a forward pass would, and brings its output back. Engines
// run whole plans through CudaRunner.
class CudaOpKernels final : public NodeKernels {
 public:
  explicit CudaOpKernels(const PlanRef& p) : plan_(p) {
    if (p.graph->nodes.size() != 1)
      throw Error(ErrorCode::kUnsupported,
                  "the cuda backend runs node by node only in plans of one op (kernel tests); "
                  "engines run whole plans");
  }
  int threads() const override { return 1; }
  bool writes_planned(const ir::Node&) const override { return false; }
  std::vector<Tensor> run(const ir::Node& n, const std::vector<const Tensor*>& in,
                          const OutputBuffers&) override {
    std::map<std::string, Tensor> inputs;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k] < 0) continue;
      const ir::Value& v = plan_.graph->values[static_cast<size_t>(n.inputs[k])];
      if (!v.is_constant()) inputs[v.name] = *in[k];
    }
    const cuda::RunnablePlan r = runnable(plan_);
    return cuda::run_op(r.owner, *r.graph, r.precision, inputs);
  }

 private:
  PlanRef plan_;
};

class CudaBackend final : public Backend {
 public:
  gptrt::Backend id() const override { return gptrt::Backend::kCuda; }
  const char* name() const override { return "cuda"; }
  std::string missing() const override {
    return cuda::compiled_in() ? std::string()
                               : "the cuda backend is not part of this build of gptrt (built "
                                 "without the CUDA toolkit); use --backend cpu or --backend "
                                 "reference";
  }
  bool on_device() const override { return true; }

  void choose_target(const BuildRequest& r, EngineInfo& info,
                     const std::function<void(const std::string&)>&) const override {
    std::string why;
    info.target = cuda::device_sm(&why);
    if (info.target.empty())
      throw Error(ErrorCode::kUnsupported, "the CUDA backend builds for the GPU it finds: " + why);
    if (r.precision == Precision::kBf16 && cuda::kernel_sm() < 80)
      throw Error(ErrorCode::kUnsupported, "--bf16 needs an sm_80 or newer GPU; this one is " +
                                               cuda::device_name() + kernels_note() +
                                               " (use --fp16 or FP32)");
    // FP32, TF32, FP16 or BF16 GEMMs, FP32 everything else; INT8 weights run as FP16 ones
    // (dequantised once when the engine is first run: cuda::runnable_plan).
    info.precision = r.precision;
  }

  bool wants_fused_plan() const override { return true; }

  void lower(ir::Graph& g, const EngineInfo& info, const BuildRequest& request,
             const std::string& decoder_blocker,
             const std::function<void(const std::string&)>& notice) const override {
    if (!decoder_blocker.empty())
      throw Error(ErrorCode::kUnsupported,
                  "the CUDA backend runs the recognised GPT-2 decoder only, and this graph's was "
                  "not (" +
                      decoder_blocker + "); use --backend cpu");
    cuda::lower(g, info.precision, request.int8_group);
    const int ksm = cuda::kernel_sm();
    const bool plain = ksm < 70 || !cuda::cublas_compiled_in();
    std::string what =
        plain ? std::string("the fused decoder on plain FP32 GEMMs (") +
                    (ksm < 70 ? "no tensor cores before sm_70" : "a build without cuBLAS") +
                    ") and gptrt's kernels"
              : std::string(
                    "the fused decoder on gptrt's GEMM kernels, cuBLASLt and its other "
                    "kernels");
    if (info.precision == Precision::kInt8)
      what +=
          "; INT8 weights are stored in the engine and run as FP16 on the GPU (dequantised "
          "once when the engine is first run)";
    if (ksm < 70 && (info.precision == Precision::kFp16 || info.precision == Precision::kInt8))
      what += "; on sm_" + std::to_string(ksm) +
              " FP16 is storage only: weights and the activations between layers in half the "
              "memory, every sum in FP32 (this GPU's FP16 arithmetic runs at a small fraction of "
              "its FP32 rate), so expect FP32's speed, not more";
    if (ksm < 80 && info.precision == Precision::kTf32)
      what += "; TF32 needs sm_80's tensor cores: on sm_" + std::to_string(ksm) +
              " its GEMMs run in full FP32";
    notice("cuda backend (" + info.target + kernels_note() + ", " + precision_name(info.precision) +
           "): " + what);
  }

  bool supports(const ir::Node& n, Precision) const override {
    // The GEMM epilogues add a residual before the tanh GELU (cuBLASLt's GELU_BIAS with C, and
    // the skinny kernels alike): a linear layer with both, which no GPT-2 layer has, has no
    // kernel here.
    if (n.op_type == "Linear" && n.attr_string("activation", "") == "gelu_tanh" &&
        n.inputs.size() > 3 && n.inputs[3] >= 0)
      return false;
    return cuda::has_kernel(n);
  }

  void check_engine(const EngineInfo& info, const ir::Graph& plan,
                    const std::string& path) const override {
    if (!cuda::compiled_in())
      throw Error(
          ErrorCode::kEngineMismatch,
          "engine '" + path + "' is for the cuda backend, which this gptrt was built without");
    if (sm_number(info.target) == 0)
      throw Error(ErrorCode::kEngineMismatch,
                  "engine '" + path + "' is for the cuda backend but its target '" + info.target +
                      "' is no GPU architecture; rebuild it");
    for (const ir::Node& n : plan.nodes) {
      if (!supports(n, info.precision))
        throw Error(ErrorCode::kEngineMismatch,
                    "engine '" + path + "' is for the cuda backend but uses " + n.describe() +
                        ", which it cannot run; rebuild it");
    }
    cuda::check_int8_weights(plan, info.precision, path);
    std::string why, sm = cuda::device_sm(&why);
    if (!sm.empty() && sm_number(sm) != sm_number(info.target))
      throw Error(ErrorCode::kEngineMismatch, "engine '" + path + "' was built for " + info.target +
                                                  " GPUs; this GPU is " + cuda::device_name() +
                                                  "; rebuild the engine on this machine");
  }

  std::unique_ptr<PlanRunner> make_runner(const PlanRef& p, int) const override {
    device_or_throw("this engine is for the CUDA backend (" + p.info->target + ")");
    return std::make_unique<CudaRunner>(p);
  }

  std::unique_ptr<NodeKernels> make_kernels(const PlanRef& p, int) const override {
    device_or_throw("the cuda backend's kernels need a GPU");
    return std::make_unique<CudaOpKernels>(p);
  }

  std::unique_ptr<SlotDecoder> make_decoder(const PlanRef& p, const DecoderShape& shape,
                                            int) const override {
    DecoderPlan plan = find_decoder_plan(*p.graph, "Linear",
                                         [](const ir::Node& n) { return cuda::has_kernel(n); });
    device_or_throw("this engine is for the CUDA backend");
    return std::make_unique<CudaDecoder>(p, shape, plan.vocab);
  }
};

}  // namespace

const Backend& cuda_backend() {
  static const CudaBackend backend;
  return backend;
}

}  // namespace gptrt::backends
