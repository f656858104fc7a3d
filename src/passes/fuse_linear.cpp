// MatMul by a constant matrix (+ Add of a constant bias) and Gemm (alpha = beta = 1, no transA)
// become gptrt.Linear: y[..., N] = x[..., K] @ W + b, with W [K, N] (or [N, K] with transB = 1).
#include "passes/passes.h"
#include "passes/pattern.h"

namespace gptrt::passes {
namespace {

bool is_matrix(const ir::Value* v) {
  return v && v->is_constant() && v->dtype == DType::kFloat32 && v->constant.rank() == 2;
}

// A constant float32 bias of `n` elements, [N] or [1, N].
bool is_bias(const ir::Value* v, int64_t n) {
  return v && v->is_constant() && v->dtype == DType::kFloat32 && v->constant.numel() == n &&
         v->constant.shape().back() == n;
}

}  // namespace

int fuse_linear(ir::Graph& g) {
  Uses uses(g);
  int fused = 0;
  for (ir::Node& n : g.nodes) {
    if (!n.domain.empty() || n.outputs.empty() || n.outputs[0] < 0) continue;
    const ir::Value* x = g.input(n, 0);
    if (!x || x->dtype != DType::kFloat32 || x->is_constant() || !x->shape.rank_known ||
        x->shape.dims.size() < 2 || !is_matrix(g.input(n, 1)))
      continue;
    const Tensor& w = g.input(n, 1)->constant;
    ir::Node lin;
    lin.name = n.name;
    lin.op_type = "Linear";
    lin.domain = kFusedDomain;
    bool trans_b = false;
    int bias = -1;
    ir::Node* last = &n;
    if (n.op_type == "MatMul") {
      int out = n.outputs[0];
      if (uses.single_use(out)) {
        ir::Node& add = g.nodes[static_cast<size_t>(uses.consumers[static_cast<size_t>(out)][0])];
        int b =
            add.inputs.size() == 2 ? (add.inputs[0] == out ? add.inputs[1] : add.inputs[0]) : -1;
        if (add.domain.empty() && add.op_type == "Add" && b >= 0 &&
            is_bias(&g.values[static_cast<size_t>(b)], w.dim(1))) {
          bias = b;
          last = &add;
        }
      }
    } else if (n.op_type == "Gemm") {
      if (n.attr_int("transA", 0) != 0 || n.attr_float("alpha", 1.f) != 1.f ||
          n.attr_float("beta", 1.f) != 1.f || x->shape.dims.size() != 2)
        continue;
      trans_b = n.attr_int("transB", 0) != 0;
      if (const ir::Value* c = g.input(n, 2)) {
        if (!is_bias(c, trans_b ? w.dim(0) : w.dim(1))) continue;
        bias = n.inputs[2];
      }
    } else {
      continue;
    }
    lin.inputs = {n.inputs[0], n.inputs[1]};
    if (bias >= 0) lin.inputs.push_back(bias);
    lin.outputs = {last->outputs[0]};
    lin.attrs["transB"] = int_attr(trans_b ? 1 : 0);
    if (last != &n) n.outputs = {-1};  // the MatMul goes dead; its Add becomes the Linear
    *last = std::move(lin);
    ++fused;
  }
  return fused;
}

}  // namespace gptrt::passes
