#include "core/npy.h"

#include "core/checked.h"

#include <cstdio>
#include <cstring>

#include "gptrt/error.h"
#include "platform/platform.h"

namespace gptrt::npy {
namespace {

struct Descr {
  const char* text;
  DType dtype;
};
constexpr Descr kDescrs[] = {
    {"<f4", DType::kFloat32}, {"<f8", DType::kFloat64}, {"<f2", DType::kFloat16},
    {"<i8", DType::kInt64},   {"<i4", DType::kInt32},   {"|i1", DType::kInt8},
    {"|u1", DType::kUInt8},   {"|b1", DType::kBool},
};

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw Error(ErrorCode::kParseError, "'" + path + "' is not a valid .npy file: " + msg);
}

// Value of `key` in the header dict, as raw text up to the next top-level ',' or '}'.
std::string header_field(const std::string& header, const std::string& key,
                         const std::string& path) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) fail(path, "header has no '" + key + "'");
  size_t colon = header.find(':', k);
  if (colon == std::string::npos) fail(path, "header field '" + key + "' has no value");
  size_t start = colon + 1;
  while (start < header.size() && header[start] == ' ') ++start;
  size_t end = start;
  int depth = 0;
  while (end < header.size()) {
    char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    ++end;
  }
  if (depth != 0 || end >= header.size()) fail(path, "header field '" + key + "' is not closed");
  if (header[start] == '(') ++end;  // include the closing parenthesis handled above
  return header.substr(start, end - start);
}

}  // namespace

Tensor read(const std::string& path) {
  auto file = platform::MappedFile::open(path);
  const uint8_t* p = file->data();
  size_t n = file->size();
  if (n < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) fail(path, "missing the \\x93NUMPY magic");
  int major = p[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = p[8] | (p[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (n < 12) fail(path, "truncated header");
    header_len = p[8] | (p[9] << 8) | (p[10] << 16) | (static_cast<size_t>(p[11]) << 24);
    header_start = 12;
  } else {
    fail(path, "unsupported format version " + std::to_string(major));
  }
  if (header_start + header_len > n) fail(path, "header runs past the end of the file");
  std::string header(reinterpret_cast<const char*>(p + header_start), header_len);

  std::string descr = header_field(header, "descr", path);
  std::string fortran = header_field(header, "fortran_order", path);
  std::string shape_text = header_field(header, "shape", path);
  if (fortran.find("False") == std::string::npos)
    fail(path, "Fortran-order arrays are not supported; save with np.ascontiguousarray");
  DType dtype = DType::kUndefined;
  for (const Descr& d : kDescrs) {
    if (descr == std::string("'") + d.text + "'") dtype = d.dtype;
  }
  if (dtype == DType::kUndefined) {
    fail(path, "dtype " + descr + " is not supported; use int64, int32 or float32 (little-endian)");
  }
  Shape shape;
  size_t i = shape_text.find('(');
  if (i == std::string::npos) fail(path, "shape is not a tuple");
  ++i;
  while (i < shape_text.size() && shape_text[i] != ')') {
    while (i < shape_text.size() && (shape_text[i] == ' ' || shape_text[i] == ',')) ++i;
    if (i >= shape_text.size() || shape_text[i] == ')') break;
    size_t j = i;
    while (j < shape_text.size() && shape_text[j] >= '0' && shape_text[j] <= '9') ++j;
    if (j == i || j - i > 12) fail(path, "bad shape " + shape_text);
    shape.push_back(std::stoll(shape_text.substr(i, j - i)));
    i = j;
  }
  size_t data_start = header_start + header_len;
  auto want = static_cast<size_t>(checked::bytes(shape, dtype, "'" + path + "' array"));
  if (n - data_start != want) {
    fail(path, "data has " + std::to_string(n - data_start) + " bytes, expected " +
                   std::to_string(want) + " for shape " + shape_str(shape) + " " +
                   dtype_name(dtype) + " (truncated file?)");
  }
  Tensor t(dtype, shape);
  if (want) std::memcpy(t.raw_mut(), p + data_start, want);
  return t;
}

void write(const std::string& path, const Tensor& tensor) {
  const char* descr = nullptr;
  for (const Descr& d : kDescrs) {
    if (d.dtype == tensor.dtype()) descr = d.text;
  }
  if (descr == nullptr) {
    throw Error(ErrorCode::kUnsupported,
                std::string("cannot write dtype ") + dtype_name(tensor.dtype()) + " to .npy");
  }
  std::string shape = "(";
  for (size_t i = 0; i < tensor.rank(); ++i)
    shape += std::to_string(tensor.dim(i)) + (tensor.rank() == 1      ? ","
                                              : i + 1 < tensor.rank() ? ", "
                                                                      : "");
  shape += ")";
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  platform::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace gptrt::npy
