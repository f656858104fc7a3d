// Engine files: round trip, profiles, refusal of damaged, truncated, foreign engines.
#include <cstring>
#include <fstream>

#include "core/bytes.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Recomputes the checksum after a deliberate edit (layout in docs/ENGINE_FORMAT.md).
void reseal(std::vector<uint8_t>& b) {
  uint64_t h = checksum64(b.data(), 112);
  uint64_t sum = checksum64(b.data() + 128, b.size() - 128, h);
  std::memcpy(b.data() + 112, &sum, 8);
}

TensorMap case_inputs(const std::map<std::string, Tensor>& g, int c) {
  std::string k = "case" + std::to_string(c);
  return {{"input_ids", g.at(k + ".input_ids")}, {"attention_mask", g.at(k + ".attention_mask")}};
}

OptimizationProfile recipe_profile() {
  OptimizationProfile p;
  p.inputs.push_back({"input_ids", {{1, 12}, {8, 12}, {16, 12}}});
  p.inputs.push_back({"attention_mask", {{1, 12}, {8, 12}, {16, 12}}});
  return p;
}

TEST(EngineFile, RoundTripIsBitIdentical) {
  auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  auto built = build_default(data_path("gpt2-tiny/legacy-opset17.onnx"));
  std::string dir = temp_dir("roundtrip");
  built->save(dir + "/e.engine");
  auto loaded = Engine::load(dir + "/e.engine");
  EXPECT_EQ(loaded->info().profiles.size(), 1u);
  EXPECT_EQ(loaded->info().model.node_count, built->info().model.node_count);
  auto a = built->create_execution_context();
  auto b = loaded->create_execution_context();
  for (int c = 0; c < 6; ++c) {
    TensorMap in = case_inputs(goldens, c);
    Tensor x = a->execute(in)[0], y = b->execute(in)[0];
    ASSERT_EQ(x.shape(), y.shape());
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << "case " << c;
  }
  // Serialising the loaded engine reproduces the file byte for byte.
  EXPECT_EQ(loaded->serialize(), read_bytes(dir + "/e.engine"));
}

TEST(EngineFile, DefaultProfileAdmitsEveryLengthUpToNPositions) {
  auto e = build_default(data_path("gpt2-tiny/legacy-opset17.onnx"));
  ASSERT_EQ(e->info().profiles.size(), 1u);
  const ShapeRange* r = e->info().profiles[0].find("input_ids");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->min, (Shape{1, 1}));
  EXPECT_EQ(r->max, (Shape{64, 64}));
  EXPECT_EQ(e->info().index_limits.at("input_ids"), 1000);
  EXPECT_EQ(e->info().index_limits.at("attention_mask"), 2) << "a mask holds 0 or 1";
  {
    auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
    Tensor mask = goldens.at("case2.attention_mask").clone();
    mask.data_mut<int64_t>()[3] = 2;
    expect_error(
        [&] {
          e->create_execution_context()->execute(
              {{"input_ids", goldens.at("case2.input_ids")}, {"attention_mask", mask}});
        },
        {"'attention_mask' holds 2", "1 (a token) or 0 (padding)"});
  }
}

// An engine for one fixed 2x12 shape, and its logits against the PyTorch goldens' case 2.
std::shared_ptr<const Engine> fixed_2x12(const std::string& onnx, Backend backend) {
  BuildConfig c;
  c.backend = backend;
  OptimizationProfile p;
  p.inputs.push_back({"input_ids", {{2, 12}, {2, 12}, {2, 12}}});
  p.inputs.push_back({"attention_mask", {{2, 12}, {2, 12}, {2, 12}}});
  c.profiles = {p};
  return Engine::build(Network::from_onnx(data_path(onnx)), c);
}

void expect_case2_logits(const Engine& engine) {
  auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  TensorMap in = case_inputs(goldens, 2);
  const Tensor& mask = in.at("attention_mask");
  EXPECT_LE(max_abs_diff_masked(engine.create_execution_context()->execute(in)[0],
                                goldens.at("case2.logits"), &mask),
            1e-4);
}

TEST(EngineFile, FixedProfileCollapsesShapeArithmetic) {
  auto fixed = fixed_2x12("gpt2-tiny/legacy-opset13.onnx", Backend::kReference);
  EXPECT_EQ(fixed->info().model.op_counts.count("Shape"), 0u);
  auto dynamic = build_default(data_path("gpt2-tiny/legacy-opset13.onnx"));
  EXPECT_LT(fixed->info().model.node_count, dynamic->info().model.node_count);
  expect_case2_logits(*fixed);
}

