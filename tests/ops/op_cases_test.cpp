// Every single-op case in tests/data/ops through the reference backend, against ONNX Runtime's
// outputs (tests/data/make_op_cases.py).
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/npy.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(data_path("ops"))) {
    if (e.is_directory()) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class OpCase : public ::testing::TestWithParam<std::string> {};

TEST_P(OpCase, MatchesOnnxRuntime) {
  std::string dir = data_path("ops/" + GetParam());
  auto engine = build_default(dir + "/model.onnx");
  TensorMap in;
  for (size_t i = 0;; ++i) {
    std::string p = dir + "/input_" + std::to_string(i) + ".npy";
    if (!std::filesystem::exists(p)) break;
    in["x" + std::to_string(i)] = npy::read(p);
  }
  std::vector<Tensor> out = engine->create_execution_context()->execute(in);
  for (size_t i = 0; i < out.size(); ++i) {
    Tensor want = npy::read(dir + "/expected_" + std::to_string(i) + ".npy");
    const Tensor& got = out[i];
    ASSERT_EQ(got.dtype(), want.dtype()) << "output " << i;
    ASSERT_EQ(got.shape(), want.shape()) << "output " << i;
    if (got.dtype() == DType::kFloat32) {
      for (int64_t k = 0; k < got.numel(); ++k) {
        float a = got.data<float>()[k], b = want.data<float>()[k];
        if (std::isnan(b)) {
          EXPECT_TRUE(std::isnan(a));
          continue;
        }
        EXPECT_NEAR(a, b, 1e-6 + 1e-5 * std::fabs(b)) << "output " << i << " element " << k;
      }
    } else {
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), got.nbytes()), 0) << "output " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpCase, ::testing::ValuesIn(case_names()),
                         [](const auto& p) { return p.param; });

TEST(UnsupportedOp, IsRefusedAtImportNamingNodeOpAndOpset) {
  // A copy of an op case with its op renamed to one gptrt does not implement.
  std::string src = data_path("ops/neg/model.onnx");
  std::ifstream in(src, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  size_t at = bytes.find("Neg");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 3, "Elu");
  std::string path = temp_dir("unsupported") + "/m.onnx";
  std::ofstream(path, std::ios::binary) << bytes;
  expect_error([&] { Network::from_onnx(path); }, {"op Elu", "opset 17", "cannot run"});
}

}  // namespace
}  // namespace gptrt::test
