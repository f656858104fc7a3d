// NumPy arrays to gptrt tensors (copied in, any strides) and gptrt tensors to NumPy arrays (the
// array owns the tensor's bytes: no copy out); DLPack tensors in CUDA memory as device views.
#include <cstring>
#include <vector>

#include "bindings.h"
#include "gptrt/error.h"

namespace gptrt::python {
namespace {

DType dtype_of(const nb::dlpack::dtype& d) {
  using Code = nb::dlpack::dtype_code;
  if (d.lanes != 1) return DType::kUndefined;
  if (d.code == static_cast<uint8_t>(Code::Int) && d.bits == 64) return DType::kInt64;
  if (d.code == static_cast<uint8_t>(Code::Int) && d.bits == 32) return DType::kInt32;
  if (d.code == static_cast<uint8_t>(Code::Float) && d.bits == 32) return DType::kFloat32;
  if (d.code == static_cast<uint8_t>(Code::Float) && d.bits == 16) return DType::kFloat16;
  if (d.code == static_cast<uint8_t>(Code::Bool) && d.bits == 8) return DType::kBool;
  return DType::kUndefined;
}

nb::dlpack::dtype dlpack_of(DType t) {
  using Code = nb::dlpack::dtype_code;
  auto make = [](Code c, uint8_t bits) {
    nb::dlpack::dtype d;
    d.code = static_cast<uint8_t>(c);
    d.bits = bits;
    d.lanes = 1;
    return d;
  };
  switch (t) {
    case DType::kInt64:
      return make(Code::Int, 64);
    case DType::kInt32:
      return make(Code::Int, 32);
    case DType::kFloat32:
      return make(Code::Float, 32);
    case DType::kFloat16:
      return make(Code::Float, 16);
    case DType::kBFloat16:
      return make(Code::Bfloat, 16);
    case DType::kBool:
      return make(Code::Bool, 8);
    case DType::kUInt8:
      return make(Code::UInt, 8);
    case DType::kInt8:
      return make(Code::Int, 8);
    case DType::kFloat64:
      return make(Code::Float, 64);
    default:
      throw Error(ErrorCode::kUnsupported,
                  std::string("a tensor of dtype ") + dtype_name(t) + " has no NumPy array type");
  }
}

}  // namespace

std::string py_str(nb::handle h) {
  PyObject* s = h.is_valid() ? PyObject_Str(h.ptr()) : nullptr;
  const char* c = s ? PyUnicode_AsUTF8(s) : nullptr;
  std::string out = c ? c : "?";
  Py_XDECREF(s);
  if (!c) PyErr_Clear();
  return out;
}

Tensor tensor_from_array(nb::handle array, const std::string& what) {
  using Array = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
  Array a;
  if (!nb::try_cast(array, a)) {
    nb::object contiguous = nb::module_::import_("numpy").attr("ascontiguousarray");
    nb::object c;
    try {
      c = contiguous(array);
    } catch (const nb::python_error&) {
    }
    if (!c.is_valid() || !nb::try_cast(c, a))
      throw Error(ErrorCode::kInvalidArgument,
                  what + ": expected a NumPy array (or a list of numbers), found " +
                      py_str(array.type().attr("__name__")));
  }
  const DType dt = dtype_of(a.dtype());
  if (dt == DType::kUndefined)
    throw Error(ErrorCode::kInvalidArgument,
                what + ": arrays of int64, int32, float32 or float16 are accepted, found " +
                    py_str(nb::getattr(array, "dtype", nb::none())));
  Shape shape;
  for (size_t i = 0; i < a.ndim(); ++i) shape.push_back(static_cast<int64_t>(a.shape(i)));
  Tensor t(dt, shape);
  if (t.nbytes() > 0) std::memcpy(t.raw_mut(), a.data(), t.nbytes());
  return t;
}

DeviceTensor device_tensor_from(nb::handle obj, const std::string& what) {
  nb::ndarray<nb::device::cuda> a;
  if (!nb::try_cast(obj, a))
    throw Error(ErrorCode::kInvalidArgument,
                what + ": expected a tensor in CUDA memory with DLPack (__dlpack__), found " +
                    py_str(obj.type().attr("__name__")));
  if (a.device_id() != 0)
    throw Error(ErrorCode::kInvalidArgument,
                what + ": the tensor is on GPU " + std::to_string(a.device_id()) +
                    "; gptrt's cuda backend runs on GPU 0 (set CUDA_VISIBLE_DEVICES to choose it)");
  DeviceTensor t;
  t.dtype = dtype_of(a.dtype());
  if (t.dtype == DType::kUndefined)
    throw Error(ErrorCode::kInvalidArgument,
                what + ": tensors of int64, int32, float32 or float16 are accepted, found " +
                    py_str(nb::getattr(obj, "dtype", nb::none())));
  int64_t expect = 1;
  for (size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expect)
      throw Error(ErrorCode::kInvalidArgument,
                  what + ": the tensor is not contiguous (strides); pass tensor.contiguous()");
    expect *= static_cast<int64_t>(a.shape(i));
  }
  for (size_t i = 0; i < a.ndim(); ++i) t.shape.push_back(static_cast<int64_t>(a.shape(i)));
  t.data = a.data();
  return t;
}

nb::object array_from_tensor(const Tensor& t) {
  auto* owner = new Tensor(t);
  nb::capsule keep(owner, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  std::vector<size_t> shape(t.shape().begin(), t.shape().end());
  nb::ndarray<nb::numpy> a(const_cast<void*>(t.raw()), shape.size(), shape.data(), keep, nullptr,
                           dlpack_of(t.dtype()));
  return a.cast();
}

}  // namespace gptrt::python
