// Device helpers shared by the CUDA backend's kernels: programmatic dependent launch, the
// activations, storage-type conversion, warp reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backends/reference/fused_ops.h"

namespace gptrt::cuda {

// Waits for the previous kernel in the stream (its writes visible); a no-op without programmatic
// dependent launch. Every kernel calls it before it reads an activation or writes anything.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Lets the next kernel in the stream start its prologue (it still waits for this one to finish).
__device__ __forceinline__ void let_next_kernel_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ float activate(float v, int act) {
  if (act == reference::kActGeluTanh)
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  if (act == reference::kActGeluErf) return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
  return v;
}

// A float in storage type T (round to nearest even).
template <typename T>
__device__ __forceinline__ T to_t(float v);
template <>
__device__ __forceinline__ float to_t<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half to_t<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 to_t<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}

}  // namespace gptrt::cuda
