// Little-endian binary writer/reader for the engine file's metadata, and its checksum.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gptrt/error.h"

namespace gptrt {

/// Appends little-endian scalars and length-prefixed strings to a byte vector.
class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u32(uint32_t v) { put(&v, 4); }
  void u64(uint64_t v) { put(&v, 8); }
  void i64(int64_t v) { put(&v, 8); }
  void f32(float v) { put(&v, 4); }
  void str(const std::string& s) {
    u64(s.size());
    put(s.data(), s.size());
  }
  void bytes(const void* p, size_t n) {
    u64(n);
    put(p, n);
  }
  void put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  std::vector<uint8_t>& buffer() { return buf_; }

 private:
  std::vector<uint8_t> buf_;
};

/// Reads what ByteWriter wrote; every read is bounds-checked and a short read throws a parse
/// error that names `what`.
class ByteReader {
 public:
  ByteReader(const uint8_t* p, size_t n, std::string what)
      : p_(p), end_(p + n), what_(std::move(what)) {}
  uint8_t u8() { return get<uint8_t>(); }
  uint32_t u32() { return get<uint32_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  int64_t i64() { return get<int64_t>(); }
  float f32() { return get<float>(); }
  std::string str() {
    uint64_t n = count(1);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  /// A length that must fit in the remaining bytes at `elem_size` bytes per element.
  uint64_t count(size_t elem_size) {
    uint64_t n = u64();
    if (elem_size && n > static_cast<uint64_t>(end_ - p_) / elem_size)
      fail("length " + std::to_string(n) + " runs past the end");
    return n;
  }
  const uint8_t* take(size_t n) {
    if (n > static_cast<size_t>(end_ - p_)) fail("record runs past the end");
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  bool at_end() const { return p_ == end_; }
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(ErrorCode::kParseError, what_ + ": " + msg);
  }

 private:
  template <typename T>
  T get() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  std::string what_;
};

/// 64-bit checksum of a byte range (four multiply-rotate lanes; not cryptographic).
uint64_t checksum64(const uint8_t* data, size_t size, uint64_t seed = 0);

}  // namespace gptrt
