// The CUDA backend, on a machine with an NVIDIA GPU (skipped elsewhere, saying why; the fixture
// goldens in FP32 are goldens_test.cpp's body for every backend): TF32/FP16/BF16 top-1 agreement;
// every kernel against the reference backend on a model of odd sizes (head size 40, vocabulary 257)
// with padded rows; engines saved and loaded; the CLI.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>

#include "backends/cpu/gemm.h"
#include "backends/cuda/cuda_backend.h"
#include "builder/builder.h"
#include "core/half.h"
#include "core/npy.h"
#include "gptrt/generate.h"
#include "hf/make_model.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"
#include "runtime/engine_impl.h"
#include "serve/scheduler.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

#define SKIP_WITHOUT_GPU()                                                                   \
  do {                                                                                       \
    std::string why;                                                                         \
    if (cuda::device_sm(&why).empty()) GTEST_SKIP() << "CUDA backend test skipped: " << why; \
  } while (0)

std::shared_ptr<const Engine> cuda_engine(const Network& net, Precision p = Precision::kFp32) {
  BuildConfig c;
  c.backend = Backend::kCuda;
  c.precision = p;
  return Engine::build(net, c);
}

// The SM whose kernel families run (a compute_61 build runs the sm_61 path on any GPU).
int sm_number() {
  return cuda::kernel_sm();
}

// cuda::lower is host code: it runs wherever the backend is compiled in, GPU or not. Engines
// store every linear layer's weight as [N, K] (transB = 1, what the skinny GEMMs read): FP16/BF16
// engines the FP32 weight's values rounded, FP32 engines the same values.
// A linear layer of the fixture's plan after cuda::lower: the lowered node, the weight it had
// before (K x N, or N x K where was_nk), K and N.
struct LoweredLinear {
  const ir::Node& node;
  const Tensor& before;
  bool was_nk;
  int64_t k, cols;
};

// The fixture's plan as the builder hands it to a backend (folded, pruned, the decoder fused),
// lowered at `p`; `each` sees every linear layer. Returns the lowered plan.
ir::Graph lowered_fixture(Precision p,
                          const std::function<void(const ir::Graph&, const LoweredLinear&)>& each,
                          int64_t int8_group = 0) {
  ir::Graph g = Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")).impl->graph;
  passes::fold_constants(g);
  passes::eliminate_dead_code(g);
  EXPECT_TRUE(builder::fuse(g, nullptr).recognised);
  const ir::Graph before = g;
  cuda::lower(g, p, int8_group);
  EXPECT_EQ(g.nodes.size(), before.nodes.size());
  int linears = 0;
  for (size_t i = 0; i < g.nodes.size() && i < before.nodes.size(); ++i) {
    if (g.nodes[i].op_type != "Linear") continue;
    ++linears;
    const ir::Node& old = before.nodes[i];
    const Tensor& w0 = before.values[static_cast<size_t>(old.inputs[1])].constant;
    const bool was_nk = old.attr_int("transB", 0) != 0;
    each(g,
         {g.nodes[i], w0, was_nk, was_nk ? w0.dim(1) : w0.dim(0), was_nk ? w0.dim(0) : w0.dim(1)});
  }
  EXPECT_GT(linears, 0);
  return g;
}

TEST(CudaLowering, LinearWeightsAreStoredAsNByK) {
  if (!cuda::compiled_in()) GTEST_SKIP() << "built without the CUDA backend";
  for (Precision p : {Precision::kFp16, Precision::kBf16, Precision::kFp32}) {
    lowered_fixture(p, [&](const ir::Graph& g, const LoweredLinear& l) {
      const ir::Node& n = l.node;
      const Tensor& w = g.values[static_cast<size_t>(n.inputs[1])].constant;
      const int64_t k = l.k, cols = l.cols;
      EXPECT_EQ(n.attr_int("transB", 0), 1) << n.describe();
      EXPECT_EQ(w.dtype(), p == Precision::kFp16   ? DType::kFloat16
                           : p == Precision::kBf16 ? DType::kBFloat16
                                                   : DType::kFloat32);
      ASSERT_EQ(w.shape(), (Shape{cols, k})) << n.describe();
      double worst = 0;
      for (int64_t c = 0; c < cols; ++c)
        for (int64_t r = 0; r < k; ++r) {
          float want = l.before.data<float>()[l.was_nk ? c * k + r : r * cols + c];
          float got = p == Precision::kFp32   ? w.data<float>()[c * k + r]
                      : p == Precision::kFp16 ? half_to_float(w.data<uint16_t>()[c * k + r])
                                              : bf16_to_float(w.data<uint16_t>()[c * k + r]);
          worst = std::max(worst, std::fabs(double(got) - want) / std::max(std::fabs(want), 1e-3f));
        }
      // Stated bounds: FP16 rounds to 11 significant bits, BF16 to 8; FP32 is the same value.
      EXPECT_LE(worst, p == Precision::kFp32   ? 0.0
                       : p == Precision::kFp16 ? 1.0 / 2048
                                               : 1.0 / 256)
          << precision_name(p) << " " << n.describe();
    });
  }
}

// INT8 engines for the GPU store each linear layer's weights as INT8 [N, K] with one float32
// scale per row (input 4; [N, K / 16] in groups of 16), within half a step of the FP32 value;
// the load check refuses a plan whose scales are missing or of the wrong length, and INT8
// weights in an engine of another precision.
TEST(CudaLowering, Int8WeightsAreStoredWithTheirScalesAndCheckedAtLoad) {
  if (!cuda::compiled_in()) GTEST_SKIP() << "built without the CUDA backend";
  for (int64_t group : {16, 0}) {
    ir::Graph g = lowered_fixture(
        Precision::kInt8,
        [&](const ir::Graph& lowered, const LoweredLinear& l) {
          const ir::Node& n = l.node;
          const Tensor& q = lowered.values[static_cast<size_t>(n.inputs[1])].constant;
          ASSERT_EQ(n.inputs.size(), 5u);
          const Tensor& scales = lowered.values[static_cast<size_t>(n.inputs[4])].constant;
          const int64_t k = l.k, cols = l.cols, size = group == 0 ? k : group;
          ASSERT_EQ(q.dtype(), DType::kInt8);
          ASSERT_EQ(q.shape(), (Shape{cols, k})) << n.describe();
          ASSERT_EQ(scales.shape(), (group == 0 ? Shape{cols} : Shape{cols, k / group}));
          double worst_steps = 0;  // |q * s - w| in units of s
          for (int64_t c = 0; c < cols; ++c)
            for (int64_t r = 0; r < k; ++r) {
              const float s = scales.data<float>()[c * (k / size) + r / size];
              const float want = l.before.data<float>()[l.was_nk ? c * k + r : r * cols + c];
              worst_steps = std::max<double>(worst_steps,
                                             std::fabs(q.data<int8_t>()[c * k + r] * s - want) / s);
            }
          EXPECT_LE(worst_steps, 0.5 + 1e-3) << n.describe();
        },
        group);
    if (group != 0) {  // (the rest once, per column)
      ir::Graph fresh = g;
      for (const ir::Node& n : fresh.nodes)
        if (ir::can_infer(n)) {
          EXPECT_NO_THROW(ir::infer_node(fresh, n)) << n.describe();
        }
      cuda::check_int8_weights(g, Precision::kInt8, "e.engine");  // (passes)
      continue;
    }
    ir::Graph fresh = g;  // every node re-inferred as a loaded engine's are (plan_check.cpp)
    for (const ir::Node& n : fresh.nodes)
      if (ir::can_infer(n)) {
        EXPECT_NO_THROW(ir::infer_node(fresh, n)) << n.describe();
      }
    cuda::check_int8_weights(g, Precision::kInt8, "e.engine");  // (passes)
    expect_error([&] { cuda::check_int8_weights(g, Precision::kFp16, "e.engine"); },
                 {"e.engine", "not INT8"});
    for (ir::Node& n : g.nodes)
      if (n.op_type == "Linear") {
        const int scales = n.inputs[4];
        n.inputs[4] = -1;
        expect_error([&] { cuda::check_int8_weights(g, Precision::kInt8, "e.engine"); },
                     {"e.engine", "scales (input 4)", "rebuild"});
        n.inputs[4] = g.add_constant("bad.scales", Tensor(DType::kFloat32, {3}));
        expect_error([&] { cuda::check_int8_weights(g, Precision::kInt8, "e.engine"); },
                     {"e.engine", "scales [3]", "expected float32 ["});
        n.inputs[4] = scales;
        break;
      }
  }
  expect_error(
      [&] {
        lowered_fixture(
            Precision::kInt8, [](const ir::Graph&, const LoweredLinear&) {}, 48);
      },
      {"--int8Group", "does not divide K = 64"});
}

