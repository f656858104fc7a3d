// Forward passes on tensors that already live in GPU memory (ExecutionContext::execute_on_device):
// the inputs staged and range-checked on the GPU, the logits copied device to device into the
// caller's buffer, ordered after the caller's stream; and device buffers for callers without the
// CUDA headers (tests).
#include <cuda_runtime.h>

#include <string>

#include "backends/cuda/runner_impl.cuh"

namespace gptrt::cuda {
namespace {

// dst[i] = src[i % src_n] (int32 or int64) for i < n, as int64. With limit > 0, a value outside
// [0, limit) is staged as 0 and the smallest such source index kept in *bad (which starts at ~0).
__global__ void stage_kernel(const void* src, bool is64, int64_t src_n, int64_t n, int64_t limit,
                             int64_t* dst, unsigned long long* bad) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t at = i % src_n;
    int64_t v = is64 ? static_cast<const int64_t*>(src)[at] : static_cast<const int32_t*>(src)[at];
    if (limit > 0 && (v < 0 || v >= limit)) {
      atomicMin(bad, static_cast<unsigned long long>(at));
      v = 0;
    }
    dst[i] = v;
  }
}

constexpr unsigned long long kNone = ~0ull;

}  // namespace

backends::BadValue Runner::Impl::run_device(const std::map<std::string, DeviceTensor>& inputs,
                                            const std::vector<DeviceTensor>& outputs,
                                            const std::map<std::string, int64_t>& limits,
                                            cudaStream_t caller) {
  const ir::Node& embed = g.nodes.front();
  const std::string ids_name = g.values[static_cast<size_t>(embed.inputs[0])].name;
  const DeviceTensor& ids_t = inputs.at(ids_name);
  const int64_t b = ids_t.shape.at(0), s = ids_t.shape.at(1), rows = b * s;
  // The staged inputs in order: ids, mask, positions (as run() stages them).
  const DeviceTensor* staged[3] = {&ids_t, nullptr, nullptr};
  std::string names[3] = {ids_name, "", ""};
  for (int id : g.inputs) {
    const std::string& name = g.values[static_cast<size_t>(id)].name;
    auto it = inputs.find(name);
    if (name == ids_name || it == inputs.end()) continue;
    const int k = embed.inputs.size() > 1 && embed.inputs[1] == id ? 2 : 1;
    staged[k] = &it->second;
    names[k] = name;
  }
  for (int k = 0; k < 3; ++k)
    if (staged[k] && staged[k]->dtype != DType::kInt64 && staged[k]->dtype != DType::kInt32)
      throw Error(ErrorCode::kUnsupported,
                  "input '" + names[k] + "' is " + dtype_name(staged[k]->dtype) +
                      " in device memory; the cuda backend stages int32 and int64 inputs from the "
                      "GPU (pass this one as a host array)");
  const int64_t vocab = g.values[static_cast<size_t>(g.outputs[0])].shape.dims.back().value;
  const int64_t out_need = rows * vocab * 4;
  reserve_io(rows, out_need);
  if (!bad) {
    check(cudaMalloc(reinterpret_cast<void**>(&bad), 3 * sizeof(unsigned long long)), "cudaMalloc");
    check(cudaMallocHost(reinterpret_cast<void**>(&pinned_bad), 3 * sizeof(unsigned long long)),
          "cudaMallocHost");
    check(cudaEventCreateWithFlags(&caller_ready, cudaEventDisableTiming), "cudaEventCreate");
  }
  // Start after what the caller queued (its inputs' producers).
  check(cudaEventRecord(caller_ready, caller), "cudaEventRecord (caller's stream)");
  check(cudaStreamWaitEvent(stream, caller_ready, 0), "cudaStreamWaitEvent");
  check(cudaEventRecord(ev[0], stream), "cudaEventRecord");
  check(cudaMemsetAsync(bad, 0xff, 3 * sizeof(unsigned long long), stream), "cudaMemsetAsync");
  int64_t* dst[3] = {ids, mask, pos};
  for (int k = 0; k < 3; ++k) {
    if (!staged[k]) continue;
    auto limit = limits.find(names[k]);
    const int64_t src_n = shape_numel(staged[k]->shape);
    const int blocks = static_cast<int>(std::min<int64_t>((rows + 255) / 256, 1024));
    stage_kernel<<<blocks, 256, 0, stream>>>(staged[k]->data, staged[k]->dtype == DType::kInt64,
                                             src_n, rows, limit == limits.end() ? 0 : limit->second,
                                             dst[k], bad + k);
    check(cudaGetLastError(), "stage_kernel");
  }
  enqueue_forward(b, s, staged[2] != nullptr, staged[1] != nullptr, nullptr);
  check(cudaEventRecord(ev[2], stream), "cudaEventRecord");
  check(cudaMemcpyAsync(outputs.at(0).data, out, static_cast<size_t>(out_need),
                        cudaMemcpyDeviceToDevice, stream),
        "D2D logits");
  check(cudaMemcpyAsync(pinned_bad, bad, 3 * sizeof(unsigned long long), cudaMemcpyDeviceToHost,
                        stream),
        "D2H range flags");
  check(cudaEventRecord(ev[3], stream), "cudaEventRecord");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  backends::BadValue result;
  for (int k = 0; k < 3 && result.input.empty(); ++k) {
    if (!staged[k] || pinned_bad[k] == kNone) continue;
    const int64_t at = static_cast<int64_t>(pinned_bad[k]);
    const size_t size = dtype_size(staged[k]->dtype);
    int64_t v = 0;
    int32_t v32 = 0;
    check(cudaMemcpy(size == 8 ? static_cast<void*>(&v) : static_cast<void*>(&v32),
                     static_cast<const char*>(staged[k]->data) + at * static_cast<int64_t>(size),
                     size, cudaMemcpyDeviceToHost),
          "D2H value outside its range");
    result = {names[k], at, size == 8 ? v : v32};
  }
  return result;
}

DeviceBuffer::DeviceBuffer(int64_t bytes) {
  check(cudaMalloc(&data_, static_cast<size_t>(bytes)), "cudaMalloc");
}
DeviceBuffer::~DeviceBuffer() {
  cudaFree(data_);
}
void DeviceBuffer::upload(const void* host, int64_t bytes) {
  check(cudaMemcpy(data_, host, static_cast<size_t>(bytes), cudaMemcpyHostToDevice), "upload");
}
void DeviceBuffer::download(void* host, int64_t bytes) const {
  check(cudaMemcpy(host, data_, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost), "download");
}

}  // namespace gptrt::cuda
