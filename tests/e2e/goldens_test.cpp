// Every fixture export and variant, end to end against PyTorch goldens (max |dlogit| <= 1e-4 at
// non-pad positions).
#include <cctype>
#include <fstream>
#include <tuple>

#include "backends/cpu/gemm.h"
#include "backends/cuda/cuda_backend.h"

#include "core/half.h"
#include "core/npy.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

constexpr double kTolerance = 1e-4;

// One goldens body for every backend: each fixture export (and the HF folder) built for the
// backend, run on 1 and 2 threads (CPU backends) or kernel by kernel, then through a captured
// CUDA graph and its replay (cuda).
using GoldensCase = std::tuple<std::string, Backend>;

class FixtureExport : public ::testing::TestWithParam<GoldensCase> {};

TEST_P(FixtureExport, MatchesPyTorchGoldens) {
  const auto& [file, backend] = GetParam();
  std::string why;
  if (backend == Backend::kCuda && cuda::device_sm(&why).empty())
    GTEST_SKIP() << "CUDA backend test skipped: " << why;
  BuildConfig config;
  config.backend = backend;
  Network net = file == "gpt2-tiny/hf" ? Network::from_hf(data_path(file))
                                       : Network::from_onnx(data_path(file));
  auto engine = Engine::build(net, config);
  if (backend == Backend::kCpu) {
    EXPECT_EQ(engine->info().target, cpu::isa_name(cpu::best_isa()));
    EXPECT_EQ(engine->info().model.op_counts.count("Gemm"), 0u) << "linear layers not lowered";
  }
  if (backend_on_device(backend)) {
    auto ctx = engine->create_execution_context();
    ctx->set_cuda_graphs(false);
    expect_fixture_goldens(*ctx, file + " (kernels)");
    ctx->set_cuda_graphs(true);
    expect_fixture_goldens(*ctx, file + " (CUDA graphs, first use)");
    expect_fixture_goldens(*ctx, file + " (CUDA graphs, replayed)");
    EXPECT_GT(ctx->last_timings().compute_ms, 0);
    return;
  }
  for (int threads : {1, 2})
    expect_fixture_goldens(*engine->create_execution_context(threads),
                           file + " threads " + std::to_string(threads));
}

INSTANTIATE_TEST_SUITE_P(
    AllExports, FixtureExport,
    ::testing::Combine(::testing::Values("gpt2-tiny/legacy-opset13.onnx",
                                         "gpt2-tiny/legacy-opset17.onnx",
                                         "gpt2-tiny/external/legacy-opset13.onnx",
                                         "gpt2-tiny/external/legacy-opset17.onnx",
                                         "gpt2-tiny/variants/dynamo-opset18.onnx", "gpt2-tiny/hf"),
                       ::testing::Values(Backend::kReference, Backend::kCpu, Backend::kCuda)),
    [](const auto& p) {
      std::string name = std::get<0>(p.param) + "_" + backend_name(std::get<1>(p.param));
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      return name;
    });

struct Variant {
  const char* name;
  std::vector<std::string> inputs;
  const char* golden;  // "output" = PyTorch fp64, "ort_output" = ONNX Runtime
};

class ExportVariant : public ::testing::TestWithParam<Variant> {};

