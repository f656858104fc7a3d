#include "core/checked.h"

#include <cerrno>
#include <cstdlib>

#include "platform/compiler.h"

namespace gptrt::checked {
namespace {

[[noreturn]] void too_large(const std::string& what, ErrorCode code) {
  throw Error(code, what +
                        " is too large: its size overflows 64 bits (a corrupt or hostile "
                        "file or shape)");
}

}  // namespace

int64_t mul(int64_t a, int64_t b, const std::string& what, ErrorCode code) {
  int64_t r;
  if (a < 0 || b < 0 || platform::mul_overflows(a, b, &r)) too_large(what, code);
  return r;
}

int64_t add(int64_t a, int64_t b, const std::string& what, ErrorCode code) {
  int64_t r;
  if (a < 0 || b < 0 || platform::add_overflows(a, b, &r)) too_large(what, code);
  return r;
}

int64_t numel(const Shape& shape, const std::string& what, ErrorCode code) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(code, what + " has a negative dimension: " + shape_str(shape));
    n = mul(n, d, what + " " + shape_str(shape), code);
  }
  return n;
}

int64_t bytes(const Shape& shape, DType dtype, const std::string& what, ErrorCode code) {
  return mul(numel(shape, what, code), static_cast<int64_t>(dtype_size(dtype)),
             what + " " + shape_str(shape), code);
}

int64_t parse_size(const std::string& given, const std::string& variable) {
  const char* text = given.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text, &end);
  double scale = 1;
  if (end && *end) {
    switch (*end == 0 ? 0 : (*end | 0x20)) {
      case 'k':
        scale = 1024.0;
        break;
      case 'm':
        scale = 1024.0 * 1024;
        break;
      case 'g':
        scale = 1024.0 * 1024 * 1024;
        break;
      case 't':
        scale = 1024.0 * 1024 * 1024 * 1024;
        break;
      default:
        scale = 0;
    }
    if (scale && end[1] && !((end[1] | 0x20) == 'b' && !end[2]) &&
        !((end[1] | 0x20) == 'i' && (end[2] | 0x20) == 'b' && !end[3]))
      scale = 0;
  }
  double bytes = v * scale;
  if (end == text || errno || !(bytes >= 1) || bytes > 9.2e18)
    throw Error(ErrorCode::kInvalidArgument,
                variable + "='" + given +
                    "' is not a size; give bytes or a number with K, M, G or T (e.g. 8G)");
  return static_cast<int64_t>(bytes);
}

}  // namespace gptrt::checked
