#include "backends/cuda/options.h"

#include <cstdlib>
#include <initializer_list>

#include "core/checked.h"
#include "gptrt/error.h"

namespace gptrt::cuda {
namespace {

// The value of `name` if set, refused unless it is one of `allowed`.
const char* one_of(const char* name, std::initializer_list<const char*> allowed,
                   const char* meaning) {
  const char* v = std::getenv(name);
  if (!v) return nullptr;
  std::string list;
  for (const char* a : allowed) {
    if (std::string(v) == a) return v;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  throw Error(ErrorCode::kInvalidArgument, std::string(name) + " is '" + v + "'; expected " + list +
                                               " (" + meaning + "); unset it for the default");
}

}  // namespace

Options Options::from_environment(bool with_cublas) {
  Options o;
  if (const char* v = one_of("GPTRT_CUDA_PDL", {"0", "1"}, "programmatic dependent launch"))
    o.pdl = v[0] == '1';
  if (const char* v = one_of("GPTRT_CUDA_GEMM", {"auto", "cublaslt", "plain"},
                             "cublaslt: every linear layer on cuBLASLt, plain: every linear layer "
                             "on the CUDA cores without cuBLAS"))
    o.gemm = std::string(v) == "cublaslt" ? GemmChoice::kCublasLt
             : std::string(v) == "plain"  ? GemmChoice::kPlain
                                          : GemmChoice::kAuto;
  if (o.gemm == GemmChoice::kCublasLt && !with_cublas)
    throw Error(ErrorCode::kInvalidArgument,
                "GPTRT_CUDA_GEMM is 'cublaslt', but this gptrt was built without cuBLAS "
                "(GPTRT_CUDA_CUBLAS=OFF); use auto or plain, or a build with cuBLAS");
  if (const char* v = one_of("GPTRT_CUDA_SKINNY_TN", {"1", "2", "4", "8"},
                             "the skinny GEMM's column groups per block"))
    o.skinny_tn = v[0] - '0';
  if (const char* v = one_of("GPTRT_CUDA_STREAM", {"0", "1"},
                             "0: no streaming GEMM, 1: on every layer it can run"))
    o.stream = v[0] - '0';
  if (const char* v = one_of("GPTRT_CUDA_DECODE_STEPS", {"1", "2", "3", "4", "5", "6", "7", "8"},
                             "greedy decode steps per CUDA graph"))
    o.decode_steps = v[0] - '0';
  if (const char* v = one_of("GPTRT_CUDA_FUSED_ATTENTION", {"0", "1"},
                             "0: QKV projection and attention as two kernels, 1: one kernel "
                             "where it can run"))
    o.fused_attention = v[0] == '1';
  if (const char* v = one_of("GPTRT_CUDA_PACKED", {"0", "1"},
                             "0: generation passes padded to [slots, longest sequence], 1: their "
                             "tokens packed"))
    o.packed = v[0] == '1';
  if (const char* v = std::getenv("GPTRT_CUDA_TRACE_RUN")) {
    char* end = nullptr;
    o.trace_run = std::strtoll(v, &end, 10);
    if (end == v || *end || o.trace_run < 1)
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("GPTRT_CUDA_TRACE_RUN is '") + v +
                      "'; expected the number (1 or more) of the graph replay to trace");
  }
  if (const char* v = std::getenv("GPTRT_CUDA_TRACE_FILE")) o.trace_file = v;
  return o;
}

uint64_t memory_limit_from_environment() {
  const char* v = std::getenv("GPTRT_CUDA_MEMORY_LIMIT");
  return v ? static_cast<uint64_t>(checked::parse_size(v, "GPTRT_CUDA_MEMORY_LIMIT")) : 0;
}

}  // namespace gptrt::cuda
