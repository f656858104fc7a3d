#include "gptrt/tensor.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>

#include "core/checked.h"
#include "gptrt/error.h"
#include "platform/compiler.h"
#include "platform/platform.h"

namespace gptrt {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kParseError:
      return "parse error";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kShapeError:
      return "shape error";
    case ErrorCode::kIoError:
      return "I/O error";
    case ErrorCode::kEngineMismatch:
      return "engine mismatch";
    case ErrorCode::kResourceLimit:
      return "resource limit";
    case ErrorCode::kInternal:
      return "internal error";
  }
  return "error";
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kUInt8:
      return "uint8";
    case DType::kInt8:
      return "int8";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
    case DType::kFloat16:
      return "float16";
    case DType::kFloat64:
      return "float64";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kUndefined:
      break;
  }
  return "undefined";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kUInt8:
      return 1;
    case DType::kInt8:
      return 1;
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kBool:
      return 1;
    case DType::kFloat16:
      return 2;
    case DType::kFloat64:
      return 8;
    case DType::kBFloat16:
      return 2;
    case DType::kUndefined:
      break;
  }
  return 0;
}

bool dtype_is_known(int32_t value) {
  return value != 0 && dtype_size(static_cast<DType>(value)) != 0;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (platform::mul_overflows(n, d, &n))
      throw Error(ErrorCode::kShapeError,
                  "shape " + shape_str(shape) + " has more elements than 64 bits can count");
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string shape_dims_text(const Shape& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  allocate(true);
}

Tensor Tensor::uninitialized(DType dtype, Shape shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.allocate(false);
  return t;
}

namespace {

// A tensor's storage: from platform::kLargeBytes up from platform::allocate_large (huge pages
// where the OS gives them: a decode step streams every weight once, and with 4 KiB pages its
// FP32 GEMV read 23 GB/s where 2 MiB pages gave 30 on the Xeon VM), else from the heap.
struct Block {
  void* p = nullptr;
  bool large = false;
};

Block acquire(size_t bytes) {
  if (bytes >= platform::kLargeBytes)
    if (void* p = platform::allocate_large(bytes)) return {p, true};
  return {::operator new[](bytes, std::align_val_t(64)), false};
}

void release(Block b, size_t bytes) noexcept {
  if (b.large)
    platform::free_large(b.p, bytes);
  else
    ::operator delete[](b.p, std::align_val_t(64));
}

// Freed tensor blocks, kept by size for the next allocation of that size: a forward pass
// allocates the same sizes every time, so after the first run no memory is mapped, faulted in
// or returned to the OS per run. Bounded; the rest is released.
class BlockCache {
 public:
  static BlockCache& instance() {
    static BlockCache* cache = new BlockCache();  // never destroyed: tensors may outlive statics
    return *cache;
  }
  Block take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(bytes);
    if (it == blocks_.end()) return {};
    Block b = it->second;
    blocks_.erase(it);
    cached_ -= bytes;
    return b;
  }
  void give(Block b, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (bytes >= kMinBytes && cached_ + bytes <= kMaxCached) {
        blocks_.emplace(bytes, b);
        cached_ += bytes;
        return;
      }
    }
    release(b, bytes);
  }

 private:
  static constexpr size_t kMinBytes = 64 * 1024;         // small blocks: the heap is fast enough
  static constexpr size_t kMaxCached = size_t{2} << 30;  // at most 2 GiB kept
  std::mutex mu_;
  std::multimap<size_t, Block> blocks_;
  size_t cached_ = 0;
};

std::atomic<int64_t>& budget_bytes() {
  static std::atomic<int64_t> budget{[] {
    if (const char* env = std::getenv("GPTRT_MEMORY_BUDGET"); env && *env)
      return checked::parse_size(env, "GPTRT_MEMORY_BUDGET");
    int64_t phys = platform::physical_memory_bytes();
    return phys > 0 ? phys / 10 * 9 : int64_t{1} << 62;
  }()};
  return budget;
}

