// The reference backend: plain, readable C++ for every op gptrt imports. It is the ground truth
// every other backend is tested against, and the constant folder's evaluator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gptrt/tensor.h"
#include "ir/graph.h"

namespace gptrt::reference {

/// Arguments of one op invocation.
struct KernelCall {
  const ir::Node& node;
  const std::vector<const Tensor*>& inputs;  // nullptr for an omitted optional input
  int64_t opset;

  /// Input `i`; throws if it was omitted.
  const Tensor& in(size_t i) const;
  /// Input `i` or nullptr.
  const Tensor* optional(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
  /// Integer contents of input `i` (int64 or int32), or `fallback` if omitted.
  std::vector<int64_t> ints(size_t i, std::vector<int64_t> fallback = {}) const;
  /// Throws a shape error naming the node.
  [[noreturn]] void fail(const std::string& msg) const;
};

using KernelFn = std::vector<Tensor> (*)(const KernelCall& call);

/// Runs `node`; returns one tensor per output (empty tensors for omitted outputs).
std::vector<Tensor> run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                             int64_t opset);
/// True when the reference backend has a kernel for `op_type` of `domain` ("" = ONNX, or
/// ir::kFusedDomain for the fused ops).
bool has_kernel(const std::string& op_type, const std::string& domain = "");

// Registration, one function per kernel file.
void register_elementwise(void (*add)(const char*, KernelFn));
void register_tensor_ops(void (*add)(const char*, KernelFn));
void register_nn_ops(void (*add)(const char*, KernelFn));
void register_fused_ops(void (*add)(const char*, KernelFn));    // names "gptrt.<op>"
void register_contrib_ops(void (*add)(const char*, KernelFn));  // names "com.microsoft.<op>"
void register_control_flow(void (*add)(const char*, KernelFn));

/// Calls f(T{}) with the C++ type of `dt` (bool for kBool).
template <typename F>
void dispatch_type(DType dt, const KernelCall& call, F&& f) {
  switch (dt) {
    case DType::kFloat32:
      f(float{});
      return;
    case DType::kFloat64:
      f(double{});
      return;
    case DType::kInt64:
      f(int64_t{});
      return;
    case DType::kInt32:
      f(int32_t{});
      return;
    case DType::kInt8:
      f(int8_t{});
      return;
    case DType::kUInt8:
      f(uint8_t{});
      return;
    case DType::kBool:
      f(bool{});
      return;
    default:
      call.fail(std::string("dtype ") + dtype_name(dt) + " is not supported by this op");
  }
}

/// Numpy broadcasting of several shapes, with each input's strides over the output.
struct Broadcast {
  Shape out;
  std::vector<std::vector<int64_t>> strides;  // per input, per output dim (0 = broadcast)
};
Broadcast make_broadcast(const KernelCall& call, const std::vector<Shape>& shapes);

/// Calls f(out_index, offsets) for every output element; offsets[k] indexes input k.
template <typename F>
void for_each_broadcast(const Broadcast& b, F&& f) {
  size_t r = b.out.size(), k = b.strides.size();
  int64_t n = shape_numel(b.out);
  std::vector<int64_t> idx(r, 0), off(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    f(i, off.data());
    for (size_t d = r; d-- > 0;) {
      ++idx[d];
      for (size_t j = 0; j < k; ++j) off[j] += b.strides[j][d];
      if (idx[d] < b.out[d]) break;
      for (size_t j = 0; j < k; ++j) off[j] -= b.strides[j][d] * idx[d];
      idx[d] = 0;
    }
  }
}

/// Row-major strides of `shape`, in elements.
std::vector<int64_t> strides_of(const Shape& shape);
/// `axis` made non-negative; throws if out of range for `rank`.
int64_t normalize_axis(const KernelCall& call, int64_t axis, size_t rank);

}  // namespace gptrt::reference
