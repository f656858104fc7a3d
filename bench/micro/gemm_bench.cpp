// Kernel lab for the CPU backend's packed GEMM: GFLOP/s and effective weight bandwidth at the
// shapes DistilGPT2 runs (every linear layer and the LM head, M = batch x seq).
//   build/release/bench/gemm_bench [threads] [fp32|bf16|both] [ISA for BF16, e.g. avx512_bf16]
// (GEMM_BENCH_ROWS=M: that row count only, instead of 12, 96 and 192.)
// FP32 runs on best_isa(), BF16 on best_isa_for(bfloat16) (amx_bf16 where the CPU has AMX)
// unless named.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/gemm.h"

int main(int argc, char** argv) {
  using namespace gptrt;
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  std::string which = argc > 2 ? argv[2] : "fp32";
  std::vector<DType> dtypes;
  if (which != "bf16") dtypes.push_back(DType::kFloat32);
  if (which != "fp32") dtypes.push_back(DType::kBFloat16);
  cpu::ThreadPool pool(threads);
  const cpu::Isa fp32_isa = cpu::best_isa();
  const cpu::Isa bf16_isa =
      argc > 3 ? cpu::isa_from_name(argv[3]) : cpu::best_isa_for(DType::kBFloat16);
  if (!cpu::isa_supported(bf16_isa)) {
    std::fprintf(stderr, "this CPU cannot run %s\n", cpu::isa_name(bf16_isa));
    return 2;
  }
  std::printf("fp32 on %s, bf16 on %s, %d threads\n", cpu::isa_name(fp32_isa),
              cpu::isa_name(bf16_isa), threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  struct Case {
    int64_t k, n;
    const char* what;
  };
  std::vector<int64_t> row_counts = {12, 96, 192};
  if (const char* rows = std::getenv("GEMM_BENCH_ROWS")) row_counts = {std::atoll(rows)};
  for (int64_t m : row_counts) {
    for (Case c : {Case{768, 2304, "c_attn"}, Case{768, 3072, "c_fc"},
                   Case{3072, 768, "mlp c_proj"}, Case{768, 50257, "lm_head"}}) {
      Tensor w(DType::kFloat32, {c.k, c.n}), x(DType::kFloat32, {m, c.k}),
          y(DType::kFloat32, {m, c.n});
      for (int64_t i = 0; i < w.numel(); ++i) w.data_mut<float>()[i] = nd(rng);
      for (int64_t i = 0; i < x.numel(); ++i) x.data_mut<float>()[i] = nd(rng);
      for (DType dt : dtypes) {
        const cpu::Isa isa = dt == DType::kFloat32 ? fp32_isa : bf16_isa;
        Tensor p = cpu::pack_weights(w, false, dt, isa);
        auto run = [&] {
          cpu::gemm_packed(isa, x.data<float>(), m, c.k, p, c.n, nullptr, y.data_mut<float>(),
                           pool);
        };
        run();
        int reps = 0;
        auto t0 = std::chrono::steady_clock::now();
        double s = 0;
        while (s < 0.5) {
          run();
          ++reps;
          s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        double t = s / reps;
        std::printf(
            "%s M=%4lld %-11s K=%5lld N=%6lld: %8.3f ms  %6.1f GFLOP/s  %6.1f GB/s of weights\n",
            dt == DType::kFloat32 ? "fp32" : "bf16", static_cast<long long>(m), c.what,
            static_cast<long long>(c.k), static_cast<long long>(c.n), t * 1e3,
            2.0 * m * c.k * c.n / t / 1e9, static_cast<double>(p.nbytes()) / t / 1e9);
      }
    }
  }
  return 0;
}