// GPU memory is checked for a context's whole plan (weights, activation arena, cuBLASLt's
// workspace) before its first allocation, and again before each large one: with
// GPTRT_CUDA_MEMORY_LIMIT standing in for a card too small, running an engine is refused with the
// numbers and what to lower, and nothing is left half-made: without it the same engine runs.
TEST(Cuda, TooLittleGpuMemoryIsRefusedWithTheNumbers) {
  SKIP_WITHOUT_GPU();
  auto engine = cuda_engine(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")));
  static const auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  const TensorMap in = {{"input_ids", goldens.at("case1.input_ids")},
                        {"attention_mask", goldens.at("case1.attention_mask")}};
  setenv("GPTRT_CUDA_MEMORY_LIMIT", "1", 1);
  try {
    engine->create_execution_context()->execute(in);
    ADD_FAILURE() << "ran within a 1-byte GPU memory limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceLimit) << e.what();
    // (The context's whole plan, checked before its first allocation: each part named.)
    for (const char* part :
         {"not enough GPU memory for this engine's execution context", "weights ",
          "activation arena ", "MiB free", "GPTRT_CUDA_MEMORY_LIMIT", "--maxBatch", "--fp16"})
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << part << ": " << e.what();
  }
  unsetenv("GPTRT_CUDA_MEMORY_LIMIT");
  const Tensor out = engine->create_execution_context()->execute(in)[0];
  EXPECT_EQ(out.dim(2), 1000);
}

// INT8 engines in groups of 16 along K on the GPU: saved and loaded, the fixture's logits within
// FP16 rounding of the cpu backend's INT8 engine in the same groups (FP32 rows).
TEST(Cuda, Int8GroupsRunAsTheCpuOnesDo) {
  SKIP_WITHOUT_GPU();
  Network net = Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx"));
  BuildConfig c;
  c.backend = Backend::kCuda;
  c.precision = Precision::kInt8;
  c.int8_group = 16;
  const std::string path = temp_dir("cuda_int8_groups") + "/int8.engine";
  Engine::build(net, c)->save(path);
  auto gpu = Engine::load(path);
  c.backend = Backend::kCpu;
  c.cpu_isa = "avx512";
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) c.cpu_isa = "generic";
  auto cpu = Engine::build(net, c);
  static const auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  const TensorMap in = {{"input_ids", goldens.at("case1.input_ids")},
                        {"attention_mask", goldens.at("case1.attention_mask")}};
  Tensor got = gpu->create_execution_context()->execute(in)[0];
  Tensor ref = cpu->create_execution_context()->execute(in)[0];
  EXPECT_LE(max_abs_diff_masked(got, ref, &in.at("attention_mask")), 0.05);
  Agreement a = fixture_agreement(*gpu->create_execution_context());
  std::printf("[cuda int8, groups of 16] top-1 %lld/%lld, max |dlogit| %.3g\n",
              static_cast<long long>(a.agree), static_cast<long long>(a.total), a.worst);
  EXPECT_GE(a.rate(), 0.97);
}

// INT8 engines on the GPU (weights dequantised to FP16 when first run): the fixture's goldens'
// top token as the cpu backend's INT8 engine keeps it, logits within FP16 rounding of it; saved
// and loaded; generation.
TEST(Cuda, Int8EnginesRunAsTheCpuInt8EngineDoes) {
  SKIP_WITHOUT_GPU();
  Network net = Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx"));
  auto gpu = cuda_engine(net, Precision::kInt8);
  EXPECT_EQ(gpu->info().precision, Precision::kInt8);
  const std::string path = temp_dir("cuda_int8") + "/int8.engine";
  gpu->save(path);
  auto loaded = Engine::load(path);
  BuildConfig c;
  c.backend = Backend::kCpu;
  c.precision = Precision::kInt8;
  auto cpu = Engine::build(net, c);
  Agreement a = fixture_agreement(*loaded->create_execution_context());
  Agreement want = fixture_agreement(*cpu->create_execution_context());
  std::printf("[cuda int8] top-1 %lld/%lld, max |dlogit| %.3g (cpu int8: %lld/%lld, %.3g)\n",
              static_cast<long long>(a.agree), static_cast<long long>(a.total), a.worst,
              static_cast<long long>(want.agree), static_cast<long long>(want.total), want.worst);
  EXPECT_GE(a.rate(), 0.97);
  EXPECT_LE(a.worst, 0.4);
  static const auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  const TensorMap in = {{"input_ids", goldens.at("case1.input_ids")},
                        {"attention_mask", goldens.at("case1.attention_mask")}};
  Tensor got = loaded->create_execution_context()->execute(in)[0];
  Tensor ref = cpu->create_execution_context()->execute(in)[0];
  EXPECT_LE(max_abs_diff_masked(got, ref, &in.at("attention_mask")), 0.05)
      << "FP16 rounding of the same dequantised weights";
  Generator gen(loaded);
  GenerationConfig gc;
  gc.max_new_tokens = 6;
  const std::vector<int64_t> prompt = {5, 17, 300, 42};
  GenerationResult r = gen.generate({prompt}, gc);
  ASSERT_EQ(r.generated.size(), 1u);
  ASSERT_EQ(r.generated[0].size(), 6u);
  Tensor ids(DType::kInt64, {1, 4}), ones(DType::kInt64, {1, 4});
  for (int64_t i = 0; i < 4; ++i) {
    ids.data_mut<int64_t>()[i] = prompt[static_cast<size_t>(i)];
    ones.data_mut<int64_t>()[i] = 1;
  }
  Tensor logits = loaded->create_execution_context()->execute(
      {{"input_ids", ids}, {"attention_mask", ones}})[0];
  const int64_t v = logits.dim(2);
  const float* last = logits.data<float>() + 3 * v;
  EXPECT_EQ(r.generated[0][0], std::max_element(last, last + v) - last)
      << "the decoder's first pick is the forward pass's top token";
}

