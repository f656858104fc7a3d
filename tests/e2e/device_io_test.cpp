// ExecutionContext::execute_on_device: inputs and outputs in GPU memory (the Python package's
// DLPack path). On the GPU: the same logits as execute() bit for bit, int32 and int64 inputs,
// values outside their range refused as execute() refuses them, wrong output buffers refused.
// Everywhere: host backends refuse it by name.
#include <cstring>
#include <random>

#include "backends/cuda/cuda_backend.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

Tensor random_ids(int64_t b, int64_t s, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor t(DType::kInt64, {b, s});
  for (int64_t i = 0; i < b * s; ++i) t.data_mut<int64_t>()[i] = rng() % vocab;
  return t;
}

Tensor padded_mask(int64_t b, int64_t s) {
  Tensor t(DType::kInt64, {b, s});
  for (int64_t r = 0; r < b; ++r)
    for (int64_t i = 0; i < s; ++i) t.data_mut<int64_t>()[r * s + i] = i >= r ? 1 : 0;
  return t;
}

Tensor as_int32(const Tensor& t) {
  Tensor out(DType::kInt32, t.shape());
  for (int64_t i = 0; i < t.numel(); ++i)
    out.data_mut<int32_t>()[i] = static_cast<int32_t>(t.data<int64_t>()[i]);
  return out;
}

// A host tensor's copy in device memory, as the DeviceTensor that names it.
struct OnDevice {
  explicit OnDevice(const Tensor& t)
      : buffer(static_cast<int64_t>(std::max<size_t>(t.nbytes(), 1))),
        view{buffer.data(), t.dtype(), t.shape()} {
    buffer.upload(t.raw(), static_cast<int64_t>(t.nbytes()));
  }
  cuda::DeviceBuffer buffer;
  DeviceTensor view;
};

TEST(DeviceIo, HostBackendsRefuseDeviceTensorsByName) {
  BuildConfig c;
  c.backend = Backend::kCpu;
  auto engine = Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c);
  auto ctx = engine->create_execution_context(1);
  EXPECT_EQ(ctx->output_shapes({{"input_ids", {2, 5}}, {"attention_mask", {2, 5}}}),
            (std::vector<Shape>{{2, 5, engine->info().model.outputs[0].dims.back()}}));
  try {
    ctx->execute_on_device({}, {});
    FAIL() << "a cpu engine ran device tensors";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("backend (cpu) runs on the host"), std::string::npos)
        << e.what();
  }
}

TEST(DeviceIo, CudaLogitsEqualExecuteAndBadValuesAndBuffersAreRefused) {
  std::string why;
  if (cuda::device_sm(&why).empty()) GTEST_SKIP() << "CUDA backend test skipped: " << why;
  BuildConfig c;
  c.backend = Backend::kCuda;
  auto engine = Engine::build(Network::from_onnx(data_path("gpt2-tiny/legacy-opset17.onnx")), c);
  auto ctx = engine->create_execution_context();
  const int64_t vocab = engine->info().model.outputs[0].dims.back();
  for (auto [b, s] : {std::pair<int64_t, int64_t>{1, 12}, {3, 7}, {4, 1}}) {
    SCOPED_TRACE("shape " + std::to_string(b) + "x" + std::to_string(s));
    Tensor ids = random_ids(b, s, vocab, static_cast<uint32_t>(b * 100 + s));
    Tensor mask = padded_mask(b, s);
    Tensor want = ctx->execute({{"input_ids", ids}, {"attention_mask", mask}})[0];
    for (bool narrow : {false, true}) {
      OnDevice d_ids(narrow ? as_int32(ids) : ids), d_mask(narrow ? as_int32(mask) : mask);
      if (narrow) {  // an engine of int64 inputs takes int32 ones only through Python's conversion
        OnDevice out(Tensor(DType::kFloat32, want.shape()));
        EXPECT_THROW(ctx->execute_on_device(
                         {{"input_ids", d_ids.view}, {"attention_mask", d_mask.view}}, {out.view}),
                     Error);
        continue;
      }
      OnDevice out(Tensor(DType::kFloat32, want.shape()));
      ctx->execute_on_device({{"input_ids", d_ids.view}, {"attention_mask", d_mask.view}},
                             {out.view});
      Tensor got(DType::kFloat32, want.shape());
      out.buffer.download(got.raw_mut(), static_cast<int64_t>(got.nbytes()));
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << "not bit for bit";
    }
  }
  // A token id outside the vocabulary: execute()'s message, found on the GPU.
  Tensor ids = random_ids(2, 4, vocab, 7);
  ids.data_mut<int64_t>()[6] = vocab + 3;
  OnDevice d_ids(ids), d_mask(padded_mask(2, 4)), out(Tensor(DType::kFloat32, {2, 4, vocab}));
  std::string host_message;
  try {
    ctx->execute({{"input_ids", ids}, {"attention_mask", padded_mask(2, 4)}});
  } catch (const Error& e) {
    host_message = e.what();
  }
  ASSERT_FALSE(host_message.empty());
  try {
    ctx->execute_on_device({{"input_ids", d_ids.view}, {"attention_mask", d_mask.view}},
                           {out.view});
    FAIL() << "an id outside the vocabulary ran";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), host_message);
  }
  // A mask value other than 0/1.
  Tensor mask = padded_mask(2, 4);
  mask.data_mut<int64_t>()[5] = 7;
  OnDevice good_ids(random_ids(2, 4, vocab, 8)), bad_mask(mask);
  try {
    ctx->execute_on_device({{"input_ids", good_ids.view}, {"attention_mask", bad_mask.view}},
                           {out.view});
    FAIL() << "a mask of 7 ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 7 at [1, 1]"), std::string::npos) << e.what();
  }
  // The output buffer of the wrong shape, and none.
  OnDevice small(Tensor(DType::kFloat32, {2, 3, vocab}));
  try {
    ctx->execute_on_device({{"input_ids", good_ids.view}, {"attention_mask", d_mask.view}},
                           {small.view});
    FAIL() << "a small output buffer was written";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kShapeError);
    EXPECT_NE(std::string(e.what()).find("expected float32 [2, 4, " + std::to_string(vocab)),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(
      ctx->execute_on_device({{"input_ids", good_ids.view}, {"attention_mask", d_mask.view}}, {}),
      Error);
  // The context still runs after every refusal.
  Tensor again = random_ids(2, 4, vocab, 9);
  Tensor want = ctx->execute({{"input_ids", again}, {"attention_mask", padded_mask(2, 4)}})[0];
  OnDevice d_again(again);
  ctx->execute_on_device({{"input_ids", d_again.view}, {"attention_mask", d_mask.view}},
                         {out.view});
  Tensor got(DType::kFloat32, want.shape());
  out.buffer.download(got.raw_mut(), static_cast<int64_t>(got.nbytes()));
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
}

}  // namespace
}  // namespace gptrt::test
