// Every fixture export and variant, end to end against PyTorch goldens (max |dlogit| <= 1e-4 at
// non-pad positions).
#include "test_util.h"

namespace gptrt::test {
namespace {

constexpr double kTolerance = 1e-4;

class FixtureExport : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureExport, MatchesPyTorchGoldens) {
  auto goldens = safetensors::read(data_path("gpt2-tiny/goldens.safetensors"));
  auto engine = build_default(data_path(GetParam()));
  auto ctx = engine->create_execution_context();
  for (int c = 0; c < 6; ++c) {
    std::string k = "case" + std::to_string(c);
    const Tensor& mask = goldens.at(k + ".attention_mask");
    TensorMap in{{"input_ids", goldens.at(k + ".input_ids")}, {"attention_mask", mask}};
    std::vector<Tensor> out = ctx->execute(in);
    ASSERT_EQ(out.size(), 1u);
    double diff = max_abs_diff_masked(out[0], goldens.at(k + ".logits"), &mask);
    EXPECT_LE(diff, kTolerance) << GetParam() << " " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(AllExports, FixtureExport,
                         ::testing::Values("gpt2-tiny/legacy-opset13.onnx",
                                           "gpt2-tiny/legacy-opset17.onnx",
                                           "gpt2-tiny/external/legacy-opset13.onnx",
                                           "gpt2-tiny/external/legacy-opset17.onnx"));

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

}  // namespace
}  // namespace gptrt::test
