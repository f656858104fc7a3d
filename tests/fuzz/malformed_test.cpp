// Malformed model files: truncations, random bytes, bit flips, missing external data. Each must
// give a gptrt::Error, never a crash (these run under ASan + UBSan in CI).
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptrt::test {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b, size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(n));
}

// Imports and builds; returns true if that threw gptrt::Error.
bool refused(const std::string& path) {
  try {
    auto e = Engine::build(Network::from_onnx(path), BuildConfig{});
    return false;
  } catch (const Error&) {
    return true;
  }
}

TEST(MalformedOnnx, TruncatedAtManyOffsets) {
  std::vector<uint8_t> bytes = read_bytes(data_path("gpt2-tiny/legacy-opset17.onnx"));
  std::string path = temp_dir("truncated") + "/t.onnx";
  int refusals = 0, tries = 0;
  std::vector<size_t> offsets;
  for (size_t i = 0; i < 64; ++i) offsets.push_back(i);
  for (size_t i = 64; i < bytes.size(); i += bytes.size() / 300) offsets.push_back(i);
  for (size_t len : offsets) {
    write_bytes(path, bytes, len);
    ++tries;
    refusals += refused(path) ? 1 : 0;
  }
  // A cut exactly between two trailing fields can leave a valid model; almost every cut cannot.
  EXPECT_GE(refusals, tries * 95 / 100);
}

TEST(MalformedOnnx, RandomBytes) {
  std::mt19937 rng(42);
  std::string path = temp_dir("random") + "/r.onnx";
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<uint8_t> b(static_cast<size_t>(rng() % 4096));
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    write_bytes(path, b, b.size());
    EXPECT_TRUE(refused(path)) << "trial " << trial;
  }
}

TEST(MalformedOnnx, BitFlipsNeverCrash) {
  std::vector<uint8_t> bytes = read_bytes(data_path("gpt2-tiny/legacy-opset13.onnx"));
  std::mt19937 rng(7);
  std::string path = temp_dir("flips") + "/f.onnx";
  for (int trial = 0; trial < 150; ++trial) {
    std::vector<uint8_t> b = bytes;
    // Flip bits in the structure (first 64 KiB: nodes, attributes, dims), not only in weights.
    for (int k = 0; k < 4; ++k)
      b[rng() % std::min<size_t>(b.size(), 65536)] ^= static_cast<uint8_t>(1u << (rng() % 8));
    write_bytes(path, b, b.size());
    try {
      auto e = Engine::build(Network::from_onnx(path), BuildConfig{});
      Tensor ids(DType::kInt64, {1, 4}), mask(DType::kInt64, {1, 4});
      for (int i = 0; i < 4; ++i) mask.data_mut<int64_t>()[i] = 1;
      e->create_execution_context()->execute({{"input_ids", ids}, {"attention_mask", mask}});
    } catch (const Error&) {
    }
  }
}

TEST(MalformedOnnx, EmptyFileAndNotOnnx) {
  std::string dir = temp_dir("empty");
  write_bytes(dir + "/empty.onnx", {}, 0);
  expect_error([&] { Network::from_onnx(dir + "/empty.onnx"); }, {"empty"});
  expect_error([&] { Network::from_onnx(data_path("gpt2-tiny/goldens.safetensors")); },
               {"not a valid ONNX model"});
  expect_error([&] { Network::from_onnx(dir + "/nope.onnx"); }, {"cannot open", "nope.onnx"});
}

TEST(MalformedOnnx, MissingExternalDataFile) {
  std::string dir = temp_dir("noext");
  std::filesystem::copy_file(data_path("gpt2-tiny/external/legacy-opset17.onnx"), dir + "/m.onnx");
  expect_error([&] { Network::from_onnx(dir + "/m.onnx"); },
               {"legacy-opset17.onnx.data", "missing"});
}

TEST(MalformedOnnx, ShortExternalDataFile) {
  std::string dir = temp_dir("shortext");
  std::filesystem::copy_file(data_path("gpt2-tiny/external/legacy-opset17.onnx"), dir + "/m.onnx");
  std::vector<uint8_t> data = read_bytes(data_path("gpt2-tiny/external/legacy-opset17.onnx.data"));
  write_bytes(dir + "/legacy-opset17.onnx.data", data, data.size() / 2);
  expect_error([&] { Network::from_onnx(dir + "/m.onnx"); }, {"truncated"});
}

