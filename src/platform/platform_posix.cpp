// POSIX (Linux, macOS) implementation of platform.h; x86 CPU features via GCC/Clang cpuid.
#include "platform/platform.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define GPTRT_X86 1
#endif

#include "gptrt/error.h"

namespace gptrt::platform {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw Error(ErrorCode::kIoError, "cannot open '" + path + "': " + std::strerror(errno) +
                                         "; check the path and permissions");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    const char* kind = S_ISDIR(st.st_mode)                          ? "a directory"
                       : S_ISFIFO(st.st_mode)                       ? "a FIFO (named pipe)"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                       : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                    : "not a regular file";
    throw Error(ErrorCode::kIoError, "'" + path + "' is " + kind +
                                         ", not a regular file; give the path of a model, "
                                         "engine or data file");
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(ErrorCode::kIoError, "cannot map '" + path + "': " + std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return file;
}

std::string read_text_file(const std::string& path) {
  std::shared_ptr<const MappedFile> f = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
}

void* allocate_large(size_t bytes) {
  const size_t huge = kLargeBytes, size = (bytes + huge - 1) / huge * huge;
  // Map one huge page more than asked, keep the aligned part, return the rest.
  void* p = mmap(nullptr, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* raw = static_cast<uint8_t*>(p);
  auto* at =
      reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + huge - 1) & ~(huge - 1));
  if (at > raw) munmap(raw, static_cast<size_t>(at - raw));
  if (at + size < raw + size + huge)
    munmap(at + size, static_cast<size_t>(raw + size + huge - (at + size)));
#ifdef MADV_HUGEPAGE
  madvise(at, size, MADV_HUGEPAGE);  // (a hint: without it, or refused, plain pages)
#endif
  return at;
}

void free_large(void* p, size_t bytes) noexcept {
  const size_t huge = kLargeBytes;
  if (p != nullptr) munmap(p, (bytes + huge - 1) / huge * huge);
}

int64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? static_cast<int64_t>(pages) * size : 0;
}

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

double now_seconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void replace_file(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    int err = errno;
    remove_file(from);
    throw Error(ErrorCode::kIoError,
                "cannot move '" + from + "' to '" + to + "': " + std::strerror(err));
  }
}

void remove_file(const std::string& path) noexcept {
  ::unlink(path.c_str());
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".partial.XXXXXX") {
  fd_ = mkstemp(tmp_.data());
  if (fd_ < 0) {
    throw Error(ErrorCode::kIoError, "cannot create a temporary file next to '" + path_ +
                                         "': " + std::strerror(errno) +
                                         "; does the directory exist and is it writable?");
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    remove_file(tmp_);
  }
}

void AtomicFile::write(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (fd_ >= 0 && done < size) {
    ssize_t n = ::write(fd_, p + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw Error(ErrorCode::kIoError, "cannot write '" + path_ +
                                           "': " + (n < 0 ? std::strerror(errno) : "no progress") +
                                           " (disk full?); nothing was left behind");
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    remove_file(tmp_);
    throw Error(ErrorCode::kIoError, "cannot write '" + path_ + "' (disk full?)");
  }
  ::chmod(tmp_.c_str(), 0644);  // mkstemp makes it 0600
  try {
    replace_file(tmp_, path_);
  } catch (...) {
    remove_file(tmp_);
    throw;
  }
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  AtomicFile f(path);
  f.write(data, size);
  f.commit();
}

void make_directories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    throw Error(ErrorCode::kIoError, "cannot create directory '" + path + "': " + ec.message());
  }
}

std::string executable_path() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<size_t>(n)) : std::string();
}

std::string compiler_name() {
#if defined(__clang__)
  return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
  return "GCC " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
  return "MSVC " + std::to_string(_MSC_VER);
#else
  return "unknown compiler";
#endif
}

}  // namespace gptrt::platform
