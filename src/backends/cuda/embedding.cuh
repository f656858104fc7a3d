// The embedding sum (token row + position row), and a decode step's embedding reading its inputs
// from mapped host memory.
// Included by the one file that launches them (their definitions are local to it).
#pragma once

#include <cstdint>

#include "backends/cuda/kernel_common.cuh"

namespace gptrt::cuda {
namespace {

__global__ void embedding_kernel(const int64_t* ids, const int64_t* pos, const float* wte,
                                 const float* wpe, int64_t s, int64_t e, float* out) {
  GPTRT_TRACE_KERNEL();
  wait_for_previous_kernel();
  let_next_kernel_start();
  int64_t row = blockIdx.x;
  int64_t p = pos ? pos[row] : row % s;
  const float* a = wte + ids[row] * e;
  const float* b = wpe + p * e;
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) out[row * e + k] = a[k] + b[k];
}

// A generation step's embedding, its inputs read straight from mapped pinned host memory (one
// read over the bus, no copies): `in` holds ids [rows], positions [rows], the cached length, then
// the padding flags [flag_bytes] (the layout decode_step writes). Block r embeds row r; all the
// blocks' threads copy the cached length and the flags, 8 bytes at a time, to device memory for
// the attention kernels (which read them before their wait: they run two or more launches
// later). The first kernel of a step, launched without overlap: it waits for nothing.
__global__ void step_embedding_kernel(const int64_t* in, int64_t rows, int64_t flag_bytes,
                                      int64_t* past, uint8_t* valid, const float* wte,
                                      const float* wpe, int64_t e, float* out, int64_t* ids,
                                      int64_t* pos) {
  GPTRT_TRACE_KERNEL();
  let_next_kernel_start();
  const int64_t row = blockIdx.x;
  if (threadIdx.x == 0) {  // (for chunk_advance_kernel, in a graph of several steps)
    ids[row] = in[row];
    pos[row] = in[rows + row];
  }
  const float* a = wte + in[row] * e;
  const float* b = wpe + in[rows + row] * e;
  const int64_t* flags = in + 2 * rows + 1;
  const int64_t at = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x,
                stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (at == 0) *past = in[2 * rows];
  for (int64_t i = at; i < flag_bytes / 8; i += stride)
    reinterpret_cast<int64_t*>(valid)[i] = flags[i];
  const uint8_t* tail = reinterpret_cast<const uint8_t*>(flags);
  for (int64_t i = flag_bytes / 8 * 8 + at; i < flag_bytes; i += stride) valid[i] = tail[i];
  for (int64_t k = threadIdx.x; k < e; k += blockDim.x) out[row * e + k] = a[k] + b[k];
}

}  // namespace
}  // namespace gptrt::cuda
