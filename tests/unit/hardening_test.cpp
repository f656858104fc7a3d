// Untrusted files refused with what is wrong (issue 25's cases so far): safetensors entries whose
// shape would wrap the byte count, whose offsets run backwards or overlap; JSON with a key twice;
// a config with a non-positive epsilon; an added token with empty content; ONNX nodes without a
// required attribute.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/checked.h"
#include "core/json.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "hf/gpt2_config.h"
#include "hf/make_model.h"
#include "ir/shape_inference.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::test {
namespace {

// A safetensors file with `header` (JSON) and `data_bytes` zero bytes of data.
std::string safetensors_file(const std::string& dir, const std::string& header, size_t data_bytes) {
  std::string path = dir + "/t.safetensors";
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << std::string(data_bytes, '\0');
  return path;
}

TEST(Hardening, SafetensorsSizesOffsetsAndOverlapsAreChecked) {
  std::string dir = temp_dir("hardening_st");
  // [2^58, 16] float32 is 2^64 bytes: it must not wrap to 0 and pass.
  expect_error(
      [&] {
        safetensors::read(safetensors_file(
            dir,
            R"({"w": {"dtype": "F32", "shape": [288230376151711744, 16], "data_offsets": [0, 0]}})",
            64));
      },
      {"'w'", "overflows 64 bits"});
  expect_error(
      [&] {
        safetensors::read(safetensors_file(
            dir, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [16, 8]}})", 64));
      },
      {"[16, 8)", "end must not come before the start"});
  expect_error(
      [&] {
        safetensors::read(
            safetensors_file(dir,
                             R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                             64));
      },
      {"'a' [0, 16)", "'b' [8, 24)", "overlap"});
  expect_error(
      [&] {
        safetensors::read(
            safetensors_file(dir,
                             R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}})",
                             64));
      },
      {"key \"a\" twice"});
  auto ok = safetensors::read(
      safetensors_file(dir,
                       R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]},
          "e": {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]}})",
                       32));
  EXPECT_EQ(ok.size(), 3u);
}

TEST(Hardening, ConfigEpsilonAndEmptyAddedTokensAreRefused) {
  std::string dir = temp_dir("hardening_cfg");
  std::ofstream(dir + "/config.json")
      << R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000,
            "n_positions": 64, "layer_norm_epsilon": -1e9})";
  expect_error([&] { hf::read_config(dir); }, {"layer_norm_epsilon", "positive"});
  std::ofstream(dir + "/tokenizer.json")
      << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
            "added_tokens": [{"id": 2, "content": ""}]})";
  expect_error([&] { tokenizer::Tokenizer::load(dir + "/tokenizer.json"); },
               {"added token 2", "empty content"});
}

// The spec lets the header be padded with spaces: data may start at an odd offset. Tensors
// there are copied (never read through a misaligned float pointer, which UBSan would flag).
TEST(Hardening, SafetensorsDataAtAnOddOffsetIsCopiedAligned) {
  std::string dir = temp_dir("hardening_align");
  std::string header = R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";
  while ((8 + header.size()) % 4 != 1) header += ' ';
  std::string path = dir + "/t.safetensors";
  {
    std::ofstream f(path, std::ios::binary);
    uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    float v[2] = {1.5f, -2.25f};
    f << header;
    f.write(reinterpret_cast<const char*>(v), 8);
  }
  auto t = safetensors::read(path);
  const Tensor& w = t.at("w");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.raw()) % alignof(float), 0u);
  EXPECT_EQ(w.data<float>()[0], 1.5f);
  EXPECT_EQ(w.data<float>()[1], -2.25f);
}

