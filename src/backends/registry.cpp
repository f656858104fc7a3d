// The backend registry, and the names of backends and precisions (parsed here only).
#include <array>

#include "backends/backend.h"
#include "gptrt/error.h"

namespace gptrt {
namespace backends {

// Each backend's one registry line is its accessor here (defined in its folder).
const Backend& reference_backend();
const Backend& cpu_backend();
const Backend& cuda_backend();

namespace {

constexpr std::array<std::pair<Precision, const char*>, 5> kPrecisions = {
    {{Precision::kFp32, "fp32"},
     {Precision::kTf32, "tf32"},
     {Precision::kFp16, "fp16"},
     {Precision::kBf16, "bf16"},
     {Precision::kInt8, "int8"}}};

}  // namespace

std::vector<const Backend*> all() {
  return {&reference_backend(), &cpu_backend(), &cuda_backend()};
}

const Backend& get(gptrt::Backend id) {
  for (const Backend* b : all())
    if (b->id() == id) return *b;
  throw Error(ErrorCode::kEngineMismatch,
              "unknown backend id " + std::to_string(static_cast<int>(id)) +
                  " (the engine is damaged or from a newer gptrt); rebuild the engine");
}

gptrt::Backend parse_backend(std::string_view name) {
  std::string names;
  for (const Backend* b : all()) {
    if (name == b->name()) return b->id();
    names += (names.empty() ? "" : ", ") + std::string(b->name());
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown backend '" + std::string(name) + "'; choose one of " + names);
}

Precision parse_precision(std::string_view name) {
  std::string names;
  for (const auto& [p, n] : kPrecisions) {
    if (name == n) return p;
    names += (names.empty() ? "" : ", ") + std::string(n);
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown precision '" + std::string(name) + "'; choose one of " + names);
}

Tensor OutputBuffers::make(size_t k, DType dtype, Shape shape) const {
  int64_t bytes = shape_numel(shape) * static_cast<int64_t>(dtype_size(dtype));
  if (k < data.size() && data[k] && bytes <= capacity[k])
    return Tensor::writable_view(dtype, std::move(shape), data[k]);
  return Tensor::uninitialized(dtype, std::move(shape));
}

void SlotDecoder::greedy_steps(const std::vector<SlotTokens>&, int64_t, int64_t*) {
  throw Error(ErrorCode::kInternal, "greedy_steps called on a decoder that runs one step a call");
}

}  // namespace backends

const char* precision_name(Precision p) {
  for (const auto& [q, n] : backends::kPrecisions)
    if (q == p) return n;
  return "unknown";
}

const char* backend_name(Backend b) {
  for (const backends::Backend* be : backends::all())
    if (be->id() == b) return be->name();
  return "unknown";
}

Backend backend_from_name(const std::string& name) {
  return backends::parse_backend(name);
}

Precision precision_from_name(const std::string& name) {
  return backends::parse_precision(name);
}

bool backend_on_device(Backend b) {
  for (const backends::Backend* be : backends::all())
    if (be->id() == b) return be->on_device();
  return false;
}

bool backend_available(Backend b) {
  for (const backends::Backend* be : backends::all())
    if (be->id() == b) return be->missing().empty();
  return false;
}

}  // namespace gptrt
