#include "core/safetensors.h"

#include <algorithm>
#include <cstring>

#include "core/checked.h"
#include "core/json.h"
#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::safetensors {

std::map<std::string, Tensor> read(const std::string& path) {
  auto file = platform::MappedFile::open(path);
  auto fail = [&](const std::string& msg) -> void {
    throw Error(ErrorCode::kParseError, "'" + path + "' is not a valid safetensors file: " + msg);
  };
  if (file->size() < 8) fail("shorter than its 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > file->size() - 8)
    fail("header length " + std::to_string(header_len) + " runs past the end of the file");
  std::string_view header(reinterpret_cast<const char*>(file->data() + 8), header_len);
  json::Value root = json::parse(header, path + " header");
  if (!root.is_object()) fail("header is not a JSON object");
  const uint8_t* base = file->data() + 8 + header_len;
  size_t data_size = file->size() - 8 - header_len;
  static const std::map<std::string, DType> kDTypes = {
      {"F32", DType::kFloat32}, {"F16", DType::kFloat16}, {"BF16", DType::kBFloat16},
      {"F64", DType::kFloat64}, {"I64", DType::kInt64},   {"I32", DType::kInt32},
      {"I8", DType::kInt8},     {"U8", DType::kUInt8},    {"BOOL", DType::kBool}};
  std::map<std::string, Tensor> out;
  struct Span {
    int64_t begin, end;
    std::string name;
    bool operator<(const Span& o) const { return begin < o.begin; }
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") continue;
    const json::Value* dt = json::find(entry, "dtype");
    const json::Value* shape = json::find(entry, "shape");
    const json::Value* offsets = json::find(entry, "data_offsets");
    if (!dt || !dt->is_string() || !shape || !shape->is_array() || !offsets ||
        !offsets->is_array() || offsets->size() != 2) {
      fail("entry '" + name + "' lacks dtype, shape or data_offsets");
    }
    const std::string& dtype = dt->get_ref<const std::string&>();
    auto it = kDTypes.find(dtype);
    if (it == kDTypes.end()) fail("entry '" + name + "' has unsupported dtype " + dtype);
    Shape dims;
    for (const json::Value& d : *shape) {
      std::optional<int64_t> n = json::as_int64(d);
      if (!n || *n < 0) fail("entry '" + name + "' has a bad shape");
      dims.push_back(*n);
    }
    std::optional<int64_t> off0 = json::as_int64((*offsets)[0]),
                           off1 = json::as_int64((*offsets)[1]);
    if (!off0 || !off1) fail("entry '" + name + "' has bad offsets");
    int64_t begin = *off0, end = *off1;
    if (begin < 0 || end < begin)
      fail("entry '" + name + "' has offsets [" + std::to_string(begin) + ", " +
           std::to_string(end) + "): the end must not come before the start");
    if (static_cast<uint64_t>(end) > data_size) {
      fail("entry '" + name + "' offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
           ") run past the data (" + std::to_string(data_size) + " bytes)");
    }
    // The shape's bytes, checked (no wrap-around) and against the data's size.
    auto bytes = static_cast<uint64_t>(
        checked::bytes(dims, it->second, "'" + path + "': entry '" + name + "'"));
    if (bytes > data_size)
      fail("entry '" + name + "' has shape " + shape_str(dims) + ", larger than the file's " +
           std::to_string(data_size) + " bytes of data");
    if (static_cast<uint64_t>(end - begin) != bytes)
      fail("entry '" + name + "' holds " + std::to_string(end - begin) + " bytes, its shape " +
           shape_str(dims) + " and dtype " + dtype + " need " + std::to_string(bytes));
    spans.push_back({begin, end, name});
    out[name] = Tensor::view_or_copy(it->second, dims, base + begin, file);
  }
  // No two tensors may share bytes (each checked against the one reaching furthest before it).
  std::sort(spans.begin(), spans.end());
  const Span* reach = nullptr;
  for (const Span& b : spans) {
    if (b.end == b.begin) continue;
    if (reach && b.begin < reach->end)
      fail("entries '" + reach->name + "' [" + std::to_string(reach->begin) + ", " +
           std::to_string(reach->end) + ") and '" + b.name + "' [" + std::to_string(b.begin) +
           ", " + std::to_string(b.end) + ") overlap");
    if (!reach || b.end > reach->end) reach = &b;
  }
  return out;
}

}  // namespace gptrt::safetensors
