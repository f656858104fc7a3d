// Generation with a KV cache on the cpu backend: the fixture's Hugging Face generate goldens
// (batch 1, and batch 3 left-padded) reproduced exactly; every decode step's logits against a
// full re-run of the sequence; seeded sampling; errors; the CLI.
#include "gptrt/generate.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

std::shared_ptr<const Engine> cpu_engine(
    const std::string& file = "gpt2-tiny/legacy-opset17.onnx") {
  BuildConfig c;
  c.backend = Backend::kCpu;
  return Engine::build(Network::from_onnx(data_path(file)), c);
}

const std::map<std::string, Tensor>& goldens() {
  static const auto g = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  return g;
}

std::vector<int64_t> row(const Tensor& t, int64_t r, int64_t from = 0) {
  std::vector<int64_t> v;
  for (int64_t i = from; i < t.dim(1); ++i) v.push_back(t.data<int64_t>()[r * t.dim(1) + i]);
  return v;
}

TEST(Generate, ReproducesHuggingFaceGreedyGoldens) {
  for (const char* file : {"gpt2-tiny/legacy-opset17.onnx", "gpt2-tiny/legacy-opset13.onnx"}) {
    Generator gen(cpu_engine(file), 2);
    GenerationConfig c;
    // gen0: batch 1, 16 new tokens.
    const Tensor& p0 = goldens().at("gen0.prompt");
    const Tensor& o0 = goldens().at("gen0.output");
    c.max_new_tokens = o0.dim(1) - p0.dim(1);
    GenerationResult r0 = gen.generate({row(p0, 0)}, c);
    EXPECT_EQ(r0.generated[0], row(o0, 0, p0.dim(1))) << file;
    // gen1: batch 3, rows 1 and 2 left-padded by 2 and 4, pad id 0, 12 new tokens.
    const Tensor& p1 = goldens().at("gen1.prompt");
    const Tensor& m1 = goldens().at("gen1.attention_mask");
    const Tensor& o1 = goldens().at("gen1.output");
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t r = 0; r < p1.dim(0); ++r) {
      std::vector<int64_t> p;
      for (int64_t i = 0; i < p1.dim(1); ++i)
        if (m1.data<int64_t>()[r * p1.dim(1) + i])
          p.push_back(p1.data<int64_t>()[r * p1.dim(1) + i]);
      prompts.push_back(p);
    }
    ASSERT_EQ(prompts[1].size(), 4u);
    ASSERT_EQ(prompts[2].size(), 2u);
    c.max_new_tokens = o1.dim(1) - p1.dim(1);
    c.pad_token_id = 0;
    GenerationResult r1 = gen.generate(prompts, c);
    for (int64_t r = 0; r < 3; ++r)
      EXPECT_EQ(r1.generated[static_cast<size_t>(r)], row(o1, r, p1.dim(1)))
          << file << " row " << r;
    EXPECT_EQ(r1.timings.prompt_tokens, 6 + 4 + 2);
    EXPECT_GT(r1.timings.tokens_per_s, 0);
  }
}

TEST(Generate, EveryDecodeStepMatchesAFullRerun) {
  auto engine = cpu_engine();
  Generator gen(engine, 2);
  auto ctx = engine->create_execution_context(2);
  const std::vector<std::vector<int64_t>> start = {{5, 17, 300, 2, 999, 41, 7},
                                                   {1, 2, 3, 4, 5, 6, 8}};
  GenerationConfig c;
  c.max_new_tokens = 10;
  GenerationResult all = gen.generate(start, c);
  int64_t v = gen.vocab_size();
  // Generating k tokens leaves the logits of the step that picked token k: prefill for k = 1,
  // then decode steps reading the cache. Each must equal a full forward pass over the prompt and
  // the k - 1 tokens before it (no padding, so the positions agree).
  for (int64_t k = 1; k <= 10; ++k) {
    c.max_new_tokens = k;
    GenerationResult r = gen.generate(start, c);
    int64_t s = 7 + k - 1;
    Tensor ids(DType::kInt64, {2, s}), mask(DType::kInt64, {2, s});
    for (int64_t b = 0; b < 2; ++b) {
      const auto& gen_b = all.generated[static_cast<size_t>(b)];
      EXPECT_EQ(r.generated[static_cast<size_t>(b)],
                std::vector<int64_t>(gen_b.begin(), gen_b.begin() + k));
      for (int64_t i = 0; i < s; ++i) {
        ids.data_mut<int64_t>()[b * s + i] =
            i < 7 ? start[static_cast<size_t>(b)][static_cast<size_t>(i)]
                  : gen_b[static_cast<size_t>(i - 7)];
        mask.data_mut<int64_t>()[b * s + i] = 1;
      }
    }
    Tensor full = ctx->execute({{"input_ids", ids}, {"attention_mask", mask}})[0];
    double worst = 0;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < v; ++t)
        worst =
            std::max<double>(worst, std::fabs(gen.last_logits()[static_cast<size_t>(b * v + t)] -
                                              full.data<float>()[(b * s + s - 1) * v + t]));
    EXPECT_LE(worst, 1e-4) << "after " << k << " tokens";
  }
}