TEST(Cuda, ReducedPrecisionsAgreeOnTheTopToken) {
  SKIP_WITHOUT_GPU();
  std::vector<Precision> precisions = {Precision::kTf32, Precision::kFp16};
  if (sm_number() >= 80) precisions.push_back(Precision::kBf16);
  for (Precision p : precisions) {
    Agreement a = fixture_agreement(
        *cuda_engine(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), p)
             ->create_execution_context());
    EXPECT_GE(a.rate(), 0.99) << precision_name(p);
    // Stated bounds: TF32 and FP16 keep 10-11 mantissa bits, BF16 8.
    EXPECT_LE(a.worst, p == Precision::kBf16 ? 0.2 : 0.05) << precision_name(p);
    std::printf("[cuda %s] top-1 %lld/%lld, max |dlogit| %.3g\n", precision_name(p),
                static_cast<long long>(a.agree), static_cast<long long>(a.total), a.worst);
  }
}

// A random-weight GPT-2 of vocabulary 257 (N not a multiple of 8) and 50 positions (or more).
Network small_model(int layers, int hidden, int heads, const char* activation, uint64_t seed,
                    int positions = 50) {
  hf::Gpt2Config cfg;
  cfg.n_layer = layers;
  cfg.n_embd = hidden;
  cfg.n_head = heads;
  cfg.vocab_size = 257;
  cfg.n_positions = positions;
  cfg.activation_function = activation;
  std::string dir =
      temp_dir("cuda_model_" + std::to_string(hidden) + "_" + std::to_string(positions));
  hf::make_model(cfg, seed, dir);
  return Network::from_hf(dir);
}

// Head size 40 (not a multiple of 32), 3 heads, hidden size 120 (K not a multiple of 32),
// 3 layers, exact-erf GELU.
Network odd_size_model() {
  return small_model(3, 120, 3, "gelu", 7);
}

// Random ids and a mask that left-pads row r by r positions.
TensorMap odd_inputs(int64_t b, int64_t s, std::mt19937& rng) {
  Tensor ids(DType::kInt64, {b, s}), mask(DType::kInt64, {b, s});
  for (int64_t i = 0; i < b * s; ++i) {
    ids.data_mut<int64_t>()[i] = static_cast<int64_t>(rng() % 257);
    mask.data_mut<int64_t>()[i] = (i % s) >= (i / s) ? 1 : 0;
  }
  return {{"input_ids", ids}, {"attention_mask", mask}};
}

TEST(Cuda, EveryKernelMatchesTheReferenceAtOddSizes) {
  SKIP_WITHOUT_GPU();
  Network net = odd_size_model();
  auto gpu = cuda_engine(net)->create_execution_context();
  BuildConfig ref_config;
  auto ref = Engine::build(net, ref_config)->create_execution_context(1);
  std::mt19937 rng(3);
  for (auto [b, s] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {2, 50}}) {
    TensorMap in = odd_inputs(b, s, rng);
    Tensor want = ref->execute(in)[0];
    for (bool graphs : {false, true}) {
      gpu->set_cuda_graphs(graphs);
      Tensor got = gpu->execute(in)[0];
      EXPECT_LE(max_abs_diff_masked(got, want, &in.at("attention_mask")), 1e-4)
          << b << "x" << s << (graphs ? " graphs" : "");
    }
  }
}

// The stated FP16/BF16 bound for logits `want` (over the positions `mask` keeps): relative to
// the largest logit (at least 1), FP16 keeps 11 mantissa bits, BF16 8.
double reduced_precision_tol(Precision p, const Tensor& want, const Tensor& mask) {
  double scale =
      std::max(1.0, max_abs_diff_masked(want, Tensor(DType::kFloat32, want.shape()), &mask));
  return (p == Precision::kFp16 ? 0.01 : 0.05) * scale;
}

// Whether the profile of one 1x12 pass of `ctx` names a kernel labelled `kind`.
bool profile_names(ExecutionContext& ctx, const std::string& kind, std::mt19937& rng) {
  ctx.set_profiling(true);
  ctx.execute(odd_inputs(1, 12, rng));
  bool ran = false;
  for (const auto& [label, time] : ctx.profile())
    ran = ran || label.find(kind) != std::string::npos;
  ctx.set_profiling(false);
  return ran;
}

// The plain GEMM (plain_gemm_kernel: every linear layer on the CUDA cores, what sm_61 and
// builds without cuBLAS run) forced with GPTRT_CUDA_GEMM=plain on any GPU: FP32 within 1e-4 of
// the reference (K 120 and N 257 leave partial tiles; 300 rows are five row tiles), FP16 and
// BF16 within their rounding (weights [N, K]); the profile names it.
TEST(Cuda, PlainGemmsMatchTheReferenceAtOddSizes) {
  SKIP_WITHOUT_GPU();
  Network net = odd_size_model();
  BuildConfig ref_config;
  auto ref = Engine::build(net, ref_config)->create_execution_context(1);
  std::vector<Precision> precisions = {Precision::kFp32, Precision::kFp16};
  if (sm_number() >= 80) precisions.push_back(Precision::kBf16);
  setenv("GPTRT_CUDA_GEMM", "plain", 1);
  for (Precision p : precisions) {
    auto ctx = cuda_engine(net, p)->create_execution_context();
    std::mt19937 rng(23);
    for (auto [b, s] : {std::pair<int64_t, int64_t>{1, 1}, {1, 12}, {3, 17}, {2, 50}, {6, 50}}) {
      TensorMap in = odd_inputs(b, s, rng);
      const Tensor& mask = in.at("attention_mask");
      Tensor want = ref->execute(in)[0];
      const double tol = p == Precision::kFp32 ? 1e-4 : reduced_precision_tol(p, want, mask);
      for (bool graphs : {false, true}) {
        ctx->set_cuda_graphs(graphs);
        EXPECT_LE(max_abs_diff_masked(ctx->execute(in)[0], want, &mask), tol)
            << precision_name(p) << " " << b << "x" << s << (graphs ? " graphs" : "");
      }
    }
    std::mt19937 rng2(24);
    EXPECT_TRUE(profile_names(*ctx, "plain FP32", rng2)) << precision_name(p);
  }
  unsetenv("GPTRT_CUDA_GEMM");
}

