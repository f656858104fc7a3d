// One test body for every (op case x backend target x precision), as llama.cpp's test-backend-ops:
// each case is a one-node plan on fresh random inputs at odd sizes; the backend lowers it through
// the seam (choose_target, lower, make_kernels) and runs it with its outputs in planned memory
// surrounded by sentinel bytes; the result must match the op's reference kernel within the
// precision's tolerance, with no NaN or Inf and no stray write. The cuda backend's per-node kernels
// run a one-op plan on the GPU (cuda::run_op), its outputs in its own memory.
#include <cmath>
#include <cstring>
#include <list>
#include <random>

#include "backends/backend.h"
#include "backends/cpu/gemm.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/reference/kernels.h"
#include "ir/shape_inference.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

// The largest |got - want| allowed, relative to max(1, |want|): one table for every backend.
double tolerance(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return 1e-5;
    case Precision::kTf32:
      return 1e-2;
    case Precision::kFp16:
      return 1e-2;
    case Precision::kBf16:
      return 4e-2;
    case Precision::kInt8:  // (8-bit weights, FP32 activations)
      return 4e-2;
  }
  return 0;
}

// One op on its inputs: a graph of its input values, its constants and the node.
struct OpCase {
  std::string name;
  ir::Graph graph;
  std::map<std::string, Tensor> inputs;
};

