// Hugging Face folders with each GPT-2 config flag and activation_function (issue 26), against
// PyTorch's logits (transformers, eager attention) on the same random weights:
// tests/data/hf_flags, made by tests/data/make_hf_flags.py (versions in its VERSIONS file).
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/npy.h"
#include "hf/gpt2_config.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

std::vector<std::string> variants() {
  std::vector<std::string> names;
  std::filesystem::path dir = data_path("hf_flags");
  if (!std::filesystem::exists(dir)) return names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(HfFlags, EveryFlagAndActivationMatchesPyTorch) {
  std::vector<std::string> names = variants();
  ASSERT_GE(names.size(), 19u) << "tests/data/hf_flags is missing its variants";
  for (Backend backend : {Backend::kReference, Backend::kCpu}) {
    for (const std::string& name : names) {
      std::string dir = data_path("hf_flags/" + name);
      BuildConfig c;
      c.backend = backend;
      c.default_max_batch = 2;
      auto engine = Engine::build(Network::from_hf(dir), c);
      Tensor ids = npy::read(dir + "/ids.npy");
      Tensor mask(DType::kInt64, ids.shape());
      for (int64_t i = 0; i < mask.numel(); ++i) mask.data_mut<int64_t>()[i] = 1;
      Tensor got = engine->create_execution_context()->execute(
          {{"input_ids", ids}, {"attention_mask", mask}})[0];
      Tensor want = npy::read(dir + "/logits.npy");
      EXPECT_LE(max_abs_diff_masked(got, want, nullptr), 1e-4)
          << name << " on " << backend_name(backend);
    }
  }
}

// A flag of the wrong type, an activation gptrt does not build and cross-attention are refused
// by name, never ignored.
TEST(HfFlags, UnknownValuesAndWrongTypesAreRefusedByName) {
  std::string dir = temp_dir("hf_flags_bad");
  auto config = [&](const std::string& extra) {
    std::ofstream(dir + "/config.json")
        << R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000,
              "n_positions": 64)" +
               extra + "}";
    return dir;
  };
  expect_error([&] { hf::read_config(config(R"(, "activation_function": "mish")")); },
               {"activation_function 'mish'", "gelu_new", "relu"});
  expect_error([&] { hf::read_config(config(R"(, "scale_attn_by_inverse_layer_idx": "yes")")); },
               {"scale_attn_by_inverse_layer_idx must be true or false", "\"yes\""});
  expect_error([&] { hf::read_config(config(R"(, "add_cross_attention": true)")); },
               {"add_cross_attention is true"});
  hf::Gpt2Config c = hf::read_config(
      config(R"(, "scale_attn_by_inverse_layer_idx": true, "reorder_and_upcast_attn": true)"));
  EXPECT_TRUE(c.scale_attn_by_inverse_layer_idx);
  EXPECT_TRUE(c.reorder_and_upcast_attn);
}

}  // namespace
}  // namespace gptrt::test
