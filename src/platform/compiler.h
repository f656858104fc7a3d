// Compiler-specific constructs behind names every compiler gptrt builds with understands (GCC,
// clang, MinGW-w64's GCC, MSVC): forced inlining, loop unrolling, prefetches, per-function ISA
// targets and clones, and overflow-checked integer arithmetic. Code outside src/platform/ uses
// these instead of __attribute__, __builtin_* or GCC pragmas.
#pragma once

#include <cstdint>
#include <limits>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define GPTRT_MSVC 1
#else
#define GPTRT_MSVC 0
#endif

// A function always inlined into its callers (the kernels' inner steps).
#if GPTRT_MSVC
#define GPTRT_ALWAYS_INLINE __forceinline
#else
#define GPTRT_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

// Unrolls the loop that follows n times (a literal).
#define GPTRT_PRAGMA(x) _Pragma(#x)
#if GPTRT_MSVC
#define GPTRT_UNROLL(n)
#elif defined(__clang__)
#define GPTRT_UNROLL(n) GPTRT_PRAGMA(unroll n)
#else
#define GPTRT_UNROLL(n) GPTRT_PRAGMA(GCC unroll n)
#endif

// Brings the cache line at p closer (for a write when `write`), into every cache level.
#if GPTRT_MSVC
#define GPTRT_PREFETCH(p, write) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0)
#else
#define GPTRT_PREFETCH(p, write) __builtin_prefetch((p), (write), 3)
#endif

// A function compiled for an ISA beyond the build's baseline (its caller checks the CPU first);
// MSVC compiles any intrinsic anywhere, so there it says nothing.
#if GPTRT_MSVC
#define GPTRT_TARGET(isa)
#else
#define GPTRT_TARGET(isa) __attribute__((target(isa)))
#endif

// One function compiled for AVX-512, AVX2 and the baseline, the loader picking the clone the CPU
// runs (target_clones, an ELF ifunc): the baseline alone under GCC's ThreadSanitizer (its
// instrumented resolvers fault), on Windows (no ifunc) and with MSVC.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__) && !defined(_WIN32)
#define GPTRT_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GPTRT_VECTOR_CLONES
#endif

namespace gptrt::platform {

/// *r = a * b; true when that overflows int64_t (*r then holds no meaningful value).
inline bool mul_overflows(int64_t a, int64_t b, int64_t* r) {
#if GPTRT_MSVC
  int64_t high = 0;
  *r = _mul128(a, b, &high);
  return high != (*r < 0 ? -1 : 0);
#else
  return __builtin_mul_overflow(a, b, r);
#endif
}

/// *r = a + b; true when that overflows int64_t.
inline bool add_overflows(int64_t a, int64_t b, int64_t* r) {
#if GPTRT_MSVC
  if ((b > 0 && a > std::numeric_limits<int64_t>::max() - b) ||
      (b < 0 && a < std::numeric_limits<int64_t>::min() - b))
    return true;
  *r = a + b;
  return false;
#else
  return __builtin_add_overflow(a, b, r);
#endif
}

/// *r = a - b; true when that overflows int64_t.
inline bool sub_overflows(int64_t a, int64_t b, int64_t* r) {
#if GPTRT_MSVC
  if ((b < 0 && a > std::numeric_limits<int64_t>::max() + b) ||
      (b > 0 && a < std::numeric_limits<int64_t>::min() + b))
    return true;
  *r = a - b;
  return false;
#else
  return __builtin_sub_overflow(a, b, r);
#endif
}

}  // namespace gptrt::platform