TEST(Generate, SamplingIsSeededAndTopKOneIsGreedy) {
  Generator gen(cpu_engine(), 1);
  std::vector<std::vector<int64_t>> p = {{10, 20, 30}};
  GenerationConfig greedy;
  greedy.max_new_tokens = 12;
  GenerationConfig c = greedy;
  c.do_sample = true;
  c.temperature = 1.5f;
  c.top_p = 0.95f;
  c.repetition_penalty = 1.3f;
  c.seed = 7;
  auto a = gen.generate(p, c).generated[0];
  auto b = gen.generate(p, c).generated[0];
  EXPECT_EQ(a, b);
  c.seed = 8;
  auto d = gen.generate(p, c).generated[0];
  EXPECT_NE(a, d);
  c.top_k = 1;
  c.repetition_penalty = 1.0f;
  EXPECT_EQ(gen.generate(p, c).generated[0], gen.generate(p, greedy).generated[0]);
  // A row stops at the end-of-text id; a finished batch stops early.
  auto g = gen.generate(p, greedy).generated[0];
  GenerationConfig eos = greedy;
  eos.eos_token_id = g[3];
  auto stopped = gen.generate(p, eos).generated[0];
  auto first = std::find(g.begin(), g.end(), g[3]);  // the row ends at its first eos
  EXPECT_EQ(stopped, std::vector<int64_t>(g.begin(), first + 1));
}

TEST(Generate, BadRequestsGiveClearErrors) {
  Generator gen(cpu_engine(), 1);
  GenerationConfig c;
  expect_error([&] { gen.generate({}, c); }, {"no prompts"});
  expect_error([&] { gen.generate({{}}, c); }, {"prompt 0 is empty"});
  expect_error([&] { gen.generate({{1, 1000}}, c); }, {"token id 1000", "[0, 1000)"});
  c.max_new_tokens = 60;
  expect_error(
      [&] {
        gen.generate({{1, 2, 3, 4, 5}}, c);
      },
      {"5 tokens plus 60 new tokens", "64 positions", "--truncate"});
  BuildConfig ref;  // the reference backend runs the imported graph: no decoder plan
  expect_error(
      [&] {
        Generator g(
            Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), ref));
      },
      {"decoder was recognised", "reference"});
}

TEST(Generate, CliGeneratesAndTokenizes) {
  std::string model = data_path("gpt2-tiny/legacy-opset17.onnx");
  CliResult r = run_cli("generate --onnx " + model +
                        " --prompt-ids 1,2,3 --prompt-ids 7,8 --max-new-tokens 5 --format json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s :
       {"\"results\": [{\"prompt_ids\": [1, 2, 3], \"generated_ids\": [",
        "{\"prompt_ids\": [7, 8], \"generated_ids\": [", "\"timings\": {\"prompt_tokens\": 5",
        "prefill_ms", "decode_ms_per_token", "tokens_per_s", "decode:"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  r = run_cli("generate --onnx " + model + " --prompt-ids 1,x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not a comma-separated list"), std::string::npos) << r.output;
  r = run_cli("generate --onnx " + model + " --prompt hello");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--prompt needs a tokenizer"), std::string::npos) << r.output;
  r = run_cli("generate --onnx " + model + " --prompt-ids 1,2 --max-new-tokens 100");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("exceeds the model's 64 positions"), std::string::npos) << r.output;
  r = run_cli("tokenize --tokenizer " + data_path("tokenizer") + " --text " +
              shell_arg("Hello, world!"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("{\"ids\": [15496, 11, 995, 0]}"), std::string::npos) << r.output;
  r = run_cli("tokenize --tokenizer " + data_path("tokenizer") + " --decode 15496,11,995,0");
  EXPECT_NE(r.output.find("{\"text\": \"Hello, world!\"}"), std::string::npos) << r.output;
  r = run_cli("tokenize --text hi");
  EXPECT_EQ(r.exit_code, 1);
}

}  // namespace
}  // namespace gptrt::test
