// POSIX (Linux, macOS) implementation of platform.h; x86 CPU features via GCC/Clang cpuid.
#include "platform/platform.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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

bool amx_permitted() {
  static const bool permitted = [] {
#if defined(__linux__) && defined(GPTRT_X86)
    constexpr long kRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
    constexpr long kTileData = 18;               // XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
#else
    return false;
#endif
  }();
  return permitted;
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

bool AtomicFile::close_temporary() {
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return false;
  ::chmod(tmp_.c_str(), 0644);  // mkstemp makes it 0600
  return true;
}

std::vector<std::string> utf8_arguments(int argc, char** argv) {
  return std::vector<std::string>(argv + std::min(argc, 1), argv + argc);
}

bool pin_thread_to_core(int core) {
#ifdef __linux__
  if (core < 0 || core >= CPU_SETSIZE) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
#else
  static_cast<void>(core);  // (no affinity call)
  return false;
#endif
}

int current_core() {
#ifdef __linux__
  return sched_getcpu();
#else
  return -1;
#endif
}

std::vector<int> allowed_cores() {
  std::vector<int> cores;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cores.push_back(c);
#endif
  if (cores.empty())
    for (unsigned c = 0; c < std::max(1u, std::thread::hardware_concurrency()); ++c)
      cores.push_back(static_cast<int>(c));
  return cores;
}

std::string executable_path() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<size_t>(n)) : std::string();
}

}  // namespace gptrt::platform
