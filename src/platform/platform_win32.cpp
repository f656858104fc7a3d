// Windows implementation of platform.h (MinGW-w64 today; the Win32 calls are MSVC's as well).
// Paths are UTF-8 in gptrt and UTF-16 for Windows: every call converts, so paths with spaces and
// non-ASCII characters work. Files are mapped with CreateFileMapping; large buffers are
// VirtualAlloc'd, on large pages where the account may lock pages in memory (a privilege most
// accounts lack: plain pages then); the atomic replace is MoveFileEx with
// MOVEFILE_REPLACE_EXISTING.
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
// (after windows.h)
#include <shellapi.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::platform {
namespace {

std::wstring wide(const std::string& utf8) {
  if (utf8.empty()) return std::wstring();
  const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(),
                                    static_cast<int>(utf8.size()), nullptr, 0);
  if (n <= 0) throw Error(ErrorCode::kIoError, "the path '" + utf8 + "' is not valid UTF-8");
  std::wstring w(static_cast<size_t>(n), L'\0');
  MultiByteToWideChar(CP_UTF8, 0, utf8.data(), static_cast<int>(utf8.size()), w.data(), n);
  return w;
}

std::string narrow(const std::wstring& w) {
  if (w.empty()) return std::string();
  const int n = WideCharToMultiByte(CP_UTF8, 0, w.data(), static_cast<int>(w.size()), nullptr, 0,
                                    nullptr, nullptr);
  std::string s(static_cast<size_t>(std::max(n, 0)), '\0');
  WideCharToMultiByte(CP_UTF8, 0, w.data(), static_cast<int>(w.size()), s.data(), n, nullptr,
                      nullptr);
  return s;
}

// The system's message for GetLastError() code `err`.
std::string reason(DWORD err) {
  wchar_t* buf = nullptr;
  const DWORD n = FormatMessageW(
      FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
      nullptr, err, 0, reinterpret_cast<wchar_t*>(&buf), 0, nullptr);
  std::string s = n > 0 ? narrow(std::wstring(buf, n)) : "error " + std::to_string(err);
  if (buf) LocalFree(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == '.')) s.pop_back();
  return s;
}

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  const DWORD attrs = GetFileAttributesW(wide(path).c_str());
  if (attrs != INVALID_FILE_ATTRIBUTES && (attrs & FILE_ATTRIBUTE_DIRECTORY))
    throw Error(ErrorCode::kIoError, "'" + path +
                                         "' is a directory, not a regular file; give the path of "
                                         "a model, engine or data file");
  HANDLE file = CreateFileW(wide(path).c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE,
                            nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE)
    throw Error(ErrorCode::kIoError, "cannot open '" + path + "': " + reason(GetLastError()) +
                                         "; check the path and permissions");
  if (GetFileType(file) != FILE_TYPE_DISK) {
    CloseHandle(file);
    throw Error(ErrorCode::kIoError, "'" + path +
                                         "' is a pipe or device, not a regular file; give the "
                                         "path of a model, engine or data file");
  }
  LARGE_INTEGER size{};
  GetFileSizeEx(file, &size);
  std::shared_ptr<MappedFile> mapped(new MappedFile());
  mapped->path_ = path;
  mapped->size_ = static_cast<size_t>(size.QuadPart);
  if (mapped->size_ > 0) {
    HANDLE mapping = CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
    const void* p = mapping ? MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0) : nullptr;
    const DWORD err = GetLastError();
    if (mapping) CloseHandle(mapping);  // (the view keeps the mapping)
    if (!p) {
      CloseHandle(file);
      throw Error(ErrorCode::kIoError, "cannot map '" + path + "': " + reason(err));
    }
    mapped->data_ = static_cast<const uint8_t*>(p);
  }
  CloseHandle(file);
  return mapped;
}

std::string read_text_file(const std::string& path) {
  std::shared_ptr<const MappedFile> f = MappedFile::open(path);
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) UnmapViewOfFile(data_);
}

// Whether large pages can be had: the CPU's large page is known and the account holds "Lock
// pages in memory" (SeLockMemoryPrivilege), enabled on this process's token once. (An account
// without it gets ERROR_NOT_ALL_ASSIGNED: plain pages then.)
bool large_pages_permitted() {
  static const bool permitted = [] {
    if (GetLargePageMinimum() == 0) return false;
    HANDLE token = nullptr;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, &token))
      return false;
    TOKEN_PRIVILEGES privileges{};
    privileges.PrivilegeCount = 1;
    privileges.Privileges[0].Attributes = SE_PRIVILEGE_ENABLED;
    const bool ok =
        LookupPrivilegeValueW(nullptr, L"SeLockMemoryPrivilege", &privileges.Privileges[0].Luid) &&
        AdjustTokenPrivileges(token, FALSE, &privileges, 0, nullptr, nullptr) &&
        GetLastError() == ERROR_SUCCESS;
    CloseHandle(token);
    return ok;
  }();
  return permitted;
}

void* allocate_large(size_t bytes) {
  const size_t huge = kLargeBytes, size = (bytes + huge - 1) / huge * huge;
  // Large pages where permitted (the allocation starts at a large-page boundary, zero-filled);
  // else plain pages: VirtualAlloc's reservations are 64 KiB aligned, so ask one huge page more
  // and hand out the aligned part (zero-filled, committed on first touch).
  const size_t large = GetLargePageMinimum();
  if (large_pages_permitted() && large > 0 && huge % large == 0) {
    if (void* p =
            VirtualAlloc(nullptr, size, MEM_RESERVE | MEM_COMMIT | MEM_LARGE_PAGES, PAGE_READWRITE))
      return p;
  }
  void* p = VirtualAlloc(nullptr, size + huge, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  if (p == nullptr) return nullptr;
  return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + huge - 1) & ~(huge - 1));
}