// What an engine build says of the GEMMs it will run: before sm_70 (a real Pascal card, or a
// compute_61 build on any GPU) the plain FP32 GEMMs, FP16 as storage only, and --bf16 refused by
// name; from sm_70 on, the skinny kernels and cuBLASLt.
TEST(Cuda, BuildSaysWhichGemmsRunAndWhatFp16DoesOnPascal) {
  SKIP_WITHOUT_GPU();
  Network net = odd_size_model();
  BuildConfig c;
  c.backend = Backend::kCuda;
  c.precision = Precision::kFp16;
  std::string said;
  c.notice = [&](const std::string& s) { said += s + "\n"; };
  Engine::build(net, c);
  if (sm_number() < 70) {
    for (const char* part : {"plain FP32 GEMMs", "FP16 is storage only", "every sum in FP32"})
      EXPECT_NE(said.find(part), std::string::npos) << part << ": " << said;
    c.precision = Precision::kBf16;
    expect_error([&] { Engine::build(net, c); }, {"--bf16 needs an sm_80", "--fp16"});
  } else {
    EXPECT_NE(said.find(cuda::cublas_compiled_in() ? "cuBLASLt" : "a build without cuBLAS"),
              std::string::npos)
        << said;
    EXPECT_EQ(said.find("storage only"), std::string::npos) << said;
  }
}

// The skinny FP16/BF16 GEMM (up to 32 rows, LayerNorm fused) at every column-group width, the
// streaming GEMM of the LM head on every layer with a fused LayerNorm up to 16 rows
// (GPTRT_CUDA_STREAM=1), and cuBLASLt for comparison, against the FP32 reference: 1 and 12 rows
// use one row tile, 18 and 32 rows two, 51, 100 and 300 rows go to cuBLASLt (whose LM head, 257
// logits a row, writes at a padded pitch and is compacted: in one chunk of rows, and in two at 300
// rows).
TEST(Cuda, SkinnyGemmsMatchTheReferenceAndCublasLtAtOddSizes) {
  SKIP_WITHOUT_GPU();
  if (sm_number() < 80) GTEST_SKIP() << "the skinny GEMM needs sm_80 or newer";
  Network net = odd_size_model();
  BuildConfig ref_config;
  auto ref = Engine::build(net, ref_config)->create_execution_context(1);
  for (Precision p : {Precision::kFp16, Precision::kBf16}) {
    auto engine = cuda_engine(net, p);
    std::vector<std::pair<std::string, std::unique_ptr<ExecutionContext>>> contexts;
    for (const char* tn : {"1", "2", "4", "8"}) {
      setenv("GPTRT_CUDA_SKINNY_TN", tn, 1);
      contexts.emplace_back(std::string("skinny tn=") + tn, engine->create_execution_context());
    }
    unsetenv("GPTRT_CUDA_SKINNY_TN");
    setenv("GPTRT_CUDA_STREAM", "1", 1);
    contexts.emplace_back("skinny stream", engine->create_execution_context());
    unsetenv("GPTRT_CUDA_STREAM");
    setenv("GPTRT_CUDA_GEMM", "cublaslt", 1);
    contexts.emplace_back("cuBLASLt", engine->create_execution_context());
    unsetenv("GPTRT_CUDA_GEMM");
    std::mt19937 rng(11);
    for (auto [b, s] :
         {std::pair<int64_t, int64_t>{1, 1}, {1, 12}, {2, 9}, {2, 16}, {3, 17}, {2, 50}, {6, 50}}) {
      TensorMap in = odd_inputs(b, s, rng);
      const Tensor& mask = in.at("attention_mask");
      Tensor want = ref->execute(in)[0];
      double tol = reduced_precision_tol(p, want, mask);
      std::vector<Tensor> got;
      for (auto& [name, ctx] : contexts) {
        for (bool graphs : {false, true}) {
          ctx->set_cuda_graphs(graphs);
          got.push_back(ctx->execute(in)[0]);
          EXPECT_LE(max_abs_diff_masked(got.back(), want, &mask), tol)
              << precision_name(p) << " " << name << " " << b << "x" << s
              << (graphs ? " graphs" : "");
        }
      }
      // Every skinny variant against cuBLASLt: the same rounding, so closer than to FP32.
      for (size_t i = 0; i + 2 < got.size(); ++i)
        EXPECT_LE(max_abs_diff_masked(got[i], got.back(), &mask), tol / 2)
            << precision_name(p) << " " << contexts[i / 2].first << " " << b << "x" << s;
    }
  }
}

// The FP32 skinny GEMM (up to 16 rows, exact FP32 on the CUDA cores, LayerNorm fused) against
// the FP32 reference and against cuBLASLt without TF32, with padded rows, with and without
// graphs: 1, 8 and 16-row variants; 51 rows go to cuBLASLt. On the odd-size model (K 120 is not
// a multiple of 128, N 257 is odd: 2 float4s per lane) and on one of hidden size 520 (head size
// 65; 4 and 6 float4s per lane, K 2080 split over 4 or 8 warps). The variant that streams the
// weights through shared memory (the LM head's) runs every layer it fits in a third context
// (GPTRT_CUDA_STREAM=1): K 120 and 520 at a pitch of 256 and 768 (one and three items of K
// per column group), rows at 1, 8 and 16-row instantiations.
TEST(Cuda, SkinnyFp32GemmMatchesTheReferenceAndCublasLtAtOddSizes) {
  SKIP_WITHOUT_GPU();
  if (sm_number() < 80) GTEST_SKIP() << "the FP32 skinny GEMM needs sm_80 or newer";
  for (const Network& net : {odd_size_model(), small_model(1, 520, 8, "gelu_new", 9)}) {
    BuildConfig ref_config;
    auto ref = Engine::build(net, ref_config)->create_execution_context(1);
    auto engine = cuda_engine(net, Precision::kFp32);
    auto skinny = engine->create_execution_context();
    setenv("GPTRT_CUDA_STREAM", "1", 1);
    auto streamed = engine->create_execution_context();
    unsetenv("GPTRT_CUDA_STREAM");
    setenv("GPTRT_CUDA_GEMM", "cublaslt", 1);
    auto lt = engine->create_execution_context();
    unsetenv("GPTRT_CUDA_GEMM");
    std::mt19937 rng(17);
    for (auto [b, s] :
         {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {2, 4}, {1, 12}, {4, 4}, {16, 1}, {3, 17}}) {
      TensorMap in = odd_inputs(b, s, rng);
      const Tensor& mask = in.at("attention_mask");
      Tensor want = ref->execute(in)[0];
      Tensor with_lt = lt->execute(in)[0];
      for (auto* ctx : {skinny.get(), streamed.get()})
        for (bool graphs : {false, true}) {
          ctx->set_cuda_graphs(graphs);
          Tensor got = ctx->execute(in)[0];
          const char* name = ctx == skinny.get() ? " skinny" : " streamed";
          EXPECT_LE(max_abs_diff_masked(got, want, &mask), 1e-4)
              << b << "x" << s << name << (graphs ? " graphs" : "");
          EXPECT_LE(max_abs_diff_masked(got, with_lt, &mask), 1e-4) << b << "x" << s << name;
        }
    }
  }
  Network net = odd_size_model();
  auto engine = cuda_engine(net, Precision::kFp32);
  auto skinny = engine->create_execution_context();
  setenv("GPTRT_CUDA_STREAM", "1", 1);
  auto streamed = engine->create_execution_context();
  unsetenv("GPTRT_CUDA_STREAM");
  std::mt19937 rng(18);
  // The profile names the kernel that ran.
  for (auto [ctx, kind] : {std::pair{skinny.get(), "skinny FP32+LN"},
                           std::pair{streamed.get(), "skinny FP32 stream+LN"}})
    EXPECT_TRUE(profile_names(*ctx, kind, rng)) << kind;
}

