// Decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul gamma, Add beta;
// what TorchScript exports below opset 17 give) becomes one LayerNormalization node over the
// last axis.
#include "ir/shape_inference.h"
#include "passes/passes.h"
#include "passes/pattern.h"

namespace gptrt::passes {
namespace {

// True when `n` is a ReduceMean over the last axis only, keeping dims.
bool mean_over_last_axis(const ir::Graph& g, const ir::Node& n) {
  if (n.attr_int("keepdims", 1) != 1) return false;
  std::vector<int64_t> axes = n.attr_ints("axes");
  if (axes.empty()) {
    auto ints = ir::constant_ints(g.input(n, 1));
    if (!ints) return false;
    axes = *ints;
  }
  const ir::Value& x = g.values[static_cast<size_t>(n.inputs[0])];
  if (axes.size() != 1 || !x.shape.rank_known) return false;
  int64_t rank = static_cast<int64_t>(x.shape.dims.size());
  return axes[0] == -1 || axes[0] == rank - 1;
}

// Constant [E] (or [1..., E]) float vector with E elements.
bool is_vector(const ir::Value* v, int64_t e) {
  return v && v->is_constant() && v->dtype == DType::kFloat32 && v->constant.numel() == e;
}

}  // namespace

int fuse_layer_norm(ir::Graph& g) {
  Uses uses(g);
  int fused = 0;
  for (ir::Node& div : g.nodes) {
    if (!div.domain.empty() || div.op_type != "Div" || div.inputs.size() != 2) continue;
    const ir::Node* sub = uses.producer_of(g, div.inputs[0], "Sub");
    const ir::Node* sqrt = uses.producer_of(g, div.inputs[1], "Sqrt");
    if (!sub || !sqrt) continue;
    const ir::Node* mean = uses.producer_of(g, sub->inputs[1], "ReduceMean");
    const ir::Node* add_eps = uses.producer_of(g, sqrt->inputs[0], "Add");
    if (!mean || mean->inputs[0] != sub->inputs[0] || !mean_over_last_axis(g, *mean) || !add_eps)
      continue;
    auto eps = scalar_constant(g.input(*add_eps, 1));
    const ir::Node* var = uses.producer_of(g, add_eps->inputs[0], "ReduceMean");
    if (!eps || !var || !mean_over_last_axis(g, *var)) continue;
    const ir::Node* sq = uses.producer_of(g, var->inputs[0], "Pow");
    if (sq) {
      auto two = scalar_constant(g.input(*sq, 1));
      if (!two || *two != 2.0 || sq->inputs[0] != div.inputs[0]) continue;
    } else {
      sq = uses.producer_of(g, var->inputs[0], "Mul");
      if (!sq || sq->inputs[0] != div.inputs[0] || sq->inputs[1] != div.inputs[0]) continue;
    }
    const ir::Value& x = g.values[static_cast<size_t>(sub->inputs[0])];
    if (x.dtype != DType::kFloat32 || !x.shape.rank_known || x.shape.dims.empty() ||
        !x.shape.dims.back().is_known())
      continue;
    int64_t e = x.shape.dims.back().value;

    // Optional affine part: Mul by gamma, then Add beta (either operand order).
    ir::Node* last = &div;
    int gamma = -1, beta = -1;
    int out = div.outputs[0];
    auto other_operand = [&](const ir::Node& n, int id) {
      return n.inputs[0] == id ? n.inputs[1] : n.inputs[0];
    };
    if (uses.single_use(out)) {
      ir::Node& mul = g.nodes[static_cast<size_t>(uses.consumers[static_cast<size_t>(out)][0])];
      int w = other_operand(mul, out);
      if (mul.domain.empty() && mul.op_type == "Mul" &&
          is_vector(&g.values[static_cast<size_t>(w)], e)) {
        gamma = w;
        last = &mul;
        out = mul.outputs[0];
        if (uses.single_use(out)) {
          ir::Node& add = g.nodes[static_cast<size_t>(uses.consumers[static_cast<size_t>(out)][0])];
          int b = other_operand(add, out);
          if (add.domain.empty() && add.op_type == "Add" &&
              is_vector(&g.values[static_cast<size_t>(b)], e)) {
            beta = b;
            last = &add;
            out = add.outputs[0];
          }
        }
      }
    }
    auto make_vector = [&](const char* suffix, float fill) {
      Tensor t(DType::kFloat32, {e});
      for (int64_t i = 0; i < e; ++i) t.data_mut<float>()[i] = fill;
      return g.add_constant(g.values[static_cast<size_t>(out)].name + suffix, t);
    };
    if (gamma < 0) gamma = make_vector(".gamma", 1.f);
    if (beta < 0) beta = make_vector(".beta", 0.f);
    int input = sub->inputs[0];
    ir::Node ln;
    ln.name = last->name;
    ln.op_type = "LayerNormalization";
    ln.inputs = {input, gamma, beta};
    ln.outputs = {out};
    ln.attrs["axis"] = int_attr(-1);
    ln.attrs["epsilon"] = float_attr(static_cast<float>(*eps));
    *last = std::move(ln);
    ++fused;
  }
  return fused;
}

}  // namespace gptrt::passes