// External data fields are numbers, read strictly: "12abc0" is not 12, "-" is not 0. (The
// fixture's first tensor says length "256000" and offset "0": same-length edits.)
TEST(MalformedOnnx, ExternalDataFieldsAreParsedStrictly) {
  std::string dir = temp_dir("extfields");
  std::vector<uint8_t> model = read_bytes(data_path("gpt2-tiny/external/legacy-opset17.onnx"));
  std::vector<uint8_t> data = read_bytes(data_path("gpt2-tiny/external/legacy-opset17.onnx.data"));
  write_bytes(dir + "/legacy-opset17.onnx.data", data, data.size());
  auto edited = [&](const std::string& from, const std::string& to) {
    std::string bytes(model.begin(), model.end());
    size_t at = bytes.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    bytes.replace(at, from.size(), to);
    std::vector<uint8_t> out(bytes.begin(), bytes.end());
    write_bytes(dir + "/m.onnx", out, out.size());
    return dir + "/m.onnx";
  };
  expect_error(
      [&] {
        Network::from_onnx(
            edited("length\x12\x06"
                   "256000",
                   "length\x12\x06"
                   "12abc0"));
      },
      {"external data length '12abc0'", "non-negative decimal"});
  expect_error(
      [&] {
        Network::from_onnx(
            edited("length\x12\x06"
                   "256000",
                   "length\x12\x06"
                   "-25600"));
      },
      {"external data length '-25600'"});
  expect_error(
      [&] {
        Network::from_onnx(
            edited("offset\x12\x01"
                   "0",
                   "offset\x12\x01"
                   "-"));
      },
      {"external data offset '-'"});
}

// A FIFO, a device or a directory given where a file is expected is refused by name at once:
// opening a FIFO for reading would wait for a writer forever, /dev/zero never ends.
TEST(NotARegularFile, FifosDevicesAndDirectoriesAreRefusedWithoutWaiting) {
#ifdef _WIN32
  GTEST_SKIP() << "POSIX FIFOs and /dev/zero: a Linux test (Windows refuses pipes and devices in "
                  "platform_win32.cpp)";
#else
  std::string dir = temp_dir("not_regular");
  std::string fifo = dir + "/model.onnx";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expect_error([&] { Network::from_onnx(fifo); }, {"model.onnx", "FIFO", "not a regular file"});
  expect_error([&] { Engine::load(fifo); }, {"FIFO"});
  expect_error([&] { Network::from_onnx(dir); }, {"a directory"});
  expect_error([&] { Engine::load("/dev/zero"); }, {"/dev/zero", "a device"});
  // A Hugging Face folder whose config.json is a FIFO, a tokenizer file that is /dev/zero.
  std::string hf = dir + "/hf";
  std::filesystem::create_directories(hf);
  ASSERT_EQ(mkfifo((hf + "/config.json").c_str(), 0600), 0);
  expect_error([&] { Network::from_hf(hf); }, {"config.json", "FIFO"});
  expect_error([&] { tokenizer::Tokenizer::load("/dev/zero"); }, {"a device"});
  CliResult r = run_cli("inspect " + fifo);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("FIFO"), std::string::npos) << r.output;
#endif
}

// Files gptrt reads stay inside the model's folder; files it writes never go through a link
// planted beside them, and never over the model itself.
TEST(Escapes, ExternalDataLinksOutOfTheFolderAndOutputsOverInputsAreRefused) {
  if (!symlinks_work()) GTEST_SKIP() << "this system does not let the tests create symlinks";
  std::string dir = temp_dir("escapes");
  std::filesystem::copy_file(data_path("gpt2-tiny/external/legacy-opset17.onnx"), dir + "/m.onnx");
  std::string outside = temp_dir("escapes_outside") + "/secret.data";
  std::filesystem::copy_file(data_path("gpt2-tiny/external/legacy-opset17.onnx.data"), outside);
  std::filesystem::create_symlink(outside, dir + "/legacy-opset17.onnx.data");
  expect_error([&] { Network::from_onnx(dir + "/m.onnx"); },
               {"leads out of the model's directory", "secret.data"});
  // A link to a file inside the folder is fine.
  std::filesystem::remove(dir + "/legacy-opset17.onnx.data");
  std::filesystem::copy_file(outside, dir + "/real.data");
  std::filesystem::create_symlink(dir + "/real.data", dir + "/legacy-opset17.onnx.data");
  auto engine = Engine::build(Network::from_onnx(dir + "/m.onnx"), BuildConfig{});
  // Saving over the model it was built from is refused; the model is untouched.
  auto size = std::filesystem::file_size(dir + "/m.onnx");
  expect_error([&] { engine->save(dir + "/m.onnx"); }, {"is the model this engine was built from"});
  EXPECT_EQ(std::filesystem::file_size(dir + "/m.onnx"), size);
  // A link planted at the old temporary name is not written through.
  std::string victim = dir + "/victim.txt";
  std::ofstream(victim) << "keep";
  std::filesystem::create_symlink(victim, dir + "/e.engine.partial");
  engine->save(dir + "/e.engine");
  EXPECT_EQ(std::filesystem::file_size(victim), 4u);
  EXPECT_GT(std::filesystem::file_size(dir + "/e.engine"), 1000u);
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().string().find(".partial."), std::string::npos)
        << "a temporary was left: " << entry.path();
}

}  // namespace
}  // namespace gptrt::test
