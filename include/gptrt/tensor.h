// Host tensors: a dtype, a shape and a block of bytes that is either owned or a view into
// memory someone else keeps alive (a memory-mapped model or engine file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gptrt {

/// Element types. Values equal ONNX TensorProto.DataType so files map directly.
enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kBFloat16 = 16,
};

/// Name of a dtype as ONNX and NumPy users know it, e.g. "int64".
const char* dtype_name(DType dtype);
/// Bytes per element, 0 for kUndefined or unknown values.
size_t dtype_size(DType dtype);
/// True when `value` is one of the DType enumerators.
bool dtype_is_known(int32_t value);

using Shape = std::vector<int64_t>;

/// Number of elements of a shape (1 for a scalar); a count past 2^63 throws a shape error.
int64_t shape_numel(const Shape& shape);

/// The most bytes of tensor storage gptrt allocates at once (owned tensors; mapped model and
/// engine files are not counted). A tensor past it throws ErrorCode::kResourceLimit before any
/// memory is taken. Default: $GPTRT_MEMORY_BUDGET (bytes, or with a K, M, G or T suffix), else
/// 90% of physical memory.
int64_t memory_budget();
/// Sets the budget (bytes > 0) for the whole process.
void set_memory_budget(int64_t bytes);
/// Bytes of tensor storage allocated now.
int64_t memory_in_use();
/// "[2, 12, 1000]".
std::string shape_str(const Shape& shape);
/// "2x12x1000": the dims as trtexec's --shapes flags write them.
std::string shape_dims_text(const Shape& shape);

/// A dense, row-major host tensor. Copies share the same bytes.
class Tensor {
 public:
  Tensor() = default;
  /// Allocates zero-filled storage for `shape`.
  Tensor(DType dtype, Shape shape);
  /// Allocates storage for `shape` without filling it, for kernels that write every element.
  static Tensor uninitialized(DType dtype, Shape shape);
  /// A view of `data` (not copied); `keep_alive` owns the memory behind it, if anyone.
  static Tensor view(DType dtype, Shape shape, const void* data,
                     std::shared_ptr<const void> keep_alive = nullptr);
  /// A view of `data` when it is aligned for `dtype` (kernels read elements through typed
  /// pointers), else an owned copy of its bytes: file formats may put tensors at any offset.
  static Tensor view_or_copy(DType dtype, Shape shape, const void* data,
                             std::shared_ptr<const void> keep_alive);
  /// A writable view of `data` (memory planned by its owner, e.g. an activation arena).
  static Tensor writable_view(DType dtype, Shape shape, void* data,
                              std::shared_ptr<const void> keep_alive = nullptr);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_[i]; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool empty() const { return dtype_ == DType::kUndefined; }

  const void* raw() const { return data_; }
  /// Writable bytes; only valid on tensors created with the allocating constructor.
  void* raw_mut();
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(data_);
  }
  template <typename T>
  T* data_mut() {
    return static_cast<T*>(raw_mut());
  }
  /// Same bytes, new shape of the same element count.
  Tensor reshaped(Shape shape) const;
  /// A deep copy that owns its bytes.
  Tensor clone() const;

 private:
  void allocate(bool zero);
  DType dtype_ = DType::kUndefined;
  Shape shape_;
  const void* data_ = nullptr;
  bool writable_ = false;
  std::shared_ptr<const void> holder_;
};

}  // namespace gptrt