// Sizes a file gives never wrap: element counts, byte counts, config products.
TEST(Hardening, SizesThatOverflowSixtyFourBitsAreRefused) {
  expect_error(
      [] {
        shape_numel({int64_t{1} << 40, int64_t{1} << 40});
      },
      {"[1099511627776, 1099511627776]", "64 bits"});
  expect_error(
      [] {
        checked::bytes({int64_t{1} << 61, 8}, DType::kFloat32, "weight 'w'");
      },
      {"weight 'w'", "too large"});
  expect_error(
      [] {
        Tensor(DType::kFloat32, {int64_t{1} << 62, 4});
      },
      {"[4611686018427387904, 4]", "more bytes than 64 bits count"});
  std::string dir = temp_dir("hardening_cfg_big");
  std::ofstream(dir + "/config.json")
      << R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 4611686018427387904, "n_head": 4,
            "vocab_size": 288230376151711744, "n_positions": 64})";
  expect_error([&] { hf::read_config(dir); }, {"GPT-2 config", "overflows 64 bits"});
}

// No tensor is allocated past the memory budget: the 16 GiB ConstantOfShape of a 230-byte
// model is refused before any memory is taken, and the budget comes back when tensors go.
TEST(Hardening, TensorsPastTheMemoryBudgetAreRefusedBeforeAllocating) {
  const int64_t before = memory_budget(), in_use = memory_in_use();
  set_memory_budget(int64_t{64} << 20);
  try {
    Tensor ok(DType::kFloat32, {1024, 1024});
    EXPECT_GE(memory_in_use(), in_use + 4 * 1024 * 1024);
    expect_error(
        [] {
          Tensor(DType::kFloat32, {1024, 1024, 16});
        },
        {"[1024, 1024, 16]", "memory budget", "GPTRT_MEMORY_BUDGET"});
  } catch (...) {
    set_memory_budget(before);
    throw;
  }
  set_memory_budget(before);
  EXPECT_EQ(memory_in_use(), in_use);
  expect_error([] { set_memory_budget(0); }, {"positive"});

  std::string dir = temp_dir("hardening_budget");
  std::string engine = dir + "/cos.engine";
  CliResult b = run_cli("build --onnx=" + data_path("hostile/constant_of_shape_16gib.onnx") +
                        " --saveEngine=" + engine);
  ASSERT_EQ(b.exit_code, 0) << b.output;
  ::setenv("GPTRT_MEMORY_BUDGET", "256M", 1);  // for the child process only
  CliResult r = run_cli("run --loadEngine=" + engine + " --exportOutput=" + dir + "/out");
  ::setenv("GPTRT_MEMORY_BUDGET", "lots", 1);
  CliResult bad = run_cli("run --loadEngine=" + engine);
  ::unsetenv("GPTRT_MEMORY_BUDGET");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const char* part :
       {"resource limit", "[16384, 16384, 16] needs 16.00 GiB", "memory budget of 0.25 GiB"})
    EXPECT_NE(r.output.find(part), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("GPTRT_MEMORY_BUDGET='lots' is not a size"), std::string::npos)
      << bad.output;
}

// A token table with no rows makes every id invalid: refused when building (it divided by 0).
TEST(Hardening, AnEmptyTokenTableIsRefused) {
  std::string dir = temp_dir("hardening_empty_table");
  CliResult b = run_cli("build --onnx=" + data_path("hostile/empty_token_table.onnx") +
                        " --saveEngine=" + dir + "/e.engine");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.output.find("'wte', which has shape [0, 64]: no rows"), std::string::npos)
      << b.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/e.engine"));
}

// A bad merge names merges.txt and its line (not vocab.json), with a NUL byte shown escaped
// rather than cutting the message.
TEST(Hardening, TokenizerMessagesNameTheFileAndLineAndShowControlBytes) {
  std::string dir = temp_dir("hardening_merges");
  std::filesystem::copy_file(data_path("tokenizer/vocab.json"), dir + "/vocab.json");
  std::ofstream(dir + "/merges.txt", std::ios::binary)
      << "#version: 0.2\n\u0120 t\nx" << std::string(1, '\0') << "q z\n";
  expect_error([&] { tokenizer::Tokenizer::load(dir); },
               {"merges.txt' line 3", "\"x\\u0000q\"", "missing from the vocabulary"});
  std::ofstream(dir + "/merges.txt", std::ios::binary)
      << "#version: 0.2\nab" << std::string(1, '\0') << "\n";
  expect_error([&] { tokenizer::Tokenizer::load(dir); },
               {"merges.txt': line 2 \"ab\\u0000\" is not 'a b'"});
}

