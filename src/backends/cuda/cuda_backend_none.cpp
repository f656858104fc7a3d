// Builds without the CUDA toolkit: the CUDA backend reports itself missing.
#include "backends/cuda/cuda_backend.h"
#include "gptrt/error.h"

namespace gptrt::cuda {

bool compiled_in() {
  return false;
}

std::string device_sm(std::string* why) {
  if (why) *why = "this gptrt was built without the CUDA toolkit (configure with nvcc installed)";
  return "";
}

std::string device_name() {
  return "";
}

int kernel_sm() {
  return 0;
}

bool cublas_compiled_in() {
  return false;
}

bool has_kernel(const ir::Node&) {
  return false;
}

void lower(ir::Graph&, Precision, int64_t) {
  throw Error(ErrorCode::kUnsupported, "this gptrt was built without the CUDA backend");
}

std::vector<Tensor> run_op(std::shared_ptr<const void>, const ir::Graph&, Precision,
                           const std::map<std::string, Tensor>&) {
  throw Error(ErrorCode::kUnsupported, "this gptrt was built without the CUDA backend");
}

struct Runner::Impl {};

Runner::Runner(std::shared_ptr<const void>, const ir::Graph&, Precision,
               const std::map<std::string, int64_t>&) {
  throw Error(ErrorCode::kUnsupported, "this gptrt was built without the CUDA backend");
}
Runner::~Runner() = default;
std::vector<Tensor> Runner::run(const std::map<std::string, Tensor>&, Timings*, Profile*) {
  return {};
}
backends::BadValue Runner::run_device(const std::map<std::string, DeviceTensor>&,
                                      const std::vector<DeviceTensor>&,
                                      const std::map<std::string, int64_t>&, void*) {
  return {};
}
void Runner::set_use_graphs(bool) {}

DeviceBuffer::DeviceBuffer(int64_t) {
  throw Error(ErrorCode::kUnsupported, "this gptrt was built without the CUDA backend");
}
DeviceBuffer::~DeviceBuffer() = default;
void DeviceBuffer::upload(const void*, int64_t) {}
void DeviceBuffer::download(void*, int64_t) const {}
int64_t Runner::activation_bytes() const {
  return 0;
}

Decoder::Decoder(std::shared_ptr<const void>, const ir::Graph&, Precision) {
  throw Error(ErrorCode::kUnsupported, "this gptrt was built without the CUDA backend");
}
Decoder::~Decoder() = default;
void Decoder::reserve(int64_t, int64_t, int64_t) {}
void Decoder::step(const int64_t*, const int64_t*, const uint8_t*, int64_t, int64_t,
                   std::vector<float>*, int64_t*) {}
void Decoder::step_packed(const int64_t*, const int64_t*, const int32_t*, const int32_t*, int64_t,
                          const uint8_t*, int64_t, int64_t, std::vector<float>*, int64_t*) {}
void Decoder::greedy_steps(const int64_t*, const int64_t*, const uint8_t*, int64_t, int64_t,
                           int64_t*) {}
int64_t Decoder::max_greedy_steps() const {
  return 1;
}
void Decoder::last_logits(std::vector<float>&) {}
void Decoder::gather_columns(const int32_t*, int64_t) {}

}  // namespace gptrt::cuda
