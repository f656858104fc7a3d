// The only place OS- and compiler-specific code lives: memory-mapped files, CPU feature
// detection, clocks, file replacement. platform_posix.cpp (Linux, macOS) and
// platform_win32.cpp (Windows, MinGW-w64) implement it; cpu_features.inc, included by both,
// reads cpuid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gptrt::platform {

/// A read-only memory mapping of a whole file. Unmapped when the last owner lets go.
class MappedFile {
 public:
  /// Maps `path`; throws gptrt::Error (kIoError) naming the file and the OS reason.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

/// Memory for a large buffer (weights, activations): `bytes` (rounded up to 2 MiB) at a 2 MiB
/// boundary, zero-filled, which the OS is asked to back with huge pages where it can (Linux
/// transparent huge pages, "madvise" mode included): weights then stream with a TLB entry per
/// 2 MiB instead of per 4 KiB. Null when the OS has none to give; release with free_large.
void* allocate_large(size_t bytes);
void free_large(void* p, size_t bytes) noexcept;
/// Bytes of physical memory (0 when the OS does not say).
int64_t physical_memory_bytes();
/// Buffers from this size up take allocate_large.
constexpr size_t kLargeBytes = size_t{2} << 20;

/// What the CPU can do, read once with cpuid.
struct CpuInfo {
  std::string model;   // brand string, e.g. "AMD EPYC 7B13"
  std::string vendor;  // cpuid's vendor string: "AuthenticAMD", "GenuineIntel", or ""
  int logical_cores = 1;
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512_vnni = false,
       avx512_bf16 = false;
  /// AMX tiles with BF16 multiplies, and the OS saving their state (XCR0); Linux still has to
  /// grant each process the tile data (cpu::amx_permitted).
  bool amx_bf16 = false;
  /// Best ISA the CPU and OS support: "amx_bf16", "avx512_bf16", "avx512", "avx2", or "generic".
  std::string best_isa() const;
};

/// Whether this process may use the AMX tiles' data state: Linux grants it per process on
/// request (arch_prctl, asked once); Windows saves it for every thread. False elsewhere.
bool amx_permitted();

/// Cached CpuInfo of this machine.
const CpuInfo& cpu_info();

/// Monotonic clock in seconds.
double now_seconds();

/// Pins the calling thread to logical core `core` (0-based): true when the OS did, false where it
/// refuses, has no such core, or has no affinity call (macOS).
bool pin_thread_to_core(int core);
/// The logical core the calling thread runs on at this moment (-1 where the OS does not say).
int current_core();
/// The logical cores the calling thread may run on (its affinity: `taskset`, a container's cpuset
/// as the OS applies it; on Windows the process's mask), ascending; every core where the OS does
/// not say.
std::vector<int> allowed_cores();

/// True when `path` names an existing regular file.
bool is_regular_file(const std::string& path);
/// The whole of a regular file as text (FIFOs, devices and directories are refused by name, as
/// MappedFile::open refuses them). Throws gptrt::Error.
std::string read_text_file(const std::string& path);

/// Atomically moves `from` over `to` (same directory). Throws gptrt::Error on failure.
void replace_file(const std::string& from, const std::string& to);

/// A file written in pieces that appears at `path` only when committed: the bytes go to a new
/// temporary beside it, created exclusively (mkstemp: O_EXCL, so a link planted at a predictable
/// name is never written through), renamed over `path` by commit(). Destroyed uncommitted, the
/// temporary is removed: a failed write leaves no partial file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  /// Appends bytes. Throws gptrt::Error on failure (disk full).
  void write(const void* data, size_t size);
  /// Closes and renames the temporary over the target. Throws gptrt::Error on failure.
  void commit();

 private:
  /// Closes the temporary (readable as any new file is); false when the close fails.
  bool close_temporary();
  std::string path_, tmp_;
#ifdef _WIN32
  void* handle_ = nullptr;  // (a HANDLE)
#else
  int fd_ = -1;
#endif
};

/// Writes `size` bytes to `path` through an AtomicFile. Throws gptrt::Error on failure.
void write_file_atomically(const std::string& path, const void* data, size_t size);

/// Removes a file if it exists; never throws.
void remove_file(const std::string& path) noexcept;

/// Creates a directory (and parents) if missing. Throws gptrt::Error on failure.
void make_directories(const std::string& path);

/// Name of the compiler that built gptrt, e.g. "GCC 12.2.0".
std::string compiler_name();

/// Absolute path of the running executable, or "" where the system does not say.
std::string executable_path();

/// The program's arguments after its name, in UTF-8: argv as given on POSIX systems; on Windows
/// the command line as the system holds it (UTF-16), so that paths with any characters arrive
/// intact, and the console set to print UTF-8.
std::vector<std::string> utf8_arguments(int argc, char** argv);

}  // namespace gptrt::platform
