// Protobuf wire-format reader over a byte span (no protobuf library, no copies). Every read is
// bounds-checked; a malformed message throws gptrt::Error naming the file, the byte offset and
// the message being read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gptrt::onnx {

enum class WireType : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

/// One decoded field.
struct Field {
  uint32_t number = 0;
  WireType type = WireType::kVarint;
  uint64_t varint = 0;            // kVarint, kFixed64, kFixed32 (raw bits)
  const uint8_t* data = nullptr;  // kBytes payload
  size_t size = 0;
  size_t offset = 0;  // file offset of the payload, for messages and external views

  std::string_view bytes() const { return {reinterpret_cast<const char*>(data), size}; }
};

/// Where a reader is: the file and the message path, for error messages.
struct WireSource {
  std::string file;
  const uint8_t* file_begin = nullptr;  // start of the whole file, for absolute offsets
};

/// Iterates over the fields of one message.
class WireReader {
 public:
  WireReader(const WireSource& source, const uint8_t* data, size_t size, std::string what)
      : source_(source), p_(data), end_(data + size), what_(std::move(what)) {}

  /// Reads the next field into `f`; false at the end of the message.
  bool next(Field& f);

  /// Throws a parse error at the current position.
  [[noreturn]] void fail(const std::string& msg) const;
  /// Throws a parse error about field `f`.
  [[noreturn]] void fail_field(const Field& f, const std::string& msg) const;

  const WireSource& source() const { return source_; }
  const std::string& what() const { return what_; }

 private:
  uint64_t read_varint();

  const WireSource& source_;
  const uint8_t* p_;
  const uint8_t* end_;
  std::string what_;
};

/// Decodes a packed (or single) repeated varint field into `out` via `push`.
template <typename Push>
void read_packed_varints(const WireReader& r, const Field& f, Push push);

/// Reads one varint from [p, end); returns false if truncated or longer than 10 bytes.
bool decode_varint(const uint8_t*& p, const uint8_t* end, uint64_t& value);

template <typename Push>
void read_packed_varints(const WireReader& r, const Field& f, Push push) {
  if (f.type == WireType::kVarint) {
    push(f.varint);
    return;
  }
  if (f.type != WireType::kBytes)
    r.fail_field(
        f, "repeated integer field has wire type " + std::to_string(static_cast<int>(f.type)));
  const uint8_t* p = f.data;
  const uint8_t* end = f.data + f.size;
  while (p < end) {
    uint64_t v = 0;
    if (!decode_varint(p, end, v)) r.fail_field(f, "packed varint list is truncated");
    push(v);
  }
}

}  // namespace gptrt::onnx