void free_large(void* p, size_t) noexcept {
  if (p == nullptr) return;
  // (Released whole from its allocation's base, which VirtualQuery finds from any address in it.)
  MEMORY_BASIC_INFORMATION m{};
  if (VirtualQuery(p, &m, sizeof m) != 0) VirtualFree(m.AllocationBase, 0, MEM_RELEASE);
}

int64_t physical_memory_bytes() {
  MEMORYSTATUSEX m{};
  m.dwLength = sizeof m;
  return GlobalMemoryStatusEx(&m) ? static_cast<int64_t>(m.ullTotalPhys) : 0;
}

bool amx_permitted() {
  // Windows 11 saves the tile state for every thread that uses it; under Wine the Linux kernel
  // underneath grants it only to processes that ask (arch_prctl), which Wine does not: the first
  // tile instruction would fault there.
  static const bool permitted = [] {
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    return !(ntdll && GetProcAddress(ntdll, "wine_get_version"));
  }();
  return permitted;
}

bool is_regular_file(const std::string& path) {
  const DWORD attrs = GetFileAttributesW(wide(path).c_str());
  return attrs != INVALID_FILE_ATTRIBUTES && !(attrs & FILE_ATTRIBUTE_DIRECTORY);
}

void replace_file(const std::string& from, const std::string& to) {
  if (!MoveFileExW(wide(from).c_str(), wide(to).c_str(),
                   MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
    const DWORD err = GetLastError();
    remove_file(from);
    throw Error(ErrorCode::kIoError, "cannot move '" + from + "' to '" + to + "': " + reason(err));
  }
}

void remove_file(const std::string& path) noexcept {
  try {
    DeleteFileW(wide(path).c_str());
  } catch (...) {  // (a path that is not UTF-8 names no file)
  }
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // A new name beside the target, created exclusively (CREATE_NEW: never through an existing
  // file or link); the counter and the process id keep concurrent writers apart.
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    tmp_ = path_ + ".partial." + std::to_string(GetCurrentProcessId()) + "." +
           std::to_string(counter++);
    HANDLE h = CreateFileW(wide(tmp_).c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW,
                           FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h != INVALID_HANDLE_VALUE) {
      handle_ = h;
      return;
    }
    if (GetLastError() != ERROR_FILE_EXISTS) break;
  }
  throw Error(ErrorCode::kIoError, "cannot create a temporary file next to '" + path_ +
                                       "': " + reason(GetLastError()) +
                                       "; does the directory exist and is it writable?");
}

AtomicFile::~AtomicFile() {
  if (handle_ != nullptr) {
    CloseHandle(static_cast<HANDLE>(handle_));
    remove_file(tmp_);
  }
}

void AtomicFile::write(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (handle_ != nullptr && done < size) {
    const DWORD chunk = static_cast<DWORD>(std::min<size_t>(size - done, size_t{1} << 30));
    DWORD n = 0;
    if (!WriteFile(static_cast<HANDLE>(handle_), p + done, chunk, &n, nullptr) || n == 0)
      throw Error(ErrorCode::kIoError, "cannot write '" + path_ + "': " + reason(GetLastError()) +
                                           " (disk full?); nothing was left behind");
    done += n;
  }
}

bool AtomicFile::close_temporary() {
  HANDLE h = static_cast<HANDLE>(handle_);
  handle_ = nullptr;
  return CloseHandle(h) != 0;
}

std::vector<std::string> utf8_arguments(int, char**) {
  SetConsoleOutputCP(CP_UTF8);
  int n = 0;
  wchar_t** wargv = CommandLineToArgvW(GetCommandLineW(), &n);
  std::vector<std::string> args;
  for (int i = 1; wargv && i < n; ++i) args.push_back(narrow(wargv[i]));
  if (wargv) LocalFree(wargv);
  return args;
}

bool pin_thread_to_core(int core) {
  // (Cores past 63, in a second processor group, are not reached: GetCurrentThread's group only.)
  if (core < 0 || core >= 64) return false;
  return SetThreadAffinityMask(GetCurrentThread(), DWORD_PTR{1} << core) != 0;
}

int current_core() {
  return static_cast<int>(GetCurrentProcessorNumber());
}

std::vector<int> allowed_cores() {
  std::vector<int> cores;
  DWORD_PTR process = 0, system = 0;
  if (GetProcessAffinityMask(GetCurrentProcess(), &process, &system))
    for (int c = 0; c < 64; ++c)
      if ((process >> c) & 1) cores.push_back(c);
  if (cores.empty()) {
    SYSTEM_INFO info;
    GetSystemInfo(&info);
    for (DWORD c = 0; c < std::max<DWORD>(1, info.dwNumberOfProcessors); ++c)
      cores.push_back(static_cast<int>(c));
  }
  return cores;
}

std::string executable_path() {
  std::vector<wchar_t> buf(32768);
  const DWORD n = GetModuleFileNameW(nullptr, buf.data(), static_cast<DWORD>(buf.size()));
  return n > 0 && n < buf.size() ? narrow(std::wstring(buf.data(), n)) : std::string();
}

}  // namespace gptrt::platform