// Dropout in training mode is random: refused by name, not run as identity (issue 26).
TEST(Hardening, DropoutInTrainingModeIsRefused) {
  std::string dir = temp_dir("hardening_dropout");
  CliResult b = run_cli("build --onnx=" + data_path("hostile/dropout_training.onnx") +
                        " --saveEngine=" + dir + "/d.engine");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.output.find("(Dropout): training_mode is true"), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("model.eval()"), std::string::npos) << b.output;
}

// ONNX Runtime's contrib ops: the message names the optimizer and the domain, not the opset.
TEST(Hardening, ContribOpsAreRefusedForWhatTheyAre) {
  CliResult b = run_cli("inspect " + data_path("hostile/contrib_embed_layer_norm.onnx"));
  EXPECT_EQ(b.exit_code, 1);
  for (const char* part :
       {"(op com.microsoft.EmbedLayerNormalization)", "ONNX Runtime's transformer optimizer",
        "FastGelu", "before optimization"})
    EXPECT_NE(b.output.find(part), std::string::npos) << b.output;
  EXPECT_EQ(b.output.find("re-export with a newer"), std::string::npos) << b.output;
  CliResult ops = run_cli("inspect --ops");
  EXPECT_NE(ops.output.find("  com.microsoft.SkipLayerNormalization\n"), std::string::npos)
      << ops.output;
}

// Outputs of float16, uint8 and int8 are exported (as float32, the I/O contract).
TEST(Hardening, SmallDtypeOutputsAreExported) {
  std::string dir = temp_dir("hardening_small_dtypes");
  Tensor x(DType::kFloat32, {4});
  const float v[4] = {1.5f, 2.25f, 7.f, 100.f};
  std::memcpy(x.raw_mut(), v, sizeof v);
  npy::write(dir + "/x.npy", x);
  CliResult r = run_cli("run --onnx=" + data_path("hostile/small_dtype_outputs.onnx") +
                        " --loadInputs=x:" + dir + "/x.npy --exportOutput=" + dir + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const float want[3][4] = {{1.5f, 2.25f, 7.f, 100.f}, {1, 2, 7, 100}, {1, 2, 7, 100}};
  int k = 0;
  for (const char* name : {"h", "u", "s"}) {
    Tensor t = npy::read(dir + "/out/" + name + ".npy");
    ASSERT_EQ(t.dtype(), DType::kFloat32) << name;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(t.data<float>()[i], want[k][i]) << name << i;
    ++k;
  }
}

// Found by fuzzing: Tile's output size past 64 bits and Range up to a NaN were undefined in the
// reference kernels; now each is refused naming the node.
TEST(Hardening, TileOverflowAndRangeToNanAreRefused) {
  std::string dir = temp_dir("hardening_tile_range");
  CliResult t = run_cli("run --onnx=" + data_path("hostile/tile_overflow.onnx"));
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_NE(t.output.find("(Tile): [2, 3] tiled is too large"), std::string::npos) << t.output;
  Tensor nan(DType::kFloat32, {});
  nan.data_mut<float>()[0] = NAN;
  npy::write(dir + "/nan.npy", nan);
  CliResult r = run_cli("run --onnx=" + data_path("hostile/range_nan.onnx") +
                        " --loadInputs=limit:" + dir + "/nan.npy");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("(Range): Range from 0.000000 to nan"), std::string::npos) << r.output;
}

