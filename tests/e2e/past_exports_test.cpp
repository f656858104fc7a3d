// With-past and merged exports (issue 26): optimum's files of the fixture GPT-2 and
// scripts/export_onnx.py --with-past's with transformers 5 (TorchScript and dynamo)
// (tests/data/gpt2-tiny/past, made by tests/data/make_past_exports.py) run as the graph says on
// every backend that runs them, matching ONNX Runtime's logits and presents; generation from
// them (the plain decoder, gptrt's own KV cache) equals Hugging Face's greedy generate.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/npy.h"
#include "gptrt/generate.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

namespace fs = std::filesystem;

// CASE.in.<input>.npy, or CASE.out.<output>.npy, by name.
std::map<std::string, Tensor> tensors(const std::string& kase, const std::string& kind) {
  std::map<std::string, Tensor> r;
  const std::string prefix = kase + "." + kind + ".";
  for (const auto& e : fs::directory_iterator(data_path("gpt2-tiny/past"))) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size() + 4)
      r[name.substr(prefix.size(), name.size() - prefix.size() - 4)] = npy::read(e.path().string());
  }
  return r;
}

// Largest |a - b| over the positions the mask keeps: logits [B,S,V] at the new positions,
// presents [B,H,past+S,D] at every position (a padding row's values are not compared: the fused
// decoder gives zeros where the export attends to nothing in its own way).
double masked_diff(const Tensor& a, const Tensor& b, const Tensor& mask, bool logits) {
  const int64_t rows = mask.dim(0), seen = mask.dim(1);
  double worst = 0;
  if (logits) {
    const int64_t s = a.dim(1), v = a.dim(2);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t t = 0; t < s; ++t) {
        if (!mask.data<int64_t>()[r * seen + seen - s + t]) continue;
        for (int64_t k = 0; k < v; ++k) {
          int64_t i = (r * s + t) * v + k;
          worst = std::max(worst, double(std::fabs(a.data<float>()[i] - b.data<float>()[i])));
        }
      }
    return worst;
  }
  const int64_t h = a.dim(1), t_all = a.dim(2), d = a.dim(3);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < h; ++j)
      for (int64_t t = 0; t < t_all; ++t) {
        if (!mask.data<int64_t>()[r * seen + t]) continue;
        for (int64_t k = 0; k < d; ++k) {
          int64_t i = ((r * h + j) * t_all + t) * d + k;
          worst = std::max(worst, double(std::fabs(a.data<float>()[i] - b.data<float>()[i])));
        }
      }
  return worst;
}

void expect_onnx_runtime_outputs(const Engine& engine, const std::string& kase) {
  std::map<std::string, Tensor> in = tensors(kase, "in"), want = tensors(kase, "out");
  ASSERT_FALSE(in.empty()) << kase;
  ASSERT_EQ(want.size(), 5u) << kase;
  TensorMap inputs(in.begin(), in.end());
  std::vector<Tensor> got = engine.create_execution_context()->execute(inputs);
  const EngineInfo& info = engine.info();
  ASSERT_EQ(got.size(), info.model.outputs.size());
  for (size_t k = 0; k < got.size(); ++k) {
    const std::string& name = info.model.outputs[k].name;
    ASSERT_TRUE(want.count(name)) << name;
    ASSERT_EQ(got[k].shape(), want.at(name).shape()) << kase << " " << name;
    EXPECT_LE(masked_diff(got[k], want.at(name), in.at("attention_mask"), name == "logits"), 1e-4)
        << kase << " " << name << " on " << backend_name(info.backend);
  }
}

constexpr const char* kPastFiles[] = {
    "with-past", "merged", "t5-torchscript", "t5-dynamo", "with-past-ort-optimized",
    "first-step"};  // presents out, no past in

TEST(PastExports, LogitsAndPresentsMatchOnnxRuntime) {
  for (const char* file : kPastFiles) {
    for (Backend backend : {Backend::kReference, Backend::kCpu}) {
      BuildConfig c;
      c.backend = backend;
      c.default_max_batch = 4;
      auto engine =
          Engine::build(Network::from_onnx(data_path("gpt2-tiny/past/") + file + ".onnx"), c);
      // A past of 2 with a left-padded row, and the first step (past length 0).
      for (const char* past : {".past2", ".past0"})
        if (std::string(file) != "first-step" || std::string(past) == ".past0")
          expect_onnx_runtime_outputs(*engine, std::string(file) + past);
    }
  }
}

// The with-past export's decoder is recognised with its past kept (the cpu plan is the fused
// decoder); the merged export, traced for one new token per cached step, runs its If as it is,
// and both give the plain decoder for generation.
TEST(PastExports, InspectSaysWhichFormItFound) {
  for (const char* file : {"with-past", "t5-torchscript", "t5-dynamo", "with-past-ort-optimized"}) {
    FusedGraph wp = Network::from_onnx(data_path("gpt2-tiny/past/") + file + ".onnx").fused();
    EXPECT_TRUE(wp.decoder_recognised) << file;
    EXPECT_NE(wp.decoder.find("with-past export, past inputs and presents kept"), std::string::npos)
        << wp.decoder;
    EXPECT_NE(wp.decoder.find("for generation (--noPast): GPT-2 decoder"), std::string::npos);
  }
  FusedGraph opt =
      Network::from_onnx(data_path("gpt2-tiny/past/with-past-ort-optimized.onnx")).fused();
  EXPECT_NE(opt.decoder.find("6 ONNX Runtime contrib ops read as the ONNX ops they stand for"),
            std::string::npos)
      << opt.decoder;
  FusedGraph m = Network::from_onnx(data_path("gpt2-tiny/past/merged.onnx")).fused();
  EXPECT_NE(m.decoder.find("for generation (--noPast): GPT-2 decoder: 2 layers"), std::string::npos)
      << m.decoder;
  EXPECT_NE(m.decoder.find("merged export (If on use_cache_branch), past inputs dropped"),
            std::string::npos)
      << m.decoder;
}