TEST(Cuda, EnginesRoundTripAndTheCliReportsTransfersApart) {
  SKIP_WITHOUT_GPU();
  std::string dir = temp_dir("cuda_engine");
  auto engine = cuda_engine(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")));
  engine->save(dir + "/m.engine");
  auto loaded = Engine::load(dir + "/m.engine");
  EXPECT_EQ(loaded->info().backend, Backend::kCuda);
  EXPECT_EQ(loaded->info().target, engine->info().target);
  expect_fixture_goldens(*loaded->create_execution_context(), "loaded cuda engine");
  CliResult r = run_cli(
      "exec --loadEngine " + dir +
      "/m.engine --shapes input_ids:2x12,attention_mask:2x12 --duration 0.2 --useCudaGraph");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s :
       {"H2D Latency: min", "GPU Compute Time: min", "D2H Latency: min", "captured per shape"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
}

// Row `row` of the generator's last logits against the last position of a full forward pass of
// `seq` alone: the largest |difference|, and the largest |logit| of the full pass (at least 1).
struct RerunDiff {
  double worst = 0, scale = 1;
};
RerunDiff row_vs_full_rerun(const Generator& gen, ExecutionContext& ctx,
                            const std::vector<int64_t>& seq, size_t row) {
  const int64_t s = static_cast<int64_t>(seq.size());
  Tensor ids(DType::kInt64, {1, s}), mask(DType::kInt64, {1, s});
  for (int64_t i = 0; i < s; ++i) {
    ids.data_mut<int64_t>()[i] = seq[static_cast<size_t>(i)];
    mask.data_mut<int64_t>()[i] = 1;
  }
  Tensor full = ctx.execute({{"input_ids", ids}, {"attention_mask", mask}})[0];
  const int64_t v = gen.vocab_size();
  RerunDiff d;
  for (int64_t t = 0; t < v; ++t) {
    const float want = full.data<float>()[(s - 1) * v + t];
    d.scale = std::max<double>(d.scale, std::fabs(want));
    d.worst = std::max<double>(
        d.worst, std::fabs(gen.last_logits()[row * static_cast<size_t>(v) + t] - want));
  }
  return d;
}

// The largest |difference| between the generator's last logits (after generating `tokens` from
// `prompt`) and the last position's logits of a full forward pass of prompt + tokens but the last.
double last_logits_vs_full_rerun(const Generator& gen, ExecutionContext& ctx,
                                 const std::vector<int64_t>& prompt,
                                 const std::vector<int64_t>& tokens) {
  std::vector<int64_t> seq = prompt;
  seq.insert(seq.end(), tokens.begin(), tokens.end() - 1);
  return row_vs_full_rerun(gen, ctx, seq, 0).worst;
}

// The QKV projection and its attention as one kernel (qkv_attention_kernel: FP16/BF16, sm_90,
// heads of 64, up to 16 rows) against the FP32 reference and against the two kernels it replaces
// (GPTRT_CUDA_FUSED_ATTENTION=0), on models of 2 heads of hidden 128 (K in one slot per warp) and
// 12 heads of hidden 768 (DistilGPT2's: three slots): forward passes of 1 to 16 rows with
// left padding (18 rows take the two kernels in both contexts); the profile names the kernel.
TEST(Cuda, FusedQkvAttentionMatchesTheReferenceAndTheTwoKernels) {
  SKIP_WITHOUT_GPU();
  if (sm_number() < 90) GTEST_SKIP() << "the fused QKV attention kernel needs sm_90";
  for (const Network& net :
       {small_model(2, 128, 2, "gelu_new", 11), small_model(1, 768, 12, "gelu_new", 13)}) {
    BuildConfig ref_config;
    auto ref = Engine::build(net, ref_config)->create_execution_context(1);
    for (Precision p : {Precision::kFp16, Precision::kBf16}) {
      auto engine = cuda_engine(net, p);
      auto fused = engine->create_execution_context();
      setenv("GPTRT_CUDA_FUSED_ATTENTION", "0", 1);
      auto apart = engine->create_execution_context();
      unsetenv("GPTRT_CUDA_FUSED_ATTENTION");
      std::mt19937 rng(29);
      for (auto [b, s] : {std::pair<int64_t, int64_t>{1, 1},
                          {1, 12},
                          {1, 16},
                          {2, 8},
                          {3, 5},
                          {16, 1},
                          {4, 4},
                          {2, 9}}) {
        TensorMap in = odd_inputs(b, s, rng);
        const Tensor& mask = in.at("attention_mask");
        Tensor want = ref->execute(in)[0];
        double tol = reduced_precision_tol(p, want, mask);
        Tensor two = apart->execute(in)[0];
        for (bool graphs : {false, true}) {
          fused->set_cuda_graphs(graphs);
          Tensor got = fused->execute(in)[0];
          EXPECT_LE(max_abs_diff_masked(got, want, &mask), tol)
              << precision_name(p) << " " << b << "x" << s << (graphs ? " graphs" : "");
          EXPECT_LE(max_abs_diff_masked(got, two, &mask), tol / 2)
              << precision_name(p) << " " << b << "x" << s << " against the two kernels";
        }
      }
      for (auto [ctx, runs] : {std::pair{fused.get(), true}, std::pair{apart.get(), false}})
        EXPECT_EQ(profile_names(*ctx, "skinny+LN+attention", rng), runs) << precision_name(p);
    }
  }
}

// Generation with the fused kernel (prefills of up to 16 rows and decode steps against the
// cache, past 64 keys, with left padding): every row's last logits against a full FP32 reference
// pass of that row, within the FP16 bound, and the greedy tokens of a context without it
// (GPTRT_CUDA_FUSED_ATTENTION=0) where both are that close.
TEST(Cuda, FusedQkvAttentionDecodeStepsMatchAFullRerun) {
  SKIP_WITHOUT_GPU();
  if (sm_number() < 90) GTEST_SKIP() << "the fused QKV attention kernel needs sm_90";
  Network net = small_model(2, 128, 2, "gelu_new", 11, 160);
  BuildConfig ref_config;
  auto ref = Engine::build(net, ref_config)->create_execution_context(1);
  auto engine = cuda_engine(net, Precision::kFp16);
  Generator gen(engine);
  std::mt19937 rng(37);
  auto random_prompt = [&](size_t n) {
    std::vector<int64_t> p(n);
    for (int64_t& id : p) id = static_cast<int64_t>(rng() % 257);
    return p;
  };
  for (const std::vector<std::vector<int64_t>>& prompts :
       {std::vector<std::vector<int64_t>>{random_prompt(7)},
        std::vector<std::vector<int64_t>>{random_prompt(5), random_prompt(3)},
        std::vector<std::vector<int64_t>>{random_prompt(70)}}) {
    for (int64_t k : {1, 9, 40}) {
      GenerationConfig c;
      c.max_new_tokens = k;
      GenerationResult res = gen.generate(prompts, c);
      for (size_t r = 0; r < prompts.size(); ++r) {
        ASSERT_EQ(static_cast<int64_t>(res.generated[r].size()), k);
        std::vector<int64_t> seq = prompts[r];
        seq.insert(seq.end(), res.generated[r].begin(), res.generated[r].end() - 1);
        const RerunDiff d = row_vs_full_rerun(gen, *ref, seq, r);
        EXPECT_LE(d.worst, 0.01 * d.scale) << prompts[r].size() << " + " << k << " row " << r;
      }
    }
  }
}

TEST(Cuda, GenerationReproducesTheGoldensAndEveryDecodeStepMatchesAFullRerun) {
  SKIP_WITHOUT_GPU();
  static const auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  auto engine = cuda_engine(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")));
  Generator gen(engine);
  auto row = [](const Tensor& t, int64_t r, int64_t from) {
    return std::vector<int64_t>(t.data<int64_t>() + r * t.dim(1) + from,
                                t.data<int64_t>() + (r + 1) * t.dim(1));
  };
  GenerationConfig c;
  const Tensor& p0 = goldens.at("gen0.prompt");
  const Tensor& o0 = goldens.at("gen0.output");
  c.max_new_tokens = o0.dim(1) - p0.dim(1);
  EXPECT_EQ(gen.generate({row(p0, 0, 0)}, c).generated[0], row(o0, 0, p0.dim(1)));
  const Tensor& p1 = goldens.at("gen1.prompt");
  const Tensor& m1 = goldens.at("gen1.attention_mask");
  const Tensor& o1 = goldens.at("gen1.output");
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t r = 0; r < p1.dim(0); ++r) {
    std::vector<int64_t> p;
    for (int64_t i = 0; i < p1.dim(1); ++i)
      if (m1.data<int64_t>()[r * p1.dim(1) + i]) p.push_back(p1.data<int64_t>()[r * p1.dim(1) + i]);
    prompts.push_back(p);
  }
  c.max_new_tokens = o1.dim(1) - p1.dim(1);
  GenerationResult r1 = gen.generate(prompts, c);
  for (int64_t r = 0; r < 3; ++r)
    EXPECT_EQ(r1.generated[static_cast<size_t>(r)], row(o1, r, p1.dim(1))) << "row " << r;
  // Decode steps (a replayed CUDA graph) against full forward passes of the same engine.
  auto ctx = engine->create_execution_context();
  const std::vector<int64_t> start = {5, 17, 300, 2, 999, 41, 7};
  c.max_new_tokens = 8;
  std::vector<int64_t> all = gen.generate({start}, c).generated[0];
  for (int64_t k = 1; k <= 8; ++k) {
    c.max_new_tokens = k;
    std::vector<int64_t> out = gen.generate({start}, c).generated[0];
    ASSERT_EQ(out, std::vector<int64_t>(all.begin(), all.begin() + k));
    EXPECT_LE(last_logits_vs_full_rerun(gen, *ctx, start, out), 1e-4) << "after " << k << " tokens";
  }
  // Sampling and the repetition penalty read the logits on the host: the same tokens as the cpu
  // backend's generator with the same seed.
  BuildConfig cpu_config;
  cpu_config.backend = Backend::kCpu;
  Generator cpu_gen(
      Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), cpu_config));
  GenerationConfig sampled;
  sampled.max_new_tokens = 12;
  sampled.do_sample = true;
  sampled.top_k = 20;
  sampled.seed = 5;
  EXPECT_EQ(gen.generate({start}, sampled).generated, cpu_gen.generate({start}, sampled).generated);
  GenerationConfig penalised;
  penalised.max_new_tokens = 12;
  penalised.repetition_penalty = 1.3f;
  EXPECT_EQ(gen.generate({start}, penalised).generated,
            cpu_gen.generate({start}, penalised).generated);
  // A call with the batch and cache length of the one before reuses its cache, buffers and
  // decode graph (nothing allocated or captured again): the same tokens as the cpu backend, for a
  // repeated prompt and for a shorter one (5 + 10 positions like 7 + 8).
  GenerationConfig greedy;
  greedy.max_new_tokens = 8;
  EXPECT_EQ(gen.generate({start}, greedy).generated[0], all);
  EXPECT_EQ(gen.generate({start}, greedy).generated[0], all);
  greedy.max_new_tokens = 10;
  const std::vector<int64_t> shorter = {44, 3, 250, 9, 60};
  EXPECT_EQ(gen.generate({shorter}, greedy).generated,
            cpu_gen.generate({shorter}, greedy).generated);
}

