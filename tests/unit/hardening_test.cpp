// Untrusted files refused with what is wrong (issue 25's cases so far): safetensors entries whose
// shape would wrap the byte count, whose offsets run backwards or overlap; JSON with a key twice;
// a config with a non-positive epsilon; an added token with empty content; ONNX nodes without a
// required attribute.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/json.h"
#include "core/safetensors.h"
#include "hf/gpt2_config.h"
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
      {"'w'", "larger than the file's 64 bytes"});
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
