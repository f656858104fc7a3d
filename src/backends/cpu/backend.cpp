#include "backends/cpu/backend.h"

#include <map>

#include "gptrt/error.h"

namespace gptrt::cpu {
namespace {

bool is_matrix(const ir::Value* v) {
  return v && v->is_constant() && v->dtype == DType::kFloat32 && v->constant.rank() == 2;
}

}  // namespace

int lower_linear(ir::Graph& g, DType weights) {
  int rewritten = 0;
  std::map<std::pair<int, bool>, int> packed;  // (weight value, transposed) -> packed value
  for (ir::Node& n : g.nodes) {
    if (!n.domain.empty() || n.outputs.empty() || n.outputs[0] < 0) continue;
    const ir::Value* x = g.input(n, 0);
    if (!x || x->dtype != DType::kFloat32 || x->is_constant()) continue;
    bool transposed = false;
    int bias = -1;
    if (n.op_type == "MatMul") {
      if (!is_matrix(g.input(n, 1)) || !x->shape.rank_known || x->shape.dims.size() < 2) continue;
    } else if (n.op_type == "Gemm") {
      if (!is_matrix(g.input(n, 1)) || n.attr_int("transA", 0) != 0 ||
          n.attr_float("alpha", 1.f) != 1.f || n.attr_float("beta", 1.f) != 1.f) {
        continue;
      }
      transposed = n.attr_int("transB", 0) != 0;
      if (const ir::Value* c = g.input(n, 2)) {
        int64_t cols = transposed ? g.input(n, 1)->constant.dim(0) : g.input(n, 1)->constant.dim(1);
        if (!c->is_constant() || c->dtype != DType::kFloat32 || c->constant.numel() != cols ||
            (c->constant.rank() == 2 && c->constant.dim(0) != 1) || c->constant.rank() > 2) {
          continue;
        }
        bias = n.inputs[2];
      }
    } else {
      continue;
    }
    int w = n.inputs[1];
    auto key = std::make_pair(w, transposed);
    auto it = packed.find(key);
    if (it == packed.end()) {
      ir::Value p;
      p.name = g.values[static_cast<size_t>(w)].name + (transposed ? ".packedT" : ".packed");
      p.constant = pack_weights(g.values[static_cast<size_t>(w)].constant, transposed, weights);
      p.dtype = weights;
      p.shape = ir::SymShape::from(p.constant.shape());
      p.is_weight = true;
      it = packed.emplace(key, g.add_value(std::move(p))).first;
    }
    const Tensor& wt = g.values[static_cast<size_t>(w)].constant;
    int64_t k = transposed ? wt.dim(1) : wt.dim(0), cols = transposed ? wt.dim(0) : wt.dim(1);
    ir::Node lowered;
    lowered.name = n.name;
    lowered.op_type = "PackedLinear";
    lowered.domain = kDomain;
    lowered.inputs = {n.inputs[0], it->second};
    if (bias >= 0) lowered.inputs.push_back(bias);
    lowered.outputs = {n.outputs[0]};
    lowered.attrs["K"] = ir::Attribute{ir::Attribute::Kind::kInt, 0, k, {}, {}, {}, {}, {}};
    lowered.attrs["N"] = ir::Attribute{ir::Attribute::Kind::kInt, 0, cols, {}, {}, {}, {}, {}};
    n = std::move(lowered);
    ++rewritten;
  }
  return rewritten;
}

int lower_elementwise(ir::Graph& g) {
  int moved = 0;
  for (ir::Node& n : g.nodes) {
    if (!n.domain.empty() || !is_elementwise(n.op_type) || n.outputs.empty() || n.outputs[0] < 0)
      continue;
    if (g.values[static_cast<size_t>(n.outputs[0])].dtype != DType::kFloat32) continue;
    n.domain = kDomain;
    ++moved;
  }
  return moved;
}

bool has_kernel(const std::string& op_type) {
  return op_type == "PackedLinear" || is_elementwise(op_type);
}

std::vector<Tensor> run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                             Isa isa, ThreadPool& pool) {
  if (is_elementwise(node.op_type)) return run_elementwise(node, inputs, pool);
  if (node.op_type != "PackedLinear" || inputs.size() < 2 || !inputs[0] || !inputs[1]) {
    throw Error(ErrorCode::kInternal, node.describe() + ": not a CPU backend op");
  }
  // x [..., K] -> y [..., N]
  const Tensor& x = *inputs[0];
  int64_t k = node.attr_int("K", 0), n = node.attr_int("N", 0);
  if (x.dtype() != DType::kFloat32 || x.rank() == 0 || x.shape().back() != k) {
    throw Error(ErrorCode::kShapeError, node.describe() + ": input " + shape_str(x.shape()) +
                                            " does not end in K = " + std::to_string(k));
  }
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Tensor y = Tensor::uninitialized(DType::kFloat32, out_shape);
  const float* bias = inputs.size() > 2 && inputs[2] ? inputs[2]->data<float>() : nullptr;
  gemm_packed(isa, x.data<float>(), x.numel() / k, k, *inputs[1], n, bias, y.data_mut<float>(),
              pool);
  return {y};
}

}  // namespace gptrt::cpu