class CaseBuilder {
 public:
  CaseBuilder(std::string name, uint32_t seed) : rng_(seed) { c_.name = std::move(name); }
  int input(const std::string& name, Tensor t) {
    ir::Value v;
    v.name = name;
    v.dtype = t.dtype();
    v.shape = ir::SymShape::from(t.shape());
    int id = c_.graph.add_value(std::move(v));
    c_.graph.inputs.push_back(id);
    c_.inputs[name] = std::move(t);
    return id;
  }
  int weight(const std::string& name, Tensor t) {
    return c_.graph.add_constant(name, std::move(t));
  }
  Tensor random(Shape shape, float scale, float offset = 0) {
    std::normal_distribution<float> nd(0.f, scale);
    Tensor t(DType::kFloat32, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<float>()[i] = nd(rng_) + offset;
    return t;
  }
  Tensor ints(Shape shape, int64_t below) {
    std::uniform_int_distribution<int64_t> ud(0, below - 1);
    Tensor t(DType::kInt64, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data_mut<int64_t>()[i] = ud(rng_);
    return t;
  }
  OpCase finish(const std::string& op, const std::string& domain, std::vector<int> inputs,
                std::map<std::string, ir::Attribute> attrs) {
    ir::Node n;
    n.name = c_.name;
    n.op_type = op;
    n.domain = domain;
    n.inputs = std::move(inputs);
    n.attrs = std::move(attrs);
    ir::Value out;
    out.name = "out";
    n.outputs = {c_.graph.add_value(std::move(out))};
    c_.graph.outputs = n.outputs;
    c_.graph.opset = 17;
    c_.graph.nodes.push_back(n);
    ir::infer_node(c_.graph, c_.graph.nodes.back());
    return std::move(c_);
  }

 private:
  std::mt19937 rng_;
  OpCase c_;
};

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cases;
  uint32_t seed = 1;
  for (int64_t e : {7, 64, 129})
    for (int64_t rows : {1, 5, 33}) {
      CaseBuilder b("LayerNorm e" + std::to_string(e) + " rows" + std::to_string(rows), seed++);
      int x = b.input("x", b.random({rows, e}, 3.f, 5.f));
      int g = b.weight("g", b.random({e}, 1.f)), bias = b.weight("b", b.random({e}, 1.f));
      cases.push_back(b.finish("LayerNormalization", "", {x, g, bias},
                               {{"axis", ir::int_attr(-1)}, {"epsilon", ir::float_attr(1e-5f)}}));
    }
  for (int64_t m : {1, 3, 17, 40})
    for (auto [k, n] : {std::pair<int64_t, int64_t>{5, 1}, {64, 33}, {129, 100}})
      for (const char* act : {"", "gelu_tanh", "gelu_erf"})
        for (bool residual : {false, true}) {
          CaseBuilder b("Linear m" + std::to_string(m) + " k" + std::to_string(k) + " n" +
                            std::to_string(n) + " " + act + (residual ? " +res" : ""),
                        seed++);
          int x = b.input("x", b.random({1, m, k}, 0.5f));
          int w = b.weight("w", b.random({k, n}, 0.2f)),
              bias = b.weight("bias", b.random({n}, 1.f));
          std::vector<int> in = {x, w, bias};
          if (residual) in.push_back(b.input("res", b.random({1, m, n}, 1.f)));
          std::map<std::string, ir::Attribute> attrs;
          if (*act) attrs["activation"] = ir::string_attr(act);
          cases.push_back(b.finish("Linear", ir::kFusedDomain, in, attrs));
        }
  for (auto [heads, d] : {std::pair<int64_t, int64_t>{4, 16}, {3, 32}, {2, 24}})
    for (int64_t s : {1, 7, 20})
      for (bool masked : {false, true}) {
        CaseBuilder b("Attention h" + std::to_string(heads) + "x" + std::to_string(d) + " s" +
                          std::to_string(s) + (masked ? " masked" : ""),
                      seed++);
        const int64_t e = heads * d, batch = 2;
        int qkv = b.input("qkv", b.random({batch, s, 3 * e}, 1.5f));
        std::vector<int> in = {qkv};
        if (masked) {
          Tensor mask(DType::kInt64, {batch, s});
          for (int64_t i = 0; i < batch * s; ++i)  // row 1 left-padded by up to 3
            mask.data_mut<int64_t>()[i] = i >= s && i - s < std::min<int64_t>(3, s - 1) ? 0 : 1;
          in.push_back(b.input("mask", mask));
        }
        cases.push_back(b.finish("Attention", ir::kFusedDomain, in,
                                 {{"num_heads", ir::int_attr(heads)},
                                  {"scale", ir::float_attr(1.f / std::sqrt(float(d)))}}));
      }
  for (int64_t e : {8, 68}) {
    CaseBuilder b("Embedding e" + std::to_string(e), seed++);
    int ids = b.input("ids", b.ints({3, 5}, 50));
    int pos = b.input("pos", b.ints({3, 5}, 16));
    int wte = b.weight("wte", b.random({50, e}, 1.f)),
        wpe = b.weight("wpe", b.random({16, e}, 1.f));
    cases.push_back(b.finish("Embedding", ir::kFusedDomain, {ids, pos, wte, wpe}, {}));
  }
  return cases;
}

// A backend target: backend, precision, and the CPU ISA ("" = the best this CPU has).
struct Target {
  Backend backend;
  Precision precision;
  std::string isa;
  std::string name() const {
    return std::string(backend_name(backend)) + "_" + precision_name(precision) +
           (isa.empty() ? "" : "_" + isa);
  }
};

std::vector<Target> targets() {
  std::vector<Target> t = {{Backend::kReference, Precision::kFp32, ""}};
  for (cpu::Isa isa : {cpu::Isa::kGeneric, cpu::Isa::kAvx2, cpu::Isa::kAvx512,
                       cpu::Isa::kAvx512Bf16, cpu::Isa::kAmxBf16}) {
    bool bf16_only = isa == cpu::Isa::kAvx512Bf16 || isa == cpu::Isa::kAmxBf16;
    if (!bf16_only) t.push_back({Backend::kCpu, Precision::kFp32, cpu::isa_name(isa)});
    if (!bf16_only) t.push_back({Backend::kCpu, Precision::kInt8, cpu::isa_name(isa)});
    if (isa != cpu::Isa::kGeneric && isa != cpu::Isa::kAvx2)
      t.push_back({Backend::kCpu, Precision::kBf16, cpu::isa_name(isa)});
  }
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kFp16, Precision::kBf16})
    t.push_back({Backend::kCuda, p, ""});
  return t;
}

constexpr int64_t kGuard = 256;
constexpr uint8_t kSentinel = 0xA5;

class BackendOps : public ::testing::TestWithParam<Target> {};