std::atomic<int64_t> in_use{0};

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return buf;
}

}  // namespace

int64_t memory_budget() {
  return budget_bytes().load();
}

void set_memory_budget(int64_t bytes) {
  if (bytes <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                "memory budget must be positive, found " + std::to_string(bytes));
  budget_bytes().store(bytes);
}

int64_t memory_in_use() {
  return in_use.load();
}

void Tensor::allocate(bool zero) {
  int64_t n = 1, bytes = 0;
  for (int64_t d : shape_) {
    if (d < 0)
      throw Error(ErrorCode::kInternal, "tensor with negative dimension " + shape_str(shape_));
    if (platform::mul_overflows(n, d, &n)) n = -1;
    if (n < 0) break;
  }
  if (n < 0 || platform::mul_overflows(n, static_cast<int64_t>(dtype_size(dtype_)), &bytes) ||
      bytes > std::numeric_limits<int64_t>::max() - 128)
    bytes = -1;
  // 64-byte alignment so vector kernels may use aligned loads.
  int64_t alloc = bytes < 0 ? -1 : (bytes + 63) / 64 * 64 + 64;
  int64_t budget = memory_budget();
  if (alloc < 0 || in_use.fetch_add(alloc) + alloc > budget) {
    if (alloc >= 0) in_use.fetch_sub(alloc);
    throw Error(ErrorCode::kResourceLimit,
                "a " + std::string(dtype_name(dtype_)) + " tensor of shape " + shape_str(shape_) +
                    " needs " +
                    (alloc < 0 ? std::string("more bytes than 64 bits count") : gib(alloc)) +
                    "; with " + gib(in_use.load()) + " in use that exceeds the memory budget of " +
                    gib(budget) +
                    " (check the shapes and the model; raise it with GPTRT_MEMORY_BUDGET, e.g. "
                    "GPTRT_MEMORY_BUDGET=32G)");
  }
  auto size = static_cast<size_t>(alloc);
  Block block = BlockCache::instance().take(size);
  if (!block.p) {
    try {
      block = acquire(size);
    } catch (...) {
      in_use.fetch_sub(alloc);
      throw;
    }
  }
  auto* mem = static_cast<uint8_t*>(block.p);
  if (zero) std::memset(mem, 0, size);
  holder_ = std::shared_ptr<const void>(mem, [block, size](const void*) {
    in_use.fetch_sub(static_cast<int64_t>(size));
    BlockCache::instance().give(block, size);
  });
  data_ = mem;
  writable_ = true;
}

Tensor Tensor::view(DType dtype, Shape shape, const void* data,
                    std::shared_ptr<const void> keep_alive) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.holder_ = std::move(keep_alive);
  return t;
}

Tensor Tensor::view_or_copy(DType dtype, Shape shape, const void* data,
                            std::shared_ptr<const void> keep_alive) {
  size_t align = dtype_size(dtype);
  if (align && reinterpret_cast<uintptr_t>(data) % align == 0)
    return view(dtype, std::move(shape), data, std::move(keep_alive));
  Tensor t(dtype, std::move(shape));
  if (t.nbytes()) std::memcpy(t.raw_mut(), data, t.nbytes());
  return t;
}

Tensor Tensor::writable_view(DType dtype, Shape shape, void* data,
                             std::shared_ptr<const void> keep_alive) {
  Tensor t = view(dtype, std::move(shape), data, std::move(keep_alive));
  t.writable_ = true;
  return t;
}

void* Tensor::raw_mut() {
  if (!writable_) throw Error(ErrorCode::kInternal, "write to a read-only tensor view");
  return const_cast<void*>(data_);
}

Tensor Tensor::reshaped(Shape shape) const {
  if (shape_numel(shape) != numel()) {
    throw Error(ErrorCode::kInternal, "reshape " + shape_str(shape_) + " to " + shape_str(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, shape_);
  if (nbytes()) std::memcpy(t.raw_mut(), data_, nbytes());
  return t;
}

}  // namespace gptrt
