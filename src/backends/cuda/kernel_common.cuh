// Device helpers shared by the CUDA backend's kernels: programmatic dependent launch,
// asynchronous copies into shared memory, the activations, storage-type conversion, warp
// reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "backends/reference/fused_ops.h"

namespace gptrt::cuda {

#ifdef GPTRT_CUDA_TRACE
// Kernel timeline tracing (a build with -DGPTRT_CUDA_TRACE=ON, for profiling only): thread 0 of
// every block of every kernel that starts with GPTRT_TRACE_KERNEL() appends one record: its grid,
// SM, block, and the global timer (ns) at its start, when its wait for the previous kernel
// returned, and at its end. Runner::Impl reads them back after a graph replay.
struct TraceRecord {
  unsigned long long grid, start, wait, end, marks[3];
  unsigned sm, block;
};
constexpr unsigned kTraceCapacity = 1u << 16;
// Defined once (runner.cu); tracing builds link device code across files (separable
// compilation) so that every file's kernels record into the same buffer.
extern __device__ TraceRecord trace_records[kTraceCapacity];
extern __device__ unsigned trace_count;
__device__ __forceinline__ unsigned long long trace_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned long long& trace_wait_time() {
  __shared__ unsigned long long t;
  return t;
}
// Up to three points inside a kernel (GPTRT_TRACE_MARK(i), thread 0's time).
__device__ __forceinline__ unsigned long long* trace_marks() {
  __shared__ unsigned long long t[3];
  return t;
}
struct KernelTrace {
  unsigned long long start;
  __device__ KernelTrace() : start(trace_now()) {
    if (threadIdx.x == 0) {
      trace_wait_time() = start;
      trace_marks()[0] = trace_marks()[1] = trace_marks()[2] = 0;
    }
  }
  __device__ ~KernelTrace() {
    if (threadIdx.x != 0) return;
    unsigned long long grid, end = trace_now();
    unsigned sm;
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(grid));
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    unsigned at = atomicAdd(&trace_count, 1u);
    if (at < kTraceCapacity)
      trace_records[at] = TraceRecord{grid,
                                      start,
                                      trace_wait_time(),
                                      end,
                                      {trace_marks()[0], trace_marks()[1], trace_marks()[2]},
                                      sm,
                                      blockIdx.x};
  }
};
#define GPTRT_TRACE_KERNEL() ::gptrt::cuda::KernelTrace gptrt_kernel_trace_
#define GPTRT_TRACE_MARK(i)                                 \
  if (threadIdx.x == 0 && !::gptrt::cuda::trace_marks()[i]) \
  ::gptrt::cuda::trace_marks()[i] = ::gptrt::cuda::trace_now()
#else
#define GPTRT_TRACE_KERNEL() static_cast<void>(0)
#define GPTRT_TRACE_MARK(i) static_cast<void>(0)
#endif

// Waits for the previous kernel in the stream (its writes visible); a no-op without programmatic
// dependent launch. Every kernel calls it before it reads what the kernel just before it wrote, or
// writes anything. What kernels two or more launches back wrote may be read before it: every
// kernel lets the next one start only after its own wait (let_next_kernel_start comes after
// wait_for_previous_kernel; a kernel launched without overlap, the first of a graph or after a
// copy, starts only when all before it have finished), so when a kernel starts, the one two
// before it has finished.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#ifdef GPTRT_CUDA_TRACE
  if (threadIdx.x == 0) trace_wait_time() = trace_now();
#endif
}
// Lets the next kernel in the stream start its prologue (it still waits for this one to finish).
__device__ __forceinline__ void let_next_kernel_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// kBytes (4, 8 or 16) from global to shared memory without passing through registers (zeros
// when !valid): the thread goes on at once, so every copy a block needs can be in flight together.
// copy_async_commit closes a group of copies; copy_async_wait<n> returns when at most n of this
// thread's groups are still in flight.
template <int kBytes = 16>
__device__ __forceinline__ void copy_async(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if constexpr (kBytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(src),
                 "r"(valid ? 16 : 0));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(addr), "l"(src), "n"(kBytes),
                 "r"(valid ? kBytes : 0));
#else  // (sm_75: a plain copy through registers)
  using Piece =
      std::conditional_t<kBytes == 16, uint4, std::conditional_t<kBytes == 8, uint2, unsigned> >;
  *static_cast<Piece*>(dst) = valid ? *static_cast<const Piece*>(src) : Piece{};
#endif
}
__device__ __forceinline__ void copy_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#endif
}
template <int kPending>
__device__ __forceinline__ void copy_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
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
