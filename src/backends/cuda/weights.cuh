// An engine's weights on the GPU, uploaded once and shared by every context of that engine.
#pragma once

#include <memory>

#include "ir/graph.h"

namespace gptrt::cuda {

// 16-bit matrices are stored with their row count rounded up to a multiple of 8 (zero rows
// after the last): a linear layer whose N is not a multiple of 8 (the LM head) can then run
// through cuBLASLt as a GEMM of that many rows (see Runner::Impl::pitched_cols).
struct DeviceWeights {
  std::map<int, void*> ptr;  // value id -> device copy of its constant
  ~DeviceWeights() {
    for (auto& [id, p] : ptr) cudaFree(p);
  }
};

std::shared_ptr<DeviceWeights> weights_for(const void* owner, const ir::Graph& g);
/// The bytes weights_for(owner, g) would allocate now: 0 when the engine's are already on the GPU.
size_t weight_bytes_to_upload(const void* owner, const ir::Graph& g);

}  // namespace gptrt::cuda
