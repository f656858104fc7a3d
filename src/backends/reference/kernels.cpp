#include "backends/reference/kernels.h"

#include <mutex>
#include <unordered_map>

#include "core/half.h"
#include "gptrt/error.h"

namespace gptrt::reference {
namespace {

std::unordered_map<std::string, KernelFn>& table() {
  static std::unordered_map<std::string, KernelFn> t;
  return t;
}

void add_kernel(const char* name, KernelFn fn) {
  table()[name] = fn;
}

const std::unordered_map<std::string, KernelFn>& kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_elementwise(add_kernel);
    register_tensor_ops(add_kernel);
    register_nn_ops(add_kernel);
    register_fused_ops(add_kernel);
    register_contrib_ops(add_kernel);
    register_control_flow(add_kernel);
  });
  return table();
}

bool is_16bit_float(DType d) {
  return d == DType::kFloat16 || d == DType::kBFloat16;
}

// float16/bfloat16 values are widened to float32 (exact) and float32 results rounded back to
// the graph's type: every op computes in FP32 and rounds where the graph holds a 16-bit value.

// Ops that take 16-bit floats as they are (they convert or only read shapes).
bool native_16bit(const ir::Node& n) {
  return n.op_type == "Cast" || n.op_type == "CastLike" || n.op_type == "Shape" ||
         n.op_type == "Size" || n.op_type == "ConstantOfShape" || n.op_type == "Constant" ||
         n.op_type == "If";
}

}  // namespace

const Tensor& KernelCall::in(size_t i) const {
  const Tensor* t = optional(i);
  if (!t) fail("required input " + std::to_string(i) + " is missing");
  return *t;
}

std::vector<int64_t> KernelCall::ints(size_t i, std::vector<int64_t> fallback) const {
  const Tensor* t = optional(i);
  if (!t) return fallback;
  std::vector<int64_t> r(static_cast<size_t>(t->numel()));
  if (t->dtype() == DType::kInt64) {
    for (size_t k = 0; k < r.size(); ++k) r[k] = t->data<int64_t>()[k];
  } else if (t->dtype() == DType::kInt32) {
    for (size_t k = 0; k < r.size(); ++k) r[k] = t->data<int32_t>()[k];
  } else {
    fail("input " + std::to_string(i) + " must be int64 or int32, found " + dtype_name(t->dtype()));
  }
  return r;
}

void KernelCall::fail(const std::string& msg) const {
  throw Error(ErrorCode::kShapeError, node.describe() + ": " + msg);
}

std::vector<Tensor> run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                             int64_t opset) {
  auto it = kernels().find(node.domain.empty() ? node.op_type : node.domain + "." + node.op_type);
  if (it == kernels().end()) {
    throw Error(ErrorCode::kUnsupported,
                node.describe() + ": the reference backend has no kernel for this op");
  }
  DType half = DType::kUndefined;
  if ((node.domain.empty() || node.domain == ir::kContribDomain) && !native_16bit(node))
    for (const Tensor* t : inputs)
      if (t && is_16bit_float(t->dtype()) && half == DType::kUndefined) half = t->dtype();
  if (half == DType::kUndefined) {
    KernelCall call{node, inputs, opset};
    std::vector<Tensor> outs = it->second(call);
    outs.resize(node.outputs.size());
    return outs;
  }
  std::vector<Tensor> wide(inputs.size());
  std::vector<const Tensor*> args(inputs.size(), nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) continue;
    if (is_16bit_float(inputs[i]->dtype())) {
      wide[i] = widen_to_float32(*inputs[i]);
      args[i] = &wide[i];
    } else {
      args[i] = inputs[i];
    }
  }
  KernelCall call{node, args, opset};
  std::vector<Tensor> outs = it->second(call);
  outs.resize(node.outputs.size());
  // LayerNormalization's mean and inverse deviation stay float32 (its stash type).
  for (size_t k = 0; k < outs.size(); ++k)
    if (outs[k].dtype() == DType::kFloat32 && !(node.op_type == "LayerNormalization" && k > 0))
      outs[k] = narrow_from_float32(outs[k], half);
  return outs;
}

bool has_kernel(const std::string& op_type, const std::string& domain) {
  return kernels().count(domain.empty() ? op_type : domain + "." + op_type) != 0;
}

Broadcast make_broadcast(const KernelCall& call, const std::vector<Shape>& shapes) {
  Broadcast b;
  size_t r = 0;
  for (const Shape& s : shapes) r = std::max(r, s.size());
  b.out.assign(r, 1);
  for (const Shape& s : shapes) {
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t d = s[i];
      int64_t& o = b.out[r - s.size() + i];
      if (o == 1) {
        o = d;
      } else if (d != 1 && d != o) {
        std::string msg = "cannot broadcast shapes";
        for (const Shape& t : shapes) msg += " " + shape_str(t);
        call.fail(msg);
      }
    }
  }
  for (const Shape& s : shapes) {
    std::vector<int64_t> st(r, 0);
    std::vector<int64_t> own = strides_of(s);
    for (size_t i = 0; i < s.size(); ++i) {
      size_t o = r - s.size() + i;
      st[o] = s[i] == 1 ? 0 : own[i];
    }
    b.strides.push_back(st);
  }
  return b;
}

std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) st[i - 1] = st[i] * shape[i];
  return st;
}

int64_t normalize_axis(const KernelCall& call, int64_t axis, size_t rank) {
  int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r)
    call.fail("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + r : axis;
}

}  // namespace gptrt::reference
