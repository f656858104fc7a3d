// Kernel lab: the issue rate of one core's 512-bit FP32 FMAs and BF16 dot products (vdpbf16ps),
// 12 independent accumulators each, against a chain of dependent integer adds (one a cycle: the
// core's clock). Says which BF16 GEMM form can win on this CPU: a vdpbf16ps does 32
// multiply-adds, an FMA 16, so dot products pay where they issue at more than half the FMAs' rate
// (Zen 4: one of each a cycle), not where they issue at a quarter (the Xeon VM: 0.45-0.48
// against 1.79-1.93). GCC/Clang on x86-64 only (inline assembly).
//   build/release/bench/isa_peaks
#include <immintrin.h>

#include <chrono>
#include <cstdio>

#include "platform/compiler.h"
#include "platform/platform.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr long kChain = 400000000;  // dependent adds
constexpr long kSteps = 20000000;   // 12 independent instructions each
constexpr int kAcc = 12;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double clock_ghz() {
  long x = 0;
  const auto t0 = Clock::now();
  for (long i = 0; i < kChain; ++i) asm volatile("add $1, %0" : "+r"(x));
  return static_cast<double>(kChain) / seconds_since(t0) / 1e9;
}

// The accumulators' lanes into *sink (so the loops are not dropped).
GPTRT_TARGET("avx512f") void add_lanes(const __m512 (&acc)[kAcc], float* sink) {
  alignas(64) float lanes[16];
  for (int j = 0; j < kAcc; ++j) {
    _mm512_store_ps(lanes, acc[j]);
    for (float v : lanes) *sink += v;
  }
}

GPTRT_TARGET("avx512f") double fma_per_second(float* sink) {
  __m512 acc[kAcc];
  for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  __m512 a = _mm512_set1_ps(1.0001f);
  const __m512 b = _mm512_set1_ps(0.9999f);
  const auto t0 = Clock::now();
  for (long i = 0; i < kSteps; ++i) {
    GPTRT_UNROLL(12)
    for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_fmadd_ps(a, b, acc[j]);
    asm volatile("" : "+v"(a));  // (not hoisted: a is new every step)
  }
  const double s = seconds_since(t0);
  add_lanes(acc, sink);
  return static_cast<double>(kSteps) * kAcc / s;
}

GPTRT_TARGET("avx512f,avx512bf16") double dot_per_second(float* sink) {
  __m512 acc[kAcc];
  for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x3f803f80));
  const __m512bh b = a;
  const auto t0 = Clock::now();
  for (long i = 0; i < kSteps; ++i) {
    GPTRT_UNROLL(12)
    for (int j = 0; j < kAcc; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    asm volatile("" : "+v"(a));
  }
  const double s = seconds_since(t0);
  add_lanes(acc, sink);
  return static_cast<double>(kSteps) * kAcc / s;
}

}  // namespace

int main() {
  const gptrt::platform::CpuInfo cpu = gptrt::platform::cpu_info();
  std::printf("CPU: %s\n", cpu.model.c_str());
  const double ghz = clock_ghz();
  std::printf("clock (dependent adds): %.2f GHz\n", ghz);
  float sink = 0;
  if (!cpu.avx512f) {
    std::printf("no AVX-512 on this CPU: nothing to measure\n");
    return 0;
  }
  const double fma = fma_per_second(&sink);
  std::printf("512-bit FMA: %.2f a cycle, %.1f multiply-adds a cycle\n", fma / ghz / 1e9,
              16 * fma / ghz / 1e9);
  if (cpu.avx512_bf16) {
    const double dot = dot_per_second(&sink);
    std::printf("512-bit vdpbf16ps: %.2f a cycle, %.1f multiply-adds a cycle\n", dot / ghz / 1e9,
                32 * dot / ghz / 1e9);
  } else {
    std::printf("no AVX512-BF16 on this CPU\n");
  }
  std::printf("(sum of the accumulators: %g)\n", static_cast<double>(sink));
  return 0;
}