// Slice steps of +-(2^63 - 1) select one element each way, as ONNX Runtime gives (their length
// and stride arithmetic overflowed).
TEST(Hardening, SliceStepsNearInt64LimitsSelectOneElement) {
  std::string dir = temp_dir("hardening_slice");
  Tensor x(DType::kFloat32, {5});
  for (int i = 0; i < 5; ++i) x.data_mut<float>()[i] = static_cast<float>(i);
  npy::write(dir + "/x.npy", x);
  CliResult r = run_cli("run --onnx=" + data_path("hostile/slice_huge_steps.onnx") +
                        " --loadInputs=x:" + dir + "/x.npy --exportOutput=" + dir + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Tensor y = npy::read(dir + "/out/y.npy"), z = npy::read(dir + "/out/z.npy");
  ASSERT_EQ(y.shape(), Shape{1});
  ASSERT_EQ(z.shape(), Shape{1});
  EXPECT_EQ(y.data<float>()[0], 0.f);
  EXPECT_EQ(z.data<float>()[0], 4.f);
}

// Bounded work: text past the tokenizer's limit is refused before any is encoded.
TEST(Hardening, TextPastTheTokenizerLimitIsRefused) {
  auto t = tokenizer::Tokenizer::load(data_path("tokenizer/tokenizer.json"));
  std::string big(tokenizer::Tokenizer::kMaxTextBytes + 1, 'a');
  try {
    t.encode(big);
    ADD_FAILURE() << "encoded " << big.size() << " bytes";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceLimit);
    EXPECT_NE(std::string(e.what()).find("64 MiB"), std::string::npos) << e.what();
  }
}

// Only input_ids given: the mask takes the same batch and sequence length.
TEST(Hardening, AnInputNotGivenTakesTheSizesItSharesWithTheGivenOnes) {
  CliResult r = run_cli("run --onnx=" + data_path("gpt2-tiny/legacy-opset17.onnx") +
                        " --shapes=input_ids:2x12");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("float32 [2, 12, 1000]"), std::string::npos) << r.output;
}

// make-model writes through exclusive temporaries too: links planted at the old fixed
// ".partial" names are not written through, and no temporary is left.
TEST(Hardening, MakeModelNeverWritesThroughAPlantedLink) {
  if (!symlinks_work()) GTEST_SKIP() << "this system does not let the tests create symlinks";
  std::string dir = temp_dir("hardening_make_model");
  std::string victim = temp_dir("hardening_make_model_victim") + "/victim.txt";
  std::ofstream(victim) << "keep";
  std::filesystem::create_symlink(victim, dir + "/model.safetensors.partial");
  std::filesystem::create_symlink(victim, dir + "/config.json.partial");
  hf::Gpt2Config c = hf::read_config(data_path("gpt2-tiny/hf"));
  hf::make_model(c, 7, dir);
  EXPECT_EQ(std::filesystem::file_size(victim), 4u);
  EXPECT_EQ(hf::read_config(dir).n_embd, c.n_embd);
  EXPECT_EQ(safetensors::read(dir + "/model.safetensors").at("transformer.wte.weight").shape(),
            (Shape{c.vocab_size, c.n_embd}));
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().string().find(".partial."), std::string::npos)
        << "a temporary was left: " << entry.path();
}

// Fuzzing found: a number past double's range escaped as a library exception (abort).
TEST(Hardening, JsonNumbersPastDoubleRangeAreAParseError) {
  expect_error([] { json::parse(R"({"a": [1, 3.5e4444444444444444444410]})", "x.json"); },
               {"'x.json' cannot be read", "number overflow"});
}

TEST(Hardening, RequiredOnnxAttributesMustBePresent) {
  for (const char* op : {"Concat", "Cast"}) {
    ir::Graph g;
    g.opset = 17;
    ir::Value x;
    x.name = "x";
    x.dtype = DType::kFloat32;
    x.shape = ir::SymShape::from({2, 3});
    int xi = g.add_value(x);
    g.inputs.push_back(xi);
    ir::Value y;
    y.name = "y";
    int yi = g.add_value(y);
    ir::Node n;
    n.name = std::string("the_") + op;
    n.op_type = op;
    n.inputs = {xi};
    n.outputs = {yi};
    g.nodes.push_back(n);
    expect_error(
        [&] { ir::infer_node(g, g.nodes.back()); },
        {std::string("the_") + op, op == std::string("Cast") ? "'to'" : "'axis'", "requires"});
  }
}

}  // namespace
}  // namespace gptrt::test
