// Which GPU this process sees, for builds, engine checks and reports.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/options.h"

namespace gptrt::cuda {

namespace {
__global__ void probe_kernel() {}
}  // namespace

bool compiled_in() {
  return true;
}

bool cublas_compiled_in() {
  return GPTRT_WITH_CUBLAS != 0;
}

int kernel_sm() {
  // (Asked once: neither the GPU nor the code it loaded changes within a process.)
  static const int sm = [] {
    std::string why;
    if (device_sm(&why).empty()) return 0;
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    cudaFuncAttributes a{};
    check(cudaFuncGetAttributes(&a, probe_kernel), "cudaFuncGetAttributes");
    // (binaryVersion: the machine code's SM, the GPU's own when the driver compiled PTX;
    // ptxVersion: the virtual architecture the code was compiled from.)
    return std::min({p.major * 10 + p.minor, a.binaryVersion, a.ptxVersion});
  }();
  return sm;
}

std::string device_sm(std::string* why) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    if (why)
      *why = e != cudaSuccess ? std::string("no usable NVIDIA GPU (") + cudaGetErrorString(e) + ")"
                              : "no NVIDIA GPU found";
    return "";
  }
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return "sm_" + std::to_string(p.major) + std::to_string(p.minor);
}

namespace {

std::string mib(size_t b) {
  return std::to_string((b + (size_t{1} << 20) - 1) >> 20) + " MiB";
}

// The GPU memory gptrt may still take (`room`), and the figures behind it.
struct Room {
  size_t room = 0, total = 0, used = 0, limit = 0;
  // The clause a refusal gives (only then: device_name() asks the driver for the GPU's name).
  std::string said() const {
    return device_name() + " has " + mib(room) + " free (" + mib(total) + " in all, " + mib(used) +
           " in use" + (limit > 0 ? ", GPTRT_CUDA_MEMORY_LIMIT " + mib(limit) : std::string()) +
           ")";
  }
};

Room room_now() {
  // (GPTRT_CUDA_MEMORY_LIMIT is read at every call: allocations are few, and a test sets it for
  // one engine.)
  Room r;
  r.limit = static_cast<size_t>(memory_limit_from_environment());
  size_t free = 0;
  check(cudaMemGetInfo(&free, &r.total), "cudaMemGetInfo");
  r.used = r.total - free;
  r.room = free;
  if (r.limit > 0) r.room = std::min(r.room, r.limit > r.used ? r.limit - r.used : size_t{0});
  return r;
}

const char* const kWhatToLower =
    "; build the engine with a smaller --maxBatch or --maxSeqLen (gptrt serve: fewer --slots), "
    "or with --fp16 (weights in half the memory)";

}  // namespace

void check_memory_plan(const std::vector<MemoryPart>& parts, const std::string& what) {
  size_t sum = 0;
  std::string list;
  for (const MemoryPart& p : parts) {
    if (p.bytes == 0) continue;
    sum += p.bytes;
    list += (list.empty() ? "" : " + ") + std::string(p.what) + " " + mib(p.bytes);
  }
  if (sum == 0) return;
  const Room r = room_now();
  if (sum > r.room)
    throw Error(ErrorCode::kResourceLimit, "not enough GPU memory for " + what + ": it needs " +
                                               list + " = " + mib(sum) + ", and " + r.said() +
                                               kWhatToLower);
}

void device_alloc(void** p, size_t bytes, const char* what) {
  const Room r = room_now();
  auto refuse = [&] {
    throw Error(ErrorCode::kResourceLimit, std::string("not enough GPU memory for the ") + what +
                                               ": it needs " + mib(bytes) + ", and " + r.said() +
                                               kWhatToLower);
  };
  if (bytes > r.room) refuse();
  const cudaError_t e = cudaMalloc(p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // (clear it)
    refuse();
  }
  check(e, (std::string("cudaMalloc (") + what + ")").c_str());
}

std::string device_name() {
  std::string why, sm = device_sm(&why);
  if (sm.empty()) return "";
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return std::string(p.name) + " (" + sm + ")";
}

}  // namespace gptrt::cuda
