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
  std::string why;
  if (device_sm(&why).empty()) return 0;
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  cudaFuncAttributes a{};
  check(cudaFuncGetAttributes(&a, probe_kernel), "cudaFuncGetAttributes");
  // (binaryVersion: the machine code's SM, the GPU's own when the driver compiled PTX;
  // ptxVersion: the virtual architecture the code was compiled from.)
  return std::min({p.major * 10 + p.minor, a.binaryVersion, a.ptxVersion});
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

// The GPU memory gptrt may still take, and the clause that says where that figure comes from.
struct Room {
  size_t room = 0;
  std::string said;
};

Room room_now() {
  // (GPTRT_CUDA_MEMORY_LIMIT is read at every call: allocations are few, and a test sets it for
  // one engine.)
  const size_t limit = static_cast<size_t>(memory_limit_from_environment());
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  const size_t used = total - free;
  Room r;
  r.room = free;
  if (limit > 0) r.room = std::min(r.room, limit > used ? limit - used : size_t{0});
  r.said = device_name() + " has " + mib(r.room) + " free (" + mib(total) + " in all, " +
           mib(used) + " in use" +
           (limit > 0 ? ", GPTRT_CUDA_MEMORY_LIMIT " + mib(limit) : std::string()) + ")";
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
                                               list + " = " + mib(sum) + ", and " + r.said +
                                               kWhatToLower);
}

void device_alloc(void** p, size_t bytes, const char* what) {
  const Room r = room_now();
  auto refuse = [&] {
    throw Error(ErrorCode::kResourceLimit, std::string("not enough GPU memory for the ") + what +
                                               ": it needs " + mib(bytes) + ", and " + r.said +
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
