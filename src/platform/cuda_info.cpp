// CUDA runtime queries for the environment report. Uses only APIs present in CUDA 11 and 12.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "platform/cuda_info.h"

namespace gptrt::platform {

CudaInfo cuda_info() {
  CudaInfo info;
  info.built_with_cuda = true;
#ifdef GPTRT_CUDA_TOOLKIT
  info.toolkit = GPTRT_CUDA_TOOLKIT;
#endif
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
    info.driver = "no NVIDIA driver found";
    return info;
  }
  info.driver =
      "CUDA " + std::to_string(driver / 1000) + "." + std::to_string((driver % 1000) / 10);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.gpus.push_back(std::string("none usable: ") + cudaGetErrorString(err));
    return info;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    char mem[32];
    std::snprintf(mem, sizeof mem, "%.1f GiB",
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    info.gpus.push_back(std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                        std::to_string(prop.minor) + ", " + mem + ")");
  }
  return info;
}

}  // namespace gptrt::platform
