// The reference backend behind the seam: the imported graph, op by op, on the reference kernels
// (the ground truth for an export). No fusion, no lowering, FP32 only, no decoder.
#include "backends/backend.h"
#include "backends/reference/kernels.h"
#include "gptrt/error.h"

namespace gptrt::backends {
namespace {

class ReferenceKernels final : public NodeKernels {
 public:
  explicit ReferenceKernels(int64_t opset) : opset_(opset) {}
  int threads() const override { return 1; }
  bool writes_planned(const ir::Node&) const override { return false; }
  std::vector<Tensor> run(const ir::Node& n, const std::vector<const Tensor*>& in,
                          const OutputBuffers&) override {
    return reference::run_node(n, in, opset_);
  }

 private:
  int64_t opset_;
};

class ReferenceBackend final : public Backend {
 public:
  gptrt::Backend id() const override { return gptrt::Backend::kReference; }
  const char* name() const override { return "reference"; }
  std::string missing() const override { return {}; }
  bool on_device() const override { return false; }

  void choose_target(const BuildRequest& r, EngineInfo& info,
                     const std::function<void(const std::string&)>& notice) const override {
    info.target = "generic";
    info.precision = Precision::kFp32;
    if (r.precision != Precision::kFp32)
      notice(std::string("--") + precision_name(r.precision) +
             " accepted, but the reference backend computes in FP32 only (the cpu backend has "
             "--bf16, the cuda backend --fp16/--bf16/--tf32); this engine is FP32");
  }

  bool wants_fused_plan() const override { return false; }

  void lower(ir::Graph&, const EngineInfo&, const BuildRequest&, const std::string&,
             const std::function<void(const std::string&)>&) const override {}

  bool supports(const ir::Node& n, Precision) const override {
    return reference::has_kernel(n.op_type, n.domain);
  }

  void check_engine(const EngineInfo& info, const ir::Graph& plan,
                    const std::string& path) const override {
    for (const ir::Node& n : plan.nodes) {
      if (!supports(n, info.precision))
        throw Error(ErrorCode::kEngineMismatch, "engine '" + path + "' uses op " + n.op_type +
                                                    ", which this gptrt cannot run; rebuild it");
    }
  }

  std::unique_ptr<PlanRunner> make_runner(const PlanRef&, int) const override { return nullptr; }

  std::unique_ptr<NodeKernels> make_kernels(const PlanRef& plan, int) const override {
    return std::make_unique<ReferenceKernels>(plan.graph->opset);
  }

  std::unique_ptr<SlotDecoder> make_decoder(const PlanRef&, const DecoderShape&,
                                            int) const override {
    throw Error(ErrorCode::kUnsupported,
                "generation needs an engine whose GPT-2 decoder was recognised, on the cpu or "
                "cuda backend: this engine is for the reference backend (rebuild it with "
                "--backend cpu)");
  }
};

}  // namespace

const Backend& reference_backend() {
  static const ReferenceBackend backend;
  return backend;
}

}  // namespace gptrt::backends
