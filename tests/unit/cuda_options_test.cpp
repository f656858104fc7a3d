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
  EXPECT_TRUE(d.pdl && d.fused_attention && d.packed);
  EXPECT_EQ(d.gemm, cuda::GemmChoice::kAuto);
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
  EXPECT_FALSE(o.pdl || o.fused_attention || o.packed);
  EXPECT_EQ(o.gemm, cuda::GemmChoice::kCublasLt);
  // A build without cuBLAS refuses cublaslt by name, and takes plain.
  expect_error([] { cuda::Options::from_environment(false); },
               {"GPTRT_CUDA_GEMM", "'cublaslt'", "without cuBLAS", "plain"});
  setenv("GPTRT_CUDA_GEMM", "plain", 1);
  EXPECT_EQ(cuda::Options::from_environment(false).gemm, cuda::GemmChoice::kPlain);
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

// GPTRT_CUDA_MEMORY_LIMIT (a smaller card's memory, a size as GPTRT_MEMORY_BUDGET takes it) is
// read whole: anything else is refused, saying what it takes, rather than read as no limit.
TEST(CudaOptions, MemoryLimitParsesOrIsRefused) {
  unsetenv("GPTRT_CUDA_MEMORY_LIMIT");
  EXPECT_EQ(cuda::memory_limit_from_environment(), 0u);
  for (auto [value, bytes] :
       {std::pair{"1", uint64_t{1}}, std::pair{"3G", uint64_t{3} << 30},
        std::pair{"512MB", uint64_t{512} << 20}, std::pair{"1.5GiB", uint64_t{3} << 29},
        std::pair{"64k", uint64_t{64} << 10}}) {
    setenv("GPTRT_CUDA_MEMORY_LIMIT", value, 1);
    EXPECT_EQ(cuda::memory_limit_from_environment(), bytes) << value;
  }
  // (Not "": Windows' environment cannot hold an empty value, it removes the variable.)
  for (const char* bad : {"3Q", "-1", "0", "x", "3 G", "1e30"}) {
    setenv("GPTRT_CUDA_MEMORY_LIMIT", bad, 1);
    expect_error([] { cuda::memory_limit_from_environment(); },
                 {"GPTRT_CUDA_MEMORY_LIMIT", std::string("'") + bad + "'", "8G"});
  }
  unsetenv("GPTRT_CUDA_MEMORY_LIMIT");
}

}  // namespace
}  // namespace gptrt::test