TEST_P(BackendOps, EveryOpCaseMatchesItsReferenceKernel) {
  const Target& target = GetParam();
  if (target.backend == Backend::kCpu && !cpu::isa_supported(cpu::isa_from_name(target.isa)))
    GTEST_SKIP() << "this CPU has no " << target.isa;
  std::string why;
  if (target.backend == Backend::kCuda && cuda::device_sm(&why).empty())
    GTEST_SKIP() << "CUDA backend test skipped: " << why;
  if (target.backend == Backend::kCuda && target.precision == Precision::kBf16 &&
      cuda::kernel_sm() < 80)  // (refused by name there: CudaBackend::choose_target)
    GTEST_SKIP() << "--bf16 needs sm_80 kernels; these run as sm_" << cuda::kernel_sm();
  const backends::Backend& backend = backends::get(target.backend);
  const double tol = tolerance(target.precision);
  int planned = 0, unsupported = 0, cases = 0;
  for (OpCase& c : op_cases()) {
    SCOPED_TRACE(c.name + " on " + target.name());
    ++cases;
    const ir::Node& op = c.graph.nodes.front();
    std::vector<const Tensor*> ref_in;
    for (int id : op.inputs) {
      const ir::Value& v = c.graph.values[static_cast<size_t>(id)];
      ref_in.push_back(v.is_constant() ? &v.constant : &c.inputs.at(v.name));
    }
    Tensor want = reference::run_node(op, ref_in, c.graph.opset)[0];

    EngineInfo info;
    info.backend = target.backend;
    const backends::BuildRequest request{target.precision, target.isa};
    backend.choose_target(request, info, [](const std::string&) {});
    ir::Graph plan = c.graph;
    backend.lower(plan, info, request, "", [](const std::string&) {});
    backends::PlanRef ref{nullptr, &plan, &info, {}};
    std::unique_ptr<backends::NodeKernels> kernels = backend.make_kernels(ref, 2);
    ASSERT_TRUE(kernels) << backend.name() << " gives no per-node kernels";
    // A case the backend refuses (supports() false) is skipped, as test-backend-ops does; the
    // builder refuses such a plan with "no kernel".
    bool supported = true;
    for (const ir::Node& n : plan.nodes)
      supported = supported && backend.supports(n, info.precision);
    if (!supported) {
      ++unsupported;
      continue;
    }
    std::vector<Tensor> values(plan.values.size());
    for (const auto& [name, t] : c.inputs) values[static_cast<size_t>(plan.find(name))] = t;
    Tensor got;
    std::list<std::vector<uint8_t>> arenas;  // planned outputs live here until compared
    for (const ir::Node& n : plan.nodes) {
      std::vector<const Tensor*> in;
      for (int id : n.inputs) {
        if (id < 0) {
          in.push_back(nullptr);
          continue;
        }
        const ir::Value& v = plan.values[static_cast<size_t>(id)];
        in.push_back(v.is_constant() ? &v.constant : &values[static_cast<size_t>(id)]);
      }
      // The output's planned bytes with sentinels on both sides.
      const int64_t bytes = want.nbytes();
      std::vector<uint8_t>& arena =
          arenas.emplace_back(static_cast<size_t>(bytes + 2 * kGuard), kSentinel);
      backends::OutputBuffers out;
      const bool plans = kernels->writes_planned(n);
      out.data = {plans ? arena.data() + kGuard : nullptr};
      out.capacity = {plans ? bytes : 0};
      std::vector<Tensor> outs = kernels->run(n, in, out);
      for (int64_t i = 0; i < kGuard; ++i) {
        ASSERT_EQ(arena[static_cast<size_t>(i)], kSentinel) << "write before the output at " << i;
        ASSERT_EQ(arena[static_cast<size_t>(bytes + kGuard + i)], kSentinel)
            << "write past the output at " << i;
      }
      if (plans) {
        EXPECT_EQ(outs[0].raw(), arena.data() + kGuard) << "the output is not where planned";
        ++planned;
      }
      values[static_cast<size_t>(n.outputs[0])] = outs[0];
      got = outs[0];
    }
    ASSERT_EQ(got.shape(), want.shape());
    ASSERT_EQ(got.dtype(), DType::kFloat32);
    double worst = 0;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const float g = got.data<float>()[i], w = want.data<float>()[i];
      ASSERT_TRUE(std::isfinite(g)) << "non-finite output at " << i;
      worst = std::max(worst, std::fabs(double(g) - w) / std::max(1.0, std::fabs(double(w))));
    }
    EXPECT_LE(worst, tol);
  }
  EXPECT_LE(unsupported * 4, cases) << "most cases run on every backend";
  if (target.backend == Backend::kCpu) {
    EXPECT_GT(planned, 0) << "the cpu backend's kernels write where the arena plans them";
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, BackendOps, ::testing::ValuesIn(targets()),
                         [](const auto& p) { return p.param.name(); });

}  // namespace
}  // namespace gptrt::test
