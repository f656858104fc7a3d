// What every CUDA file of the backend shares on the host side: error checks, grid sizes, and the
// Launcher (programmatic dependent launch and the shared-memory carveout).
#pragma once

#if GPTRT_WITH_CUBLAS
#include <cublasLt.h>
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "backends/cuda/kernel_common.cuh"
#include "gptrt/error.h"

namespace gptrt::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(ErrorCode::kInternal,
                std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}
#if GPTRT_WITH_CUBLAS
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::kInternal,
                std::string("cuBLAS error ") + std::to_string(static_cast<int>(s)) + " in " + what);
}
#endif

/// cudaMalloc of `bytes` for `what` (weights, activation arena, K or V cache), refused first when
/// the GPU has less free memory, or when the GPU's memory in use would pass
/// GPTRT_CUDA_MEMORY_LIMIT bytes (which stands in for a smaller card, e.g. the recipe's 3 GB
/// GTX 1060), and when cudaMalloc itself runs out: kResourceLimit naming the numbers and what to
/// lower (device.cu).
void device_alloc(void** p, size_t bytes, const char* what);

/// One part of what a runner or decoder is about to allocate on the GPU.
struct MemoryPart {
  const char* what;  // "weights", "K and V cache", ...
  size_t bytes;
};
/// Checks the parts' sum against the GPU memory gptrt may still take (as device_alloc does)
/// before any of them is allocated: kResourceLimit naming each part, the sum, the free memory and
/// what to lower, so that a plan too large for the card (the recipe's 3 GB GTX 1060) is refused
/// whole rather than after its first allocations.
void check_memory_plan(const std::vector<MemoryPart>& parts, const std::string& what);

inline int blocks_for(int64_t n, int threads) {
  return static_cast<int>((n + threads - 1) / threads);
}

// Launches kernels on one stream, each allowed to start while the one before it finishes
// (programmatic dependent launch, sm_90) when `overlap` is on: the kernels wait for their
// predecessor themselves (wait_for_previous_kernel).
//
// Every kernel it launches asks for `carveout` percent of the largest shared-memory carveout
// (once per kernel function, for the process; -1: the default). A block can only join an SM whose
// carveout has room for it, and an SM keeps the carveout of the blocks it runs: with the default,
// a decode step's FC1 (192 blocks) found room beside no proj block and went two per SM to the 97
// SMs that proj left first. FP16/BF16 engines take all of it (their GEMMs stream weights through
// shared memory); FP32 engines 75%, which leaves L1 room for their GEMM's weight loads (measured
// on the H100: FP16 best at 100, FP32 at 75 of 25/50/75/100; see docs/lab/, "room beside the
// previous kernel").
struct Launcher {
  cudaStream_t stream = nullptr;
  bool overlap = false;
  int carveout = -1;
  mutable bool after_copy = false;  // the next launch follows a copy: a plain dependency
  template <typename... Params, typename... Args>
  void operator()(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                  Args... args) const {
    clustered(kernel, grid, block, smem, 0, args...);
  }
  // The same in thread-block clusters of `cluster` blocks along x (0: none; sm_90).
  template <typename... Params, typename... Args>
  void clustered(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, int cluster,
                 Args... args) const {
    if (carveout >= 0) {
      static std::mutex mu;
      static std::set<const void*> done;
      std::lock_guard<std::mutex> lock(mu);
      if (done.insert(reinterpret_cast<const void*>(kernel)).second)
        check(
            cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout),
            "cudaFuncSetAttribute (carveout)");
    }
    cudaLaunchAttribute attr[2];
    unsigned attrs = 0;
    if (overlap && !after_copy) {
      attr[attrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[attrs++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster > 0) {
      attr[attrs].id = cudaLaunchAttributeClusterDimension;
      attr[attrs].val.clusterDim.x = static_cast<unsigned>(cluster);
      attr[attrs].val.clusterDim.y = 1;
      attr[attrs++].val.clusterDim.z = 1;
    }
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attr;
    config.numAttrs = attrs;
    after_copy = false;
    check(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...), "kernel launch");
  }
};

}  // namespace gptrt::cuda
