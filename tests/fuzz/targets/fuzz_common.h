// What every libFuzzer target shares: a memory budget below libFuzzer's own limit (so gptrt's
// refusal, not the fuzzer's, answers a hostile size), a scratch file for readers that take a
// path, and the rule that only gptrt::Error may leave the library.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "gptrt/error.h"
#include "gptrt/tensor.h"

namespace gptrt::fuzz {

/// Once per process: a 512 MiB budget (libFuzzer runs with -rss_limit_mb=2048).
inline void init() {
  static const bool done = [] {
    set_memory_budget(int64_t{512} << 20);
    return true;
  }();
  (void)done;
}

/// A per-process scratch path with `suffix` (in /dev/shm when it exists: no disk writes).
inline std::string scratch(const std::string& suffix) {
  static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return dir + "/gptrt_fuzz_" + std::to_string(getpid()) + suffix;
}

/// Writes the input to `path`.
inline void write(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

}  // namespace gptrt::fuzz
