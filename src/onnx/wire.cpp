#include "onnx/wire.h"

#include "gptrt/error.h"

namespace gptrt::onnx {

bool decode_varint(const uint8_t*& p, const uint8_t* end, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (p >= end) return false;
    uint8_t b = *p++;
    value |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

void WireReader::fail(const std::string& msg) const {
  size_t offset = static_cast<size_t>(p_ - source_.file_begin);
  throw Error(ErrorCode::kParseError,
              "'" + source_.file + "' is not a valid ONNX model (truncated or corrupt?): " + msg +
                  " at byte " + std::to_string(offset) + " while reading " + what_ +
                  "; re-export the model or check the download");
}

void WireReader::fail_field(const Field& f, const std::string& msg) const {
  throw Error(ErrorCode::kParseError,
              "'" + source_.file + "' is not a valid ONNX model (truncated or corrupt?): " + msg +
                  " (field " + std::to_string(f.number) + " at byte " + std::to_string(f.offset) +
                  ") while reading " + what_ + "; re-export the model or check the download");
}

uint64_t WireReader::read_varint() {
  uint64_t v = 0;
  if (!decode_varint(p_, end_, v)) fail("varint runs past the end of the message");
  return v;
}

bool WireReader::next(Field& f) {
  if (p_ >= end_) return false;
  uint64_t key = read_varint();
  f.number = static_cast<uint32_t>(key >> 3);
  uint32_t type = static_cast<uint32_t>(key & 7);
  if (f.number == 0 || (key >> 3) > 0x1fffffff) fail("invalid field number");
  f.type = static_cast<WireType>(type);
  f.data = nullptr;
  f.size = 0;
  f.varint = 0;
  switch (type) {
    case 0:
      f.offset = static_cast<size_t>(p_ - source_.file_begin);
      f.varint = read_varint();
      break;
    case 1:
      f.offset = static_cast<size_t>(p_ - source_.file_begin);
      if (end_ - p_ < 8) fail("fixed64 field runs past the end of the message");
      for (int i = 0; i < 8; ++i) f.varint |= static_cast<uint64_t>(p_[i]) << (8 * i);
      p_ += 8;
      break;
    case 2: {
      uint64_t len = read_varint();
      f.offset = static_cast<size_t>(p_ - source_.file_begin);
      if (len > static_cast<uint64_t>(end_ - p_)) {
        fail("length-delimited field " + std::to_string(f.number) + " of " + std::to_string(len) +
             " bytes runs past the end of the message (" + std::to_string(end_ - p_) + " left)");
      }
      f.data = p_;
      f.size = static_cast<size_t>(len);
      p_ += len;
      break;
    }
    case 5:
      f.offset = static_cast<size_t>(p_ - source_.file_begin);
      if (end_ - p_ < 4) fail("fixed32 field runs past the end of the message");
      for (int i = 0; i < 4; ++i) f.varint |= static_cast<uint64_t>(p_[i]) << (8 * i);
      p_ += 4;
      break;
    default:
      fail("unsupported wire type " + std::to_string(type) + " for field " +
           std::to_string(f.number));
  }
  return true;
}

}  // namespace gptrt::onnx
