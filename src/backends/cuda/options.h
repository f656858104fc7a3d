// The CUDA backend's switches, read from the environment in one place when a runner is made.
// They exist for comparisons and tests (docs/DEVICE.md); unset, each takes the default that the
// benchmarks chose. Plain C++ (no CUDA headers): it builds, and is tested, without the toolkit.
#pragma once

#include <cstdint>
#include <string>

namespace gptrt::cuda {

/// Greedy decode steps one CUDA graph runs at most (Decoder::greedy_steps).
constexpr int64_t kMaxDecodeSteps = 8;

/// Which kernels run the linear layers (GPTRT_CUDA_GEMM): the skinny kernels where they fit and
/// cuBLASLt for the rest (or plain_gemm_kernel before sm_70 and in builds without cuBLAS);
/// cuBLASLt for every layer; plain_gemm_kernel for every layer.
enum class GemmChoice { kAuto, kCublasLt, kPlain };

struct Options {
  bool pdl = true;                      // GPTRT_CUDA_PDL=0|1: programmatic dependent launch (sm_90)
  GemmChoice gemm = GemmChoice::kAuto;  // GPTRT_CUDA_GEMM=auto|cublaslt|plain
  int skinny_tn = 0;            // GPTRT_CUDA_SKINNY_TN=1|2|4|8: column groups a block (0: planned)
  int stream = -1;              // GPTRT_CUDA_STREAM=0|1: the streaming GEMM nowhere / everywhere
  int64_t decode_steps = 0;     // GPTRT_CUDA_DECODE_STEPS=1..8: greedy steps a graph from the
                                // first step (0: 8 once 256 steps ran one at a time)
  bool fused_attention = true;  // GPTRT_CUDA_FUSED_ATTENTION=0|1: QKV and attention as one kernel
  bool packed = true;           // GPTRT_CUDA_PACKED=0|1: 0 pads a generation pass whose sequences
                                // bring different token counts to [slots, longest]
  int64_t trace_run = 100;      // GPTRT_CUDA_TRACE_RUN=N: the graph replay a tracing build traces
  std::string trace_file;       // GPTRT_CUDA_TRACE_FILE=F: where it writes (empty: no trace)

  /// Reads every switch; a value it does not know is refused (kInvalidArgument), naming the
  /// variable, what it holds and what it takes; so is GPTRT_CUDA_GEMM=cublaslt where
  /// `with_cublas` is false (a build without cuBLAS).
  static Options from_environment(bool with_cublas = true);
};

/// GPTRT_CUDA_MEMORY_LIMIT: the GPU memory gptrt may have in use, a size as GPTRT_MEMORY_BUDGET
/// takes it (bytes, or with a K, M, G or T suffix: "3G"), standing in for a smaller card (the
/// recipe's 3 GB GTX 1060); 0 when unset. Anything else is refused (kInvalidArgument).
uint64_t memory_limit_from_environment();

}  // namespace gptrt::cuda
