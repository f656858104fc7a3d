// Built without the CUDA toolkit.
#include "platform/cuda_info.h"

namespace gptrt::platform {

CudaInfo cuda_info() {
  return CudaInfo{};
}

}  // namespace gptrt::platform
