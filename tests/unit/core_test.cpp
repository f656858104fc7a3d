// Core pieces: protobuf wire reader, JSON, .npy, statistics, half floats, shape inference.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/half.h"
#include "core/json.h"
#include "core/npy.h"
#include "core/stats.h"
#include "ir/shape_inference.h"
#include "onnx/importer.h"
#include "onnx/wire.h"
#include "platform/platform.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

TEST(Wire, ReadsFieldsAndRefusesTruncation) {
  // field 1 varint 300, field 2 bytes "hi", field 5 fixed32
  std::vector<uint8_t> msg = {0x08, 0xac, 0x02, 0x12, 0x02, 'h', 'i', 0x2d, 1, 0, 0, 0};
  onnx::WireSource src{"mem", msg.data()};
  onnx::WireReader r(src, msg.data(), msg.size(), "test");
  onnx::Field f;
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(f.number, 1u);
  EXPECT_EQ(f.varint, 300u);
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(f.bytes(), "hi");
  ASSERT_TRUE(r.next(f));
  EXPECT_EQ(f.varint, 1u);
  EXPECT_FALSE(r.next(f));
  for (size_t n : {size_t{2}, size_t{5}, size_t{9}}) {
    onnx::WireReader t(src, msg.data(), n, "test");
    EXPECT_THROW(
        {
          while (t.next(f)) {
          }
        },
        Error)
        << n;
  }
}

TEST(Json, ParsesAndReportsErrors) {
  json::Value v =
      json::parse(R"({"a": [1, 2.5, "x\u00e9"], "b": {"c": null, "d": true}, "n": -3})", "t");
  EXPECT_EQ(json::as_int64(json::find(v, "a")->at(0)), 1);
  EXPECT_DOUBLE_EQ(json::find(v, "a")->at(1).get<double>(), 2.5);
  EXPECT_EQ(json::find(v, "a")->at(2).get<std::string>(), "x\xc3\xa9");
  EXPECT_TRUE(json::find(*json::find(v, "b"), "d")->get<bool>());
  EXPECT_EQ(json::as_int64(*json::find(v, "n")), -3);
  EXPECT_EQ(json::find(v, "missing"), nullptr);
  EXPECT_EQ(json::find(json::find(v, "a")->at(0), "x"), nullptr) << "a number has no members";
  EXPECT_EQ(json::as_int64(json::find(v, "a")->at(1)), std::nullopt) << "2.5 is no integer";
  EXPECT_EQ(json::as_int64(json::parse("9223372036854775808", "t")), std::nullopt)
      << "2^63 does not fit int64";
  EXPECT_EQ(json::quote("a\"b\n\xff"), "\"a\\\"b\\n\xef\xbf\xbd\"");
  expect_error([] { json::parse("{\"a\": [1, }", "cfg.json"); }, {"cfg.json", "byte 11"});
}

