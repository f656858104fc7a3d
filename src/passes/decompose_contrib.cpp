// ONNX Runtime's contrib ops that its transformer optimizer writes into GPT-2 exports, rewritten
// as the ONNX ops they stand for, so that the fusion passes recognise the decoder in an optimized
// file as in the plain export:
//   SkipLayerNormalization(x, skip, gamma, beta?, bias?) -> LayerNormalization(x (+ bias) + skip)
//     (its fourth output, the sum, kept; a file that reads the mean or inverse deviation keeps
//     the contrib op)
//   FastGelu(x, bias?) -> Gelu(x (+ bias), approximate "tanh")
//   BiasGelu(x, bias) -> Gelu(x + bias);  Gelu(x) -> Gelu(x)
#include <string>

#include "ir/shape_inference.h"
#include "passes/passes.h"
#include "passes/pattern.h"

namespace gptrt::passes {
namespace {

struct Rewriter {
  ir::Graph& g;
  std::vector<ir::Node> out;

  int value(const std::string& base) {
    std::string name = base;
    for (int k = 1; g.find(name) >= 0; ++k) name = base + "." + std::to_string(k);
    ir::Value v;
    v.name = name;
    return g.add_value(std::move(v));
  }
  // Adds node `op` reading `inputs`, writing `result` (a new value when -1); returns it.
  int add(const ir::Node& from, const std::string& op, std::vector<int> inputs, int result,
          std::map<std::string, ir::Attribute> attrs = {}) {
    ir::Node n;
    n.name = from.name + "/" + op;
    n.op_type = op;
    n.inputs = std::move(inputs);
    n.outputs = {result >= 0 ? result : value(from.name + "/" + op + "_output")};
    n.attrs = std::move(attrs);
    out.push_back(std::move(n));
    return out.back().outputs[0];
  }
};

int optional_input(const ir::Node& n, size_t i) {
  return i < n.inputs.size() ? n.inputs[i] : -1;
}

}  // namespace

int decompose_contrib_ops(ir::Graph& g) {
  Rewriter r{g, {}};
  int changed = 0;
  std::vector<ir::Node> nodes = std::move(g.nodes);
  g.nodes.clear();
  for (ir::Node& n : nodes) {
    if (n.domain != ir::kContribDomain || n.outputs.empty() || n.outputs[0] < 0) {
      r.out.push_back(std::move(n));
      continue;
    }
    const std::string& op = n.op_type;
    if (op == "SkipLayerNormalization" && !(n.outputs.size() > 1 && n.outputs[1] >= 0) &&
        !(n.outputs.size() > 2 && n.outputs[2] >= 0)) {
      int x = n.inputs[0];
      if (int bias = optional_input(n, 4); bias >= 0) x = r.add(n, "Add", {x, bias}, -1);
      int sum = r.add(n, "Add", {x, n.inputs[1]}, n.outputs.size() > 3 ? n.outputs[3] : -1);
      std::vector<int> ln{sum, n.inputs[2]};
      if (int beta = optional_input(n, 3); beta >= 0) ln.push_back(beta);
      r.add(n, "LayerNormalization", ln, n.outputs[0],
            {{"axis", int_attr(-1)}, {"epsilon", float_attr(n.attr_float("epsilon", 1e-12f))}});
    } else if (op == "FastGelu" || op == "BiasGelu" || op == "Gelu") {
      int x = n.inputs[0];
      if (int bias = optional_input(n, 1); bias >= 0) x = r.add(n, "Add", {x, bias}, -1);
      r.add(n, "Gelu", {x}, n.outputs[0],
            {{"approximate", string_attr(op == "FastGelu" ? "tanh" : "none")}});
    } else {
      r.out.push_back(std::move(n));
      continue;
    }
    ++changed;
  }
  g.nodes = std::move(r.out);
  if (changed) ir::infer_shapes(g);
  return changed;
}

}  // namespace gptrt::passes