// The decode step's attention kernel over caches longer than one of its key tiles (64 keys at
// head size 64, 32 at 65, where the head size is not a multiple of 4 either): every decode step's
// logits against a full forward pass of the same engine, and a left-padded batch against the cpu
// backend's greedy tokens.
TEST(Cuda, DecodeAttentionMatchesAFullRerunAcrossKeyTiles) {
  SKIP_WITHOUT_GPU();
  for (const Network& net :
       {small_model(2, 128, 2, "gelu_new", 11, 160), small_model(1, 520, 8, "gelu_new", 9, 160)}) {
    auto engine = cuda_engine(net);
    Generator gen(engine);
    auto ctx = engine->create_execution_context();
    std::mt19937 rng(23);
    std::vector<int64_t> prompt(70);
    for (int64_t& id : prompt) id = static_cast<int64_t>(rng() % 257);
    GenerationConfig c;
    for (int64_t k : {1, 2, 30}) {  // 70, 71 and 99 keys at the last step
      c.max_new_tokens = k;
      std::vector<int64_t> out = gen.generate({prompt}, c).generated[0];
      ASSERT_EQ(static_cast<int64_t>(out.size()), k);
      EXPECT_LE(last_logits_vs_full_rerun(gen, *ctx, prompt, out), 1e-4)
          << "after " << k << " tokens";
    }
    BuildConfig cpu_config;
    cpu_config.backend = Backend::kCpu;
    Generator cpu_gen(Engine::build(net, cpu_config));
    std::vector<int64_t> shorter(prompt.begin(), prompt.begin() + 41);
    c.max_new_tokens = 40;
    EXPECT_EQ(gen.generate({prompt, shorter}, c).generated,
              cpu_gen.generate({prompt, shorter}, c).generated);
  }
}