TEST(Npy, RoundTripAndBadFiles) {
  std::string dir = temp_dir("npy");
  Tensor t(DType::kInt64, {2, 3});
  for (int i = 0; i < 6; ++i) t.data_mut<int64_t>()[i] = i * 7;
  npy::write(dir + "/a.npy", t);
  Tensor r = npy::read(dir + "/a.npy");
  EXPECT_EQ(r.shape(), (Shape{2, 3}));
  EXPECT_EQ(r.data<int64_t>()[5], 35);
  std::ofstream(dir + "/bad.npy") << "not numpy";
  expect_error([&] { npy::read(dir + "/bad.npy"); }, {"bad.npy", "magic"});
  // Truncated data.
  std::ifstream in(dir + "/a.npy", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(dir + "/short.npy", std::ios::binary) << bytes.substr(0, bytes.size() - 8);
  expect_error([&] { npy::read(dir + "/short.npy"); }, {"truncated"});
}

TEST(Stats, MedianAndPercentiles) {
  LatencyStats s = compute_stats({5, 1, 4, 2, 3});
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  s = compute_stats(v);
  EXPECT_DOUBLE_EQ(s.percentile(90), 90);
  EXPECT_DOUBLE_EQ(s.percentile(99), 99);
  EXPECT_DOUBLE_EQ(s.median, 50.5);
  EXPECT_EQ(compute_stats({}).count, 0u);
}

// Large buffers (weights, activations) come at a 2 MiB boundary, zero-filled and writable, so
// that the OS may back them with huge pages; tensors of that size and more are zeroed, a freed
// block of their size reused zeroed again.
TEST(Memory, LargeBuffersAreAlignedZeroedAndReused) {
  const size_t bytes = platform::kLargeBytes * 3 + 12345;
  auto* p = static_cast<uint8_t*>(platform::allocate_large(bytes));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % platform::kLargeBytes, 0u);
  size_t nonzero = 0;
  for (size_t i = 0; i < bytes; i += 4096) nonzero += p[i] != 0;
  EXPECT_EQ(nonzero, 0u);
  std::memset(p, 7, bytes);  // every byte writable
  EXPECT_EQ(p[bytes - 1], 7);
  platform::free_large(p, bytes);

  for (int round = 0; round < 2; ++round) {   // (the second may take the first's freed block)
    Tensor t(DType::kFloat32, {3, 1 << 20});  // 12 MiB
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
    const float* f = t.data<float>();
    double sum = 0;
    for (int64_t i = 0; i < t.numel(); i += 997) sum += f[i];
    EXPECT_EQ(sum, 0.0) << "round " << round;
    std::fill(t.data_mut<float>(), t.data_mut<float>() + t.numel(), 1.f);
  }
}

// The platform layer: the arguments after the program's name, bytes as given (UTF-8 paths with
// spaces and non-ASCII characters intact); an atomic write that leaves the file and no
// temporary; the CPU's name and cores.
TEST(Platform, ArgumentsFilesAndCpu) {
#ifndef _WIN32  // (Windows reads the process's own command line, UTF-16, whatever argv holds)
  std::string a0 = "gptrt", a1 = "exec", a2 = "--onnx=/tmp/models and engines \xc3\xbc/m.onnx";
  char* argv[] = {a0.data(), a1.data(), a2.data()};
  EXPECT_EQ(platform::utf8_arguments(3, argv), (std::vector<std::string>{a1, a2}));
  EXPECT_TRUE(platform::utf8_arguments(1, argv).empty());
#endif
  const std::string dir = temp_dir("platform \xc3\xbc");
  const std::string path = dir + "/out file.bin";
  platform::write_file_atomically(path, "abc", 3);
  EXPECT_TRUE(platform::is_regular_file(path));
  EXPECT_EQ(platform::read_text_file(path), "abc");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::u8path(dir))) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1) << "no temporary left beside the file";
  EXPECT_GE(platform::cpu_info().logical_cores, 1);
  EXPECT_FALSE(platform::cpu_info().model.empty());
}

TEST(Half, ConvertsExactly) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604645e-08f})
    EXPECT_EQ(half_to_float(float_to_half(f)), f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 4096), float_to_half(1.0f));  // rounds to even
}

TEST(ShapeInference, SymbolicDimsFlowThroughTheFixture) {
  onnx::ImportedModel m = onnx::import_onnx(data_path("gpt2-tiny/legacy-opset13.onnx"));
  const ir::Value& logits = m.graph.values[static_cast<size_t>(m.graph.outputs[0])];
  ASSERT_TRUE(logits.shape.rank_known);
  EXPECT_EQ(logits.shape.str(), "[batch_size, seq_len, 1000]");
  // An intermediate: the first LayerNorm's output keeps [batch_size, seq_len, 64].
  int found = 0;
  for (const ir::Node& n : m.graph.nodes) {
    if (n.op_type == "Gemm") {
      const ir::Value& out = m.graph.values[static_cast<size_t>(n.outputs[0])];
      EXPECT_TRUE(out.shape.rank_known);
      EXPECT_EQ(out.shape.dims.size(), 2u);
      if (out.shape.dims.size() == 2) {
        EXPECT_TRUE(out.shape.dims[1].is_known());
      }
      ++found;
    }
  }
  EXPECT_EQ(found, 8);
}

}  // namespace
}  // namespace gptrt::test