// Greedy generation from every with-past form, the merged form and an FP16 export equals Hugging
// Face `generate` on a left-padded batch.
TEST(PastExports, GreedyGenerationMatchesHuggingFace) {
  HfGenerateGoldens hf;
  std::vector<std::string> files;
  for (const char* file : kPastFiles) files.push_back(std::string("past/") + file);
  files.push_back("variants/fp16-opset17");  // an FP16 export, its decoder widened
  for (const std::string& file : files) {
    BuildConfig c;
    c.backend = Backend::kCpu;
    c.keep_past = false;
    auto engine = Engine::build(Network::from_onnx(data_path("gpt2-tiny/" + file + ".onnx")), c);
    std::vector<std::string> inputs;
    for (const TensorDesc& t : engine->info().model.inputs) inputs.push_back(t.name);
    bool three = file.find("merged") == std::string::npos &&
                 file.find("fp16") == std::string::npos && file.find("first") == std::string::npos;
    EXPECT_EQ(inputs.size(), three ? 3u : 2u) << file;
    Generator gen(engine, 2);
    GenerationConfig g;
    g.max_new_tokens = static_cast<int64_t>(hf.new_tokens[0].size());
    EXPECT_EQ(gen.generate(hf.prompts, g).generated, hf.new_tokens) << file;
  }
}

// Engines keep what they were built with: a saved with-past cpu engine and a saved merged
// reference engine (its If and branches in the file) give ONNX Runtime's answers after loading.
TEST(PastExports, EnginesWithPastInputsAndIfSaveAndLoad) {
  std::string dir = temp_dir("past_engines");
  for (auto [file, backend] :
       {std::pair{"with-past", Backend::kCpu}, std::pair{"merged", Backend::kReference}}) {
    BuildConfig c;
    c.backend = backend;
    c.default_max_batch = 4;
    std::string path = dir + "/" + file + ".engine";
    Engine::build(Network::from_onnx(data_path("gpt2-tiny/past/") + file + ".onnx"), c)->save(path);
    auto loaded = Engine::load(path);
    expect_onnx_runtime_outputs(*loaded, std::string(file) + ".past2");
  }
}

// --noPast needs the fused decoder; the reference backend runs graphs as they are.
TEST(PastExports, NoPastIsRefusedWhereItCannotBeHonoured) {
  CliResult r =
      run_cli("build --onnx=" + data_path("gpt2-tiny/past/with-past.onnx") +
              " --backend=reference --noPast --saveEngine=" + temp_dir("nopast") + "/e.engine");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--noPast needs the fused decoder"), std::string::npos) << r.output;
  // An export whose decoder is not recognised cannot become the plain decoder.
  CliResult h = run_cli("build --onnx=" + data_path("hostile/if_outer_values.onnx") +
                        " --noPast --saveEngine=" + temp_dir("nopast2") + "/e.engine");
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_NE(h.output.find("needs the GPT-2 decoder recognised"), std::string::npos) << h.output;
  // The default profile admits a past of 0 (the first step) to n_positions.
  auto engine = build_default(data_path("gpt2-tiny/past/with-past.onnx"));
  const ShapeRange* past = engine->info().profiles[0].find("past_key_values.1.value");
  ASSERT_NE(past, nullptr);
  EXPECT_EQ(past->min, (Shape{1, 4, 0, 16}));
  EXPECT_EQ(past->max[2], 64);
}

// If in general: branches read outer values and initializers; a constant condition is folded.
TEST(ControlFlow, IfRunsTheBranchItsConditionPicks) {
  auto engine = build_default(data_path("hostile/if_outer_values.onnx"));
  auto ctx = engine->create_execution_context();
  Tensor x(DType::kFloat32, {2});
  x.data_mut<float>()[0] = 1.f;
  x.data_mut<float>()[1] = 2.f;
  for (bool c : {true, false}) {
    Tensor cond(DType::kBool, {1});
    static_cast<uint8_t*>(cond.raw_mut())[0] = c;
    Tensor y = ctx->execute({{"c", cond}, {"x", x}})[0];
    EXPECT_EQ(y.data<float>()[0], c ? 11.f : -1.f);
    EXPECT_EQ(y.data<float>()[1], c ? 22.f : -2.f);
  }
  Tensor two(DType::kBool, {2});
  expect_error([&] { ctx->execute({{"c", two}, {"x", x}}); }, {"c"});
  expect_error([&] { Network::from_onnx(data_path("hostile/if_branch_dtypes.onnx")); },
               {"(If): its branches give output 0 as float32 and int64"});
  expect_error([&] { Network::from_onnx(data_path("hostile/if_float_condition.onnx")); },
               {"(If): its condition is float32, If needs bool"});
}

}  // namespace
}  // namespace gptrt::test