// A decode batch of more than 32 rows runs its linear layers on cuBLASLt, the LM head (257
// logits a row, not a multiple of 8) at a padded pitch, compacted before the argmax reads it:
// every row's last logits against a full forward pass of that row alone (one row: the skinny
// kernels), FP16 and BF16, left-padded prompts of 3 to 12 tokens.
TEST(Cuda, WideDecodeBatchesMatchAFullRerunOfEveryRow) {
  SKIP_WITHOUT_GPU();
  if (sm_number() < 80) GTEST_SKIP() << "the skinny GEMM (the one-row reference) needs sm_80";
  Network net = odd_size_model();
  for (Precision p : {Precision::kFp16, Precision::kBf16}) {
    auto engine = cuda_engine(net, p);
    Generator gen(engine);
    auto ctx = engine->create_execution_context();
    std::mt19937 rng(31);
    std::vector<std::vector<int64_t>> prompts(40);
    for (size_t r = 0; r < prompts.size(); ++r) {
      prompts[r].resize(3 + r % 10);
      for (int64_t& id : prompts[r]) id = static_cast<int64_t>(rng() % 257);
    }
    GenerationConfig c;
    c.max_new_tokens = 3;
    GenerationResult res = gen.generate(prompts, c);
    for (size_t r = 0; r < prompts.size(); ++r) {
      std::vector<int64_t> seq = prompts[r];
      ASSERT_EQ(res.generated[r].size(), 3u);
      seq.insert(seq.end(), res.generated[r].begin(), res.generated[r].end() - 1);
      const RerunDiff d = row_vs_full_rerun(gen, *ctx, seq, r);
      // FP16 keeps 11 mantissa bits, BF16 8 (as in the skinny GEMM test).
      EXPECT_LE(d.worst, (p == Precision::kFp16 ? 0.01 : 0.05) * d.scale)
          << precision_name(p) << " row " << r;
    }
  }
}

// A decoder's first prompt pass of up to 256 rows, at a batch the skinny kernels decode, runs its
// linear layers on those kernels in groups of up to 32 rows (FP32: 16; FP16 layers with K 3072
// in 24) instead of cuBLASLt (cold in a new process), later passes on cuBLASLt: a left-padded
// batch of 4 prompts of 14 to 20 tokens (80 rows): every row's logits after the first pass
// against a full forward pass of that row (FP32 1e-4, FP16 within its bound), and FP32 greedy
// tokens of a second call equal to the cpu backend's. Hidden sizes 128 and 768.
TEST(Cuda, GenerationPrefillsInRowGroupsMatchAFullRerun) {
  SKIP_WITHOUT_GPU();
  for (const Network& net : {small_model(2, 128, 2, "gelu_new", 11, 160),
                             small_model(1, 768, 12, "gelu_new", 13, 160)}) {
    BuildConfig cpu_config;
    cpu_config.backend = Backend::kCpu;
    Generator cpu_gen(Engine::build(net, cpu_config));
    std::vector<Precision> precisions = {Precision::kFp32};
    if (sm_number() >= 80) precisions.push_back(Precision::kFp16);
    for (Precision p : precisions) {
      auto engine = cuda_engine(net, p);
      Generator gen(engine);
      auto ctx = engine->create_execution_context();
      std::mt19937 rng(67);
      std::vector<std::vector<int64_t>> prompts = {
          std::vector<int64_t>(20), std::vector<int64_t>(14), std::vector<int64_t>(17),
          std::vector<int64_t>(20)};
      for (auto& pr : prompts)
        for (int64_t& id : pr) id = static_cast<int64_t>(rng() % 257);
      GenerationConfig c;
      c.max_new_tokens = 1;  // the last logits are the prompt pass's
      gen.generate(prompts, c);
      for (size_t r = 0; r < prompts.size(); ++r) {
        const RerunDiff d = row_vs_full_rerun(gen, *ctx, prompts[r], r);
        EXPECT_LE(d.worst, p == Precision::kFp32 ? 1e-4 : 0.01 * d.scale)
            << precision_name(p) << " row " << r;
      }
      if (p == Precision::kFp32) {
        c.max_new_tokens = 6;
        EXPECT_EQ(gen.generate(prompts, c).generated, cpu_gen.generate(prompts, c).generated);
      }
    }
  }
}

// Greedy generation on the GPU runs up to 8 decode steps per CUDA graph (by default once 256
// steps have run on a cache; here from the first), each step's inputs made on the GPU from the
// picks of the one before: the same tokens as one graph per step
// (GPTRT_CUDA_DECODE_STEPS=1) for a left-padded batch of 3, 29 steps (8 + 8 + 8 + 5), a row
// stopped by the end-of-text token and one by the token callback inside a batch of steps, FP32
// and FP16; and, without a stop, the same last logits.
TEST(Cuda, SeveralGreedyDecodeStepsPerGraphGiveTheTokensOfOnePerGraph) {
  SKIP_WITHOUT_GPU();
  Network net = small_model(2, 128, 2, "gelu_new", 11, 160);
  for (Precision p : {Precision::kFp32, Precision::kFp16}) {
    auto engine = cuda_engine(net, p);
    setenv("GPTRT_CUDA_DECODE_STEPS", "8", 1);  // (unset: only after 256 single steps)
    Generator chunked(engine);
    setenv("GPTRT_CUDA_DECODE_STEPS", "1", 1);
    Generator single(engine);
    unsetenv("GPTRT_CUDA_DECODE_STEPS");
    std::mt19937 rng(53);
    std::vector<std::vector<int64_t>> prompts = {std::vector<int64_t>(5), std::vector<int64_t>(9),
                                                 std::vector<int64_t>(12)};
    for (auto& pr : prompts)
      for (int64_t& id : pr) id = static_cast<int64_t>(rng() % 257);
    GenerationConfig c;
    c.max_new_tokens = 30;
    c.eos_token_id = -1;
    GenerationResult want = single.generate(prompts, c);
    EXPECT_EQ(chunked.generate(prompts, c).generated, want.generated) << precision_name(p);
    ASSERT_EQ(want.generated[1].size(), 30u);
    // Row 1 ends at its 11th token (taken as end of text); row 0 stops itself after 6 tokens.
    c.eos_token_id = want.generated[1][10];
    auto stop_row0 = [] {
      auto seen = std::make_shared<int>(0);
      return TokenCallback([seen](size_t row, int64_t) { return row != 0 || ++*seen < 6; });
    };
    GenerationResult a = single.generate(prompts, c, stop_row0());
    GenerationResult b = chunked.generate(prompts, c, stop_row0());
    EXPECT_EQ(b.generated, a.generated) << precision_name(p);
    EXPECT_LE(a.generated[1].size(), 11u);
    EXPECT_EQ(a.generated[0].size(), 6u);
    // No stop: 16 decode steps (two graphs of 8) end on the step a graph per step ends on.
    c.eos_token_id = -1;
    c.max_new_tokens = 17;
    EXPECT_EQ(chunked.generate(prompts, c).generated, single.generate(prompts, c).generated);
    double worst = 0;
    for (size_t i = 0; i < single.last_logits().size(); ++i)
      worst =
          std::max<double>(worst, std::fabs(chunked.last_logits()[i] - single.last_logits()[i]));
    EXPECT_LE(worst, 1e-5) << precision_name(p);
  }
}

