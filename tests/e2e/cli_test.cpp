// The CLI: the recipe's commands, the I/O contract, and exit code 1 with a clear message and no
// output file for every bad input.
#include <fstream>

#include "core/npy.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

const std::string kRecipeProfile =
    " --minShapes=input_ids:1x12,attention_mask:1x12 --optShapes=input_ids:8x12,attention_mask:8x12"
    " --maxShapes input_ids:16x12,attention_mask:16x12";

std::string model() {
  return data_path("gpt2-tiny/legacy-opset17.onnx");
}

void save_ints(const std::string& path, Shape shape, int64_t value, DType dt = DType::kInt64) {
  Tensor t(dt, shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dt == DType::kInt64)
      t.data_mut<int64_t>()[i] = value;
    else if (dt == DType::kInt32)
      t.data_mut<int32_t>()[i] = static_cast<int32_t>(value);
    else
      t.data_mut<float>()[i] = static_cast<float>(value);
  }
  npy::write(path, t);
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    engine = dir + "/recipe.engine";
    CliResult r = run_cli("build --onnx=" + model() + " --saveEngine=" + engine + kRecipeProfile);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Runs a command expected to fail: exit 1, message parts present, no export dir written.
  void expect_refused(const std::string& args, std::initializer_list<std::string> parts) {
    std::string out_dir = dir + "/out";
    bool builds = args.rfind("build", 0) == 0;
    CliResult r = run_cli(args + (builds ? "" : " --exportOutput=" + out_dir));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    for (const std::string& p : parts)
      EXPECT_NE(r.output.find(p), std::string::npos) << "lacks '" << p << "': " << r.output;
    EXPECT_FALSE(std::filesystem::exists(out_dir)) << "an output was written despite the error";
  }
  std::string dir, engine;
};

TEST_F(Cli, RecipeExecPrintsTrtexecSummary) {
  CliResult r = run_cli("exec --loadEngine=" + engine +
                        " --shapes=input_ids:8x12,attention_mask:8x12 --iterations=5 --duration=0 "
                        "--warmUp=0 --exportTimes=" +
                        dir + "/times.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"=== Performance summary ===", "Throughput:", "Latency: min =", "median =",
                        "percentile(90%)", "percentile(95%)", "percentile(99%)",
                        "Engine load time:", "input_ids:8x12"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  }
  std::ifstream times(dir + "/times.json");
  std::string text((std::istreambuf_iterator<char>(times)), {});
  EXPECT_NE(text.find("latencyMs"), std::string::npos);
}

TEST_F(Cli, ExecBuildsFromOnnxWithBothFlagForms) {
  CliResult r =
      run_cli("exec --onnx " + model() + " --saveEngine " + dir + "/e2.engine" + kRecipeProfile +
              " --iterations 2 --duration 0 --warmUp 0 --fp16 --useCudaGraph");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Build time:"), std::string::npos);
  EXPECT_NE(r.output.find("computes in FP32"), std::string::npos) << "the --fp16 notice is missing";
  EXPECT_NE(r.output.find("--useCudaGraph has no effect"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir + "/e2.engine"));
}

