#include "core/checked.h"
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

}  // namespace gptrt::checked