TEST_P(ExportVariant, MatchesGoldens) {
  const Variant& v = GetParam();
  auto goldens = safetensors::read(data_path("gpt2-tiny/variants/goldens-variants.safetensors"));
  auto engine = build_default(data_path(std::string("gpt2-tiny/variants/") + v.name + ".onnx"));
  auto ctx = engine->create_execution_context();
  for (int c = 0; c < 3; ++c) {
    std::string k = std::string(v.name) + ".case" + std::to_string(c) + ".";
    TensorMap in;
    for (const std::string& n : v.inputs) in[n] = goldens.at(k + n);
    std::vector<Tensor> out = ctx->execute(in);
    const Tensor& mask = goldens.at(k + "attention_mask");
    EXPECT_LE(max_abs_diff_masked(out[0], goldens.at(k + v.golden), &mask), kTolerance) << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    OtherExporters, ExportVariant,
    ::testing::Values(Variant{"dynamo-opset18", {"input_ids", "attention_mask"}, "output"},
                      Variant{"gelu-opset20", {"input_ids", "attention_mask"}, "output"},
                      Variant{"legacy-opset14-int32-posids",
                              {"input_ids", "attention_mask", "position_ids"},
                              "ort_output"},
                      Variant{"base-opset17", {"input_ids", "attention_mask"}, "ort_output"}),
    [](const auto& p) {
      std::string n = p.param.name;
      for (char& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

TEST(ExportVariantInfo, BaseModelSaysItHasNoLogits) {
  ModelInfo info = Network::from_onnx(data_path("gpt2-tiny/variants/base-opset17.onnx")).info();
  ASSERT_EQ(info.outputs.size(), 1u);
  EXPECT_EQ(info.outputs[0].name, "last_hidden_state");
  ASSERT_EQ(info.notices.size(), 1u);
  EXPECT_NE(info.notices[0].find("not logits"), std::string::npos);
}

TEST(ExportVariantInfo, Int32InputsAndPositionIdsAreRangeChecked) {
  auto engine = build_default(data_path("gpt2-tiny/variants/legacy-opset14-int32-posids.onnx"));
  const auto& inputs = engine->info().model.inputs;
  ASSERT_EQ(inputs.size(), 3u);
  EXPECT_EQ(inputs[0].dtype, DType::kInt32);
  EXPECT_EQ(engine->info().index_limits.at("input_ids"), 1000);
}

// A variant file with ONNX Runtime CPU's logits on it (tests/data/make_fp16.py,
// make_ort_optimized.py): its inputs, ORT's logits, and gptrt's on `backend`.
struct OrtVariant {
  std::string onnx;
  Tensor ids, mask, want;
  explicit OrtVariant(const std::string& name) {
    std::string base = data_path("gpt2-tiny/variants/" + name);
    onnx = base + ".onnx";
    ids = npy::read(base + ".ids.npy");
    mask = npy::read(base + ".mask.npy");
    want = npy::read(base + ".ort_logits.npy");
  }
  Tensor run(Backend backend) const {
    BuildConfig c;
    c.backend = backend;
    auto engine = Engine::build(Network::from_onnx(onnx), c);
    return engine->create_execution_context()->execute(
        {{"input_ids", ids}, {"attention_mask", mask}})[0];
  }
};

// An FP16 ONNX file (every float tensor float16), against ONNX Runtime CPU on the same file, a
// left-padded row included (issue 26): the reference backend runs it as it is (FP32 compute,
// rounded to float16 where the graph holds it; float16 logits); the cpu backend recognises the
// decoder in it (widened to float32 exactly) and gives float32 logits.
TEST(ExportVariantInfo, Fp16OnnxMatchesOnnxRuntimeWithinFp16Tolerance) {
  OrtVariant f("fp16-opset17");
  FusedGraph fused = Network::from_onnx(f.onnx).fused();
  EXPECT_TRUE(fused.decoder_recognised) << fused.decoder;
  EXPECT_NE(fused.decoder.find("a float16 export, fused in float32"), std::string::npos)
      << fused.decoder;
  for (Backend backend : {Backend::kReference, Backend::kCpu}) {
    Tensor got = f.run(backend);
    const bool half = backend == Backend::kReference;
    ASSERT_EQ(got.dtype(), half ? DType::kFloat16 : DType::kFloat32);
    ASSERT_EQ(got.shape(), f.want.shape());
    auto at = [&](int64_t i) {
      return half ? half_to_float(got.data<uint16_t>()[i]) : got.data<float>()[i];
    };
    // Where the mask is 1: max |delta| (2 float16 steps at these magnitudes) and top-1.
    double worst = 0;
    int64_t rows = 0, agree = 0, v = f.want.dim(2);
    for (int64_t r = 0; r < f.want.dim(0) * f.want.dim(1); ++r) {
      if (f.mask.data<int64_t>()[r] == 0) continue;
      int64_t a = 0, b = 0;
      for (int64_t k = 0; k < v; ++k) {
        float g = at(r * v + k), w = f.want.data<float>()[r * v + k];
        worst = std::max(worst, double(std::fabs(g - w)));
        if (g > at(r * v + a)) a = k;
        if (w > f.want.data<float>()[r * v + b]) b = k;
      }
      ++rows;
      agree += a == b;
    }
    EXPECT_LE(worst, 0.05) << backend_name(backend);
    EXPECT_GE(double(agree) / double(rows), 0.99) << backend_name(backend);
  }
}

// The same model as ONNX Runtime's transformer optimizer rewrites it (com.microsoft
// SkipLayerNormalization and FastGelu), against ONNX Runtime CPU on that file; the cpu backend
// recognises the decoder in it (issue 26).
TEST(ExportVariantInfo, OnnxRuntimeOptimizedFileMatchesOnnxRuntime) {
  OrtVariant f("ort-optimized-opset17");
  ModelInfo info = Network::from_onnx(f.onnx).info();
  EXPECT_EQ(info.op_counts.count("SkipLayerNormalization")
                ? info.op_counts.at("SkipLayerNormalization")
                : 0,
            4);
  FusedGraph fused = Network::from_onnx(f.onnx).fused();
  EXPECT_TRUE(fused.decoder_recognised) << fused.decoder;
  for (Backend backend : {Backend::kReference, Backend::kCpu})
    EXPECT_LE(max_abs_diff_masked(f.run(backend), f.want, &f.mask), 1e-4) << backend_name(backend);
}

// `gptrt export-onnx`: the Hugging Face folder written as ONNX by gptrt, read back, matches the
// PyTorch goldens (ONNX Runtime runs the same file in `gptrt bench` when torch is missing).
TEST(HfFolder, WrittenAsOnnxAndReadBackMatchesPyTorchGoldens) {
  std::string dir = temp_dir("export_onnx");
  CliResult r =
      run_cli("export-onnx --hf=" + data_path("gpt2-tiny/hf") + " --out=" + dir + "/m.onnx");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CliResult bad = run_cli("export-onnx --hf=" + data_path("gpt2-tiny/hf"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("--out=FILE are required"), std::string::npos) << bad.output;
  auto engine = build_default(dir + "/m.onnx");
  expect_fixture_goldens(*engine->create_execution_context(2), "reference (gptrt-written ONNX)");
}

// The Hugging Face folder of the same model, imported without ONNX, on both backends.
TEST(HfFolder, MatchesPyTorchGoldensOnEveryBackend) {
  Network net = Network::from_hf(data_path("gpt2-tiny/hf"));
  ModelInfo info = net.info();
  EXPECT_EQ(info.parameter_count,
            168192);  // the tied head counted once (the ONNX export stores it twice)
  ASSERT_EQ(info.outputs.size(), 1u);
  EXPECT_EQ(info.outputs[0].name, "logits");
  for (Backend backend : {Backend::kReference, Backend::kCpu}) {
    BuildConfig config;
    config.backend = backend;
    auto engine = Engine::build(net, config);
    EXPECT_EQ(engine->info().index_limits.at("input_ids"), 1000);
    EXPECT_EQ(engine->info().profiles[0].find("input_ids")->max, (Shape{64, 64}));
    expect_fixture_goldens(*engine->create_execution_context(2), backend_name(backend));
  }
}

TEST(HfFolder, BadFoldersAreRefusedWithTheReason) {
  std::string dir = temp_dir("hf_bad");
  expect_error([&] { Network::from_hf(dir); }, {"config.json"});
  std::filesystem::copy_file(data_path("gpt2-tiny/hf/config.json"), dir + "/config.json");
  expect_error([&] { Network::from_hf(dir); }, {"model.safetensors"});
  // A checkpoint missing a tensor names it.
  auto st = safetensors::read(data_path("gpt2-tiny/hf/model.safetensors"));
  std::string header = "{";
  std::string data;
  for (const auto& [name, t] : st) {
    if (name == "transformer.h.1.mlp.c_fc.weight") continue;
    std::string dims;
    for (int64_t d : t.shape()) dims += (dims.empty() ? "" : ",") + std::to_string(d);
    header += std::string(header.size() > 1 ? "," : "") + "\"" + name +
              "\":{\"dtype\":\"F32\",\"shape\":[" + dims + "],\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + t.nbytes()) + "]}";
    data.append(static_cast<const char*>(t.raw()), t.nbytes());
  }
  header += "}";
  uint64_t len = header.size();
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header << data;
  out.close();
  expect_error([&] { Network::from_hf(dir); }, {"transformer.h.1.mlp.c_fc.weight"});
  // Another architecture.
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"llama\", \"n_layer\": 2}";
  expect_error([&] { Network::from_hf(dir); }, {"llama", "GPT-2 family"});
}

}  // namespace
}  // namespace gptrt::test