// One fixed shape on a backend that runs the fused decoder: the decoder is recognised before
// the shapes are fixed (fixing them first folded the position lookup away), so the fixed-shape
// engine runs the fused plan (issue 26).
TEST(EngineFile, FixedProfileKeepsTheFusedDecoder) {
  auto fixed = fixed_2x12("gpt2-tiny/legacy-opset17.onnx", Backend::kCpu);
  const ModelInfo& m = fixed->info().model;
  EXPECT_EQ(m.op_counts.count("Attention") ? m.op_counts.at("Attention") : 0, 2);
  EXPECT_EQ(m.op_counts.count("Embedding") ? m.op_counts.at("Embedding") : 0, 1);
  expect_case2_logits(*fixed);
}

// Zero-size dimensions are legal where the graph allows them (issue 26): a profile from 0, and
// the cpu backend's fused kernels give empty outputs for empty inputs (they divided by zero).
TEST(EngineFile, ZeroSizeDimensionsRunOnTheFusedCpuPlan) {
  BuildConfig c;
  c.backend = Backend::kCpu;
  OptimizationProfile p;
  p.inputs.push_back({"input_ids", {{0, 0}, {1, 4}, {2, 8}}});
  p.inputs.push_back({"attention_mask", {{0, 0}, {1, 4}, {2, 8}}});
  c.profiles = {p};
  auto e = Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c);
  auto ctx = e->create_execution_context();
  for (Shape s : {Shape{1, 0}, Shape{0, 4}, Shape{0, 0}}) {
    Tensor ids(DType::kInt64, s), mask(DType::kInt64, s);
    std::vector<Tensor> out = ctx->execute({{"input_ids", ids}, {"attention_mask", mask}});
    EXPECT_EQ(out[0].shape(), (Shape{s[0], s[1], 1000}));
  }
}

class Profiles : public ::testing::Test {
 protected:
  void SetUp() override {
    BuildConfig c;
    c.profiles = {recipe_profile()};
    OptimizationProfile second;
    second.inputs.push_back({"input_ids", {{1, 20}, {1, 24}, {2, 32}}});
    second.inputs.push_back({"attention_mask", {{1, 20}, {1, 24}, {2, 32}}});
    c.profiles.push_back(second);
    engine = Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c);
  }
  static TensorMap inputs(Shape ids_shape, Shape mask_shape, DType mask_dtype = DType::kInt64,
                          int64_t token = 5) {
    Tensor ids(DType::kInt64, ids_shape), mask(mask_dtype, mask_shape);
    for (int64_t i = 0; i < ids.numel(); ++i) ids.data_mut<int64_t>()[i] = token;
    return {{"input_ids", ids}, {"attention_mask", mask}};
  }
  std::shared_ptr<const Engine> engine;
};

TEST_F(Profiles, InsideIsAcceptedAndPicksTheProfile) {
  auto ctx = engine->create_execution_context();
  EXPECT_EQ(ctx->check_inputs(inputs({8, 12}, {8, 12})), 0);
  EXPECT_EQ(ctx->check_inputs(inputs({2, 30}, {2, 30})), 1);
  EXPECT_EQ(ctx->execute(inputs({16, 12}, {16, 12}))[0].shape(), (Shape{16, 12, 1000}));
}

TEST_F(Profiles, BatchAboveMax) {
  auto ctx = engine->create_execution_context();
  expect_error(
      [&] {
        ctx->execute(inputs({17, 12}, {17, 12}));
      },
      {"input 'input_ids'", "dimension 0", "is 17", "profile 0 admits 1..16",
       "profile 1 admits 1..2", "--maxShapes=input_ids:17x12"});
}

TEST_F(Profiles, SeqAboveMax) {
  auto ctx = engine->create_execution_context();
  expect_error(
      [&] {
        ctx->execute(inputs({1, 40}, {1, 40}));
      },
      {"dimension 1", "is 40", "12..12", "20..32"});
}

TEST_F(Profiles, SeqBelowMin) {
  auto ctx = engine->create_execution_context();
  expect_error(
      [&] {
        ctx->execute(inputs({1, 5}, {1, 5}));
      },
      {"dimension 1", "is 5", "outside every optimization profile"});
}

TEST_F(Profiles, InputsDisagree) {
  auto ctx = engine->create_execution_context();
  expect_error(
      [&] {
        ctx->execute(inputs({2, 12}, {2, 11}));
      },
      {"attention_mask", "seq_len", "must agree"});
}

TEST_F(Profiles, WrongDtype) {
  auto ctx = engine->create_execution_context();
  expect_error(
      [&] {
        ctx->execute(inputs({2, 12}, {2, 12}, DType::kFloat32));
      },
      {"attention_mask", "float32", "expected int64"});
}

