// The parts of platform.h that standard C++ does alike everywhere: the clock, directories,
// whole-file writes through AtomicFile, the compiler's name.
#include <chrono>
#include <filesystem>
#include <system_error>

#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::platform {

double now_seconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

void AtomicFile::commit() {
  if (!close_temporary()) {
    remove_file(tmp_);
    throw Error(ErrorCode::kIoError, "cannot write '" + path_ + "' (disk full?)");
  }
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
  std::filesystem::create_directories(std::filesystem::u8path(path), ec);  // (UTF-8)
  if (ec) {
    throw Error(ErrorCode::kIoError, "cannot create directory '" + path + "': " + ec.message());
  }
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
