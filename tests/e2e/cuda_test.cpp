// The CUDA backend, on a machine with an NVIDIA GPU (skipped elsewhere, saying why): every
// fixture export end to end against the goldens in FP32 (no TF32), with and without CUDA graphs;
// TF32/FP16/BF16 top-1 agreement; every kernel against the reference backend on a model of odd
// sizes (head size 40, vocabulary 257) with padded rows; engines saved and loaded; the CLI.
#include <random>

#include "backends/cuda/cuda_backend.h"
#include "hf/make_model.h"
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

TEST(Cuda, EveryFixtureExportMatchesTheGoldensInFp32) {
  SKIP_WITHOUT_GPU();
  // (gelu-opset20 uses exact GELU, not the goldens' tanh form: the odd-size test covers it.)
  for (const char* file : {"gpt2-tiny/legacy-opset13.onnx", "gpt2-tiny/legacy-opset17.onnx",
                           "gpt2-tiny/variants/dynamo-opset18.onnx"}) {
    auto engine = cuda_engine(Network::from_onnx(data_path(file)));
    EXPECT_EQ(engine->info().target, cuda::device_sm());
    auto ctx = engine->create_execution_context();
    ctx->set_cuda_graphs(false);
    expect_fixture_goldens(*ctx, std::string(file) + " (kernels)");
    ctx->set_cuda_graphs(true);
    expect_fixture_goldens(*ctx, std::string(file) + " (CUDA graphs, first use)");
    expect_fixture_goldens(*ctx, std::string(file) + " (CUDA graphs, replayed)");
    ExecutionContext::Timings t = ctx->last_timings();
    EXPECT_GT(t.compute_ms, 0);
  }
  auto hf = cuda_engine(Network::from_hf(data_path("gpt2-tiny/hf")));
  expect_fixture_goldens(*hf->create_execution_context(), "HF folder");
}

TEST(Cuda, ReducedPrecisionsAgreeOnTheTopToken) {
  SKIP_WITHOUT_GPU();
  std::vector<Precision> precisions = {Precision::kTf32, Precision::kFp16};
  if (cuda::device_sm() >= "sm_80") precisions.push_back(Precision::kBf16);
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

TEST(Cuda, EveryKernelMatchesTheReferenceAtOddSizes) {
  SKIP_WITHOUT_GPU();
  // Head size 40 (not a multiple of 32), 3 heads, vocabulary 257, 3 layers, exact-erf GELU.
  hf::Gpt2Config cfg;
  cfg.n_layer = 3;
  cfg.n_embd = 120;
  cfg.n_head = 3;
  cfg.vocab_size = 257;
  cfg.n_positions = 50;
  cfg.activation_function = "gelu";
  std::string dir = temp_dir("cuda_odd");
  hf::make_model(cfg, 7, dir);
  Network net = Network::from_hf(dir);
  auto gpu = cuda_engine(net)->create_execution_context();
  BuildConfig ref_config;
  auto ref = Engine::build(net, ref_config)->create_execution_context(1);
  std::mt19937 rng(3);
  for (auto [b, s] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {2, 50}}) {
    Tensor ids(DType::kInt64, {b, s}), mask(DType::kInt64, {b, s});
    for (int64_t i = 0; i < b * s; ++i) {
      ids.data_mut<int64_t>()[i] = static_cast<int64_t>(rng() % 257);
      mask.data_mut<int64_t>()[i] = (i % s) >= (i / s) ? 1 : 0;  // row r left-padded by r
    }
    TensorMap in{{"input_ids", ids}, {"attention_mask", mask}};
    Tensor want = ref->execute(in)[0];
    for (bool graphs : {false, true}) {
      gpu->set_cuda_graphs(graphs);
      Tensor got = gpu->execute(in)[0];
      EXPECT_LE(max_abs_diff_masked(got, want, &mask), 1e-4)
          << b << "x" << s << (graphs ? " graphs" : "");
    }
  }
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

}  // namespace
}  // namespace gptrt::test