TEST_F(Profiles, TokenIdOutOfVocabulary) {
  auto ctx = engine->create_execution_context();
  expect_error(
      [&] {
        ctx->execute(inputs({2, 12}, {2, 12}, DType::kInt64, 1000));
      },
      {"input_ids", "1000", "[0, 1000)"});
  expect_error(
      [&] {
        ctx->execute(inputs({2, 12}, {2, 12}, DType::kInt64, -1));
      },
      {"input_ids", "-1"});
}

TEST_F(Profiles, MissingAndUnknownInputs) {
  auto ctx = engine->create_execution_context();
  TensorMap in = inputs({2, 12}, {2, 12});
  in.erase("attention_mask");
  expect_error([&] { ctx->execute(in); }, {"attention_mask", "missing"});
  in = inputs({2, 12}, {2, 12});
  in["token_type_ids"] = in["input_ids"];
  expect_error([&] { ctx->execute(in); }, {"token_type_ids", "not an input"});
}

TEST(ProfileValidation, BadProfilesAreRefusedAtBuild) {
  Network net = Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx"));
  BuildConfig c;
  OptimizationProfile p = recipe_profile();
  p.inputs[1].second = {{1, 10}, {8, 10}, {16, 10}};
  c.profiles = {p};
  expect_error([&] { Engine::build(net, c); }, {"attention_mask", "seq_len", "same shapes"});
  p = recipe_profile();
  p.inputs[0].second.min = {-1, 12};
  p.inputs[1].second.min = {-1, 12};
  c.profiles = {p};
  expect_error([&] { Engine::build(net, c); }, {"0 <= min <= opt <= max"});
  p = recipe_profile();
  p.inputs.pop_back();
  c.profiles = {p};
  expect_error([&] { Engine::build(net, c); }, {"no shape for input 'attention_mask'"});
  p = recipe_profile();
  p.inputs[0].second.max = {16, 100};
  p.inputs[1].second.max = {16, 100};
  c.profiles = {p};
  expect_error([&] { Engine::build(net, c); }, {"exceeds the model's n_positions 64"});
}

class DamagedEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = temp_dir("damaged");
    build_default(data_path("gpt2-tiny/legacy-opset17.onnx"))->save(dir + "/good.engine");
    bytes = read_bytes(dir + "/good.engine");
  }
  std::string dir;
  std::vector<uint8_t> bytes;
};

TEST_F(DamagedEngine, FlippedByteIsRefused) {
  for (size_t at : {size_t{200}, bytes.size() / 2, bytes.size() - 300}) {
    std::vector<uint8_t> b = bytes;
    b[at] ^= 0x10;
    write_bytes(dir + "/bad.engine", b);
    expect_error([&] { Engine::load(dir + "/bad.engine"); }, {"damaged", "checksum"});
  }
}

TEST_F(DamagedEngine, OtherFormatVersionIsRefused) {
  std::vector<uint8_t> b = bytes;
  uint32_t v = 999;
  std::memcpy(b.data() + 8, &v, 4);
  reseal(b);
  write_bytes(dir + "/v999.engine", b);
  expect_error([&] { Engine::load(dir + "/v999.engine"); },
               {"format version 999", "reads format version 1", "rebuild"});
}

TEST_F(DamagedEngine, OtherTargetIsRefused) {
  std::vector<uint8_t> b = bytes;
  uint32_t cuda = static_cast<uint32_t>(Backend::kCuda);
  std::memcpy(b.data() + 32, &cuda, 4);
  reseal(b);
  write_bytes(dir + "/cuda.engine", b);
  try {
    Engine::load(dir + "/cuda.engine");
    ADD_FAILURE() << "a CUDA engine loaded in a build without CUDA";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kEngineMismatch);
    EXPECT_NE(std::string(e.what()).find("cuda backend"), std::string::npos) << e.what();
  }
}

TEST_F(DamagedEngine, TruncatedIsRefusedAtEveryLength) {
  for (size_t len = 0; len < bytes.size(); len += std::max<size_t>(1, bytes.size() / 97)) {
    std::vector<uint8_t> b(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    write_bytes(dir + "/short.engine", b);
    EXPECT_THROW(Engine::load(dir + "/short.engine"), Error) << "length " << len;
  }
}

TEST_F(DamagedEngine, NotAnEngine) {
  expect_error([&] { Engine::load(data_path("gpt2-tiny/legacy-opset17.onnx")); },
               {"not a gptrt engine"});
}

TEST(EngineSave, FailedSaveLeavesNoFile) {
  auto e = build_default(data_path("gpt2-tiny/legacy-opset17.onnx"));
  std::string path = temp_dir("nosave") + "/no/such/dir/e.engine";
  EXPECT_THROW(e->save(path), Error);
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace gptrt::test
