// What `gptrt --version` reports about CUDA: toolkit, driver and GPUs, when built with CUDA.
#pragma once

#include <string>
#include <vector>

namespace gptrt::platform {

/// CUDA facts of this machine and build.
struct CudaInfo {
  bool built_with_cuda = false;
  std::string toolkit;            // toolkit gptrt was compiled with
  std::string driver;             // driver's CUDA version, or why none was found
  std::vector<std::string> gpus;  // "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"
};

/// Queries the CUDA runtime; never throws.
CudaInfo cuda_info();

}  // namespace gptrt::platform
