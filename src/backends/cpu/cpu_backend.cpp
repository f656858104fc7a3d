// The cpu backend behind the seam: target (ISA) choice, lowering, engine checks, per-node kernels
// for the runtime's executor, and the slot decoder.
#include <cstdlib>
#include <string>

#include "backends/backend.h"
#include "backends/cpu/backend.h"
#include "backends/cpu/decoder.h"
#include "backends/reference/kernels.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::backends {
namespace {

int pool_threads(int threads) {
  return threads > 0 ? threads : platform::cpu_info().logical_cores;
}

// The LM head's weights in an INT8 engine (read when one is built): INT8 like the rest, or with
// GPTRT_CPU_INT8_HEAD=bf16 BF16 (the head is 48% of DistilGPT2's weight bytes: the comparison
// in docs/BENCHMARKS.md). Other values are refused.
DType int8_head() {
  const char* v = std::getenv("GPTRT_CPU_INT8_HEAD");
  if (!v || !*v || std::string(v) == "int8") return DType::kInt8;
  if (std::string(v) == "bf16") return DType::kBFloat16;
  throw Error(ErrorCode::kInvalidArgument,
              std::string("GPTRT_CPU_INT8_HEAD is '") + v +
                  "'; it takes int8 (the default: the LM head's weights INT8 like the other "
                  "layers') or bf16 (the LM head's weights BF16)");
}

// The ISA of an engine, refused when this CPU lacks it (an engine built with --cpuIsa for another
// machine can be saved, not run: its kernels would fault).
cpu::Isa runnable_isa(const EngineInfo& info, const std::string& what) {
  cpu::Isa isa = cpu::isa_from_name(info.target);
  if (!cpu::isa_supported(isa)) {
    const char* best = cpu::isa_name(cpu::best_isa());
    throw Error(ErrorCode::kEngineMismatch,
                what + " was built for " + info.target + " CPUs; this CPU (" +
                    platform::cpu_info().model + ") supports " + best +
                    "; run it on a machine that has " + info.target +
                    ", or rebuild the engine on this one (or with --cpuIsa=" + best + ")");
  }
  return isa;
}

class CpuKernels final : public NodeKernels {
 public:
  CpuKernels(cpu::Isa isa, int threads, int64_t opset)
      : isa_(isa), pool_(pool_threads(threads)), opset_(opset) {}
  int threads() const override { return pool_.size(); }
  bool writes_planned(const ir::Node& n) const override { return cpu::runs_natively(n); }
  std::vector<Tensor> run(const ir::Node& n, const std::vector<const Tensor*>& in,
                          const OutputBuffers& out) override {
    return cpu::runs_natively(n) ? cpu::run_node(n, in, isa_, pool_, out)
                                 : reference::run_node(n, in, opset_);
  }

 private:
  cpu::Isa isa_;
  cpu::ThreadPool pool_;
  int64_t opset_;
};

class CpuBackend final : public Backend {
 public:
  gptrt::Backend id() const override { return gptrt::Backend::kCpu; }
  const char* name() const override { return "cpu"; }
  std::string missing() const override { return {}; }
  bool on_device() const override { return false; }

  void choose_target(const BuildRequest& r, EngineInfo& info,
                     const std::function<void(const std::string&)>& notice) const override {
    // BF16 weights take AVX512-BF16 (or AMX) where the CPU has it; FP32 engines do not need it.
    // INT8 weights are widened to FP32 in registers (FP32's ISA), except on a CPU with AMX, whose
    // tiles take GEMMs of more than kInt8RowsInRegisters rows (weights converted to BF16 exactly,
    // rows rounded to BF16: gemm_amx).
    bool bf16 = r.precision == Precision::kBf16, int8 = r.precision == Precision::kInt8;
    cpu::Isa isa = r.cpu_isa.empty() ? cpu::best_isa_for(bf16 ? DType::kBFloat16 : DType::kFloat32)
                                     : cpu::isa_from_name(r.cpu_isa);
    if (int8 && r.cpu_isa.empty() && cpu::isa_supported(cpu::Isa::kAmxBf16))
      isa = cpu::Isa::kAmxBf16;
    info.target = cpu::isa_name(isa);
    info.precision = bf16 ? Precision::kBf16 : int8 ? Precision::kInt8 : Precision::kFp32;
    if (!bf16 && !int8 && r.precision != Precision::kFp32)
      notice(std::string("--") + precision_name(r.precision) +
             " accepted, but the cpu backend computes in FP32, BF16 or INT8 weights only; this "
             "engine is FP32");
  }

  bool wants_fused_plan() const override { return true; }

  void lower(ir::Graph& g, const EngineInfo& info, const BuildRequest& request, const std::string&,
             const std::function<void(const std::string&)>& notice) const override {
    const DType head = info.precision == Precision::kInt8 ? int8_head() : DType::kUndefined;
    int lowered = cpu::lower_linear(g,
                                    info.precision == Precision::kBf16   ? DType::kBFloat16
                                    : info.precision == Precision::kInt8 ? DType::kInt8
                                                                         : DType::kFloat32,
                                    cpu::isa_from_name(info.target), head, request.int8_group);
    if (head == DType::kBFloat16)
      notice("GPTRT_CPU_INT8_HEAD=bf16: the LM head's weights are BF16, the other layers' INT8");
    int norms = cpu::lower_layer_norm(g);
    int moved = cpu::lower_elementwise(g);
    notice("cpu backend (" + info.target + "): " + std::to_string(lowered) +
           " linear layers lowered to packed GEMM kernels, " + std::to_string(norms) +
           " LayerNorms and " + std::to_string(moved) + " elementwise ops to threaded kernels");
  }

  bool supports(const ir::Node& n, Precision) const override {
    return reference::has_kernel(n.op_type, n.domain) ||
           (n.domain == ir::kFusedDomain && cpu::has_kernel(n.op_type));
  }

  void check_engine(const EngineInfo& info, const ir::Graph& plan,
                    const std::string& path) const override {
    cpu::Isa isa = runnable_isa(info, "engine '" + path + "'");
    for (const ir::Node& n : plan.nodes) {
      if (!supports(n, info.precision))
        throw Error(ErrorCode::kEngineMismatch, "engine '" + path + "' uses " + n.describe() +
                                                    ", which this gptrt cannot run; rebuild it");
      try {
        cpu::check_lowered_node(plan, n, isa);
      } catch (const Error& e) {
        throw Error(ErrorCode::kParseError, "engine '" + path + "' holds an invalid plan: " +
                                                e.what() + "; rebuild the engine from the model");
      }
    }
  }

  std::unique_ptr<PlanRunner> make_runner(const PlanRef&, int) const override { return nullptr; }

  std::unique_ptr<NodeKernels> make_kernels(const PlanRef& plan, int threads) const override {
    return std::make_unique<CpuKernels>(runnable_isa(*plan.info, "this engine"), threads,
                                        plan.graph->opset);
  }

  std::unique_ptr<SlotDecoder> make_decoder(const PlanRef& plan, const DecoderShape& shape,
                                            int threads) const override {
    return cpu::make_decoder(plan, shape, runnable_isa(*plan.info, "this engine"),
                             pool_threads(threads));
  }
};

}  // namespace

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace gptrt::backends