TEST_F(Cli, RunWritesOutputsThatMatchGoldens) {
  auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  npy::write(dir + "/ids.npy", goldens.at("case2.input_ids"));
  npy::write(dir + "/mask.npy", goldens.at("case2.attention_mask"));
  // A fresh default-profile engine (the recipe profile fixes seq 12 and batch <= 16: case 2 is
  // 2x12).
  CliResult r =
      run_cli("run --loadEngine=" + engine + " --loadInputs=input_ids:" + dir +
              "/ids.npy,attention_mask:" + dir + "/mask.npy --exportOutput=" + dir + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Tensor logits = npy::read(dir + "/out/logits.npy");
  const Tensor& mask = goldens.at("case2.attention_mask");
  EXPECT_LE(max_abs_diff_masked(logits, goldens.at("case2.logits"), &mask), 1e-4);
}

TEST_F(Cli, Int32NpyInputsAreAccepted) {
  save_ints(dir + "/ids.npy", {2, 12}, 7, DType::kInt32);
  save_ints(dir + "/mask.npy", {2, 12}, 1, DType::kInt32);
  CliResult r = run_cli("run --loadEngine=" + engine + " --loadInputs=input_ids:" + dir +
                        "/ids.npy,attention_mask:" + dir + "/mask.npy");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(Cli, BatchAboveProfile) {
  expect_refused("exec --loadEngine=" + engine + " --shapes=input_ids:17x12,attention_mask:17x12",
                 {"dimension 0", "is 17", "1..16", "--maxShapes"});
}

TEST_F(Cli, SeqAboveProfile) {
  expect_refused("run --loadEngine=" + engine + " --shapes=input_ids:1x13,attention_mask:1x13",
                 {"dimension 1", "is 13", "12..12"});
}

TEST_F(Cli, SeqBelowProfile) {
  expect_refused("run --loadEngine=" + engine + " --shapes=input_ids:1x3,attention_mask:1x3",
                 {"dimension 1", "is 3"});
}

TEST_F(Cli, InputsDisagree) {
  save_ints(dir + "/ids.npy", {2, 12}, 7);
  save_ints(dir + "/mask.npy", {3, 12}, 1);
  expect_refused("run --loadEngine=" + engine + " --loadInputs=input_ids:" + dir +
                     "/ids.npy,attention_mask:" + dir + "/mask.npy",
                 {"batch_size", "must agree"});
}

TEST_F(Cli, WrongDtype) {
  save_ints(dir + "/ids.npy", {2, 12}, 7);
  save_ints(dir + "/mask.npy", {2, 12}, 1, DType::kFloat32);
  expect_refused("run --loadEngine=" + engine + " --loadInputs=input_ids:" + dir +
                     "/ids.npy,attention_mask:" + dir + "/mask.npy",
                 {"float32", "expected int64"});
}

TEST_F(Cli, TokenIdOutOfRange) {
  save_ints(dir + "/ids.npy", {2, 12}, 1000);
  save_ints(dir + "/mask.npy", {2, 12}, 1);
  expect_refused("run --loadEngine=" + engine + " --loadInputs=input_ids:" + dir +
                     "/ids.npy,attention_mask:" + dir + "/mask.npy",
                 {"1000", "[0, 1000)"});
}

TEST_F(Cli, OversizedPromptOnDefaultProfile) {
  expect_refused("run --onnx=" + model() + " --shapes=input_ids:1x65,attention_mask:1x65",
                 {"is 65", "1..64"});
  // Checked before any input is made: 2^31 tokens are refused at once, not after filling 17 GB.
  expect_refused(
      "run --onnx=" + model() + " --shapes=input_ids:1x2147483648,attention_mask:1x2147483648",
      {"is 2147483648", "outside every optimization profile"});
}

TEST_F(Cli, BadFlagsAndFiles) {
  expect_refused("exec --loadEngine=" + engine + " --iterations=ten",
                 {"--iterations expects an integer"});
  expect_refused("exec --loadEngine=" + engine + " --shapez=input_ids:1x12",
                 {"unknown flag", "did you mean --shapes"});
  expect_refused("build --onnx=" + model() + " --saveEngine", {"flag --saveEngine needs a value"});
  expect_refused("exec --loadEngine=" + engine + " --fp16=maybe", {"--fp16", "maybe", "switch"});
  expect_refused("exec --loadEngine=" + engine + " --iterations=3 --iterations=5",
                 {"--iterations is given 2 times", "give it once"});
  expect_refused("exec --loadEngine=" + engine + " --verbose --verbose", {"--verbose", "2 times"});
  expect_refused("exec --loadEngine=" + engine + " --duration=inf", {"--duration", "finite"});
  expect_refused("exec --loadEngine=" + engine + " --duration=100000",
                 {"--duration", "0 to 86400"});
  expect_refused("exec --loadEngine=" + engine + " --threads=3000000000",
                 {"--threads", "1 to 4096"});
  CliResult gen = run_cli("generate --loadEngine=" + engine +
                          " --prompt-ids 1,2 --max-new-tokens 9223372036854775807");
  EXPECT_EQ(gen.exit_code, 1) << gen.output;
  EXPECT_NE(gen.output.find("exceeds the model's 64 positions"), std::string::npos) << gen.output;
  expect_refused("run --loadEngine=" + dir + "/missing.engine", {"cannot open", "missing.engine"});
  expect_refused("run --onnx=" + model() + " --loadEngine=" + engine, {"exactly one of"});
  expect_refused(
      "build --onnx=" + model() + " --saveEngine=" + dir + "/x.engine --minShapes=input_ids:1x12",
      {"once per optimization profile"});
  expect_refused("build --onnx=" + model() + " --saveEngine=" + dir +
                     "/x.engine --minShapes=input_ids:1xA,attention_mask:1x12 "
                     "--maxShapes=input_ids:1x12,attention_mask:1x12",
                 {"non-negative integers"});
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.engine"));
}

TEST_F(Cli, InspectAndVersion) {
  CliResult r = run_cli("inspect " + engine);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"backend: cpu", "profile 0", "min [1, 12]", "max [16, 12]",
                        "logits: float32 [batch_size, seq_len, 1000]", "opset 17", "pytorch"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  }
  r = run_cli("inspect " + model());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("parameters: 232192"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("LayerNormalization"), std::string::npos);
  r = run_cli("--version");
  ASSERT_EQ(r.exit_code, 0);
  for (const char* s : {"gptrt 0.1.0", "commit", "compiler:", "CPU:", "CPU ISA:", "CUDA"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s;
}

// --int8 --int8Group=16 from the command line: the engine says how its weights share scales in
// `inspect`; a group that does not divide a layer's K, or one without --int8, is refused by
// name and leaves no engine file.
TEST_F(Cli, Int8GroupsBuildAndInspect) {
  const std::string out = temp_dir("cli_int8_groups");
  CliResult r = run_cli("build --onnx=" + model() + " --int8 --int8Group=16 --saveEngine=" + out +
                        "/g16.engine");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("inspect " + out + "/g16.engine");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("precision: int8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("INT8 weights: a scale per output channel and 16 weights along K"),
            std::string::npos)
      << r.output;
  r = run_cli("build --onnx=" + model() + " --int8 --saveEngine=" + out + "/g0.engine");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_cli("inspect " + out + "/g0.engine");
  EXPECT_NE(r.output.find("INT8 weights: a scale per output channel\n"), std::string::npos)
      << r.output;
  expect_refused(
      "build --onnx=" + model() + " --int8 --int8Group=48 --saveEngine=" + out + "/x.engine",
      {"--int8Group", "does not divide K = 64"});
  expect_refused("build --onnx=" + model() + " --int8Group=16 --saveEngine=" + out + "/x.engine",
                 {"--int8Group=16", "not INT8", "add --int8"});
  expect_refused(
      "build --onnx=" + model() + " --int8 --int8Group=-16 --saveEngine=" + out + "/x.engine",
      {"--int8Group"});
  EXPECT_FALSE(std::filesystem::exists(out + "/x.engine"));
}

// Every subcommand answers --help with its usage (generate once had no such flag).
TEST(CliHelp, EverySubcommandHasHelp) {
  for (const char* cmd : {"build", "run", "exec", "inspect", "generate", "tokenize", "make-model",
                          "export-onnx", "bench"}) {
    CliResult r = run_cli(std::string(cmd) + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.output;
    EXPECT_NE(r.output.find("usage: gptrt " + std::string(cmd)), std::string::npos)
        << cmd << ": " << r.output;
  }
}

}  // namespace
}  // namespace gptrt::test
