// The CUDA backend's switches are read in one place and refuse values they do not know (plain
// C++: runs without a GPU).
#include <cstdlib>

#include "backends/cuda/options.h"
#include "test_util.h"

namespace gptrt::test {
namespace {

TEST(CudaOptions, DefaultsAndEverySwitchParse) {
  for (const char* v :
       {"GPTRT_CUDA_PDL", "GPTRT_CUDA_GEMM", "GPTRT_CUDA_SKINNY_TN", "GPTRT_CUDA_STREAM",
        "GPTRT_CUDA_DECODE_STEPS", "GPTRT_CUDA_FUSED_ATTENTION", "GPTRT_CUDA_PACKED",
        "GPTRT_CUDA_TRACE_RUN", "GPTRT_CUDA_TRACE_FILE"})
    unsetenv(v);
  cuda::Options d = cuda::Options::from_environment();
  EXPECT_TRUE(d.pdl && d.skinny_gemms && d.fused_attention && d.packed);
  EXPECT_EQ(d.skinny_tn, 0);
  EXPECT_EQ(d.stream, -1);
  EXPECT_EQ(d.decode_steps, 0);
  EXPECT_EQ(d.trace_run, 100);
  setenv("GPTRT_CUDA_PDL", "0", 1);
  setenv("GPTRT_CUDA_GEMM", "cublaslt", 1);
  setenv("GPTRT_CUDA_SKINNY_TN", "4", 1);
  setenv("GPTRT_CUDA_STREAM", "1", 1);
  setenv("GPTRT_CUDA_DECODE_STEPS", "8", 1);
  setenv("GPTRT_CUDA_FUSED_ATTENTION", "0", 1);
  setenv("GPTRT_CUDA_PACKED", "0", 1);
  setenv("GPTRT_CUDA_TRACE_RUN", "7", 1);
  cuda::Options o = cuda::Options::from_environment();
  EXPECT_FALSE(o.pdl || o.skinny_gemms || o.fused_attention || o.packed);
  EXPECT_EQ(o.skinny_tn, 4);
  EXPECT_EQ(o.stream, 1);
  EXPECT_EQ(o.decode_steps, 8);
  EXPECT_EQ(o.trace_run, 7);
  for (auto [name, value] :
       {std::pair{"GPTRT_CUDA_PDL", "off"}, std::pair{"GPTRT_CUDA_GEMM", "cublas"},
        std::pair{"GPTRT_CUDA_SKINNY_TN", "3"}, std::pair{"GPTRT_CUDA_STREAM", "2"},
        std::pair{"GPTRT_CUDA_DECODE_STEPS", "9"}, std::pair{"GPTRT_CUDA_DECODE_STEPS", "0"},
        std::pair{"GPTRT_CUDA_FUSED_ATTENTION", "yes"}, std::pair{"GPTRT_CUDA_PACKED", "2"},
        std::pair{"GPTRT_CUDA_TRACE_RUN", "x"}}) {
    std::string keep = std::getenv(name);
    setenv(name, value, 1);
    expect_error([] { cuda::Options::from_environment(); }, {name, std::string("'") + value + "'"});
    setenv(name, keep.c_str(), 1);
  }
  for (const char* v : {"GPTRT_CUDA_PDL", "GPTRT_CUDA_GEMM", "GPTRT_CUDA_SKINNY_TN",
                        "GPTRT_CUDA_STREAM", "GPTRT_CUDA_DECODE_STEPS",
                        "GPTRT_CUDA_FUSED_ATTENTION", "GPTRT_CUDA_PACKED", "GPTRT_CUDA_TRACE_RUN"})
    unsetenv(v);
}

}  // namespace
}  // namespace gptrt::test
