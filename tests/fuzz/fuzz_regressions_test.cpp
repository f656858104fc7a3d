// Every input a fuzz target found a failure with (tests/fuzz/regressions/<target>/) is replayed
// the way that target runs it: it must be refused with gptrt::Error or run, never crash (the
// asan preset runs these under ASan + UBSan).
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/bytes.h"
#include "core/json.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

std::vector<std::string> inputs_of(const std::string& target) {
  std::vector<std::string> files;
  std::filesystem::path dir =
      std::filesystem::path(GPTRT_TEST_DATA) / ".." / "fuzz" / "regressions" / target;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path().string());
  return files;
}

std::vector<uint8_t> bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

TEST(FuzzRegressions, EngineInputsAreRefusedOrRunNeverCrash) {
  std::string dir = temp_dir("fuzz_regressions");
  for (const std::string& path : inputs_of("engine")) {
    std::vector<uint8_t> b = bytes_of(path);
    if (b.size() >= 128) {  // the checksum repaired, as the engine target does
      uint64_t h = checksum64(b.data(), 112);
      h = checksum64(b.data() + 128, b.size() - 128, h);
      std::memcpy(b.data() + 112, &h, 8);
    }
    std::string file = dir + "/e.engine";
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    try {
      auto engine = Engine::load(file);
      std::map<std::string, Tensor> in;
      for (const TensorDesc& d : engine->info().model.inputs)
        in[d.name] = Tensor(d.dtype, engine->info().profiles.at(0).find(d.name)->min);
      engine->create_execution_context(1)->execute(in);
    } catch (const Error& e) {
      SUCCEED() << path << ": " << e.what();
    }
  }
}

TEST(FuzzRegressions, OnnxInputsAreRefusedOrBuiltNeverCrash) {
  std::string dir = temp_dir("fuzz_regressions_onnx");
  for (const std::string& path : inputs_of("onnx")) {
    std::vector<uint8_t> b = bytes_of(path);
    std::string file = dir + "/m.onnx";
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    try {
      BuildConfig c;
      c.default_max_batch = 2;
      c.default_max_seq_len = 8;
      Engine::build(Network::from_onnx(file), c);
    } catch (const Error& e) {
      SUCCEED() << path << ": " << e.what();
    }
  }
}

TEST(FuzzRegressions, JsonInputsAreRefusedOrParsed) {
  for (const std::string& path : inputs_of("json")) {
    std::vector<uint8_t> b = bytes_of(path);
    try {
      json::parse(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), path);
    } catch (const Error& e) {
      SUCCEED() << e.what();
    }
  }
}

}  // namespace
}  // namespace gptrt::test