// By default a decoder runs one decode step per graph until 256 have run on its cache (a graph
// of 8 steps costs more to capture than a short run saves), then up to 8; a new cache plan
// starts counting again.
TEST(Cuda, SeveralDecodeStepsPerGraphStartAfter256SingleSteps) {
  SKIP_WITHOUT_GPU();
  unsetenv("GPTRT_CUDA_DECODE_STEPS");
  auto engine = cuda_engine(small_model(2, 128, 2, "gelu_new", 11, 160));
  cuda::Decoder dec(std::shared_ptr<const void>(engine, engine.get()), engine->impl().graph,
                    Precision::kFp32);
  dec.reserve(1, 8, 1);
  const int64_t id = 5, at = 0;
  std::vector<uint8_t> valid(8, 1);
  int64_t pick = -1;
  for (int i = 0; i < 256; ++i) {
    ASSERT_EQ(dec.max_greedy_steps(), 1) << "after " << i << " steps";
    dec.step(&id, &at, valid.data(), 1, 1, nullptr, &pick);
  }
  EXPECT_EQ(dec.max_greedy_steps(), cuda::kMaxDecodeSteps);
  dec.reserve(2, 8, 1);
  EXPECT_EQ(dec.max_greedy_steps(), 1);
}

// The switches for comparisons and tests refuse values they do not know, naming the variable.
TEST(Cuda, UnknownSwitchValuesAreRefused) {
  SKIP_WITHOUT_GPU();
  auto engine = cuda_engine(odd_size_model());
  for (auto [name, value] :
       {std::pair{"GPTRT_CUDA_STREAM", "2"}, std::pair{"GPTRT_CUDA_STREAM", "on"},
        std::pair{"GPTRT_CUDA_SKINNY_TN", "3"}, std::pair{"GPTRT_CUDA_DECODE_STEPS", "9"},
        std::pair{"GPTRT_CUDA_FUSED_ATTENTION", "yes"}}) {
    setenv(name, value, 1);
    try {
      engine->create_execution_context();
      ADD_FAILURE() << name << "=" << value << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    unsetenv(name);
  }
}

// With-past exports on the GPU (issue 26): the past inputs are refused naming --noPast; the
// plain decoder built from the with-past and the merged export generates what Hugging Face does.
TEST(CudaPastExports, PastInputsAskForNoPastAndItsDecoderGeneratesLikeHuggingFace) {
  SKIP_WITHOUT_GPU();
  Network wp = Network::from_onnx(data_path("gpt2-tiny/past/with-past.onnx"));
  expect_error([&] { cuda_engine(wp); }, {"takes past keys and values", "--noPast"});
  HfGenerateGoldens hf;
  for (const char* file : {"with-past", "merged"}) {
    BuildConfig c;
    c.backend = Backend::kCuda;
    c.keep_past = false;
    auto engine =
        Engine::build(Network::from_onnx(data_path("gpt2-tiny/past/") + file + ".onnx"), c);
    Generator gen(engine, 2);
    GenerationConfig g;
    g.max_new_tokens = static_cast<int64_t>(hf.new_tokens[0].size());
    EXPECT_EQ(gen.generate(hf.prompts, g).generated, hf.new_tokens) << file;
  }
}

// An FP16 export on the GPU (issue 26): its decoder is recognised (widened exactly) and an FP16
// engine holds the file's own weights; logits agree with ONNX Runtime CPU on the file.
TEST(CudaFp16Export, RunsTheFusedDecoderWithinFp16Tolerance) {
  SKIP_WITHOUT_GPU();
  std::string base = data_path("gpt2-tiny/variants/fp16-opset17");
  Tensor ids = npy::read(base + ".ids.npy"), mask = npy::read(base + ".mask.npy");
  Tensor want = npy::read(base + ".ort_logits.npy");
  auto engine = cuda_engine(Network::from_onnx(base + ".onnx"), Precision::kFp16);
  Tensor got = engine->create_execution_context()->execute(
      {{"input_ids", ids}, {"attention_mask", mask}})[0];
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_LE(max_abs_diff_masked(got, want, &mask), 0.05);
}

// The server's scheduler on the GPU (issue 27): 96 requests of different lengths over 16 slots
// that share the CUDA decoder's 64 positions all finish, each with its solo greedy tokens (slots
// join and leave mid-run, so the padding columns are compacted away many times over; passes of
// several greedy steps run whenever nothing waits).
TEST(CudaServe, SchedulerFitsWorkIntoTheSharedPositionsAndMatchesSoloRuns) {
  SKIP_WITHOUT_GPU();
  auto engine = cuda_engine(Network::from_hf(data_path("gpt2-tiny/hf")));
  serve::SchedulerConfig sc;
  sc.slots = 16;
  sc.max_queue = 128;
  sc.max_decode_steps = 8;  // (greedy steps several to a CUDA graph once 256 have run singly)
  serve::Scheduler sched(engine, sc, std::make_shared<serve::Metrics>());
  std::mt19937_64 rng(5);
  const int n = 96;
  std::vector<std::vector<int64_t>> prompts(n), got(n);
  std::vector<int64_t> lengths(n);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < n; ++i) {
    prompts[i].resize(1 + rng() % 19);
    for (int64_t& t : prompts[i]) t = static_cast<int64_t>(rng() % 1000);
    lengths[i] = 1 + static_cast<int64_t>(rng() % 29);
    auto r = std::make_shared<serve::Request>();
    r->prompt = prompts[i];
    r->config.max_new_tokens = lengths[i];
    r->on_token = [&, i](const serve::TokenEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      got[static_cast<size_t>(i)].push_back(e.token);
      return true;
    };
    r->on_finish = [&](const serve::Finish& f) {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_EQ(f.reason, "length") << f.message;
      ++done;
      cv.notify_all();
    };
    ASSERT_TRUE(sched.submit(r));
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == n; }));
  }
  Generator solo(engine);
  for (int i = 0; i < n; ++i) {
    GenerationConfig g;
    g.max_new_tokens = lengths[static_cast<size_t>(i)];
    EXPECT_EQ(got[static_cast<size_t>(i)],
              solo.generate({prompts[static_cast<size_t>(i)]}, g).generated[0])
        << "request " << i;
  }
}

}  // namespace
}  // namespace gptrt::test
