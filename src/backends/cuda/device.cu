// Which GPU this process sees, for builds, engine checks and reports.
#include <cuda_runtime.h>

#include <string>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/launch.cuh"

namespace gptrt::cuda {

bool compiled_in() {
  return true;
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

std::string device_name() {
  std::string why, sm = device_sm(&why);
  if (sm.empty()) return "";
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return std::string(p.name) + " (" + sm + ")";
}

}  // namespace gptrt::cuda
