// CPU features by cpuid (GCC and Clang on x86-64, Linux and Windows alike): the vendor, the
// brand string, the vector extensions and whether the OS saves their state (XCR0).
#include <algorithm>
#include <cstring>
#include <thread>

#include "platform/platform.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define GPTRT_X86 1
#endif

namespace gptrt::platform {

std::string CpuInfo::best_isa() const {
  if (avx512f && avx512bw && avx512vl && avx512_bf16 && amx_bf16) return "amx_bf16";
  if (avx512f && avx512bw && avx512vl && avx512_bf16) return "avx512_bf16";
  if (avx512f && avx512bw && avx512vl) return "avx512";
  if (avx2 && fma) return "avx2";
  return "generic";
}

namespace {

CpuInfo detect_cpu() {
  CpuInfo info;
  info.logical_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#ifdef GPTRT_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  {  // leaf 0: the vendor string (EBX, EDX, ECX)
    __cpuid(0, a, b, c, d);
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    info.vendor = vendor;
  }
  bool os_avx = false, os_avx512 = false, os_amx = false;
  if (max_leaf >= 1) {
    __cpuid_count(1, 0, a, b, c, d);
    info.fma = (c >> 12) & 1;
    info.f16c = (c >> 29) & 1;
    bool osxsave = (c >> 27) & 1;
    if (osxsave) {
      unsigned lo = 0, hi = 0;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      os_avx = (lo & 0x6) == 0x6;
      os_avx512 = os_avx && (lo & 0xe0) == 0xe0;
      os_amx = (lo & 0x60000) == 0x60000;  // XTILECFG and XTILEDATA
    }
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    info.avx2 = os_avx && ((b >> 5) & 1);
    info.avx512f = os_avx512 && ((b >> 16) & 1);
    info.avx512bw = os_avx512 && ((b >> 30) & 1);
    info.avx512vl = os_avx512 && ((b >> 31) & 1);
    info.avx512_vnni = os_avx512 && ((c >> 11) & 1);
    info.amx_bf16 = os_amx && ((d >> 22) & 1) && ((d >> 24) & 1);  // AMX-BF16 and AMX-TILE
    __cpuid_count(7, 1, a, b, c, d);
    info.avx512_bf16 = os_avx512 && ((a >> 5) & 1);
  }
  info.fma = info.fma && os_avx;
  unsigned ext = __get_cpuid_max(0x80000000, nullptr);
  if (ext >= 0x80000004) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __cpuid(0x80000002 + i, a, b, c, d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    info.model = brand;
    while (!info.model.empty() && info.model.back() == ' ') info.model.pop_back();
    size_t start = info.model.find_first_not_of(' ');
    info.model = start == std::string::npos ? "" : info.model.substr(start);
  }
#endif
  if (info.model.empty()) info.model = "unknown CPU";
  return info;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect_cpu();
  return info;
}

}  // namespace gptrt::platform
